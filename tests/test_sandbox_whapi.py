"""FakeWhapi through real HTTP: auth, validation, sends and echoes, presences, chats, faults."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import hypercorn.config
import hypercorn.trio
import pytest
import trio

from sandbox import payloads, run_sandbox
from sandbox.testing import start_fake_whapi
from sandbox.whapi import FakeWhapi

USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"
QUOTED_PATTERN = re.compile(
    r"^[A-Za-z0-9._]{4,30}-[A-Za-z0-9._]{4,14}(-[A-Za-z0-9._]{4,10})?(-[A-Za-z0-9._]{2,10})?$"
)


@pytest.fixture
async def client(fake_whapi: FakeWhapi) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {fake_whapi.token}"}
    async with httpx.AsyncClient(base_url=fake_whapi.url, headers=headers, timeout=5) as c:
        yield c


class Receiver:
    """A tiny webhook receiver (ASGI on hypercorn) that keeps what it got."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.got = trio.Event()
        self.url = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((headers, json.loads(body)))
        self.got.set()
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        config = hypercorn.config.Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.loglevel = "WARNING"

        async def started(task_status: Any) -> None:
            await hypercorn.trio.serve(self, config, task_status=task_status)

        async with trio.open_nursery() as nursery:
            binds = await nursery.start(started)
            self.url = binds[0] + "/hook"
            task_status.started(self.url)


