"""The app factory of the ``hypercorn`` command; importing this module builds nothing.

    hypercorn --config hypercorn.toml 'gateway.asgi:create_app()'

``create_app`` reads the settings from the environment (and ``.env``), makes the start-up
checks of ``gateway.server`` and returns the app of a ``Shell``, exactly what ``wabot serve``
serves. What differs is only what hypercorn's command owns:

- the sockets: hypercorn binds ``-b`` or the file's ``bind`` before it imports the app, so a
  busy port is hypercorn's own error;
- SIGTERM: hypercorn's own shutdown would close the listener first and drain only after
  ``graceful_timeout``, with no 503 in between, so the shell handles SIGTERM (drain while the
  listener answers 503) and then asks hypercorn to stop: its Ctrl-C path in a single-process
  server (``workers = 0``), its master's SIGTERM when it runs workers. SIGINT stays hypercorn's;
- failing: a start-up problem (an invalid setting, production without credentials or webhook
  secret, an unusable or locked data directory, a corrupt store) is one line on stderr and
  exit status 2, never a traceback or a server left running without a store; a service that
  fails while serving ends the process with status 1. Either way the store is closed first.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from typing import NoReturn

import trio

from actors.settings import Settings, SettingsError
from gateway import logs
from gateway.hook import HookEndpoint
from gateway.server import STARTUP_PROBLEMS, Shell, check_can_serve
from gateway.service import Service, StartupError

log = logging.getLogger("gateway.asgi")


def create_app() -> HookEndpoint:
    """The app hypercorn serves; an unusable configuration exits 2 with one line."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _exit_refused([f"configuration error: {exc}"])
    try:
        check_can_serve(settings)
    except StartupError as exc:
        _exit_refused([str(exc)])
    logs.configure_for(settings)

    async def stop_hypercorn() -> None:
        await _stop_hypercorn(shell.service)

    shell = Shell(
        settings,
        on_failure=_exit_on_failure,
        signals=(signal.SIGTERM,),
        stop_server=stop_hypercorn,
    )
    return shell.app()


def _exit_on_failure(problems: list[BaseException]) -> NoReturn:
    """One line per start-up problem and exit 2; exit 1 after an error while serving.

    Raised from here, the error would reach hypercorn as a lifespan failure (a traceback,
    and a server left running without a store). The service is closed by then and the store
    with it, so leaving without the interpreter's teardown loses nothing.
    """
    if all(isinstance(problem, STARTUP_PROBLEMS) for problem in problems):
        _exit_refused([str(problem) for problem in problems])
    logging.shutdown()
    os._exit(1)


def _exit_refused(lines: list[str]) -> NoReturn:
    for line in lines:
        print(f"wabot: {line}", file=sys.stderr)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(2)


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
