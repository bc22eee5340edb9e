"""Run the fakes together: `run_sandbox` in-process, `main` as ``python -m sandbox``.

Whapi, OpenAI and Beds24 (with ``FakeBeds24.demo``'s apartments, so that availability can be
asked about in the local sandbox without a Beds24 account). Whapi and OpenAI take a `Realism`
(``sandbox.realism``: latencies, the OpenAI account's rate limits, the seed); on the command
line ``--realistic`` is the issue's latencies and ``--model-latency``, ``--send-latency``,
``--openai-rpm``, ``--openai-tpm`` and ``--seed`` set each part.
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
from sandbox.realism import REALISTIC_MODEL, REALISTIC_SEND, Lognormal, Realism
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
    realism: Realism | None = None,
    task_status: trio.TaskStatus[SandboxURLs] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a FakeWhapi, a FakeOpenAI and a FakeBeds24 until cancelled; report `SandboxURLs`.

    ``openai_state_file`` keeps the fake OpenAI's conversations across restarts; the fake
    Beds24 takes ``beds24_token`` as its long-life token and has the demo apartments; the fake
    Whapi also takes each of ``extra_whapi_tokens``, as numbers of their own (wabot's channels);
    ``realism`` sets the Whapi and OpenAI fakes' latencies and rate limits (default: none).
    """
    realism = realism or Realism()
    whapi = FakeWhapi(
        whapi_token,
        webhook_url=webhook_url,
        webhook_headers=webhook_headers,
        **realism.whapi_kwargs(),
    )
    for number, token in enumerate(extra_whapi_tokens, 1):
        whapi.add_channel(token, f"SANDBOX-CHANNEL-{number}")
    openai = FakeOpenAI(openai_key, state_file=openai_state_file, **realism.openai_kwargs())
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
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="model latency median 3 s / p99 15 s, sends median 0.25 s / p99 1 s",
    )
    parser.add_argument(
        "--model-latency", type=Lognormal.parse, metavar="MEDIAN,P99", help="responses.create"
    )
    parser.add_argument(
        "--send-latency", type=Lognormal.parse, metavar="MEDIAN,P99", help="POST /messages/*"
    )
    parser.add_argument("--openai-rpm", type=float, default=None, help="requests per minute")
    parser.add_argument("--openai-tpm", type=float, default=None, help="tokens per minute")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latency draws")
    return parser.parse_args(argv)


def realism_from_args(args: argparse.Namespace) -> Realism:
    """The `Realism` the command line asks for."""
    model = args.model_latency or (REALISTIC_MODEL if args.realistic else None)
    send = args.send_latency or (REALISTIC_SEND if args.realistic else None)
    return Realism(
        model_latency=model,
        send_latency=send,
        requests_per_minute=args.openai_rpm,
        tokens_per_minute=args.openai_tpm,
        seed=args.seed,
    )


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
                    realism=realism_from_args(args),
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
                "realism": realism_from_args(args).to_json(),
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