async def test_auth_required(fake_whapi: FakeWhapi) -> None:
    async with httpx.AsyncClient(base_url=fake_whapi.url) as anon:
        missing = await anon.post("/messages/text", json={"to": USER, "body": "x"})
        wrong = await anon.get("/labels", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert missing.json()["error"]["code"] == 401
    assert set(missing.json()["error"]) == {"code", "message", "details"}
    assert fake_whapi.sent == []
    assert [c.error for c in fake_whapi.invalid_calls] == ["unauthorized", "unauthorized"]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/messages/text", {"to": USER}, "body"),
        ("/messages/text", {"body": "hola"}, "to"),
        ("/messages/text", {"to": USER, "body": ""}, "body"),
        ("/messages/text", {"to": USER, "body": "x" * 4097}, "body"),
        ("/messages/text", {"to": USER, "body": "hi", "typing_time": 61}, "typing_time"),
        ("/messages/text", {"to": USER, "body": "hi", "typing_time": -1}, "typing_time"),
        ("/messages/text", {"to": USER, "body": "hi", "typing_time": "3"}, "typing_time"),
        ("/messages/text", {"to": "not a chat", "body": "hi"}, "to"),
        ("/messages/text", {"to": USER, "body": "hi", "quoted": "abc"}, "quoted"),
        ("/messages/voice", {"to": USER}, "media"),
        ("/messages/voice", {"to": USER, "media": "x", "seconds": 1.5}, "seconds"),
        ("/messages/image", {"to": USER, "media": "x", "caption": 3}, "caption"),
        ("/messages/document", {"to": USER, "media": ""}, "media"),
    ],
)
async def test_send_validation(
    client: httpx.AsyncClient, fake_whapi: FakeWhapi, path: str, body: dict[str, Any], needle: str
) -> None:
    reply = await client.post(path, json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == 400
    assert needle in error["message"] + error["details"]
    assert fake_whapi.sent == []
    (call,) = fake_whapi.invalid_calls
    assert call.json == body
    assert call.status == 400


async def test_presence_validation_follows_vendor_enum(
    client: httpx.AsyncClient, fake_whapi: FakeWhapi
) -> None:
    for presence in ("typing", "recording", "pause"):
        assert (await client.put(f"/presences/{CHAT}", json={"presence": presence})).is_success
    for bad in (
        {"presence": "paused"},
        {"presence": "online"},
        {},
        {"presence": "typing", "delay": -1},
    ):
        assert (await client.put(f"/presences/{CHAT}", json=bad)).status_code == 400
    assert (await client.put("/presences/me", json={"presence": "online"})).is_success
    assert (await client.put("/presences/me", json={"presence": "typing"})).status_code == 400
    assert fake_whapi.presences_put == [
        (CHAT, "typing"),
        (CHAT, "recording"),
        (CHAT, "pause"),
        ("me", "online"),
    ]


async def test_malformed_json_and_unknown_route(client: httpx.AsyncClient) -> None:
    bad = await client.post(
        "/messages/text", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert (await client.get("/nothing/here")).status_code == 404
    assert (await client.delete("/messages/text")).status_code == 405


async def test_send_text_and_helpers(client: httpx.AsyncClient, fake_whapi: FakeWhapi) -> None:
    reply = await client.post("/messages/text", json={"to": USER, "body": "hola", "typing_time": 3})
    assert reply.status_code == 200
    data = reply.json()
    assert data["sent"] is True
    message = data["message"]
    assert message["chat_id"] == CHAT
    assert message["from_me"] is True
    assert message["source"] == "api"
    assert message["text"] == {"body": "hola"}
    assert QUOTED_PATTERN.match(message["id"])
    await client.post("/messages/text", json={"to": "573110000000", "body": "otro"})
    await client.post(
        "/messages/voice",
        json={"to": CHAT, "media": "data:audio/ogg;base64,T2dnUw==", "seconds": 2},
    )
    (first, voice) = fake_whapi.sent_to(USER)
    assert (first.id, first.body, first.typing_time, first.type) == (
        message["id"],
        "hola",
        3,
        "text",
    )
    assert voice.type == "voice" and voice.media.startswith("data:audio/ogg")
    assert len(fake_whapi.sent) == 3
    assert [m.seq for m in fake_whapi.sent] == [0, 1, 2]
    got = await fake_whapi.wait_sent(2, to=CHAT, timeout=1)
    assert len(got) == 2
    with pytest.raises(TimeoutError, match="got 2"):
        await fake_whapi.wait_sent(3, to=CHAT, timeout=0.05)


async def test_media_sends_have_right_type(
    client: httpx.AsyncClient, fake_whapi: FakeWhapi
) -> None:
    image = await client.post(
        "/messages/image",
        json={"to": USER, "media": "https://example.invalid/a.jpg", "caption": "foto"},
    )
    document = await client.post(
        "/messages/document",
        json={"to": USER, "media": "JVBERi0=", "mime_type": "application/pdf", "filename": "a.pdf"},
    )
    assert image.json()["message"]["type"] == "image"
    assert image.json()["message"]["image"]["caption"] == "foto"
    assert document.json()["message"]["document"]["filename"] == "a.pdf"
    assert [m.type for m in fake_whapi.sent] == ["image", "document"]


async def test_echo_webhook_delivered_with_headers(nursery: trio.Nursery) -> None:
    receiver = Receiver()
    hook_url = await nursery.start(receiver.serve)
    fake = await start_fake_whapi(
        nursery, webhook_url=hook_url, webhook_headers={"Authorization": "Bearer hook-secret"}
    )
    async with httpx.AsyncClient(
        base_url=fake.url, headers={"Authorization": f"Bearer {fake.token}"}
    ) as c:
        sent = (await c.post("/messages/text", json={"to": USER, "body": "eco"})).json()["message"]
    with trio.fail_after(2):
        await receiver.got.wait()
    headers, body = receiver.requests[0]
    assert headers["authorization"] == "Bearer hook-secret"
    assert headers["content-type"] == "application/json"
    assert body["event"] == {"type": "messages", "event": "post"}
    assert body["channel_id"] == "SANDBOX-CHANNEL"
    (echo,) = body["messages"]
    assert echo["id"] == sent["id"]
    assert (echo["from_me"], echo["source"], echo["chat_id"]) == (True, "api", CHAT)
    assert echo["from"] == fake.business_number
    assert echo["text"] == {"body": "eco"}
    assert fake.echo_errors == []


async def test_echo_failure_is_recorded_not_raised(nursery: trio.Nursery) -> None:
    receiver = Receiver(status=500)
    hook_url = await nursery.start(receiver.serve)
    fake = await start_fake_whapi(nursery, webhook_url=hook_url)
    async with httpx.AsyncClient(
        base_url=fake.url, headers={"Authorization": f"Bearer {fake.token}"}
    ) as c:
        assert (await c.post("/messages/text", json={"to": USER, "body": "x"})).is_success
    with trio.fail_after(2):
        while not fake.echo_errors:
            await trio.sleep(0.01)
    assert "500" in fake.echo_errors[0].error


async def test_presence_subscribe_then_conflict(client: httpx.AsyncClient) -> None:
    first = await client.post(f"/presences/{USER}")
    second = await client.post(f"/presences/{USER}")
    assert (first.status_code, first.json()) == (200, {"success": True})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == 409


async def test_chats_labels_and_history(client: httpx.AsyncClient, fake_whapi: FakeWhapi) -> None:
    assert (await client.get(f"/chats/{CHAT}")).status_code == 404
    fake_whapi.set_chat(CHAT, name="Ana", labels=[{"id": "9", "name": "VIP", "color": "gold"}])
    chat = (await client.get("/chats/" + CHAT.replace("@", "%40"))).json()
    assert (chat["id"], chat["name"], chat["type"]) == (CHAT, "Ana", "contact")
    assert chat["labels"] == [{"id": "9", "name": "VIP", "color": "gold"}]
    labels = (await client.get("/labels")).json()
    assert {label["id"] for label in labels} >= {"1", "2"}
    assert (await client.post(f"/labels/2/{CHAT}")).json() == {"success": True}
    assert (await client.post(f"/labels/99/{CHAT}")).status_code == 404
    chat = (await client.get(f"/chats/{CHAT}")).json()
    assert [label["id"] for label in chat["labels"]] == ["9", "2"]
    assert (await client.delete(f"/labels/2/{CHAT}")).is_success
    assert [x["id"] for x in (await client.get(f"/chats/{CHAT}")).json()["labels"]] == ["9"]

    fake_whapi.add_history(CHAT, payloads.text_message(USER, "primero", timestamp=1))
    await client.post("/messages/text", json={"to": USER, "body": "segundo"})
    listing = (await client.get(f"/messages/list/{CHAT}", params={"count": 10})).json()
    assert [m["text"]["body"] for m in listing["messages"]] == ["segundo", "primero"]
    assert listing["total"] == 2
    one = (await client.get(f"/messages/list/{CHAT}", params={"count": 1})).json()
    assert [m["text"]["body"] for m in one["messages"]] == ["segundo"]


async def test_media_download(client: httpx.AsyncClient, fake_whapi: FakeWhapi) -> None:
    link = fake_whapi.add_media("abc123", b"OggS-voice", "audio/ogg")
    got = await client.get("/media/abc123")
    assert (got.status_code, got.content) == (200, b"OggS-voice")
    assert got.headers["content-type"] == "audio/ogg"
    async with httpx.AsyncClient() as anon:
        plain = await anon.get(link)
        assert (await anon.get(f"{fake_whapi.url}/media/abc123")).status_code == 401
    assert plain.content == b"OggS-voice"
    assert (await client.get("/media/missing")).status_code == 404


async def test_fault_status_retry_after_and_times(
    client: httpx.AsyncClient, fake_whapi: FakeWhapi
) -> None:
    fake_whapi.faults.add(r"^/messages/text$", status=429, retry_after=2, times=2)
    body = {"to": USER, "body": "hola"}
    first = await client.post("/messages/text", json=body)
    second = await client.post("/messages/text", json=body)
    third = await client.post("/messages/text", json=body)
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 200]
    assert first.headers["retry-after"] == "2"
    assert first.json()["error"]["code"] == 429
    assert len(fake_whapi.sent) == 1
    assert fake_whapi.faults.rules == ()


async def test_fault_method_filter_and_custom_body(
    client: httpx.AsyncClient, fake_whapi: FakeWhapi
) -> None:
    fake_whapi.faults.add("/presences/", method="PUT", status=503, body={"oops": True})
    assert (await client.post(f"/presences/{USER}")).status_code == 200
    reply = await client.put(f"/presences/{CHAT}", json={"presence": "typing"})
    assert (reply.status_code, reply.json()) == (503, {"oops": True})


async def test_fault_after_processing_effect_visible(
    client: httpx.AsyncClient, fake_whapi: FakeWhapi
) -> None:
    fake_whapi.faults.add("/messages/text", status=500, after_processing=True)
    reply = await client.post("/messages/text", json={"to": USER, "body": "hecho"})
    assert reply.status_code == 500
    assert [m.body for m in fake_whapi.sent] == ["hecho"]


async def test_fault_delay_and_drop(client: httpx.AsyncClient, fake_whapi: FakeWhapi) -> None:
    fake_whapi.faults.delay("/labels", 0.2, times=1)
    start = trio.current_time()
    assert (await client.get("/labels")).is_success
    assert trio.current_time() - start >= 0.2
    fake_whapi.faults.add("/messages/text", drop=True)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/messages/text", json={"to": USER, "body": "x"}, timeout=0.3)
    assert fake_whapi.sent == []
    fake_whapi.faults.add("/messages/text", drop=True, after_processing=True)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/messages/text", json={"to": USER, "body": "y"}, timeout=0.3)
    assert [m.body for m in fake_whapi.sent] == ["y"]


async def test_control_api(client: httpx.AsyncClient, fake_whapi: FakeWhapi) -> None:
    async with httpx.AsyncClient(base_url=fake_whapi.url) as control:
        added = await control.post(
            "/__fake__/faults", json={"path": "/labels", "status": 502, "times": "inf"}
        )
        assert added.json()["rule"]["times"] == "inf"
        assert (await control.post("/__fake__/faults", json={"nope": 1})).status_code == 400
        assert (await client.get("/labels")).status_code == 502
        assert (await client.get("/labels")).status_code == 502
        calls = (await control.get("/__fake__/calls")).json()["calls"]
        assert [(c["path"], c["status"]) for c in calls] == [("/labels", 502)] * 2
        assert (await control.post("/__fake__/reset")).json() == {"ok": True}
        assert (await client.get("/labels")).status_code == 200
        assert len(fake_whapi.calls) == 1

        async def send_later() -> None:
            await trio.sleep(0.1)
            await client.post("/messages/text", json={"to": USER, "body": "tarde"})

        await client.post("/messages/text", json={"to": "573110000000", "body": "otro chat"})
        await client.post("/messages/text", json={"to": USER, "body": "antes"})
        before = (await control.get("/__fake__/sent", params={"to": CHAT})).json()
        assert [m["body"] for m in before["messages"]] == ["antes"]
        assert before["next"] == 1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_later)
            polled = await control.get(
                "/__fake__/sent", params={"to": CHAT, "after": before["next"], "wait": 2}
            )
        page = polled.json()
        assert [m["body"] for m in page["messages"]] == ["tarde"]
        assert page["next"] == 2
        everything = (await control.get("/__fake__/sent", params={"after": 1})).json()
        assert [m["body"] for m in everything["messages"]] == ["antes", "tarde"]
        assert everything["next"] == 3
        empty = await control.get(
            "/__fake__/sent", params={"to": CHAT, "after": page["next"], "wait": 0}
        )
        assert empty.json()["messages"] == []
        configured = await control.post(
            "/__fake__/config", json={"webhook_url": "http://127.0.0.1:9/hook"}
        )
        assert configured.json()["webhook_url"] == fake_whapi.webhook_url


