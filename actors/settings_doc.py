"""What every setting means: the one source of ``wabot settings``, the README's tables and
``.env.example``.

``MEANINGS`` holds a line per environment variable of ``actors.settings``; a test fails when
a setting has no line here, or when the README or ``.env.example`` differ from what this module
generates (``make docs`` rewrites both). Secrets are masked wherever a current value is shown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs

from actors.settings import _VARIABLES, GROUPS, INSTRUCTION_VARIABLES, Settings

#: Shown as "set"/"not set", never as their value.
SECRETS = frozenset(
    {
        "WHAPI_TOKEN",
        "OPENAI_API_KEY",
        "WABOT_WEBHOOK_SECRET",
        "WABOT_ADMIN_TOKEN",
        "BEDS24_TOKEN",
        "BEDS24_REFRESH_TOKEN",
    }
)

#: The settings a new deployment looks at first (the README's short table).
ESSENTIAL = (
    "WHAPI_TOKEN",
    "WHAPI_API_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_MODEL",
    "WABOT_INSTRUCTIONS",
    "WABOT_INSTRUCTIONS_FILE",
    "HOST",
    "PORT",
    "WABOT_WEBHOOK_SECRET",
    "WABOT_ADMIN_TOKEN",
    "WABOT_DATA_DIR",
    "WABOT_ENV",
    "WABOT_BUFFER_SECONDS",
    "WABOT_VOICE_BUFFER_SECONDS",
    "WABOT_TYPING_SECONDS",
    "WABOT_MAX_WAIT_SECONDS",
    "WABOT_IDLE_SECONDS",
    "WABOT_TURN_TIMEOUT_SECONDS",
    "WABOT_DRAIN_SECONDS",
)

#: One line per variable, read from the declarations in ``actors.settings``.
MEANINGS: dict[str, str] = {
    **{
        f.metadata["env"]: f.metadata["help"]
        for f in attrs.fields(Settings)
        if f.metadata.get("env")
    },
    **INSTRUCTION_VARIABLES,
}

_FIELDS = {name: field for name, field, _convert in _VARIABLES}
_FIELDS.update({name: "instructions" for name in INSTRUCTION_VARIABLES})


def group_of(name: str) -> str:
    """The group of the setting read from variable ``name``."""
    return attrs.fields_dict(Settings)[_FIELDS[name]].metadata["group"]


def names() -> list[str]:
    """Every setting's variable, group by group (``GROUPS``), in declaration order within one."""
    return sorted(_FIELDS, key=lambda name: GROUPS.index(group_of(name)))


def default_text(name: str) -> str:
    """The default of ``name`` as it would be written in the environment ("" when none)."""
    if name == "WABOT_INSTRUCTIONS":
        return "a short generic prompt"
    if name == "WABOT_INSTRUCTIONS_FILE":
        return ""
    return _text(name, _default(_FIELDS[name]))


def current_text(name: str, settings: Settings) -> str:
    """The value in effect for ``name``; secrets are "set" or "not set"."""
    if name in INSTRUCTION_VARIABLES:
        value: Any = settings.instructions
        shown = _text(name, value)
        return shown if len(shown) <= 60 else f"{shown[:57]}..."
    value = getattr(settings, _FIELDS[name])
    if name in SECRETS:
        return "set" if value else "not set"
    return _text(name, value)


def _default(field: str) -> Any:
    attribute = attrs.fields_dict(Settings)[field]
    default = attribute.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return default.factory()
    return default


def _text(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple | frozenset | set | list):
        items = sorted(value) if isinstance(value, frozenset | set) else list(value)
        if name == "WABOT_VOICE_TEXT_PATTERNS":
            return json.dumps(items, ensure_ascii=False)
        return ",".join(items)
    return str(value)


def describe(settings: Settings) -> str:
    """``wabot settings``: every setting with its meaning, default and current value."""
    entries = []
    group = None
    for name in names():
        if group_of(name) != group:
            group = group_of(name)
            entries.append(f"[{group}]")
        default = default_text(name) or "(none)"
        current = current_text(name, settings) or "(none)"
        if name in SECRETS:
            changed = "  [changed]" if current == "set" else ""
        elif name in INSTRUCTION_VARIABLES:
            changed = ""
        else:
            changed = "" if current == default else "  [changed]"
        entries.append(
            f"{name}{changed}\n    {MEANINGS[name]}\n    default: {default}\n    current: {current}"
        )
    return "\n\n".join(entries)


def markdown_table(which: list[str] | tuple[str, ...]) -> str:
    """A README table of the settings ``which``."""
    rows = ["| Variable | What | Default |", "|---|---|---|"]
    for name in which:
        default = default_text(name)
        shown = f"`{default}`" if default else "—"
        if name == "WABOT_INSTRUCTIONS":
            shown = "a short generic prompt"
        meaning = MEANINGS[name].replace("|", "\\|")
        rows.append(f"| `{name}` | {meaning} | {shown.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def env_example() -> str:
    """``.env.example``: every setting commented out at its default, with its meaning."""
    out = [
        "# wabot settings: copy to .env and uncomment what you change.",
        "# Generated by `make docs` from actors/settings_doc.py; `wabot settings` shows the",
        "# values in effect. Without WHAPI_TOKEN and OPENAI_API_KEY, `make run` is the sandbox.",
        "",
    ]
    group = None
    for name in names():
        if group_of(name) != group:
            group = group_of(name)
            out.append(f"# ---- {group} ----")
            out.append("")
        out.append(f"# {MEANINGS[name]}")
        default = default_text(name)
        if name == "WABOT_INSTRUCTIONS":
            default = ""
        out.append(f"# {name}={_quoted(default)}")
        out.append("")
    return "\n".join(out)


def _quoted(value: str) -> str:
    return f"'{value}'" if any(c in value for c in ' #$\\"{}') else value


BEGIN_SHORT, END_SHORT = "<!-- settings-essential:begin -->", "<!-- settings-essential:end -->"
BEGIN_ALL, END_ALL = "<!-- settings-all:begin -->", "<!-- settings-all:end -->"


def render_readme(text: str) -> str:
    """``text`` (the README) with both generated tables replaced."""
    text = _between(text, BEGIN_SHORT, END_SHORT, markdown_table(ESSENTIAL))
    sections = [
        f"**{group}**\n\n{markdown_table([n for n in names() if group_of(n) == group])}"
        for group in GROUPS
        if any(group_of(n) == group for n in names())
    ]
    return _between(text, BEGIN_ALL, END_ALL, "\n\n".join(sections))


def _between(text: str, begin: str, end: str, body: str) -> str:
    start, stop = text.index(begin) + len(begin), text.index(end)
    return f"{text[:start]}\n{body}\n{text[stop:]}"


def main(argv: list[str]) -> int:
    """``python -m actors.settings_doc --write ROOT``: regenerate README.md and .env.example."""
    root = Path(argv[1]) if len(argv) > 1 else Path(".")
    readme = root / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (root / ".env.example").write_text(env_example(), encoding="utf-8")
    print(f"wrote {readme} and {root / '.env.example'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
