"""Serving wabot: the one path of ``wabot serve`` and of the hypercorn command.

Both serve the app a ``Shell`` builds (``POST /hook`` in front of the Quart routes, the
service started and closed by the ASGI lifespan) on hypercorn's trio worker, with the settings
of ``hypercorn.toml``; ``wabot serve`` reads the same file and binds ``HOST``:``PORT``
instead of its ``bind``. What a start needs is written here once:

- ``check_can_serve``: production has credentials and a webhook secret (never the sandbox),
  the data directory is usable; a problem is a ``StartupError`` (one line, exit status 2);
- the sandbox: without credentials the loopback fakes of Whapi and OpenAI (and of Beds24,
  unless its own credentials are set) start before the service (the sample documents of
  ``sandbox/knowledge/`` synced into the fake, for the answers to quote), and once it is
  ready a banner says so and ``wabot say`` finds it (marker file);
- the store loads after the listener is up: ``/healthz`` answers 200 while ``/readyz`` and
  webhooks answer 503 (nothing is acknowledged before it can be journaled); a service that
  cannot start (store locked or corrupt, data directory unusable) ends the serving with its
  problems;
- the drain: on SIGTERM (and, for ``wabot serve``, SIGINT) readiness and webhooks answer 503
  at once while the listener stays up, in-flight turns finish within ``WABOT_DRAIN_SECONDS``,
  then the server is told to stop; the listener closes (open requests get
  ``graceful_timeout``) and the lifespan shutdown closes the service, whose store flushes and
  writes its final snapshot.

``run_server`` is ``wabot serve``: it binds first (a busy port is reported before anything
is loaded), then runs the same worker function hypercorn's command runs, on those sockets,
until ``stop`` is set or a signal arrives. ``gateway.asgi.create_app`` is the hypercorn
command's factory around the same ``Shell``.
"""

from __future__ import annotations

import errno
import json
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import repr_socket_addr, wrap_app

from actors.settings import Settings
from gateway import tuning
from gateway.app import SECRET_HEADER, create_quart_app
from gateway.hook import HookEndpoint
from gateway.service import BehaviorWrapper, Service, StartupError, check_data_dir
from store import DataDirLocked, StoreCorrupt
from store.fileio import FileIO

log = logging.getLogger("gateway.server")

#: The hypercorn settings of both commands (``hypercorn --config hypercorn.toml``).
HYPERCORN_TOML = Path(__file__).resolve().parents[1] / "hypercorn.toml"
#: Problems that stop a start with one line each and exit status 2.
STARTUP_PROBLEMS = (DataDirLocked, StoreCorrupt, StartupError)

SANDBOX_FILE = "sandbox.json"
#: The sandbox's fake OpenAI keeps its conversations here, so a restart keeps them as OpenAI would.
SANDBOX_OPENAI_FILE = "sandbox-openai.json"
#: What the sandbox's sync of its sample documents remembers (``knowledge.json``'s twin: the
#: fake's store never mixes with a real one).
SANDBOX_KNOWLEDGE_FILE = "sandbox-knowledge.json"
SANDBOX_BANNER = """
===============================================================================
  wabot is running in the LOCAL SANDBOX: {missing} not set.
  Whapi and OpenAI are loopback fakes in this process; nothing reaches WhatsApp
  or OpenAI. Try it:   .venv/bin/wabot say 573001234567 "Hola"
  Set WHAPI_TOKEN and OPENAI_API_KEY (or .env) to talk to the real services.
===============================================================================
"""


def hypercorn_config(settings: Settings, path: Path = HYPERCORN_TOML) -> HypercornConfig:
    """``hypercorn.toml`` as hypercorn's command reads it, listening on ``HOST``:``PORT``."""
    try:
        config = HypercornConfig.from_toml(path)
    except OSError as exc:
        raise StartupError(f"cannot read the hypercorn settings {path}: {exc.strerror}") from exc
    config.bind = [f"{settings.host}:{settings.port}"]
    return config


def check_can_serve(settings: Settings) -> None:
    """``StartupError`` when production lacks what it needs or the data directory is unusable."""
    if settings.production and settings.sandbox:
        raise StartupError(
            f"WABOT_ENV=production but {', '.join(settings.missing_credentials())} not set; "
            "refusing to start: set them in the environment or in .env"
        )
    if settings.production and not settings.webhook_secret:
        raise StartupError(
            "WABOT_ENV=production requires WABOT_WEBHOOK_SECRET; set it to the value of the "
            "X-Webhook-Secret header configured on the Whapi webhook"
        )
    check_data_dir(settings.data_dir)  # before the sandbox, which keeps a file there too


