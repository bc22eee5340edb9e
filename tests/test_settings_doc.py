"""Every setting is documented once: ``wabot settings``, the README tables and ``.env.example``
come from ``actors.settings_doc``; misspelled variables and pattern lists; the CLI's help."""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs
import pytest

from actors import settings_doc
from actors.settings import Settings, SettingsError, unknown_variables, variable_names
from gateway.cli import build_parser, main
from tests.process import REPO


def test_every_setting_has_a_meaning_and_nothing_else_does() -> None:
    assert set(settings_doc.MEANINGS) == set(variable_names())
    assert set(settings_doc.ESSENTIAL) <= set(variable_names())
    assert all(line.strip() for line in settings_doc.MEANINGS.values())


def test_readme_and_env_example_are_generated_from_the_same_source() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert settings_doc.render_readme(readme) == readme, "run `make docs`"
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    assert settings_doc.env_example() == example, "run `make docs`"
    for name in variable_names():
        assert f"`{name}`" in readme and f"# {name}=" in example


def test_env_example_uncommented_gives_the_defaults(tmp_path: Path) -> None:
    lines = []
    for line in settings_doc.env_example().splitlines():
        name, sep, value = line.removeprefix("# ").partition("=")
        if sep and name in variable_names() and value:
            lines.append(f"{name}={value}")
    dotenv = tmp_path / ".env"
    dotenv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert Settings.from_env({}, dotenv=dotenv) == Settings()


def test_misspelled_variables_are_named_with_the_closest_setting(tmp_path: Path) -> None:
    env = {"WABOT_BUFER_SECONDS": "1", "WABOT_BUFFER_SECONDS": "2", "WABOT_CHAOS": "1"}
    lines = unknown_variables(env, dotenv=None)
    assert lines == [
        "WABOT_BUFER_SECONDS is not a setting and is ignored; did you mean "
        "WABOT_BUFFER_SECONDS? (see `wabot settings`)"
    ]
    dotenv = tmp_path / ".env"
    dotenv.write_text("WABOT_ZZZ=1\n", encoding="utf-8")
    assert [line.split()[0] for line in unknown_variables({}, dotenv=dotenv)] == ["WABOT_ZZZ"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"\d{5,}", (r"\d{5,}",)),
        ("\\d{5,}\n\\bnoche\\b\n", (r"\d{5,}", r"\bnoche\b")),
        ('["\\\\d{2,3}", "a|b"]', (r"\d{2,3}", "a|b")),
    ],
    ids=["comma-inside", "lines", "json"],
)
def test_pattern_lists_keep_commas_inside_a_pattern(raw: str, expected: tuple[str, ...]) -> None:
    settings = Settings.from_env({"WABOT_VOICE_TEXT_PATTERNS": raw}, dotenv=None)
    assert settings.voice_text_patterns == expected


def test_defaults_of_the_patterns_are_expressible_as_a_setting() -> None:
    written = settings_doc.default_text("WABOT_VOICE_TEXT_PATTERNS")
    settings = Settings.from_env({"WABOT_VOICE_TEXT_PATTERNS": written}, dotenv=None)
    assert settings.voice_text_patterns == Settings().voice_text_patterns


@pytest.mark.parametrize("raw", ["99999", "65536", "-1"])
def test_port_out_of_range_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match="PORT"):
        Settings.from_env({"PORT": raw}, dotenv=None)


def test_wabot_settings_lists_every_setting_and_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WHAPI_TOKEN", "tok-very-secret-1234")
    monkeypatch.setenv("WABOT_ADMIN_TOKEN", "adm-very-secret-5678")
    monkeypatch.setenv("WABOT_BUFFER_SECONDS", "2.5")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "tok-very-secret" not in out and "adm-very-secret" not in out
    for name in variable_names():
        assert f"\n{name}" in f"\n{out}"
    block = out.split("WABOT_BUFFER_SECONDS", 1)[1].split("\n\n", 1)[0]
    assert "[changed]" in block and "default: 5" in block and "current: 2.5" in block
    token = f"\n{out}".split("\nWHAPI_TOKEN", 1)[1].split("\n\n", 1)[0]
    assert "current: set" in token


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_command_and_argument_has_a_one_line_help() -> None:
    parser = build_parser()
    help_text = parser.format_help()
    assert "``" not in help_text and "serve" in help_text and "settings" in help_text

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{path} {action.dest} has no help"
        commands = _subparsers(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest for choice in action._choices_actions if choice.help}
                assert helps == set(commands), f"{path}: commands without help"
        for name, sub in commands.items():
            walk(sub, f"{path} {name}")

    walk(parser, "wabot")
    store_help = _subparsers(parser)["store"].format_help()
    for command in ("backup", "verify", "restore", "stats", "list", "import"):
        assert command in store_help
    assert "args" not in store_help


def test_settings_doc_defaults_match_the_settings_class() -> None:
    fields = attrs.fields_dict(Settings)
    assert settings_doc.default_text("PORT") == str(fields["port"].default)
