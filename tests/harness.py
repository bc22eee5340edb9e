"""Test harness: a real wabot server on loopback, wired to the sandbox fakes.

Everything goes through real HTTP: tests post webhooks to the bot's ``/hook`` with httpx, the
bot calls the fake Whapi, OpenAI (and, with ``beds24_on``, Beds24) servers, and tests read what
the fakes recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from hypercorn.config import Config as HypercornConfig

from actors.settings import Settings
from gateway.app import SECRET_HEADER
from gateway.server import Running, hypercorn_config, run_server
from gateway.service import BehaviorWrapper
from sandbox.beds24 import FakeBeds24
from sandbox.openai import FakeOpenAI
from sandbox.realism import Realism
from sandbox.whapi import FakeWhapi
from store.fileio import FileIO

WHAPI_TOKEN = "test-whapi-token-123456"
OPENAI_KEY = "test-openai-key-123456"
SECRET = "test-webhook-secret"
BEDS24_TOKEN = "test-beds24-long-life-token"
BEDS24_REFRESH_TOKEN = "test-beds24-refresh-token"

FAST = {
    "buffer_seconds": 0.15,
    "voice_buffer_seconds": 0.25,
    "typing_seconds": 0.4,
    "max_wait_seconds": 2.0,
    "idle_seconds": 30.0,
    "typing_time_min": 0.0,
    "typing_time_max": 0.0,
    "part_pause_seconds": 0.0,
    "retry_base_seconds": 0.01,
    "retry_max_seconds": 0.05,
    "restart_backoff_seconds": 0.01,
    "restart_backoff_max_seconds": 0.05,
    "whapi_timeout_seconds": 3.0,
    "openai_timeout_seconds": 3.0,
    "turn_timeout_seconds": 10.0,
    "drain_seconds": 5.0,
    "typing_delay_seconds": 0.0,
    # The bot shares its event loop with the fakes here, on a machine the whole suite loads:
    # a loop that late is a bug a test should see, a shorter lateness is the test machine.
    "shed_loop_lag_seconds": 5.0,
    # An in-process bot shares its RSS with the test runner, whose heap holds what every
    # earlier test left (gigabytes in a long chaos run): the memory watchdog's limits would
    # judge the runner, not the bot. Tests of the watchdog set their own.
    "memory_soft_mb": 0.0,
    "memory_hard_mb": 0.0,
}


@attrs.define
class Fakes:
    whapi: FakeWhapi
    openai: FakeOpenAI
    whapi_url: str
    openai_url: str
    #: Started with the others; a bot uses it with ``make_settings(..., **beds24_on(fakes))``.
    beds24: FakeBeds24
    beds24_url: str


@asynccontextmanager
async def open_fakes(realism: Realism | None = None) -> AsyncIterator[Fakes]:
    """The fakes on loopback; ``realism`` gives Whapi's and OpenAI's latencies and rate limits."""
    realism = realism or Realism()
    async with trio.open_nursery() as nursery:
        whapi = FakeWhapi(WHAPI_TOKEN, **realism.whapi_kwargs())
        openai = FakeOpenAI(OPENAI_KEY, **realism.openai_kwargs())
        beds24 = FakeBeds24(BEDS24_TOKEN, refresh_token=BEDS24_REFRESH_TOKEN)
        whapi_url = await nursery.start(whapi.serve)
        openai_url = await nursery.start(openai.serve)
        beds24_url = await nursery.start(beds24.serve)
        yield Fakes(whapi, openai, whapi_url, openai_url, beds24, beds24_url)
        nursery.cancel_scope.cancel()


def beds24_on(fakes: Fakes, *, refresh: bool = False) -> dict[str, Any]:
    """The settings that turn check_availability on against the fake Beds24."""
    credential = (
        {"beds24_refresh_token": BEDS24_REFRESH_TOKEN}
        if refresh
        else {"beds24_token": BEDS24_TOKEN}
    )
    return {"beds24_api_url": fakes.beds24_url, "beds24_timeout_seconds": 3.0, **credential}


def make_settings(fakes: Fakes, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "whapi_token": WHAPI_TOKEN,
        "openai_api_key": OPENAI_KEY,
        "whapi_api_url": fakes.whapi_url,
        "openai_base_url": fakes.openai_url,
        "host": "127.0.0.1",
        "port": 0,
        "webhook_secret": SECRET,
        "data_dir": data_dir,
        "tmp_dir": data_dir.parent / "tmp-audio",
        **FAST,
    }
    values.update(overrides)
    return Settings(**values)


@attrs.define
class Bot:
    running: Running
    http: httpx.AsyncClient
    stop_event: trio.Event

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def service(self) -> Any:
        return self.running.service

    async def post(
        self, body: Any, *, secret: str | None = SECRET, raw: bytes | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        if raw is not None:
            return await self.http.post(f"{self.url}/hook", content=raw, headers=headers)
        return await self.http.post(f"{self.url}/hook", json=body, headers=headers)


def fast_config(settings: Settings, **overrides: Any) -> HypercornConfig:
    """hypercorn.toml's settings for an in-process bot, with a short graceful timeout."""
    config = hypercorn_config(settings)
    config.graceful_timeout = 0.2
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


@asynccontextmanager
async def open_bot(
    fakes: Fakes,
    settings: Settings,
    *,
    wrap_behavior: BehaviorWrapper | None = None,
    config: HypercornConfig | None = None,
    file_io: FileIO | None = None,
) -> AsyncIterator[Bot]:
    """The bot in this process against ``fakes``; ``file_io`` injects faults into its store."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery, httpx.AsyncClient(timeout=10) as http:
        running = await nursery.start(
            lambda task_status: run_server(
                settings,
                stop=stop,
                config=config or fast_config(settings),
                wrap_behavior=wrap_behavior,
                file_io=file_io,
                task_status=task_status,
            )
        )
        fakes.whapi.webhook_url = f"{running.url}/hook"
        fakes.whapi.webhook_headers = {SECRET_HEADER: settings.webhook_secret or ""}
        bot = Bot(running, http, stop)
        try:
            yield bot
        finally:
            stop.set()


async def wait_until(predicate: Any, *, timeout: float = 5.0, interval: float = 0.01) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(interval)
