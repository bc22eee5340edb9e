"""Serving wabot: hypercorn's trio worker in-process, the sandbox when credentials are missing.

``run_server`` is what ``wabot serve`` runs: it binds the listener first (a busy port is
reported before anything is loaded), then starts the service (store, actors). While the store
loads (a large journal takes seconds), ``/healthz`` answers 200 so a liveness probe does not
kill the starting process, while ``/readyz`` and webhooks answer 503 (nothing is acknowledged
before it can be journaled); "listening on URL" is logged once the service is ready. On
``stop`` it drains in the order an operator expects — readiness 503 and webhooks 503 at once
while the listener stays up, in-flight turns finish within ``WABOT_DRAIN_SECONDS``, then the
listener closes and the store flushes. Without credentials the loopback fakes of Whapi and
OpenAI run in the same nursery and a banner says so. In production each request is logged
by hypercorn's access log, in the format of ``hypercorn.toml``.
"""

from __future__ import annotations

import errno
import json
import logging
import secrets
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from actors.settings import Settings
from gateway.app import SECRET_HEADER, create_app
from gateway.hook import HookEndpoint
from gateway.service import BehaviorWrapper, Service, StartupError, check_data_dir
from store.fileio import FileIO

log = logging.getLogger("gateway.server")

SANDBOX_FILE = "sandbox.json"
#: The sandbox's fake OpenAI keeps its conversations here, so a restart keeps them as OpenAI would.
SANDBOX_OPENAI_FILE = "sandbox-openai.json"
SANDBOX_BANNER = """
===============================================================================
  wabot is running in the LOCAL SANDBOX: {missing} not set.
  Whapi and OpenAI are loopback fakes in this process; nothing reaches WhatsApp
  or OpenAI. Try it:   .venv/bin/wabot say 573001234567 "Hola"
  Set WHAPI_TOKEN and OPENAI_API_KEY (or .env) to talk to the real services.
===============================================================================
"""


#: The access log line (hypercorn atoms): client, request line, status, bytes, seconds.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.http_graceful_seconds
    config.read_timeout = int(max(1, settings.http_read_timeout_seconds))
    config.keep_alive_timeout = settings.http_keep_alive_seconds
    config.h11_max_incomplete_size = 16 * 1024
    # Production logs each request as hypercorn.toml does (JSON fields: gateway.logs).
    config.accesslog = logging.getLogger("hypercorn.access") if settings.production else None
    config.access_log_format = ACCESS_LOG_FORMAT
    config.errorlog = logging.getLogger("hypercorn.error")
    config.workers = 1
    return config


@attrs.frozen
class Running:
    """What a started server reports: where it listens, and the sandbox fakes if any."""

    url: str
    service: Service
    sandbox: Any = None


async def run_server(
    settings: Settings,
    *,
    stop: trio.Event,
    wrap_behavior: BehaviorWrapper | None = None,
    file_io: FileIO | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set, then drain and return."""
    missing = settings.missing_credentials()
    check_data_dir(settings.data_dir)  # before the sandbox, which keeps a file there too
    async with trio.open_nursery() as outer:
        sandbox = None
        if settings.sandbox:
            from sandbox.run import run_sandbox

            whapi_token = settings.whapi_token or f"sandbox-{secrets.token_hex(8)}"
            openai_key = settings.openai_api_key or f"sandbox-{secrets.token_hex(8)}"
            sandbox = await outer.start(
                partial(
                    run_sandbox,
                    whapi_token=whapi_token,
                    openai_key=openai_key,
                    openai_state_file=settings.data_dir / SANDBOX_OPENAI_FILE,
                )
            )
            settings = attrs.evolve(
                settings,
                whapi_token=whapi_token,
                openai_api_key=openai_key,
                whapi_api_url=sandbox.whapi_url,
                openai_base_url=sandbox.openai_url,
            )
        async with trio.open_nursery() as inner:
            service = Service(settings, wrap_behavior=wrap_behavior, file_io=file_io)
            http_stop = trio.Event()
            try:
                binds = await inner.start(
                    partial(
                        hypercorn_serve,
                        HookEndpoint(service, create_app(service)),
                        hypercorn_config(settings),
                        shutdown_trigger=http_stop.wait,
                    )
                )
            except* OSError as group:
                raise _listen_error(settings, group) from None
            url = _loopback(binds[0])
            log.info(
                "accepting connections on %s while the store loads: /healthz answers, "
                "/readyz and webhooks answer 503 until it is ready",
                url,
            )
            await inner.start(service.run)
            log.info("listening on %s (ready: the store is loaded)", url)
            marker = settings.data_dir / SANDBOX_FILE
            if sandbox is not None:
                sandbox.whapi.webhook_url = f"{url}/hook"
                if settings.webhook_secret:
                    sandbox.whapi.webhook_headers = {SECRET_HEADER: settings.webhook_secret}
                _write_marker(marker, url, sandbox)
                print(SANDBOX_BANNER.format(missing=" and ".join(missing)), flush=True)
            task_status.started(Running(url=url, service=service, sandbox=sandbox))
            try:
                await stop.wait()
            finally:
                with trio.CancelScope(shield=True):
                    marker.unlink(missing_ok=True)
                    log.info("stopping: draining in-flight turns")
                    await service.drain()
                    http_stop.set()
                    service.stop()
        outer.cancel_scope.cancel()


def _listen_error(settings: Settings, group: BaseExceptionGroup[OSError]) -> StartupError:
    """One line for a listener that cannot be opened (in use, no permission, no such host)."""
    error = group.exceptions[0]
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    where = f"{settings.host}:{settings.port}"
    reason = error.strerror or str(error)
    if error.errno == errno.EADDRINUSE:
        fix = "stop the process that uses it, or set PORT to a free port"
    elif error.errno == errno.EACCES:
        fix = "ports below 1024 need privileges: set PORT to 1024 or above"
    else:
        fix = "set HOST and PORT to an address of this machine"
    return StartupError(f"cannot listen on {where}: {reason.lower()}; {fix}")


def _loopback(bind: str) -> str:
    return bind.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://127.0.0.1:")


def _write_marker(path: Path, url: str, sandbox: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"hook_url": f"{url}/hook", "whapi_url": sandbox.whapi_url}))
