"""FakeOpenAI through the official openai SDK (and httpx) under trio."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

from sandbox.openai import FakeOpenAI, ResponseRequest
from sandbox.testing import start_fake_openai

MODEL = "gpt-test"


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake_openai.url, api_key=fake_openai.api_key, max_retries=0, timeout=5
    ) as c:
        yield c


@pytest.fixture
async def raw(fake_openai: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {fake_openai.api_key}"}
    async with httpx.AsyncClient(base_url=fake_openai.url, headers=headers, timeout=5) as c:
        yield c


async def test_auth_401(fake_openai: FakeOpenAI) -> None:
    async with openai.AsyncOpenAI(base_url=fake_openai.url, api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as info:
            await c.conversations.create()
    assert info.value.code == "invalid_api_key"
    assert fake_openai.conversations == {}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hola"}, "model", "missing_required_parameter"),
        ({"model": MODEL, "input": "x", "foo": 1}, "foo", "unknown_parameter"),
        ({"model": MODEL, "input": 3}, "input", None),
        ({"model": MODEL, "input": [{"role": "robot", "content": "x"}]}, "input[0].role", None),
        (
            {"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            "input[0].content[0]",
            None,
        ),
        ({"model": MODEL, "input": "x", "max_output_tokens": 5}, "max_output_tokens", None),
        ({"model": MODEL, "input": "x", "temperature": 3}, "temperature", None),
        ({"model": MODEL, "input": "x", "truncation": "sometimes"}, "truncation", None),
        ({"model": MODEL, "input": "x", "safety_identifier": "u" * 65}, "safety_identifier", None),
        (
            {"model": MODEL, "input": "x", "tools": [{"type": "function", "name": "f"}]},
            "tools[0]",
            None,
        ),
        (
            {"model": MODEL, "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "missing_required_parameter",
        ),
    ],
)
async def test_responses_validation(
    raw: httpx.AsyncClient, fake_openai: FakeOpenAI, body: dict[str, Any], param: str, code: Any
) -> None:
    reply = await raw.post("/responses", json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param), error
    if code is not None:
        assert error["code"] == code
    assert fake_openai.invalid_calls[0].error == error["message"]


async def test_conversation_crud_and_items(client: openai.AsyncOpenAI) -> None:
    conv = await client.conversations.create(
        metadata={"user": "573001234567"},
        items=[{"type": "message", "role": "user", "content": "primero"}],
    )
    assert conv.id.startswith("conv_")
    assert (await client.conversations.retrieve(conv.id)).metadata == {"user": "573001234567"}
    added = await client.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "assistant", "content": "nota del agente"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "b"}]},
        ],
    )
    assert len(added.data) == 2 and added.first_id == added.data[0].id
    asc = await client.conversations.items.list(conv.id, order="asc", limit=2)
    assert [i.content[0].text for i in asc.data] == ["primero", "nota del agente"]
    assert asc.has_more is True
    after = await client.conversations.items.list(conv.id, order="asc", after=asc.data[0].id)
    assert [i.content[0].text for i in after.data] == ["nota del agente", "b"]
    desc = await client.conversations.items.list(conv.id)
    assert desc.data[0].content[0].text == "b"
    deleted = await client.conversations.delete(conv.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        await client.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="x", conversation=conv.id)


async def test_conversation_item_delete(
    client: openai.AsyncOpenAI, raw: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    """DELETE /conversations/{id}/items/{item_id}: the item is gone, the conversation object is
    the answer; an unknown item or conversation is a 404 and a query parameter is unknown."""
    conv = await client.conversations.create()
    await client.responses.create(model=MODEL, input="hola", conversation=conv.id)
    question, answer = fake_openai.conversations[conv.id]
    deleted = await client.conversations.items.delete(question["id"], conversation_id=conv.id)
    assert deleted.id == conv.id and deleted.object == "conversation"
    assert fake_openai.conversations[conv.id] == [answer]
    with pytest.raises(openai.NotFoundError):
        await client.conversations.items.delete(question["id"], conversation_id=conv.id)
    with pytest.raises(openai.NotFoundError):
        await client.conversations.items.delete(answer["id"], conversation_id="conv_nope")
    reply = await raw.delete(f"/conversations/{conv.id}/items/{answer['id']}?include=x")
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "unknown_parameter"
    assert fake_openai.conversations[conv.id] == [answer]
    assert [c.valid for c in fake_openai.calls_to("/items/", method="DELETE")] == [
        True,
        True,
        True,
        False,
    ]


async def test_conversation_limits(raw: httpx.AsyncClient) -> None:
    many = [{"role": "user", "content": str(i)} for i in range(21)]
    assert (await raw.post("/conversations", json={"items": many})).status_code == 400
    metadata = {f"k{i}": "v" for i in range(17)}
    assert (await raw.post("/conversations", json={"metadata": metadata})).status_code == 400
    assert (await raw.post("/conversations", json={"metadata": {"k": 1}})).status_code == 400


async def test_response_on_conversation(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    conv = await client.conversations.create()
    response = await client.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hola"}]}],
        conversation=conv.id,
        instructions="Sé amable",
        safety_identifier="user-hash",
        truncation="auto",
        store=True,
    )
    assert response.output_text == "Recibido: hola"
    assert response.conversation is not None and response.conversation.id == conv.id
    assert response.usage is not None and response.usage.total_tokens > 0
    items = fake_openai.conversations[conv.id]
    assert [(i["role"], i["content"][0]["text"]) for i in items] == [
        ("user", "hola"),
        ("assistant", "Recibido: hola"),
    ]
    assert [r["id"] for r in fake_openai.responses_for(conv.id)] == [response.id]
    again = await client.responses.retrieve(response.id)
    assert again.output_text == "Recibido: hola"
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(
            model=MODEL, input="x", conversation=conv.id, previous_response_id=response.id
        )
    assert info.value.code == "mutually_exclusive_parameters"


async def test_previous_response_chain(client: openai.AsyncOpenAI, fake_openai: FakeOpenAI) -> None:
    seen: list[int] = []

    def responder(request: ResponseRequest) -> str:
        seen.append(len(request.prior_items))
        return "ok"

    fake_openai.responder = responder
    first = await client.responses.create(model=MODEL, input="uno")
    second = await client.responses.create(model=MODEL, input="dos", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert seen == [0, 2]
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model=MODEL, input="x", previous_response_id="resp_nope")


async def test_conversation_locked(client: openai.AsyncOpenAI, fake_openai: FakeOpenAI) -> None:
    conv = await client.conversations.create()
    fake_openai.faults.delay("/v1/responses", 0.3, times=1)
    results: list[Any] = []

    async def ask(text: str) -> None:
        try:
            results.append(
                await client.responses.create(model=MODEL, input=text, conversation=conv.id)
            )
        except openai.BadRequestError as exc:
            results.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "primero")
        await trio.sleep(0.1)
        assert fake_openai.conversations[conv.id] == []  # appended only after completion
        nursery.start_soon(ask, "segundo")
    locked = [r for r in results if isinstance(r, openai.BadRequestError)]
    assert len(locked) == 1
    assert locked[0].code == "conversation_locked"
    assert locked[0].param == "conversation"
    assert "already in progress" in locked[0].message
    assert fake_openai.max_concurrent_per_conversation == 2
    assert len(fake_openai.conversations[conv.id]) == 2
    # The lock is free again.
    await client.responses.create(model=MODEL, input="tercero", conversation=conv.id)
    assert fake_openai.max_concurrent_per_conversation == 2


async def test_function_calling_round_trip(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    async def responder(request: ResponseRequest) -> list[dict[str, Any]] | str:
        await trio.sleep(0)
        if request.function_call_outputs:
            return f"Disponibles: {request.function_call_outputs[0]['output']}"
        return [
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "check_availability",
                "arguments": json.dumps({"date": "2026-12-01"}),
            }
        ]

    fake_openai.responder = responder
    tool = {
        "type": "function",
        "name": "check_availability",
        "description": "Rooms free on a date",
        "parameters": {"type": "object", "properties": {"date": {"type": "string"}}},
        "strict": False,
    }
    conv = await client.conversations.create()
    first = await client.responses.create(
        model=MODEL, input="¿hay cuartos?", conversation=conv.id, tools=[tool]
    )
    (call,) = first.output
    assert call.type == "function_call" and call.call_id == "call_1"
    with pytest.raises(openai.BadRequestError, match="No tool output found"):
        await client.responses.create(model=MODEL, input="otra cosa", conversation=conv.id)
    with pytest.raises(openai.BadRequestError, match="No tool call found"):
        await client.responses.create(
            model=MODEL,
            conversation=conv.id,
            input=[{"type": "function_call_output", "call_id": "call_x", "output": "?"}],
        )
    second = await client.responses.create(
        model=MODEL,
        conversation=conv.id,
        tools=[tool],
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "3 cuartos"}],
    )
    assert second.output_text == "Disponibles: 3 cuartos"
    types = [i["type"] for i in fake_openai.conversations[conv.id]]
    assert types == ["message", "function_call", "function_call_output", "message"]


async def test_default_responder_mentions_tool_output(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model=MODEL,
        input=[
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42 noches"},
        ],
    )
    assert "42 noches" in response.output_text


async def test_fault_status_and_retry_after(
    raw: httpx.AsyncClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.faults.add("/responses", status=429, retry_after=0.1, times=1)
    reply = await raw.post("/responses", json={"model": MODEL, "input": "x"})
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "0.1"
    assert reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert (await raw.post("/responses", json={"model": MODEL, "input": "x"})).status_code == 200


async def test_sdk_retries_through_fault(fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.add("/responses", status=500, retry_after=0, times=1)
    async with openai.AsyncOpenAI(
        base_url=fake_openai.url, api_key=fake_openai.api_key, max_retries=1
    ) as c:
        response = await c.responses.create(model=MODEL, input="hola")
    assert response.output_text == "Recibido: hola"
    assert [c.status for c in fake_openai.calls_to("/responses")] == [500, 200]


async def test_fault_after_processing_appends_turn(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    conv = await client.conversations.create()
    fake_openai.faults.add("/responses", status=500, after_processing=True)
    with pytest.raises(openai.InternalServerError):
        await client.responses.create(model=MODEL, input="hola", conversation=conv.id)
    assert len(fake_openai.conversations[conv.id]) == 2
    assert len(fake_openai.responses_for(conv.id)) == 1


async def test_transcription_multipart(client: openai.AsyncOpenAI, fake_openai: FakeOpenAI) -> None:
    audio = b"OggS\x00\x02fake-voice-note"
    fake_openai.transcripts[hashlib.sha256(audio).hexdigest()] = "quiero reservar"
    result = await client.audio.transcriptions.create(
        file=("nota.ogg", audio, "audio/ogg"), model="gpt-transcribe", language="es"
    )
    assert result.text == "quiero reservar"
    call = fake_openai.calls[-1]
    assert call.form is not None
    assert call.form["file"] == {
        "filename": "nota.ogg",
        "content_type": "audio/ogg",
        "size": len(audio),
    }
    assert call.form["model"] == "gpt-transcribe"
    default = await client.audio.transcriptions.create(
        file=("otra.mp3", b"ID3abc", "audio/mpeg"), model="whisper-1", response_format="text"
    )
    assert default.strip() == "transcripción de prueba"
    with pytest.raises(openai.BadRequestError):
        await client.audio.transcriptions.create(
            file=("nota.txt", audio, "text/plain"), model="gpt-transcribe"
        )
    with pytest.raises(openai.BadRequestError):
        await client.audio.transcriptions.create(file=("nota.ogg", audio), model="tiny-whisper")
    with pytest.raises(openai.BadRequestError):
        await client.audio.transcriptions.create(
            file=("nota.ogg", audio), model="gpt-4o-transcribe", response_format="srt"
        )


async def test_speech(client: openai.AsyncOpenAI, raw: httpx.AsyncClient) -> None:
    opus = await client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="nova", input="hola", response_format="opus"
    )
    assert opus.content.startswith(b"OggS")
    mp3 = await raw.post(
        "/audio/speech", json={"model": "tts-1", "voice": {"id": "voice_1"}, "input": "hola"}
    )
    assert mp3.headers["content-type"] == "audio/mpeg"
    for bad in (
        {"model": "tts-1", "voice": "nova", "input": ""},
        {"model": "tts-1", "voice": "nova", "input": "x" * 4097},
        {"model": "tts-1", "voice": "robot", "input": "x"},
        {"model": "tts-9", "voice": "nova", "input": "x"},
        {"model": "tts-1", "voice": "nova", "input": "x", "speed": 5},
        {"model": "tts-1", "voice": "nova", "input": "x", "response_format": "ogg"},
        {"model": "tts-1", "voice": "nova", "input": "x", "extra": True},
    ):
        assert (await raw.post("/audio/speech", json=bad)).status_code == 400, bad


async def test_unknown_path_404(raw: httpx.AsyncClient) -> None:
    reply = await raw.get("/assistants")
    assert reply.status_code == 404
    assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_control_api(nursery: trio.Nursery) -> None:
    fake = await start_fake_openai(nursery, api_key="sk-other")
    base = fake.base_url
    async with httpx.AsyncClient(base_url=base) as control:
        rule = {"path": "/v1/conversations$", "status": 503, "times": 1}
        assert (await control.post("/__fake__/faults", json=rule)).is_success
        async with openai.AsyncOpenAI(base_url=fake.url, api_key="sk-other", max_retries=0) as c:
            with pytest.raises(openai.InternalServerError):
                await c.conversations.create()
            await c.conversations.create()
        calls = (await control.get("/__fake__/calls")).json()["calls"]
        assert [c["status"] for c in calls] == [503, 200]
        assert len((await control.get("/__fake__/conversations")).json()["conversations"]) == 1
        assert (await control.post("/__fake__/reset")).is_success
        assert fake.calls == []


async def test_files_and_vector_store_bodies_are_validated(
    raw: httpx.AsyncClient, client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    store = await client.vector_stores.create(name="docs")
    bad = [
        ("/vector_stores", {"name": "x", "color": "red"}, "color"),
        (f"/vector_stores/{store.id}/files", {}, "file_id"),
        (
            f"/vector_stores/{store.id}/files",
            {"file_id": "f", "attributes": {"k": []}},
            "attributes",
        ),
    ]
    for path, body, param in bad:
        reply = await raw.post(path, json=body)
        assert reply.status_code == 400, (path, reply.text)
        assert reply.json()["error"]["param"].startswith(param)
    no_purpose = await raw.post("/files", files={"file": ("a.txt", b"hola")})
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["param"] == "purpose"
    assert len(fake_openai.invalid_calls) == 4
    missing = await raw.post(f"/vector_stores/{store.id}/files", json={"file_id": "file-nope"})
    assert missing.status_code == 404


async def test_indexing_takes_its_time_and_fails_by_name(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.knowledge.index_seconds = 0.2
    fake_openai.knowledge.fail_pattern = re.compile(r"^malo")
    store = await client.vector_stores.create(name="docs")
    good = await client.files.create(file=("bueno.md", b"Hola."), purpose="assistants")
    bad = await client.files.create(file=("malo.md", b"Hola."), purpose="assistants")
    image = await client.files.create(file=("foto.png", b"\x89PNG"), purpose="assistants")
    for uploaded in (good, bad, image):
        attached = await client.vector_stores.files.create(store.id, file_id=uploaded.id)
        assert attached.status == "in_progress"
    assert (await client.vector_stores.retrieve(store.id)).file_counts.in_progress == 3
    await trio.sleep(0.25)
    states = {f.id: f for f in (await client.vector_stores.files.list(store.id)).data}
    assert states[good.id].status == "completed" and states[good.id].last_error is None
    assert states[bad.id].status == "failed"
    assert states[bad.id].last_error.code == "invalid_file"
    assert states[image.id].last_error.code == "unsupported_file"
    counts = (await client.vector_stores.retrieve(store.id)).file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 2, 3)
    await client.vector_stores.files.delete(bad.id, vector_store_id=store.id)
    await client.files.delete(bad.id)
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(bad.id)


async def test_file_search_quotes_the_matching_sentence_with_a_citation(
    client: openai.AsyncOpenAI,
) -> None:
    store = await client.vector_stores.create(name="docs")
    text = "Bienvenidos.\nLa piscina abre de 8 a 20 horas. El gimnasio cierra los lunes.\n"
    doc = await client.files.create(file=("faq.md", text.encode()), purpose="assistants")
    await client.vector_stores.files.create(store.id, file_id=doc.id)
    tools: Any = [{"type": "file_search", "vector_store_ids": [store.id]}]
    found = await client.responses.create(
        model=MODEL, input="¿A qué hora abre la PISCINA?", tools=tools
    )
    assert [item.type for item in found.output] == ["file_search_call", "message"]
    part = found.output[1].content[0]
    assert part.text == "Según nuestra información: La piscina abre de 8 a 20 horas.【4:0†faq.md】"
    (citation,) = part.annotations
    assert (citation.type, citation.file_id, citation.filename) == (
        "file_citation",
        doc.id,
        "faq.md",
    )
    assert citation.index == part.text.index("【")
    plain = await client.responses.create(model=MODEL, input="¿Tienen wifi?", tools=tools)
    assert [item.type for item in plain.output] == ["message"]
    assert plain.output_text == "Recibido: ¿Tienen wifi?"
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(
            model=MODEL, input="x", tools=[{"type": "file_search", "vector_store_ids": ["vs_no"]}]
        )


async def test_files_and_stores_survive_a_restart(nursery: trio.Nursery, tmp_path: Path) -> None:
    state = tmp_path / "openai.json"
    first = FakeOpenAI("k", state_file=state)
    url = await nursery.start(first.serve)
    async with openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0) as c:
        store = await c.vector_stores.create(name="docs")
        doc = await c.files.create(
            file=("a.txt", b"Las mascotas pagan aparte."), purpose="assistants"
        )
        await c.vector_stores.files.create(store.id, file_id=doc.id)
    first.save_state()
    again = FakeOpenAI("k", state_file=state)
    assert again.knowledge.files[doc.id].data == b"Las mascotas pagan aparte."
    hits = again.knowledge.search(
        [{"type": "file_search", "vector_store_ids": [store.id]}], "¿y las mascotas?"
    )
    assert [(h.filename, h.text) for h in hits] == [("a.txt", "Las mascotas pagan aparte.")]
