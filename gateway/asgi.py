"""The ASGI entry point for running wabot under the ``hypercorn`` command.

    hypercorn --config hypercorn.toml gateway.asgi:app

wabot's runtime (store, actors, clients) lives in one task of quart-trio's background
nursery, started in ``before_serving`` and closed in ``after_serving``. Two traps are handled:

- quart-trio cancels that nursery ``BACKGROUND_TASK_SHUTDOWN_TIMEOUT`` after the lifespan
  shutdown starts (and at once if the timeout is None), so the timeout is set past the drain
  budget and ``after_serving`` returns only once the service has fully closed (the store's
  final snapshot is on disk).
- hypercorn's own shutdown closes the listener first, gives open requests
  ``graceful_timeout``, and only then runs the lifespan shutdown: a drain started there would
  come late, with no 503 in between. So wabot handles SIGTERM itself: readiness and webhooks
  answer 503 at once, in-flight turns finish within ``WABOT_DRAIN_SECONDS``, and only then is
  hypercorn asked to stop (its Ctrl-C path in a single-process server, its master's SIGTERM
  when it runs workers), after which the lifespan shutdown flushes the store.

The service loads the store in the background of ``before_serving``, so hypercorn listens
while a large journal replays: ``/healthz`` answers 200, ``/readyz`` and webhooks 503 until
the store is ready. A configuration problem (an invalid setting, production without
credentials, an unusable or locked data directory, a corrupt store) is one line on stderr
and exit status 2, as with ``wabot serve``, never a traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from functools import partial
from typing import NoReturn

import attrs
import trio

from actors.settings import Settings, SettingsError, unknown_variables
from gateway import logs
from gateway.app import create_app
from gateway.gcpace import stop_collecting_for_exit
from gateway.hook import HookEndpoint
from gateway.service import Service, StartupError
from store import DataDirLocked, StoreCorrupt

log = logging.getLogger("gateway.asgi")


def create_asgi_app() -> HookEndpoint:
    settings = Settings.from_env()
    if settings.production and settings.sandbox:
        raise SettingsError(
            f"WABOT_ENV=production but {', '.join(settings.missing_credentials())} not set; "
            "set them in the environment or in .env"
        )
    if settings.production and not settings.webhook_secret:
        raise SettingsError(
            "WABOT_ENV=production requires WABOT_WEBHOOK_SECRET; set it to the value of the "
            "X-Webhook-Secret header configured on the Whapi webhook"
        )
    logs.configure(
        production=settings.production,
        level=settings.log_level,
        secrets=logs.secrets_of(settings),
    )
    for line in unknown_variables():
        log.warning("%s", line)
    if os.environ.get("PYTHONMALLOC") != "malloc":
        log.warning(
            "PYTHONMALLOC is not 'malloc': memory freed when customers' actors retire stays "
            "with the process (see README, Deploying)"
        )
    service = Service(settings)
    app = create_app(service)
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.drain_seconds + 15

    @app.before_serving
    async def start_service() -> None:
        await app.nursery.start(run_service, service)

    @app.after_serving
    async def stop_service() -> None:
        await service.drain()
        service.stop()
        await service.finished.wait()

    return HookEndpoint(service, app)


async def run_service(service: Service, *, task_status: trio.TaskStatus[None]) -> None:
    """The service (and the sandbox fakes, without credentials) until the service closes.

    Reports started before the store has loaded, so that hypercorn starts listening (liveness
    answers during a long journal replay); a service that cannot start ends the process.
    """
    async with trio.open_nursery() as nursery:
        if service.settings.sandbox:
            from sandbox.run import run_sandbox

            sandbox = await nursery.start(
                partial(run_sandbox, whapi_token="sandbox-whapi", openai_key="sandbox-openai")
            )
            service.settings = attrs.evolve(
                service.settings,
                whapi_token="sandbox-whapi",
                openai_api_key="sandbox-openai",
                whapi_api_url=sandbox.whapi_url,
                openai_base_url=sandbox.openai_url,
            )
        nursery.start_soon(drain_on_sigterm, service)
        task_status.started()
        log.info("loading the store: /healthz answers, /readyz and webhooks 503 until ready")
        try:
            await nursery.start(service.run)
        except* (DataDirLocked, StoreCorrupt, StartupError) as group:
            refuse_to_start(group)
        log.info("ready")
        await service.finished.wait()
        nursery.cancel_scope.cancel()  # the sandbox and the signal watcher


def refuse_to_start(group: BaseExceptionGroup[Exception]) -> NoReturn:
    """One line per problem on stderr, then exit 2 at once.

    Raised from here, the error would reach hypercorn as a lifespan failure (a traceback,
    and a server left running without a store); nothing durable is open yet (the store did
    not open), so leaving without the interpreter's teardown loses nothing.
    """
    for error in _leaves(group):
        print(f"wabot: {error}", file=sys.stderr)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(2)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def drain_on_sigterm(service: Service) -> None:
    """On SIGTERM: drain while the listener still answers 503, then stop hypercorn."""
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _signum in signals:
            if service.draining:
                # Consumed, not left queued: trio re-raises queued signals when the receiver
                # closes, and that would kill the process in the middle of its drain.
                log.info("received SIGTERM again; already draining")
                continue
            log.info("received SIGTERM")
            stop_collecting_for_exit()
            await service.drain()
            await _stop_hypercorn(service)


async def _stop_hypercorn(service: Service) -> None:
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        # A worker under hypercorn's master: the master stops every worker (its own SIGTERM
        # path; harmless if it got the signal too).
        os.kill(parent.pid, signal.SIGTERM)
    elif _trio_handles_sigint():
        _interrupt_main_task()
    else:
        # SIGINT is ignored (a background job): no way to ask hypercorn to stop, so close
        # everything durable ourselves and leave.
        log.warning("SIGINT is ignored in this process: exiting after the store flush")
        service.stop()
        await service.finished.wait()
        logging.shutdown()
        os._exit(0)


def _trio_handles_sigint() -> bool:
    return signal.getsignal(signal.SIGINT) not in {
        signal.SIG_IGN,
        signal.SIG_DFL,
        signal.default_int_handler,
        None,
    }


@trio.lowlevel.enable_ki_protection
def _interrupt_main_task() -> None:
    # KI-protected, so trio delivers the KeyboardInterrupt to the main task (hypercorn's
    # serve loop, which turns it into its graceful shutdown) rather than raising it here.
    signal.raise_signal(signal.SIGINT)


def _app_or_exit() -> HookEndpoint:
    """``create_asgi_app``; an invalid setting is one line and exit 2 (hypercorn imports this
    module: an exception here would be a traceback of hypercorn's loader)."""
    try:
        return create_asgi_app()
    except SettingsError as exc:
        print(f"wabot: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


app = _app_or_exit()
