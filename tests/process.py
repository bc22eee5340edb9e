"""Subprocess harness: wabot as a real process, wired to the in-test sandbox fakes.

``open_bot_process`` starts ``python -m gateway.cli serve`` (or any command, e.g. the hypercorn
command) in its own process group, with the credentials and endpoints of the fakes from
``tests.harness.open_fakes()`` and short timings in ``WABOT_*`` variables. It finds the bot's
URL in the "listening on http://…" log line (or is told the port), points the fake Whapi's
echo webhooks at it, and hands back a ``BotProcess``: post webhooks, send signals, wait for the
exit code under a deadline, read the captured output. Whatever happens, the whole process
group is killed and reaped on the way out.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from actors.settings import _VARIABLES
from gateway.app import SECRET_HEADER
from tests.harness import FAST, OPENAI_KEY, SECRET, WHAPI_TOKEN, Fakes

REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token-abcdef"
LISTENING = re.compile(r"listening on (http://[\w.\[\]:]+)")
SERVE = (sys.executable, "-m", "gateway.cli", "serve")
#: Variables of the developer's shell that must not leak into the bot under test.
_SCRUBBED_PREFIXES = ("WABOT_", "WHAPI_", "OPENAI_")
_FIELD_TO_VARIABLE = {field: name for name, field, _convert in _VARIABLES}


def env_names(**fields: Any) -> dict[str, str]:
    """Settings field values as their environment variables (``buffer_seconds`` → ...)."""
    return {_FIELD_TO_VARIABLE[field]: str(value) for field, value in fields.items()}


def clean_environ() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key not in {"HOST", "PORT"}
    }


def bot_environ(fakes: Fakes | None, data_dir: Path, **fields: Any) -> dict[str, str]:
    """The environment of a bot process: fakes' endpoints, fast timings, then ``fields``."""
    env = clean_environ()
    env["PYTHONUNBUFFERED"] = "1"
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": data_dir,
        "tmp_dir": data_dir.parent / "tmp-audio",
        "webhook_secret": SECRET,
        "admin_token": ADMIN_TOKEN,
        **FAST,
    }
    if fakes is not None:
        values.update(
            whapi_token=WHAPI_TOKEN,
            openai_api_key=OPENAI_KEY,
            whapi_api_url=fakes.whapi_url,
            openai_base_url=fakes.openai_url,
        )
    values.update(fields)
    env.update(env_names(**{k: v for k, v in values.items() if v is not None}))
    return env


def user_text(call: Any) -> str:
    """What the customer said in one recorded ``POST /v1/responses`` (input_text of user items)."""
    items = call.json.get("input", [])
    return "\n".join(
        part["text"]
        for item in items
        if isinstance(item, dict) and item.get("role") == "user"
        for part in (item["content"] if isinstance(item.get("content"), list) else [])
        if part.get("type") == "input_text"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hypercorn_command(port: int) -> tuple[str, ...]:
    return (
        sys.executable,
        "-m",
        "hypercorn",
        "--config",
        str(REPO / "hypercorn.toml"),
        "-b",
        f"127.0.0.1:{port}",
        "gateway.asgi:create_app()",
    )


@attrs.define(eq=False)
class Output:
    """Lines a process wrote to one stream, with a way to wait for a pattern."""

    lines: list[str] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        pending = b""
        async for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            if complete:
                self.lines.extend(line.decode(errors="replace") for line in complete)
                self.changed.set()
                self.changed = trio.Event()
        if pending:
            self.lines.append(pending.decode(errors="replace"))
        self.changed.set()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@attrs.define(eq=False)
class BotProcess:
    process: trio.Process
    stdout: Output
    stderr: Output
    http: httpx.AsyncClient
    url: str = ""

    @property
    def logs(self) -> str:
        """Everything the process wrote so far (stderr, then stdout)."""
        return self.stderr.text + "\n" + self.stdout.text

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def post(
        self, body: Any, *, secret: str | None = SECRET, timeout: float = 10.0
    ) -> httpx.Response:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return await self.http.post(f"{self.url}/hook", json=body, headers=headers, timeout=timeout)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(f"{self.url}{path}", **kwargs)

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return await self.http.request(method, f"{self.url}{path}", headers=headers, **kwargs)

    def send_signal(self, signum: int) -> None:
        """Signal the process itself (for the hypercorn command: its master process)."""
        if self.process.returncode is None:
            self.process.send_signal(signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def signal_group(self, signum: int) -> None:
        """Signal the whole process group (what a terminal's Ctrl-C or systemd does)."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        self.signal_group(signal.SIGKILL)

    async def wait_exit(self, timeout: float) -> int:
        """The exit code (negative: killed by that signal); fails after ``timeout`` seconds."""
        with trio.fail_after(timeout):
            return await self.process.wait()

    async def wait_for_line(
        self, pattern: str | re.Pattern[str], *, timeout: float = 10.0, stream: str = "stderr"
    ) -> re.Match[str]:
        regex = re.compile(pattern)
        output: Output = getattr(self, stream)
        with trio.move_on_after(timeout):
            seen = 0
            while True:
                for line in output.lines[seen:]:
                    if (match := regex.search(line)) is not None:
                        return match
                seen = len(output.lines)
                if self.process.returncode is not None and output.changed.is_set():
                    break
                await output.changed.wait()
        raise AssertionError(
            f"no line matching {regex.pattern!r} within {timeout}s "
            f"(exit code {self.process.returncode}); output:\n{self.logs[-4000:]}"
        )

    async def wait_ready(self, *, timeout: float = 15.0) -> None:
        """Poll ``/readyz`` until it answers 200 (for commands that do not log our URL)."""
        with trio.fail_after(timeout):
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"the bot exited early:\n{self.logs[-4000:]}")
                try:
                    if (await self.get("/readyz", timeout=1.0)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


@asynccontextmanager
async def open_bot_process(
    fakes: Fakes | None,
    data_dir: Path,
    *,
    command: Sequence[str] = SERVE,
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    wait: bool = True,
    env_name: str | None = None,
    **fields: Any,
) -> AsyncIterator[BotProcess]:
    """Run the bot as a child process until the block ends (then kill and reap it).

    ``fields`` are settings (``buffer_seconds=30``) passed as their environment variables.
    Without ``url`` the bot's URL is read from its "listening on" line; with ``url`` (the
    hypercorn command binds where it is told) readiness is polled instead. ``wait=False``
    returns at once (for commands expected to fail).
    """
    if env_name is not None:
        fields["env"] = env_name
    environ = dict(env) if env is not None else bot_environ(fakes, data_dir, **fields)
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=10) as http:
        process = await trio.lowlevel.open_process(
            list(command),
            env=environ,
            cwd=str(cwd or data_dir.parent),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        bot = BotProcess(process, Output(), Output(), http)
        assert process.stdout is not None and process.stderr is not None
        nursery.start_soon(bot.stdout.pump, process.stdout)
        nursery.start_soon(bot.stderr.pump, process.stderr)
        try:
            if wait:
                if url is None:
                    bot.url = (await bot.wait_for_line(LISTENING, timeout=20)).group(1)
                else:
                    bot.url = url
                    await bot.wait_ready()
                if fakes is not None:
                    fakes.whapi.webhook_url = f"{bot.url}/hook"
                    fakes.whapi.webhook_headers = {SECRET_HEADER: SECRET}
            yield bot
        finally:
            with trio.CancelScope(shield=True):
                bot.kill()
                with trio.move_on_after(10):
                    await process.wait()
                nursery.cancel_scope.cancel()
