"""Tools the model can call: a registry, the built-ins, and a business's own.

A tool is a name, a description, a JSON-schema for its arguments and an async handler. Tools
are declared ``strict`` (OpenAI then generates arguments that match the schema), so a schema
must meet strict mode's rules: every object lists all its properties as ``required`` (an
optional one is typed ``[..., "null"]``) and sets ``additionalProperties: false``; the
registry refuses a tool whose schema does not, at start. The arguments of every call are
checked against the schema before the handler runs anyway: invalid ones go back to the model
as an error output naming the problem. The turn runs the Responses API's function-calling
loop (``customer.turn``): each call runs under its own deadline and any error goes back to the
model as the tool's output, so a broken tool makes the model say so instead of breaking the
turn. A business adds tools with a module path
in ``WABOT_TOOLS_MODULE``; the module defines ``register(registry: ToolRegistry) -> None``.

A tool may carry an ``interim`` message: when the model asks for several calls at once and one
of them is such a tool, the turn sends that message to the customer first (once per turn), so
a slow round does not read as silence.

Built-in:

* ``escalate_to_human`` labels the chat (``WABOT_ESCALATION_LABEL_ID``), notifies the operator
  chat (``WABOT_OPERATOR_CHAT``) with the customer's name, number and a summary, and pauses the
  bot for that chat; the output says honestly which of those steps failed.
* ``get_conversation_context`` returns the chat's recent WhatsApp history, formatted.
* ``check_availability`` (``actors.booking.tool``) when Beds24 credentials are set: it needs
  a client, so ``actors.wiring`` builds it and hands it to ``load_registry``.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import trio
from jsonschema import Draft202012Validator

from actors.settings import Settings
from actors.upstream.whapi import WhapiClient, WhapiError

log = logging.getLogger("actors.tools")


@attrs.frozen
class ToolContext:
    """What a tool may know and do for the customer of the current turn."""

    user_id: str
    chat_id: str
    customer_name: str
    settings: Settings
    whapi: WhapiClient
    #: Pause the bot in this chat (a human takes over); provided by the user actor.
    pause: Callable[[], Awaitable[None]]


Handler = Callable[[ToolContext, dict[str, Any]], Awaitable[Any]]


def strict_problems(schema: Any, where: str = "parameters") -> list[str]:
    """Why ``schema`` is not valid for OpenAI's strict function calling (empty: it is)."""
    if not isinstance(schema, dict):
        return [f"{where}: a schema must be an object"]
    problems: list[str] = []
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "object" in types:
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            return [f"{where}.properties: must be an object"]
        if schema.get("additionalProperties") is not False:
            problems.append(f"{where}: additionalProperties must be false")
        missing = sorted(set(properties) - set(schema.get("required", [])))
        if missing:
            problems.append(
                f"{where}: every property must be required (type an optional one "
                f'["…", "null"]): {", ".join(missing)}'
            )
        for name, sub in properties.items():
            problems.extend(strict_problems(sub, f"{where}.{name}"))
    if "array" in types and "items" in schema:
        problems.extend(strict_problems(schema["items"], f"{where}[]"))
    for keyword in ("anyOf",):
        for index, sub in enumerate(schema.get(keyword, [])):
            problems.extend(strict_problems(sub, f"{where}.{keyword}[{index}]"))
    return problems


@attrs.frozen
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler
    timeout: float | None = None
    #: Sent to the customer before a round of several calls that includes this tool.
    interim: str | None = None
    _validator: Draft202012Validator = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        Draft202012Validator.check_schema(self.parameters)
        problems = strict_problems(self.parameters)
        if problems:
            raise ValueError(f"tool {self.name!r} is not strict: {'; '.join(problems)}")
        object.__setattr__(self, "_validator", Draft202012Validator(self.parameters))

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "strict": True,
        }

    def argument_errors(self, args: dict[str, Any]) -> list[str]:
        """What is wrong with ``args`` for this tool's schema, one line per problem."""
        return [
            f"{'/'.join(str(p) for p in error.absolute_path) or 'arguments'}: {error.message}"
            for error in sorted(self._validator.iter_errors(args), key=lambda e: list(e.path))
        ]