async def test_recording_is_bounded(nursery: trio.Nursery) -> None:
    fake = await start_fake_whapi(nursery, max_calls=3)
    async with httpx.AsyncClient(
        base_url=fake.url, headers={"Authorization": f"Bearer {fake.token}"}
    ) as c:
        for _ in range(5):
            await c.get("/labels")
    assert len(fake.calls) == 3
    fake.clear_calls()
    assert fake.calls == []


def test_payload_builders() -> None:
    text = payloads.text_message(USER, "hola")
    other = payloads.text_message(USER, "hola")
    assert text["id"] != other["id"]
    assert QUOTED_PATTERN.match(text["id"])
    assert (text["chat_id"], text["from"], text["from_me"], text["source"]) == (
        CHAT,
        USER,
        False,
        "mobile",
    )
    voice = payloads.voice_message(USER, link="http://x/files/1", seconds=4)
    assert voice["voice"]["mime_type"] == "audio/ogg; codecs=opus"
    assert voice["voice"]["seconds"] == 4
    image = payloads.image_message(USER, caption="mira")
    assert image["image"]["caption"] == "mira"
    group = payloads.group_message(USER, "hola a todos")
    assert group["chat_id"].endswith("@g.us") and group["from"] == USER
    hook = payloads.webhook([text, voice])
    assert hook["event"] == {"type": "messages", "event": "post"}
    assert hook["channel_id"] == "SANDBOX-CHANNEL"
    presence = payloads.presence_webhook([payloads.presence(CHAT, "typing")])
    assert presence["presences"] == [{"contact_id": USER, "status": "typing"}]
    status = payloads.status_webhook(text["id"], "read")
    assert status["statuses"][0]["status"] == "read"
    assert isinstance(status["statuses"][0]["timestamp"], str)
    agent = payloads.agent_message(USER, "soy humano")
    assert (agent["from_me"], agent["source"], agent["chat_id"]) == (True, "mobile", CHAT)


def test_python_m_sandbox_runs_and_stops_on_sigterm() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--webhook-header", "X-Secret:abc"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert line["openai_url"].endswith("/v1")
            reply = httpx.get(
                line["whapi_url"] + "/labels",
                headers={"Authorization": f"Bearer {line['whapi_token']}"},
            )
            assert reply.status_code == 200
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=5)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()


async def test_run_sandbox_in_process(nursery: trio.Nursery) -> None:
    urls = await nursery.start(
        lambda task_status: run_sandbox(
            whapi_token="w-token", openai_key="sk-o", task_status=task_status
        )
    )
    assert urls.openai_url.endswith("/v1") and urls.openai.api_key == "sk-o"
    async with httpx.AsyncClient(headers={"Authorization": "Bearer w-token"}) as c:
        assert (await c.get(urls.whapi_url + "/labels")).is_success
    assert len(urls.whapi.calls) == 1
