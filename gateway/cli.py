"""The ``wabot`` command: ``serve``, ``say``, ``settings``, the ``store`` maintenance commands
and ``knowledge`` (the business's documents for the answers, ``gateway.knowledge_cli``).

Exit codes: 0 success; 1 runtime failure; 2 bad configuration or usage (an invalid setting,
missing credentials in production, the data directory locked by another process, a corrupt
store). ``wabot say USER TEXT`` posts a simulated customer message to a running sandbox and
prints the bot's reply.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import NoReturn

import trio

from actors.settings import Settings, SettingsError
from gateway import logs

log = logging.getLogger("wabot")


def entry() -> NoReturn:
    """The console script."""
    code = main()
    # Done (a serve drained and closed): a late signal must not turn the exit status into
    # death by signal. Only here, at the process's end: ``serve`` itself leaves signal
    # dispositions alone, or a process that calls it (a test) would pass SIG_IGN on to every
    # child it starts later.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


DESCRIPTION = (
    "wabot, a WhatsApp assistant for a business's own number: Whapi.Cloud in, OpenAI out. "
    "Settings come from the environment (and .env); without credentials `serve` runs the "
    "local sandbox against loopback fakes."
)
EPILOG = (
    "exit status: 0 success; 1 runtime failure; 2 bad configuration or usage (an invalid "
    "setting, missing credentials in production, a data directory in use or corrupt)."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``wabot`` command line: every command and argument with its one-line help."""
    from gateway.knowledge_cli import DESCRIPTION as KNOWLEDGE_DESCRIPTION
    from gateway.knowledge_cli import add_commands as add_knowledge_commands
    from store.cli import DESCRIPTION as STORE_DESCRIPTION
    from store.cli import add_commands as add_store_commands

    parser = argparse.ArgumentParser(prog="wabot", description=DESCRIPTION, epilog=EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "serve",
        help="run the bot (the sandbox when credentials are missing)",
        description="Run the bot until SIGTERM or Ctrl-C, then drain. Without credentials "
        "it runs against the loopback fakes of Whapi and OpenAI (the sandbox).",
    )
    say = commands.add_parser(
        "say",
        help="send a message to the running sandbox and print the bot's reply",
        description="Post a simulated customer message to the sandbox that `make run` "
        "started (found from any directory of the checkout) and print each reply part.",
    )
    say.add_argument("user", help="the customer's phone number, digits only (573001234567)")
    say.add_argument("text", help="what the customer writes (quote it)")
    say.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the first reply part (default 60)",
    )
    commands.add_parser(
        "settings",
        help="list every setting: variable, default, current value, meaning",
        description="Every WABOT_* setting (and the credentials) with its default, its "
        "current value from the environment and .env (secrets masked) and what it does.",
    )
    store = commands.add_parser(
        "store",
        help="data directory maintenance: backup, verify, restore, stats, list, import",
        description=STORE_DESCRIPTION,
    )
    add_store_commands(store)
    knowledge = commands.add_parser(
        "knowledge",
        help="the business's documents the answers search: sync a folder, status",
        description=KNOWLEDGE_DESCRIPTION,
    )
    add_knowledge_commands(knowledge)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"wabot: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure_for(settings)
    if args.command == "serve":
        return serve(settings)
    if args.command == "say":
        return say_command(settings, args.user, args.text, args.timeout)
    if args.command == "settings":
        from actors.settings_doc import describe

        print(describe(settings))
        return 0
    if args.command == "knowledge":
        from gateway.knowledge_cli import run as knowledge_run

        return knowledge_run(args, settings)
    from gateway.service import store_config
    from store.cli import run as store_run

    return store_run(args, store_config(settings))


def serve(settings: Settings) -> int:
    """``gateway.server.run_server`` until SIGTERM or SIGINT has drained it; 2 if it cannot
    start (each problem one line on stderr)."""
    from gateway.server import STARTUP_PROBLEMS, problems_of, run_server

    refused: list[BaseException] = []
    try:
        trio.run(partial(run_server, settings, handle_signals=True))
    except* STARTUP_PROBLEMS as group:
        # ``return`` is not allowed inside ``except*``: collect, then answer below.
        refused.extend(problems_of(group))
    if refused:
        for exc in refused:
            print(f"wabot: {exc}", file=sys.stderr)
        return 2
    log.info("stopped cleanly")
    return 0


