"""Function tools are strict: schemas meet strict mode at registration, and every call's
arguments are checked against the schema before the handler runs."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from actors.tools import BUILTINS, Tool, ToolContext, ToolRegistry, strict_problems


async def _echo(context: ToolContext, args: dict[str, Any]) -> Any:
    return {"echo": args}


def booking_tool() -> Tool:
    return Tool(
        name="check_availability",
        description="Availability for dates",
        parameters={
            "type": "object",
            "properties": {
                "start": {"type": "string"},
                "nights": {"type": ["integer", "null"]},
            },
            "required": ["start", "nights"],
            "additionalProperties": False,
        },
        handler=_echo,
    )


def test_builtin_tools_are_strict_and_declared_so() -> None:
    for tool in BUILTINS:
        assert strict_problems(tool.parameters) == []
        assert tool.schema()["strict"] is True


@pytest.mark.parametrize(
    ("parameters", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, "additionalProperties"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": False,
            },
            "every property must be required",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "inner": {"type": "object", "properties": {"b": {"type": "string"}}}
                },
                "required": ["inner"],
                "additionalProperties": False,
            },
            "parameters.inner: additionalProperties",
        ),
    ],
)
def test_a_schema_that_is_not_strict_is_refused_at_registration(
    parameters: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match="is not strict") as caught:
        Tool(name="t", description="d", parameters=parameters, handler=_echo)
    assert problem in str(caught.value)


async def test_invalid_arguments_go_back_to_the_model_and_the_handler_never_runs() -> None:
    ran: list[dict[str, Any]] = []

    async def handler(context: ToolContext, args: dict[str, Any]) -> Any:
        ran.append(args)
        return "ok"

    registry = ToolRegistry()
    registry.add(Tool(**{**_fields(booking_tool()), "handler": handler}))
    context: Any = SimpleNamespace(user_id="573000000001")
    for arguments, expected in (
        ('{"start": 5, "nights": 2}', "start: 5 is not of type 'string'"),
        ('{"start": "2026-12-01"}', "'nights' is a required property"),
        ('{"start": "x", "nights": null, "extra": 1}', "Additional properties"),
    ):
        result = await registry.call("check_availability", arguments, context, seconds=1)
        assert not result.ok
        body = json.loads(result.output)
        assert body["error"] == "invalid arguments"
        assert any(expected in problem for problem in body["problems"]), body
    assert ran == []
    good = await registry.call(
        "check_availability", '{"start": "2026-12-01", "nights": null}', context, seconds=1
    )
    assert good.ok and ran == [{"start": "2026-12-01", "nights": None}]


def _fields(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "timeout": tool.timeout,
    }
