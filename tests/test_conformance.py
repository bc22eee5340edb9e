"""Conformance: requests the fakes accept must also satisfy the vendors' full published specs.

The vendor files live outside the repository (``../shared/vendor/`` beside the checkout, or
``$WABOT_SHARED_DIR/vendor``) and are never copied into it; without them these tests skip.
`check_calls_against_vendor_specs` is the reusable core: feed it the calls a fake recorded (for
example during a full wabot run) and it returns one line per problem.

Notes on reading the vendor schemas with JSON Schema: OpenAPI ``discriminator`` has no JSON
Schema meaning, and several unions overlap (in OpenAI's spec a user message matches both
``EasyInputMessage`` and ``InputMessage``; Whapi's ``media`` is a ``oneOf`` of four plain
strings), so every ``oneOf`` is read as ``anyOf``.
Multipart fields arrive as strings and are coerced (numbers, booleans, ``name[]`` lists).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import jsonschema
import openai
import pytest
import referencing
import referencing.jsonschema
import trio

from sandbox.base import Call
from sandbox.openai import FakeOpenAI
from sandbox.whapi import FakeWhapi

OPENAI_SPEC_URI = "urn:vendor:openai-openapi"
#: Paths the fakes serve that are not vendor REST endpoints (media links are plain downloads).
NON_VENDOR_PATHS = (re.compile(r"^/files/"),)


def shared_vendor_dir() -> Path | None:
    """``$WABOT_SHARED_DIR/vendor`` or ``../shared/vendor`` beside the repository, if present."""
    env = os.environ.get("WABOT_SHARED_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    vendor = base / "vendor"
    if (vendor / "openai-openapi.yaml").is_file() and (vendor / "whapi-manifest.json").is_file():
        return vendor
    return None


def _one_of_as_any_of(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            ("anyOf" if key == "oneOf" else key): _one_of_as_any_of(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_one_of_as_any_of(value) for value in node]
    return node


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@attrs.define
class VendorSpecs:
    """The parsed vendor specs, ready to validate recorded calls."""

    whapi: list[dict[str, Any]]
    openai: dict[str, Any]
    registry: referencing.Registry[Any]

    @classmethod
    def load(cls, vendor: Path) -> VendorSpecs:
        """Parse ``whapi-manifest.json`` and ``openai-openapi.yaml``."""
        yaml = pytest.importorskip("yaml", reason="pyyaml is needed to read the OpenAI spec")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with (vendor / "openai-openapi.yaml").open(encoding="utf-8") as handle:
            spec = _one_of_as_any_of(yaml.load(handle, Loader=loader))
        whapi = _one_of_as_any_of(
            json.loads((vendor / "whapi-manifest.json").read_text(encoding="utf-8"))
        )
        resource = referencing.Resource.from_contents(
            spec, default_specification=referencing.jsonschema.DRAFT202012
        )
        registry = referencing.Registry().with_resource(OPENAI_SPEC_URI, resource)
        return cls(whapi=whapi, openai=spec, registry=registry)

    # ------------------------------------------------------------------ Whapi
    def whapi_tool(self, method: str, path: str) -> dict[str, Any] | None:
        """The manifest entry for a request (the most literal path template wins)."""
        candidates = [
            tool
            for tool in self.whapi
            if tool["http"]["method"] == method
            and _template_regex(tool["http"]["path"]).match(path)
        ]
        candidates.sort(key=lambda tool: tool["http"]["path"].count("{"))
        return candidates[0] if candidates else None

    def check_whapi(self, call: Call) -> Iterator[str]:
        """Problems of one recorded Whapi call against the manifest."""
        where = f"whapi {call.method} {call.path}"
        if any(p.search(call.path) for p in NON_VENDOR_PATHS):
            return
        tool = self.whapi_tool(call.method, call.path)
        if tool is None:
            yield f"{where}: no such endpoint in whapi-manifest.json"
            return
        params = {p["name"]: p for p in tool["http"].get("queryParams", [])}
        for name, value in call.query.items():
            param = params.get(name)
            if param is None:
                yield f"{where}: unknown query parameter {name!r}"
            elif "enum" in param and value not in param["enum"]:
                yield f"{where}: query {name}={value!r} not in {param['enum']}"
            elif param.get("type") in ("number", "integer") and not _is_number(value):
                yield f"{where}: query {name}={value!r} is not a number"
        schema = tool["http"]["requestBody"].get("schema")
        if schema is None:
            if call.json not in (None, {}):
                yield f"{where}: endpoint takes no body, got {call.json!r}"
            return
        yield from _errors(where, jsonschema.Draft202012Validator(schema), call.json)

    # ------------------------------------------------------------------ OpenAI
    def openai_operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """(path template, operation object) for a request path under ``/v1``."""
        api_path = path.removeprefix("/v1")
        matches = [
            (template, item[method.lower()])
            for template, item in self.openai["paths"].items()
            if method.lower() in item and _template_regex(template).match(api_path)
        ]
        matches.sort(key=lambda match: match[0].count("{"))
        return matches[0] if matches else None

    def check_openai(self, call: Call) -> Iterator[str]:
        """Problems of one recorded OpenAI call against the OpenAPI document."""
        where = f"openai {call.method} {call.path}"
        found = self.openai_operation(call.method, call.path)
        if found is None:
            yield f"{where}: no such operation in openai-openapi.yaml"
            return
        template, operation = found
        query_params = {
            p["name"]: p for p in operation.get("parameters", []) if p.get("in") == "query"
        }
        for name, value in call.query.items():
            param = query_params.get(name)
            if param is None:
                yield f"{where}: unknown query parameter {name!r}"
                continue
            validator = jsonschema.Draft202012Validator(
                param.get("schema", {}), registry=self.registry
            )
            coerced = int(value) if value.lstrip("-").isdigit() else value
            yield from _errors(f"{where} query {name}", validator, coerced)
        content = (operation.get("requestBody") or {}).get("content", {})
        if not content:
            return
        if "multipart/form-data" in content:
            media_type, data = "multipart/form-data", _coerce_form(call.form or {})
        else:
            media_type, data = "application/json", call.json
        if media_type not in content:
            yield f"{where}: vendor expects {sorted(content)}, got {media_type}"
            return
        pointer = _pointer(
            "paths", template, call.method.lower(), "requestBody", "content", media_type, "schema"
        )
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{OPENAI_SPEC_URI}#/{pointer}"}, registry=self.registry
        )
        yield from _errors(where, validator, data)

    def check_realtime_event(self, event: Any) -> Iterator[str]:
        """Problems of one Realtime client event (websocket) against its OpenAPI schema."""
        kind = event.get("type", "") if isinstance(event, dict) else ""
        name = "RealtimeClientEvent" + "".join(p.title() for p in re.split(r"[._]", kind))
        where = f"openai realtime event {kind!r}"
        if name not in self.openai["components"]["schemas"]:
            yield f"{where}: no schema {name} in openai-openapi.yaml"
            return
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"{OPENAI_SPEC_URI}#/components/schemas/{name}"}, registry=self.registry
        )
        yield from _errors(where, validator, event)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _coerce_form(form: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in form.items():
        if isinstance(value, dict):  # a file part
            out[key] = f"<binary {value.get('filename')}>"
            continue
        if key.endswith("[]"):
            out[key[:-2]] = value if isinstance(value, list) else [value]
            continue
        if value in ("true", "false"):
            out[key] = value == "true"
        elif re.fullmatch(r"-?\d+(\.\d+)?", value):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def _errors(where: str, validator: Any, data: Any) -> Iterator[str]:
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        yield f"{where}: {path}: {error.message[:300]}"


def check_calls_against_vendor_specs(
    whapi_calls: Iterable[Call],
    openai_calls: Iterable[Call],
    *,
    vendor_dir: Path | None = None,
    specs: VendorSpecs | None = None,
) -> list[str]:
    """Validate the valid recorded calls of the fakes against the vendors' full specs.

    Calls the fakes rejected (``valid`` false) and control-API calls are skipped. Returns one
    human-readable line per problem (empty when everything conforms).
    """
    if specs is None:
        vendor = vendor_dir or shared_vendor_dir()
        if vendor is None:
            raise FileNotFoundError("vendor specs not found (set WABOT_SHARED_DIR)")
        specs = VendorSpecs.load(vendor)
    problems: list[str] = []
    for call in whapi_calls:
        if call.valid and not call.path.startswith("/__fake__/"):
            problems.extend(specs.check_whapi(call))
    for call in openai_calls:
        if call.valid and not call.path.startswith("/__fake__/"):
            problems.extend(specs.check_openai(call))
    return problems


@pytest.fixture(scope="module")
def specs() -> VendorSpecs:
    vendor = shared_vendor_dir()
    if vendor is None:
        pytest.skip(
            "vendor specs not found: no ../shared/vendor beside the repository and no "
            "WABOT_SHARED_DIR; conformance against the full vendor specs is skipped"
        )
    return VendorSpecs.load(vendor)


USER = "573001234567"
CHAT = f"{USER}@s.whatsapp.net"


async def exercise_whapi(fake: FakeWhapi) -> None:
    """A representative request for every endpoint FakeWhapi accepts."""
    fake.set_chat(CHAT, name="Ana")
    fake.add_media("m1", b"OggS", "audio/ogg")
    headers = {"Authorization": f"Bearer {fake.token}"}
    async with httpx.AsyncClient(base_url=fake.url, headers=headers) as c:
        sent = await c.post(
            "/messages/text",
            json={"to": CHAT, "body": "Hola 👋", "typing_time": 3, "no_link_preview": True},
        )
        quoted = sent.json()["message"]["id"]
        await c.post(
            "/messages/text",
            json={"to": USER, "body": "respuesta", "quoted": quoted, "mentions": [USER]},
        )
        await c.post(
            "/messages/voice",
            json={
                "to": CHAT,
                "media": "data:audio/ogg;base64,T2dnUw==",
                "mime_type": "audio/ogg; codecs=opus",
                "seconds": 2,
                "recording_time": 2,
            },
        )
        await c.post(
            "/messages/image",
            json={"to": CHAT, "media": "https://example.invalid/x.jpg", "caption": "foto"},
        )
        await c.post(
            "/messages/document",
            json={
                "to": CHAT,
                "media": "JVBERi0=",
                "mime_type": "application/pdf",
                "filename": "tarifas.pdf",
            },
        )
        await c.put(f"/presences/{CHAT}", json={"presence": "typing", "delay": 0})
        await c.put(f"/presences/{CHAT}", json={"presence": "recording"})
        await c.put(f"/presences/{CHAT}", json={"presence": "pause"})
        await c.put("/presences/me", json={"presence": "online"})
        await c.post(f"/presences/{USER}")
        await c.get(f"/chats/{CHAT}")
        await c.get(f"/messages/list/{CHAT}", params={"count": 10})
        await c.get("/media/m1")
        await c.get("/labels")
        await c.post(f"/labels/1/{CHAT}")
        await c.delete(f"/labels/1/{CHAT}")
        await c.get("/health")
    await c.aclose()
    async with httpx.AsyncClient() as anon:
        await anon.get(f"{fake.base_url}/files/m1")


async def exercise_openai(fake: FakeOpenAI) -> None:
    """A representative request for every endpoint FakeOpenAI accepts (through the SDK)."""
    async with openai.AsyncOpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0) as c:
        conv = await c.conversations.create(
            metadata={"wa_user": USER},
            items=[{"type": "message", "role": "developer", "content": "Cliente: Ana"}],
        )
        await c.conversations.retrieve(conv.id)
        await c.conversations.update(conv.id, metadata={"wa_user": USER, "v": "2"})
        await c.conversations.items.create(
            conv.id,
            items=[
                {"type": "message", "role": "assistant", "content": "(agente) Hola Ana"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "gracias"}],
                },
            ],
        )
        listed = await c.conversations.items.list(conv.id, limit=20, order="asc")
        await c.conversations.items.delete(listed.data[0].id, conversation_id=conv.id)
        tool = {
            "type": "function",
            "name": "check_availability",
            "description": "Free rooms",
            "parameters": {
                "type": "object",
                "properties": {"date": {"type": "string"}},
                "required": ["date"],
                "additionalProperties": False,
            },
            "strict": True,
        }
        first = await c.responses.create(
            model="gpt-test",
            conversation=conv.id,
            instructions="Eres un asistente.",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "¿Qué ves?"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/jpeg;base64,/9j/4AAQ",
                            "detail": "auto",
                        },
                    ],
                }
            ],
            tools=[tool],
            tool_choice="auto",
            store=True,
            truncation="auto",
            max_output_tokens=800,
            safety_identifier="a1b2c3",
            metadata={"turn": "1"},
            temperature=0.7,
            parallel_tool_calls=False,
        )
        await c.responses.create(model="gpt-test", input="seguimos", previous_response_id=first.id)
        await c.responses.create(
            model="gpt-test",
            input=[
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": '{"ok": true}'},
            ],
            conversation={"id": conv.id},
        )
        await c.responses.retrieve(first.id)
        await c.audio.transcriptions.create(
            file=("voz.ogg", b"OggS\x00voice", "audio/ogg"),
            model="gpt-transcribe",
            language="es",
            response_format="json",
            prompt="Reservas",
        )
        await c.audio.speech.create(
            model="gpt-4o-mini-tts",
            voice="coral",
            input="Hola",
            response_format="opus",
            speed=1.1,
            instructions="Cálido",
        )
        await c.conversations.delete(conv.id)


async def test_fake_accepted_requests_conform_to_vendor_specs(
    specs: VendorSpecs, fake_whapi: FakeWhapi, fake_openai: FakeOpenAI
) -> None:
    await exercise_whapi(fake_whapi)
    await exercise_openai(fake_openai)
    assert fake_whapi.invalid_calls == []
    assert fake_openai.invalid_calls == []
    assert all(call.status < 400 or call.status == 409 for call in fake_whapi.calls)
    assert all(call.status < 400 for call in fake_openai.calls)
    exercised = {(c.method, c.path.split("/")[1]) for c in fake_whapi.calls}
    assert len(exercised) >= 8
    problems = await trio.to_thread.run_sync(
        lambda: check_calls_against_vendor_specs(fake_whapi.calls, fake_openai.calls, specs=specs)
    )
    assert problems == []


def _call(method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Call:
    return Call(method=method, path=path, query=query or {}, headers={}, json=body)


def test_checker_flags_nonconforming_calls(specs: VendorSpecs) -> None:
    bad_whapi = [
        _call("PUT", f"/presences/{CHAT}", {"presence": "paused"}),
        _call("POST", "/messages/text", {"to": CHAT, "body": "x", "typing_time": 90}),
        _call("POST", "/teleport/now", {"to": CHAT}),
        _call("GET", f"/messages/list/{CHAT}", query={"sort": "sideways"}),
    ]
    bad_openai = [
        _call("POST", "/v1/responses", {"model": "m", "input": "x", "max_output_tokens": 3}),
        _call("POST", "/v1/audio/speech", {"model": "tts-1", "input": "x"}),
        _call("POST", "/v1/conversations/conv_1/items", {}),
        _call("GET", "/v1/conversations/conv_1/items", query={"order": "random"}),
    ]
    problems = check_calls_against_vendor_specs(bad_whapi, bad_openai, specs=specs)
    assert len(problems) == len(bad_whapi) + len(bad_openai), "\n".join(problems)
