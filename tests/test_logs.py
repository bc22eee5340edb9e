"""Structured logs: JSON lines in production, readable lines otherwise, each line about a user
with the user key (and inside a turn the turn id), never a secret, message text only at DEBUG.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from actors.logcontext import bind
from gateway.logs import ContextFilter, JsonFormatter, TextFormatter, _Redactor
from sandbox import payloads
from tests.harness import OPENAI_KEY, SECRET, WHAPI_TOKEN, open_fakes
from tests.process import ADMIN_TOKEN, BotProcess, open_bot_process

USER = "573001234567"
SECRETS = (WHAPI_TOKEN, OPENAI_KEY, SECRET, ADMIN_TOKEN)
PRIVATE_TEXT = "mi clave del banco es 4242"


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


async def run_session(bot: BotProcess, fakes: object) -> None:
    """A turn with a retried model call (a warning inside the turn), then an operator pause."""
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
    for secret in SECRETS:
        assert secret not in bot.logs