@attrs.frozen
class ToolResult:
    output: str
    ok: bool


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is registered twice")
        self._tools[tool.name] = tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    def interim(self, names: Sequence[str]) -> str | None:
        """The message to send before a round of calls of ``names``: the first ``interim`` of
        those tools, when the round has several calls; None otherwise."""
        if len(names) < 2:
            return None
        for name in names:
            tool = self._tools.get(name)
            if tool is not None and tool.interim:
                return tool.interim
        return None

    async def call(
        self, name: str, arguments: str, context: ToolContext, *, seconds: float
    ) -> ToolResult:
        """Run one call; never raises (errors become the output the model reads)."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(json.dumps({"error": f"unknown tool {name!r}"}), False)
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            return ToolResult(json.dumps({"error": f"invalid arguments: {exc}"}), False)
        errors = tool.argument_errors(args)
        if errors:
            log.warning("tool %s: invalid arguments for %s: %s", name, context.user_id, errors)
            return ToolResult(
                json.dumps({"error": "invalid arguments", "problems": errors}, ensure_ascii=False),
                False,
            )
        try:
            with trio.fail_after(tool.timeout or seconds):
                output = await tool.handler(context, args)
        except trio.TooSlowError:
            log.warning("tool %s timed out for %s", name, context.user_id)
            return ToolResult(json.dumps({"error": "the tool timed out"}), False)
        except Exception as exc:
            log.warning("tool %s failed for %s: %r", name, context.user_id, exc)
            return ToolResult(json.dumps({"error": f"the tool failed: {exc}"}), False)
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        return ToolResult(text, True)


# -- built-ins ----------------------------------------------------------------------------------


async def escalate_to_human(context: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    settings = context.settings
    summary = str(args.get("summary") or "").strip() or "(sin resumen)"
    reason = str(args.get("reason") or "").strip() or "solicitud del cliente"
    result: dict[str, Any] = {"labeled": False, "operator_notified": False, "bot_paused": False}
    problems: list[str] = []

    if settings.escalation_label_id:
        try:
            await context.whapi.assign_label(settings.escalation_label_id, context.chat_id)
            result["labeled"] = True
        except WhapiError as exc:
            problems.append(f"no se pudo etiquetar el chat: {exc}")
    if settings.operator_chat:
        notice = (
            "🔔 Atención humana requerida\n"
            f"Cliente: {context.customer_name}\n"
            f"Número: +{context.user_id}\n"
            f"Motivo: {reason}\n"
            f"Resumen: {summary}"
        )
        try:
            await context.whapi.send_text(settings.operator_chat, notice)
            result["operator_notified"] = True
        except WhapiError as exc:
            problems.append(f"no se pudo avisar al equipo: {exc}")
    else:
        problems.append("no hay un chat de operador configurado (WABOT_OPERATOR_CHAT)")
    if result["operator_notified"]:
        # Pause only when a human actually knows: otherwise the customer would be left alone.
        await context.pause()
        result["bot_paused"] = True
    result["escalated"] = result["operator_notified"]
    if problems:
        result["problems"] = problems
        result["instruction"] = (
            "La escalación no se completó: dilo al cliente con honestidad y ofrece otra vía."
        )
    return result


async def get_conversation_context(context: ToolContext, args: dict[str, Any]) -> str:
    count = args.get("count")
    limit = context.settings.history_count
    count = max(1, min(int(count), limit)) if isinstance(count, int | float) else limit
    messages = await context.whapi.list_messages(context.chat_id, count=count)
    lines = []
    for message in reversed(messages):  # oldest first
        stamp = message.get("timestamp")
        when = (
            datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M")
            if isinstance(stamp, int | float)
            else "?"
        )
        who = "Bot/Agente" if message.get("from_me") else "Cliente"
        kind = message.get("type")
        text = (
            message.get("text", {}).get("body") if isinstance(message.get("text"), dict) else None
        )
        lines.append(f"[{when}] {who}: {text if text else f'[{kind}]'}")
    return "\n".join(lines) if lines else "(no hay mensajes anteriores)"


BUILTINS = (
    Tool(
        name="escalate_to_human",
        description=(
            "Pasa la conversación a una persona del equipo: pagos, quejas, daños, avisos de "
            "llegada o salida, o cuando el cliente pide hablar con alguien."
        ),
        parameters={
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Motivo breve"},
                "summary": {"type": "string", "description": "Resumen para el equipo"},
            },
            "required": ["reason", "summary"],
            "additionalProperties": False,
        },
        handler=escalate_to_human,
    ),
    Tool(
        name="get_conversation_context",
        description="Devuelve los mensajes recientes de este chat de WhatsApp.",
        parameters={
            "type": "object",
            "properties": {
                "count": {
                    "type": ["integer", "null"],
                    "description": "Cuántos mensajes (1 a 100; null: los de siempre)",
                }
            },
            "required": ["count"],
            "additionalProperties": False,
        },
        handler=get_conversation_context,
    ),
)


def load_registry(settings: Settings, extra: Sequence[Tool] = ()) -> ToolRegistry:
    """The built-ins, then ``extra`` (built-ins that need a client), then the business's own."""
    registry = ToolRegistry()
    for tool in (*BUILTINS, *extra):
        registry.add(tool)
    if settings.tools_module:
        module = importlib.import_module(settings.tools_module)
        register = getattr(module, "register", None)
        if not callable(register):
            raise ValueError(f"WABOT_TOOLS_MODULE {settings.tools_module}: no register(registry)")
        register(registry)
    return registry
