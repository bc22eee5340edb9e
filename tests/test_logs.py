"""Structured logs: JSON lines in production, readable lines otherwise, each line about a user
with the user key (and inside a turn the turn id), never a secret, message text only at DEBUG.
DEBUG shows wabot's lines, not the HTTP libraries'; the access log's request is JSON fields;
a refused request (401) is one line that says why.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from actors.runtime.logcontext import bind
from actors.settings import Settings
from gateway import logs
from gateway.logs import ContextFilter, JsonFormatter, TextFormatter, _Redactor
from gateway.server import hypercorn_config
from sandbox import payloads
from tests.harness import OPENAI_KEY, SECRET, WHAPI_TOKEN, open_fakes
from tests.process import (
    ADMIN_TOKEN,
    REPO,
    BotProcess,
    free_port,
    hypercorn_command,
    open_bot_process,
)

USER = "573001234567"
SECRETS = (WHAPI_TOKEN, OPENAI_KEY, SECRET, ADMIN_TOKEN)
PRIVATE_TEXT = "mi clave del banco es 4242"
#: A wrong secret a client sends: it never reaches a log line either.
WRONG_SECRET = "not-the-secret-0xC0FFEE"
#: Loggers of the HTTP and SDK libraries (and their children, e.g. ``httpcore2.http11``).
LIBRARY_LOGGER = re.compile(r"^(httpx2?|httpcore2?|hpack|openai)(\.|$)")
#: A development line: time, level, logger name (then the context and the message).
TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \w+\s+([\w.]+)")


@contextmanager
def capture(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("wabot.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


async def test_context_vars_reach_lines_of_child_tasks_and_secrets_are_masked() -> None:
    log = logging.getLogger("wabot.test")
    with capture(JsonFormatter(_Redactor(["super-secret-token"]))) as stream:
        log.info("outside")
        with bind(user=USER):
            log.info("in the actor")

            async def turn_task() -> None:
                with bind(turn=f"{USER}-1"):
                    log.warning("in the turn, token super-secret-token")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(turn_task)
            log.info("after the turn", extra={"user": "explicit"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e.get("user"), e.get("turn")) for e in lines] == [
        (None, None),
        (USER, None),
        (USER, f"{USER}-1"),
        ("explicit", None),
    ]
    assert lines[2]["msg"] == "in the turn, token ***" and lines[2]["level"] == "warning"

    with capture(TextFormatter(_Redactor([]))) as stream:
        with bind(user=USER, turn=f"{USER}-2"):
            log.info("hola")
        log.info("plain")
    first, second = stream.getvalue().splitlines()
    assert f"wabot.test [user={USER} turn={USER}-2]: hola" in first
    assert second.endswith("wabot.test: plain")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo ``logs.configure`` (root handlers and levels) after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = (*logs.QUIET_LIBRARIES, *logs.HYPERCORN_LOGGERS)
    levels = {name: logging.getLogger(name).level for name in names}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


def test_debug_holds_the_http_libraries_at_warning(restore_logging: None) -> None:
    logs.configure(production=False, level="DEBUG")
    # The loggers these libraries really use (httpcore2 was the one the quieting missed).
    for name in ("httpcore2.http11", "httpcore2.connection", "httpcore.http11", "httpx2"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    for name in ("hpack.hpack", "hpack.table", "httpx", "openai._base_client"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name
    assert logging.getLogger("hypercorn.access").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("actors.customer.turn").isEnabledFor(logging.DEBUG)
    # Asked for, the libraries' DEBUG comes back; a WARNING root quiets hypercorn too.
    logs.configure(production=False, level="DEBUG", library_level="DEBUG")
    assert logging.getLogger("httpcore2.http11").isEnabledFor(logging.DEBUG)
    logs.configure(production=False, level="WARNING")
    assert not logging.getLogger("hypercorn.access").isEnabledFor(logging.INFO)


def test_access_log_atoms_become_fields_and_its_401_lines_are_dropped() -> None:
    access = logs.AccessFields()

    def record(status: str) -> logging.LogRecord:
        atoms = {"h": "127.0.0.1:5000", "m": "GET", "U": "/readyz", "s": status, "b": "78"}
        atoms["L"] = "0.001500"
        made = logging.LogRecord("hypercorn.access", logging.INFO, "", 0, "%(s)s", (), None)
        made.args = atoms  # what hypercorn passes: its atoms mapping
        return made

    ok = record("200")
    ok.args = {**ok.args, "{x-webhook-secret}i": "s3cret", "{whapi_token}e": "t0ken"}  # type: ignore[dict-item]
    ok.args["{user-agent}i"] = "curl"  # type: ignore[index]
    assert access.filter(ok)
    # hypercorn's atoms hold every header and environment variable: the secrets do not stay.
    assert "s3cret" not in str(ok.args) and "t0ken" not in str(ok.args)
    assert ok.args["{user-agent}i"] == "curl" and ok.args["{referer}i"] == "-"  # type: ignore[index]
    line = json.loads(JsonFormatter(_Redactor([])).format(ok))
    assert {k: line[k] for k in ("method", "path", "status", "duration_ms", "bytes")} == {
        "method": "GET",
        "path": "/readyz",
        "status": 200,
        "duration_ms": 1.5,
        "bytes": 78,
    }
    assert line["client"] == "127.0.0.1:5000" and line["msg"] == "200"
    assert not access.filter(record("401"))  # the refusing code logged it, with the reason
    other = logging.LogRecord("gateway.app", logging.INFO, "", 0, "%s", ("x",), None)
    assert access.filter(other) and not hasattr(other, "status")


def test_wabot_serve_logs_requests_in_the_format_of_hypercorn_toml() -> None:
    config = tomllib.loads((REPO / "hypercorn.toml").read_text())
    served = hypercorn_config(Settings())
    assert served.access_log_format == config["access_log_format"]
    assert served.accesslog == config["accesslog"] == "-"


async def run_session(bot: BotProcess, fakes: object) -> None:
    """A refused webhook, a turn with a retried model call (a warning inside the turn), then an
    operator pause."""
    refused = await bot.post(payloads.webhook([payloads.text_message(USER, "x")]), secret=None)
    assert refused.status_code == 401
    fakes.openai.faults.add("/v1/responses$", status=429, times=1)  # type: ignore[attr-defined]
    response = await bot.post(payloads.webhook([payloads.text_message(USER, PRIVATE_TEXT)]))
    assert response.status_code == 200
    await fakes.whapi.wait_sent(1, to=USER, timeout=10)  # type: ignore[attr-defined]
    assert (await bot.admin("POST", f"/actors/{USER}/pause")).status_code == 200
    bot.terminate()
    assert await bot.wait_exit(8) == 0, bot.logs[-3000:]


async def test_production_logs_are_json_with_user_and_turn_and_no_secrets(tmp_path: Path) -> None:
    async with (
        open_fakes() as fakes,
        open_bot_process(fakes, tmp_path / "data", env_name="production") as bot,
    ):
        await run_session(bot, fakes)
    lines = [line for line in bot.stderr.lines if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert any(e["msg"].startswith("listening on http://") for e in entries)
    in_turn = [e for e in entries if e.get("turn")]
    assert in_turn and all(e["user"] == USER for e in in_turn)
    assert all(e["turn"].startswith(f"{USER}-") for e in in_turn)
    assert any(e.get("user") == USER and "pause" in e["msg"] for e in entries)
    refusals = [e for e in entries if e.get("status") == 401]
    assert [(e["logger"], e["level"], e["path"]) for e in refusals] == [
        ("gateway.hook", "warning", "/hook")
    ]
    assert "X-Webhook-Secret header is missing" in refusals[0]["msg"]
    # wabot serve logs requests in production as the hypercorn command does.
    access = [e for e in entries if e["logger"] == "hypercorn.access"]
    hooks = [(e["method"], e["status"]) for e in access if e["path"] == "/hook"]
    assert hooks and set(hooks) == {("POST", 200)}  # the message, and the echo of the reply
    assert all(isinstance(e["duration_ms"], float) for e in access)
    everything = bot.logs
    for secret in SECRETS:
        assert secret not in everything
    assert PRIVATE_TEXT not in everything and "4242" not in everything


async def test_development_logs_are_readable_lines_without_secrets_even_at_debug(
    tmp_path: Path,
) -> None:
    async with (
        open_fakes() as fakes,
        open_bot_process(fakes, tmp_path / "data", log_level="DEBUG") as bot,
    ):
        await run_session(bot, fakes)
    assert not any(line.startswith("{") for line in bot.stderr.lines)
    assert f"[user={USER} turn={USER}-1]" in bot.logs
    # Without the quieting, each model call brought dozens of httpcore2 and openai DEBUG lines.
    names = {m.group(1) for line in bot.stderr.lines if (m := TEXT_LINE.match(line))}
    noisy = sorted(name for name in names if LIBRARY_LOGGER.match(name))
    assert noisy == [], f"library lines at DEBUG: {noisy}"
    assert sum("refused POST /hook" in line for line in bot.stderr.lines) == 1
    for secret in SECRETS:
        assert secret not in bot.logs


async def test_hypercorn_access_log_is_json_fields_and_a_401_is_one_line_with_the_reason(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with (
        open_fakes() as fakes,
        open_bot_process(
            fakes,
            tmp_path / "data",
            command=hypercorn_command(port),
            url=f"http://127.0.0.1:{port}",
            env_name="production",
        ) as bot,
    ):
        assert (await bot.get("/healthz")).status_code == 200
        hook = payloads.webhook([payloads.text_message(USER, "hola")])
        assert (await bot.post(hook, secret=WRONG_SECRET)).status_code == 401
        wrong = {"Authorization": f"Bearer {WRONG_SECRET}"}
        assert (await bot.get("/actors", headers=wrong)).status_code == 401
        assert (await bot.get("/actors", headers={"Authorization": "Basic x"})).status_code == 401
        assert (await bot.admin("GET", "/actors?limit=1")).status_code == 200
        bot.terminate()
        assert await bot.wait_exit(15) == 0, bot.logs[-3000:]
    entries = [json.loads(line) for line in bot.stderr.lines + bot.stdout.lines if line.strip()]
    access = [e for e in entries if e["logger"] == "hypercorn.access"]
    healthz = [e for e in access if e.get("path") == "/healthz"]
    assert len(healthz) == 1
    assert healthz[0]["method"] == "GET" and healthz[0]["status"] == 200
    assert isinstance(healthz[0]["duration_ms"], float) and healthz[0]["duration_ms"] >= 0
    listed = [e for e in access if e.get("path") == "/actors"]
    assert [e["status"] for e in listed] == [200]  # no query string in the field
    # Each refused request is one line, from the code that refused it, saying why.
    refusals = [e for e in entries if e.get("status") == 401]
    assert [(e["logger"], e["method"], e["path"]) for e in refusals] == [
        ("gateway.hook", "POST", "/hook"),
        ("gateway.app", "GET", "/actors"),
        ("gateway.app", "GET", "/actors"),
    ]
    assert "does not match WABOT_WEBHOOK_SECRET" in refusals[0]["msg"]
    assert "does not match WABOT_ADMIN_TOKEN" in refusals[1]["msg"]
    assert "no bearer token" in refusals[2]["msg"]
    assert all(e["level"] == "warning" and e["client"] == "127.0.0.1" for e in refusals)
    assert WRONG_SECRET not in bot.logs
    for secret in SECRETS:
        assert secret not in bot.logs
