"""Shared pieces of the reliability and security suite (issue 7).

``scale`` picks a case count for ``make test``, the heavier ``make chaos`` pass
(``WABOT_CHAOS=1``) or the crash pass (``WABOT_CRASH=1``, ``make crash``): each test sizes its
own heavy count so that every target ends within ten minutes on two cores. The other helpers
read what the sandbox fakes recorded and speak raw HTTP when a test needs bytes that an HTTP
client would normalise (dot segments, trickling).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from typing import Any

import trio

from tests.harness import Fakes


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


CHAOS = _flag("WABOT_CHAOS")
CRASH = _flag("WABOT_CRASH")


def scale(default: int, chaos: int, *, crash: int | None = None, env: str | None = None) -> int:
    """``default`` cases in ``make test``, ``chaos`` under ``WABOT_CHAOS=1``, ``crash`` (or
    ``chaos``) under ``WABOT_CRASH=1``; a set ``env`` variable overrides all three."""
    if env is not None and os.environ.get(env, "").strip():
        return max(1, int(os.environ[env]))
    if CRASH:
        return chaos if crash is None else crash
    return chaos if CHAOS else default


def responses_calls(fakes: Fakes) -> list[Any]:
    """Every ``POST /v1/responses`` the fake OpenAI received (including rejected ones)."""
    return [c for c in fakes.openai.calls if c.method == "POST" and c.path == "/v1/responses"]


def input_text(call: Any) -> str:
    """The user text of a recorded ``responses.create`` call."""
    items = call.json["input"]
    return "".join(
        part.get("text", "")
        for item in items
        if item.get("type") == "message" and item.get("role") == "user"
        for part in (item["content"] if isinstance(item["content"], list) else [])
        if part.get("type") == "input_text"
    )


def roles(items: Iterable[dict[str, Any]]) -> list[str]:
    """The roles of the message items of a conversation, in order (``user``/``assistant``)."""
    return [i["role"] for i in items if i.get("type") == "message" and i.get("role") != "developer"]


def one_answer_per_turn(items: list[dict[str, Any]]) -> bool:
    """True when user and assistant messages alternate: no turn was answered twice."""
    sequence = roles(items)
    return all(a != b for a, b in itertools.pairwise(sequence))


async def raw_request(
    url: str,
    request: bytes,
    *,
    timeout: float = 5.0,
    trickle: float | None = None,
    chunk: int | None = None,
) -> tuple[int | None, bytes, float]:
    """Send raw bytes to the server at ``url``; (status or None if closed, response, seconds).

    With ``trickle`` the request is sent one byte every ``trickle`` seconds (slowloris), and
    the call returns as soon as the server closes the connection. With ``chunk`` it is sent
    in pieces of that many bytes, with a short pause between them.
    """
    match = re.match(r"http://([\d.]+):(\d+)", url)
    assert match is not None, url
    host, port = match.group(1), int(match.group(2))
    started = trio.current_time()
    stream = await trio.open_tcp_stream(host, port)
    received = b""
    async with stream:
        with trio.move_on_after(timeout):
            try:
                if chunk is not None:
                    for start in range(0, len(request), chunk):
                        await stream.send_all(request[start : start + chunk])
                        await trio.sleep(0.005)
                elif trickle is None:
                    await stream.send_all(request)
                else:
                    for byte in request:
                        await stream.send_all(bytes([byte]))
                        await trio.sleep(trickle)
                while not _complete(received):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    received += chunk
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
    elapsed = trio.current_time() - started
    status = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    return (int(status.group(1)) if status else None), received, elapsed


def _complete(response: bytes) -> bool:
    """True once a response's headers and its Content-Length worth of body have arrived."""
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is not None and len(body) >= int(length.group(1))