def find_sandbox(data_dir: Path, start: Path | None = None) -> Path | None:
    """The marker file of the running sandbox: in ``data_dir``, or, for a relative
    ``data_dir``, beside any parent of ``start`` (the working directory) or of the checkout
    this code runs from, so that ``wabot say`` works from any directory of the checkout."""
    from gateway.server import SANDBOX_FILE

    if data_dir.is_absolute():
        candidates = [data_dir]
    else:
        here = (start or Path.cwd()).resolve()
        checkout = Path(__file__).resolve().parents[1]
        bases = [here, *here.parents, checkout]
        candidates = [base / data_dir for base in dict.fromkeys(bases)]
    for candidate in candidates:
        if (candidate / SANDBOX_FILE).is_file():
            return candidate / SANDBOX_FILE
    return None


def pause_of(data_dir: Path, user: str) -> str | None:
    """ "until … (by …)" when the bot is paused for ``user``, read from the store's files."""
    from datetime import UTC, datetime

    from gateway.service import store_config
    from store.cli import read_consistent
    from store.layout import DataFiles

    logging.getLogger("store").setLevel(logging.WARNING)  # its load line is not for the user
    try:
        loaded = read_consistent(DataFiles(data_dir), store_config(Settings(data_dir=data_dir)))
    except Exception:  # a store being compacted or damaged: the reply will tell
        return None
    record = loaded.state.get(user)
    if record is None or record.paused_until is None:
        return None
    if record.paused_until <= datetime.now(UTC):
        return None
    return f"until {record.paused_until:%Y-%m-%d %H:%M} UTC (by {record.paused_by or 'unknown'})"


def say_command(settings: Settings, user: str, text: str, timeout: float) -> int:
    """Post a simulated customer message to the running sandbox and print every reply part."""
    import httpx

    if not user.isdigit():
        print("wabot: USER is the customer's phone number, digits only", file=sys.stderr)
        return 2
    marker = find_sandbox(Path(settings.data_dir))
    if marker is None:
        print(
            f"wabot: no running sandbox (no {settings.data_dir}/sandbox.json here or above); "
            "start one with `make run`",
            file=sys.stderr,
        )
        return 1
    info = json.loads(marker.read_text())
    try:
        return _say(info, settings, marker.parent, user, text, timeout)
    except httpx.TransportError as exc:
        print(
            f"wabot: the sandbox at {info['hook_url']} does not answer ({type(exc).__name__}); "
            "is `make run` still running? Start it again if it stopped.",
            file=sys.stderr,
        )
        return 1


def _say(
    info: dict[str, str], settings: Settings, data_dir: Path, user: str, text: str, timeout: float
) -> int:
    import httpx

    chat_id = f"{user}@s.whatsapp.net"
    headers = {"X-Webhook-Secret": settings.webhook_secret} if settings.webhook_secret else {}
    sent_url = f"{info['whapi_url']}/__fake__/sent"
    message_id = f"{uuid.uuid4().hex[:20].upper()}-{uuid.uuid4().hex[:8]}"
    body = {
        "messages": [
            {
                "id": message_id,
                "from_me": False,
                "type": "text",
                "chat_id": chat_id,
                "from": user,
                "from_name": "Sandbox",
                "source": "mobile",
                "timestamp": int(time.time()),
                "text": {"body": text},
            }
        ],
        "event": {"type": "messages", "event": "post"},
        "channel_id": "SANDBOX-CHANNEL",
    }
    with httpx.Client(timeout=10) as client:
        after = client.get(sent_url, params={"to": chat_id, "wait": 0}).json()["next"]
        response = client.post(info["hook_url"], json=body, headers=headers)
        if response.status_code != 200:
            print(
                f"wabot: the bot answered HTTP {response.status_code}: {response.text}",
                file=sys.stderr,
            )
            return 1
        paused = pause_of(data_dir, user)
        if paused is not None:
            print(
                f"wabot: the bot is paused for {user} {paused}: it will not answer; resume "
                f"with POST /actors/{user}/resume or wait",
                file=sys.stderr,
            )
            return 0
        print(
            f"wabot: sent; waiting for the reply (the bot answers after "
            f"{settings.buffer_seconds:g} s without new messages)...",
            file=sys.stderr,
            flush=True,
        )
        printed = 0
        deadline = time.monotonic() + timeout
        # Print parts as they come; once something arrived, stop after 3 s of silence.
        while time.monotonic() < deadline:
            wait = 3.0 if printed else min(5.0, max(0.1, deadline - time.monotonic()))
            got = client.get(
                sent_url, params={"to": chat_id, "after": after, "wait": wait}, timeout=wait + 10
            ).json()
            messages = got.get("messages", [])
            if not messages and printed:
                return 0
            for message in messages:
                print(message.get("body") or f"[{message.get('type')}]", flush=True)
            printed += len(messages)
            after = got.get("next", after + len(messages))
    if printed:
        return 0
    paused = pause_of(data_dir, user)
    reason = f": the bot is paused for this chat {paused}" if paused else ""
    print(f"wabot: no reply within {timeout:g} s{reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    entry()
