"""Run the fakes together: `run_sandbox` in-process, `main` as ``python -m sandbox``.

Whapi, OpenAI and Beds24 (with ``FakeBeds24.demo``'s apartments, so that availability can be
asked about in the local sandbox without a Beds24 account).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import attrs
import trio

from sandbox.beds24 import FakeBeds24
from sandbox.openai import FakeOpenAI
from sandbox.whapi import FakeWhapi

#: The demo's documents: a small apartment rental's prices, policies and FAQ, in Spanish.
SAMPLE_KNOWLEDGE = Path(__file__).resolve().parent / "knowledge"
DEFAULT_WHAPI_TOKEN = "sandbox-whapi-token"
DEFAULT_OPENAI_KEY = "sk-sandbox-openai-key"
DEFAULT_BEDS24_TOKEN = "sandbox-beds24-token"


@attrs.define
class SandboxURLs:
    """Where the running fakes listen (the OpenAI URL includes ``/v1``, Beds24's ``/v2``)."""

    whapi_url: str
    openai_url: str
    whapi: FakeWhapi
    openai: FakeOpenAI
    beds24_url: str
    beds24: FakeBeds24


async def run_sandbox(
    *,
    whapi_token: str,
    openai_key: str,
    host: str = "127.0.0.1",
    whapi_port: int = 0,
    openai_port: int = 0,
    webhook_url: str | None = None,
    webhook_headers: Mapping[str, str] | None = None,
    openai_state_file: Path | None = None,
    beds24_token: str = DEFAULT_BEDS24_TOKEN,
    beds24_port: int = 0,
    extra_whapi_tokens: tuple[str, ...] = (),
    task_status: trio.TaskStatus[SandboxURLs] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a FakeWhapi, a FakeOpenAI and a FakeBeds24 until cancelled; report `SandboxURLs`.

    ``openai_state_file`` keeps the fake OpenAI's conversations across restarts; the fake
    Beds24 takes ``beds24_token`` as its long-life token and has the demo apartments; the fake
    Whapi also takes each of ``extra_whapi_tokens``, as numbers of their own (wabot's channels).
    """
    whapi = FakeWhapi(whapi_token, webhook_url=webhook_url, webhook_headers=webhook_headers)
    for number, token in enumerate(extra_whapi_tokens, 1):
        whapi.add_channel(token, f"SANDBOX-CHANNEL-{number}")
    openai = FakeOpenAI(openai_key, state_file=openai_state_file)
    beds24 = FakeBeds24(beds24_token).demo(date.today())
    async with trio.open_nursery() as nursery:
        whapi_url = await nursery.start(
            lambda task_status: whapi.serve(host=host, port=whapi_port, task_status=task_status)
        )
        openai_url = await nursery.start(
            lambda task_status: openai.serve(host=host, port=openai_port, task_status=task_status)
        )
        beds24_url = await nursery.start(
            lambda task_status: beds24.serve(host=host, port=beds24_port, task_status=task_status)
        )
        task_status.started(SandboxURLs(whapi_url, openai_url, whapi, openai, beds24_url, beds24))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of ``python -m sandbox``."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run loopback fakes of Whapi, OpenAI and Beds24; prints a JSON line of URLs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--whapi-port", type=int, default=0)
    parser.add_argument("--openai-port", type=int, default=0)
    parser.add_argument("--whapi-token", default=DEFAULT_WHAPI_TOKEN)
    parser.add_argument("--openai-key", default=DEFAULT_OPENAI_KEY)
    parser.add_argument("--webhook-url", default=None, help="where echo webhooks are posted")
    parser.add_argument(
        "--webhook-header",
        action="append",
        default=[],
        metavar="K:V",
        help="header sent with echo webhooks (repeatable)",
    )
    return parser.parse_args(argv)


def header_pairs(values: Sequence[str]) -> dict[str, str]:
    """Parse ``K:V`` strings into a header dict."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"--webhook-header expects K:V, got {value!r}")
        headers[name.strip()] = content.strip()
    return headers


async def serve_until_signal(args: argparse.Namespace) -> None:
    """Run the sandbox until SIGTERM or SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            urls: SandboxURLs = await nursery.start(
                lambda task_status: run_sandbox(
                    whapi_token=args.whapi_token,
                    openai_key=args.openai_key,
                    host=args.host,
                    whapi_port=args.whapi_port,
                    openai_port=args.openai_port,
                    webhook_url=args.webhook_url,
                    webhook_headers=header_pairs(args.webhook_header),
                    task_status=task_status,
                )
            )
            line = {
                "whapi_url": urls.whapi_url,
                "openai_url": urls.openai_url,
                "whapi_token": args.whapi_token,
                "openai_key": args.openai_key,
                "beds24_url": urls.beds24_url,
                "beds24_token": DEFAULT_BEDS24_TOKEN,
            }
            print(json.dumps(line), flush=True)
            async for _signum in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sandbox``; exits 0 on SIGTERM/SIGINT."""
    args = parse_args(argv)
    header_pairs(args.webhook_header)
    trio.run(serve_until_signal, args)
    sys.stdout.flush()
    return 0
