"""Fuzzing the webhook: hypothesis bodies against the parser and against a running bot's /hook.

The parser must be total (any JSON value in, a ``ParsedWebhook`` out, never an exception) and
everything it lets through must be journal-safe and answerable. The endpoint must never
answer 500, never crash an actor, change nothing for rejected input, and stay healthy. The
HTTP part is bounded: a few hypothesis examples, each posting a bounded batch of bodies to one
bot (more under ``WABOT_CHAOS=1``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.parse import KNOWN_KINDS, ParsedWebhook, parse_message, parse_webhook
from sandbox import payloads
from store import InboxEntry
from store.records import utcnow
from store.state import encode_inbox_add, encode_json
from tests.chaos_helpers import scale
from tests.harness import make_settings, open_bot, open_fakes, wait_until

USERS = ("573001110001", "573001110002", "573001110003")
KINDS = sorted(KNOWN_KINDS | {"reaction", "zzz", "", "TEXT", "x" * 60})
FIXED_REASONS = {
    "not_an_object",
    "message_update",
    "malformed",
    "echo",
    "agent_without_text",
    "group",
    "broadcast",
    "malformed_presence",
    "empty",
    "statuses",
    "chats",
    "chats_updates",
    "contacts",
    "groups",
    "labels",
    "calls",
    "type:other",
    *(f"type:{kind}" for kind in KNOWN_KINDS),
}

# -- strategies ---------------------------------------------------------------------------------

odd_text = (
    st.text(max_size=40)
    | st.text(alphabet=st.characters(categories=["Cs", "Cc", "Cf", "So"]), max_size=8)
    | st.sampled_from(
        [
            "\ud800",
            "a\udfffb",
            "\U0001f600",
            "\u202e",
            "\x00",
            "",
            " ",
            "ñandú",
            "\ufeff",
            "🇨🇴" * 30,
        ]
    )
)
numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
chat_ids = st.one_of(
    st.sampled_from([f"{u}@s.whatsapp.net" for u in USERS]),
    st.sampled_from(
        [
            "120363000000000000@g.us",
            "status@broadcast",
            "123@newsletter",
            "5730011100@lid",
            "../../etc@s.whatsapp.net",
            "573001110001",
            "@s.whatsapp.net",
            "5".ljust(300, "5") + "@s.whatsapp.net",
        ]
    ),
    odd_text,
    json_values,
)
media_body = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(odd_text, json_values),
        "link": st.one_of(st.just("http://127.0.0.1:9/x"), odd_text, json_values),
        "mime_type": st.one_of(st.just("audio/ogg"), odd_text),
        "file_size": numbers,
        "seconds": numbers,
        "caption": odd_text,
        "filename": odd_text,
        "body": odd_text,
        "latitude": numbers,
        "longitude": numbers,
        "name": st.one_of(odd_text, json_values),
    },
)


@st.composite
def messages(draw: st.DrawFn) -> Any:
    kind = draw(st.one_of(st.sampled_from(KINDS), json_values))
    message: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "id": st.one_of(st.uuids().map(lambda u: f"wamid.{u.hex}"), json_values),
                "chat_id": chat_ids,
                "from": st.one_of(st.sampled_from(USERS), odd_text, json_values),
                "from_me": st.one_of(st.booleans(), json_values),
                "source": st.sampled_from(["api", "mobile", "web", "", "x"]),
                "timestamp": st.one_of(numbers, json_values),
                "from_name": st.one_of(odd_text, json_values),
                "chat_name": odd_text,
            },
        )
    )
    message["type"] = kind
    if isinstance(kind, str):
        message[kind] = draw(st.one_of(media_body, json_values))
    if draw(st.booleans()):
        message["text"] = draw(st.one_of(st.fixed_dictionaries({"body": odd_text}), json_values))
    return message


presences = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "contact_id": st.one_of(st.sampled_from(USERS), odd_text, json_values),
            "status": st.one_of(st.sampled_from(["typing", "recording", "TYPING", "x"]), scalars),
        },
    ),
    json_values,
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "messages": st.lists(st.one_of(messages(), json_values), max_size=6) | json_values,
            "event": st.one_of(
                st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["messages", "statuses", "presences", "x"]),
                        "event": st.sampled_from(["post", "put", "patch", "delete", "POST"]),
                    }
                ),
                json_values,
            ),
            "presences": st.lists(presences, max_size=4) | json_values,
            "statuses": st.lists(json_values, max_size=3) | json_values,
            "chats": st.lists(json_values, max_size=3) | json_values,
            "channel_id": odd_text,
        },
    ),
    json_values,
)

# -- the parser ---------------------------------------------------------------------------------


def check_parsed(body: Any, parsed: ParsedWebhook) -> None:
    assert isinstance(parsed, ParsedWebhook)
    assert set(parsed.ignored) <= FIXED_REASONS, set(parsed.ignored) - FIXED_REASONS
    assert all(count > 0 for count in parsed.ignored.values())
    for raw, encoded, event in parsed.messages:
        # Journal-safe (the store can encode it) and answerable (digits, a direct chat id).
        json.dumps(raw, ensure_ascii=False, allow_nan=False).encode()
        # The encoding handed to the store is the store's own, and its journal line with it
        # is byte for byte the one it would have made.
        assert encoded == encode_json(raw)
        entry = InboxEntry(event.message_id, event.user_id, utcnow(), raw)
        assert encode_inbox_add(entry, encoded) == encode_inbox_add(entry)
        event.text.encode()
        event.user_name.encode()
        assert event.user_id.isdigit() and 5 <= len(event.user_id) <= 20
        assert event.text and len(event.message_id) <= 200
        assert math.isfinite(event.timestamp)
        if event.media is not None and event.media.file_size is not None:
            assert 0 <= event.media.file_size < 2**53
        # A replay from the durable inbox gives the same event.
        assert parse_message(raw) == event
    for agent in parsed.agent_messages:
        agent.text.encode()
        assert agent.user_id.isdigit()
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        event = body.get("event")
        if isinstance(event, dict) and event.get("event") == "post":
            entries = len(body["messages"])
            accounted = len(parsed.messages) + len(parsed.agent_messages)
            accounted += sum(
                n
                for reason, n in parsed.ignored.items()
                if reason in {"malformed", "echo", "agent_without_text", "group", "broadcast"}
                or reason.startswith("type:")
            )
            assert accounted == entries


@settings(
    max_examples=scale(400, 5000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(body=bodies)
def test_fuzz_parse_webhook_is_total(body: Any) -> None:
    check_parsed(body, parse_webhook(body))
    check_parsed(body, parse_webhook(body, allow_groups=True))


def _nest(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    "case",
    [
        "huge_batch",
        "huge_junk_array",
        "deep_message",
        "deep_body",
        "surrogates",
        "non_finite",
        "huge_numbers",
        "mixed",
    ],
)
def test_fuzz_parse_webhook_extremes(case: str) -> None:
    good = payloads.text_message(USERS[0], "hola")
    body: Any
    if case == "huge_batch":
        body = payloads.webhook([payloads.text_message(USERS[n % 3], f"m{n}") for n in range(5000)])
    elif case == "huge_junk_array":
        body = {"event": {"event": "post"}, "messages": [[]] * 100_000, "presences": [1] * 100_000}
    elif case == "deep_message":
        body = payloads.webhook([{**good, "extra": _nest(900)}])
    elif case == "deep_body":
        body = _nest(900)
    elif case == "surrogates":
        body = payloads.webhook([{**good, "text": {"body": "a\ud800b\udfff"}, "x": ["\udc00"]}])
    elif case == "non_finite":
        body = payloads.webhook([{**good, "timestamp": math.nan, "y": [math.inf, -math.inf]}])
    elif case == "huge_numbers":
        image = payloads.image_message(USERS[0])
        image["image"].update(file_size=10**400, seconds=-(10**300))
        body = payloads.webhook([{**good, "timestamp": 10**400}, image])
    else:
        body = {
            **payloads.webhook([good, payloads.agent_message(USERS[1], "ya te atiendo")]),
            **payloads.presence_webhook([payloads.presence(USERS[0])]),
            "statuses": [{"id": "x", "status": "read"}],
            "event": {"type": "messages", "event": "post"},
        }
    parsed = parse_webhook(body)
    check_parsed(body, parsed)
    if case == "huge_batch":
        assert len(parsed.messages) == 5000
    if case == "deep_message":
        assert parsed.ignored == {"malformed": 1}
    if case in {"surrogates", "non_finite"}:
        assert len(parsed.messages) == 1
    if case == "mixed":
        counts = (len(parsed.messages), len(parsed.agent_messages), len(parsed.presences))
        assert counts == (1, 1, 1)


# -- the endpoint -------------------------------------------------------------------------------


def encode(body: Any) -> bytes:
    """JSON as a sender might write it: NaN/Infinity allowed, surrogates escaped."""
    return json.dumps(body, ensure_ascii=True).encode()


garbage = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [b"", b"{", b"[1,", b'{"messages": [', b"\xff\xfe", b"null" * 3, b"[" * 5000 + b"]" * 5000]
    ),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(min_value=1, max_value=200_000)),
)


@settings(
    max_examples=scale(2, 6),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_fuzz_hook_endpoint_never_500(data: st.DataObject, tmp_path_factory: Any) -> None:
    """Fuzzed bodies and raw garbage at a running bot; then it still answers everyone."""
    per_example = scale(40, 200)
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    async with open_fakes() as fakes:
        config = make_settings(fakes, tmp / "data", buffer_seconds=0.05, max_wait_seconds=0.5)
        async with open_bot(fakes, config) as bot:
            store, supervisor = bot.service.store, bot.service.supervisor
            for _ in range(per_example):
                if data.draw(st.integers(0, 3)) == 0:
                    raw = data.draw(garbage)
                    before = (store.stats().pending, store.stats().done_ids, store.stats().records)
                    response = await bot.post(None, raw=raw)
                    # Rejected input changes nothing (and is never a 500).
                    if response.status_code != 200:
                        assert response.status_code == 400, response.text
                        after = (store.stats().pending, store.stats().done_ids)
                        assert after == before[:2]
                        assert store.stats().records == before[2]
                    continue
                body = data.draw(bodies)
                response = await bot.post(None, raw=encode(body))
                assert response.status_code == 200, (response.status_code, response.text, body)
            # Healthy afterwards: no actor crashed, everything accepted gets answered.
            assert supervisor.counters.restarts == 0
            assert bot.service.gateway.counters.webhooks.get("parse_error", 0) == 0
            await wait_until(lambda: store.stats().pending == 0, timeout=20)
            ready = await bot.http.get(f"{bot.url}/readyz")
            assert ready.status_code == 200
            reply = payloads.text_message(USERS[2], "¿siguen ahí?")
            assert (await bot.post(payloads.webhook([reply]))).status_code == 200
            await wait_until(
                lambda: any("siguen" in (m.body or "") for m in fakes.whapi.sent), timeout=10
            )
            # Whatever came in, the bot never sent the vendors an invalid request.
            assert not fakes.whapi.invalid_calls, fakes.whapi.invalid_calls[:3]
            assert not fakes.openai.invalid_calls, fakes.openai.invalid_calls[:3]


async def test_fuzz_hook_oversized_and_deep_raw_bodies(tmp_path: Path) -> None:
    async with open_fakes() as fakes:
        config = make_settings(fakes, tmp_path, max_body_bytes=256 * 1024)
        async with open_bot(fakes, config) as bot:
            deep = b"[" * 100_000 + b"]" * 100_000
            assert (await bot.post(None, raw=deep)).status_code == 400
            big = encode(payloads.webhook([payloads.text_message(USERS[0], "x" * 300_000)]))
            assert (await bot.post(None, raw=big)).status_code == 413

            async def chunked() -> Any:
                for _ in range(40):
                    yield b" " * 8192

            try:
                response = await bot.http.post(
                    f"{bot.url}/hook",
                    content=chunked(),
                    headers={"X-Webhook-Secret": config.webhook_secret or ""},
                )
                status: int | None = response.status_code
            except httpx.HTTPError:
                status = None  # refused while we were still sending: also fine
            assert status in {413, None}
            assert bot.service.store.stats().pending == 0
            async with httpx.AsyncClient(timeout=5) as fresh:
                assert (await fresh.get(f"{bot.url}/readyz")).status_code == 200