def problems_of(error: BaseException) -> list[BaseException]:
    """The leaves of an exception group (or the one error)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in problems_of(inner)]
    return [error]


@attrs.frozen
class Running:
    """What a started server reports: where it listens, and the sandbox fakes if any."""

    url: str
    service: Service
    sandbox: Any = None


class Shell:
    """One serving of wabot: the service, the sandbox fakes without credentials, the drain.

    ``url`` is where the server listens when the caller knows it (``wabot serve`` binds
    itself; hypercorn's command does not tell the app). ``on_failure`` is called with the
    problems of a service that cannot start (``STARTUP_PROBLEMS``) or with the error of one
    that failed while serving; the service is closed by then. On the first of ``signals``
    the shell drains, then awaits ``stop_server``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_failure: Callable[[list[BaseException]], None],
        signals: tuple[signal.Signals, ...] = (),
        stop_server: Callable[[], Awaitable[None]] | None = None,
        url: str | None = None,
        wrap_behavior: BehaviorWrapper | None = None,
        file_io: FileIO | None = None,
    ) -> None:
        self.service = Service(settings, wrap_behavior=wrap_behavior, file_io=file_io)
        self.url = url
        self.on_failure = on_failure
        self.signals = signals
        self.stop_server = stop_server
        self.sandbox: Any = None
        #: Set once the service is ready, or once ``on_failure`` was called.
        self.settled = trio.Event()
        self._started = False
        self._missing: list[str] = []
        self._marker: Path | None = None

    def app(self) -> HookEndpoint:
        """The ASGI app: ``POST /hook`` and the Quart routes; its lifespan runs the service."""
        service = self.service
        app = create_quart_app(service)
        # quart-trio cancels its background nursery this long after the lifespan shutdown
        # starts (at once if None): past the drain, so the service closes in its own time.
        app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = service.settings.drain_seconds + 15

        @app.before_serving
        async def start_service() -> None:
            await app.nursery.start(self.run)

        @app.after_serving
        async def close_service() -> None:
            await self.close()

        return HookEndpoint(service, app)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The sandbox fakes (without credentials) and the service, until the service closes.

        Reports started before the store loads, so that the listener answers meanwhile.
        """
        try:
            await self._run(task_status)
        except Exception as error:  # reported to on_failure, which ends the serving
            log.critical("the service failed", exc_info=error)
            self._fail([error])

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        service = self.service
        if (advice := tuning.allocator_advice()) is not None:
            log.log(logging.WARNING if service.settings.production else logging.INFO, advice)
        async with trio.open_nursery() as nursery:
            if self.signals:
                await nursery.start(self._drain_on_signals)
            if service.settings.sandbox:
                await self._start_sandbox(nursery)
            task_status.started()
            if self.url:
                log.info(
                    "accepting connections on %s while the store loads: /healthz answers, "
                    "/readyz and webhooks answer 503 until it is ready",
                    self.url,
                )
            else:
                log.info(
                    "loading the store: /healthz answers, /readyz and webhooks 503 until ready"
                )
            refused: list[BaseException] = []
            self._started = True
            try:
                await nursery.start(service.run)
            except* STARTUP_PROBLEMS as group:
                refused.extend(problems_of(group))
            if refused:
                self._fail(refused)
                nursery.cancel_scope.cancel()
                return
            if self.url:
                log.info("listening on %s (ready: the store is loaded)", self.url)
            else:
                log.info("ready: the store is loaded")
            self._announce_sandbox()
            self.settled.set()
            await service.finished.wait()
            nursery.cancel_scope.cancel()  # the signal watcher and the sandbox fakes

    def _fail(self, problems: list[BaseException]) -> None:
        self.on_failure(problems)
        self.settled.set()

    async def _start_sandbox(self, nursery: trio.Nursery) -> None:
        from sandbox.run import run_sandbox

        settings = self.service.settings
        self._missing = settings.missing_credentials()
        whapi_token = settings.whapi_token or f"sandbox-{secrets.token_hex(8)}"
        openai_key = settings.openai_api_key or f"sandbox-{secrets.token_hex(8)}"
        self.sandbox = await nursery.start(
            partial(
                run_sandbox,
                whapi_token=whapi_token,
                openai_key=openai_key,
                openai_state_file=settings.data_dir / SANDBOX_OPENAI_FILE,
            )
        )
        # Without a Beds24 account of its own, the sandbox asks the fake's demo apartments.
        beds24: dict[str, Any] = (
            {}
            if settings.beds24
            else {
                "beds24_token": self.sandbox.beds24.token,
                "beds24_api_url": self.sandbox.beds24_url,
            }
        )
        settings = self.service.settings = attrs.evolve(
            settings,
            whapi_token=whapi_token,
            openai_api_key=openai_key,
            whapi_api_url=self.sandbox.whapi_url,
            openai_base_url=self.sandbox.openai_url,
            **beds24,
        )
        await self._sync_sample_knowledge(settings)

    async def _sync_sample_knowledge(self, settings: Settings) -> None:
        """The demo's documents (``sandbox/knowledge/``) in the fake OpenAI, so its answers
        quote them; their store is the one the turns search (whatever the settings name)."""
        from gateway.knowledge_cli import knowledge_client
        from sandbox.run import SAMPLE_KNOWLEDGE

        client = knowledge_client(settings, index_timeout=10.0, poll_seconds=0.05)
        try:
            report = await client.sync(SAMPLE_KNOWLEDGE, settings.data_dir / SANDBOX_KNOWLEDGE_FILE)
        except Exception as exc:  # the demo goes on without documents
            log.warning("sandbox: the sample documents could not be synced: %r", exc)
            return
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
        log.info(
            "sandbox: answers search the sample documents of %s (%d uploaded, %d unchanged)",
            SAMPLE_KNOWLEDGE,
            len(report.uploaded),
            len(report.unchanged),
        )
        self.service.settings = attrs.evolve(settings, vector_store_ids=(report.vector_store_id,))

    def _announce_sandbox(self) -> None:
        """Echo webhooks to the bot, the marker ``wabot say`` looks for, and the banner."""
        if self.sandbox is None:
            return
        settings = self.service.settings
        if self.url:
            self.sandbox.whapi.webhook_url = f"{self.url}/hook"
            if settings.webhook_secret:
                self.sandbox.whapi.webhook_headers = {SECRET_HEADER: settings.webhook_secret}
            self._marker = settings.data_dir / SANDBOX_FILE
            self._marker.write_text(
                json.dumps({"hook_url": f"{self.url}/hook", "whapi_url": self.sandbox.whapi_url})
            )
        else:
            log.warning(
                "the sandbox's echo webhooks and `wabot say` need the server's URL, which "
                "hypercorn's command does not tell the app: run `wabot serve` (make run)"
            )
        print(SANDBOX_BANNER.format(missing=" and ".join(self._missing)), flush=True)

    async def drain(self) -> None:
        """Readiness and webhooks 503 at once; in-flight turns finish (``Service.drain``)."""
        if self._marker is not None:
            self._marker.unlink(missing_ok=True)
            self._marker = None
        await self.service.drain()

    async def close(self) -> None:
        """After the listener closed: drain (if no signal did), then close the service."""
        if not self._started:
            return
        await self.drain()
        self.service.stop()
        await self.service.finished.wait()

    async def _drain_on_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """On the first signal: drain while the listener answers 503, then stop the server."""
        with trio.open_signal_receiver(*self.signals) as received:
            task_status.started()
            async for signum in received:
                name = signal.Signals(signum).name
                if self.service.draining:
                    # Consumed, not left queued: trio re-raises queued signals when the
                    # receiver closes, and that would kill a process that drains or drained.
                    log.info("received %s again; already draining", name)
                    continue
                log.info("received %s", name)
                tuning.stop_collecting_for_exit()
                await self.drain()
                if self.stop_server is not None:
                    await self.stop_server()


async def run_server(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    handle_signals: bool = False,
    config: HypercornConfig | None = None,
    wrap_behavior: BehaviorWrapper | None = None,
    file_io: FileIO | None = None,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set (or, with ``handle_signals``, SIGTERM or SIGINT arrives),
    then drain and return once the store is closed.

    ``config`` defaults to ``hypercorn_config(settings)``. A start-up problem, or an error of
    the service while serving, is raised in an exception group once everything is closed.
    """
    check_can_serve(settings)
    config = config or hypercorn_config(settings)
    sockets = _listen(config, settings)
    stop = stop if stop is not None else trio.Event()
    failures: list[BaseException] = []

    def on_failure(problems: list[BaseException]) -> None:
        failures.extend(problems)
        stop.set()

    async def stop_server() -> None:
        stop.set()

    shell = Shell(
        settings,
        on_failure=on_failure,
        signals=(signal.SIGTERM, signal.SIGINT) if handle_signals else (),
        stop_server=stop_server,
        url=_loopback(repr_socket_addr(*_address(sockets))),
        wrap_behavior=wrap_behavior,
        file_io=file_io,
    )
    app = wrap_app(shell.app(), config.wsgi_max_body_size, "asgi")
    listener_closing = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(
                worker_serve, app, config, sockets=sockets, shutdown_trigger=listener_closing.wait
            )
        )
        await shell.settled.wait()
        try:
            if not failures:
                assert shell.url is not None
                task_status.started(
                    Running(url=shell.url, service=shell.service, sandbox=shell.sandbox)
                )
            await stop.wait()
        finally:
            with trio.CancelScope(shield=True):
                log.info("stopping: draining in-flight turns")
                await shell.drain()
                listener_closing.set()
    if failures:
        raise BaseExceptionGroup("wabot cannot serve", failures)


def _listen(config: HypercornConfig, settings: Settings) -> Sockets:
    """hypercorn's sockets, bound and listening; ``StartupError`` when they cannot be."""
    try:
        sockets = config.create_sockets()
    except OSError as error:
        raise _listen_error(settings, error) from None
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    return sockets


def _address(sockets: Sockets) -> tuple[int, Any]:
    sock = (sockets.insecure_sockets or sockets.secure_sockets)[0]
    return sock.family, sock.getsockname()


def _listen_error(settings: Settings, error: OSError) -> StartupError:
    """One line for a listener that cannot be opened (in use, no permission, no such host)."""
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
    host_port = bind.replace("0.0.0.0:", "127.0.0.1:", 1).replace("[::]:", "127.0.0.1:", 1)
    return f"http://{host_port}"
