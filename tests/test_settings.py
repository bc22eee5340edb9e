"""Settings: every variable validated with a message that names it; ``.env``; the hypercorn
configuration file is sane for the drain."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypercorn.config import Config as HypercornConfig

from actors.settings import _VARIABLES, Settings, SettingsError
from tests.process import REPO


def build(**env: str) -> Settings:
    return Settings.from_env(env, dotenv=None)


def test_defaults_without_environment() -> None:
    settings = build()
    assert settings.sandbox and settings.missing_credentials() == ["WHAPI_TOKEN", "OPENAI_API_KEY"]
    assert settings.drain_seconds == 25 and settings.env == "development"
    assert settings.log_level == "INFO" and settings.store_recovery_seconds == 5


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PORT", "http"),
        ("PORT", "-5"),
        ("WABOT_BUFFER_SECONDS", "-1"),
        ("WABOT_DRAIN_SECONDS", "nan"),
        ("WABOT_IDLE_SECONDS", "0"),
        ("WABOT_MAX_ACTORS", "1.5"),
        ("WABOT_IGNORE_GROUPS", "maybe"),
        ("WABOT_ENV", "prod"),
        ("OPENAI_BASE_URL", "localhost:8000"),
        ("WABOT_LOG_LEVEL", "chatty"),
        ("WABOT_STORE_RECOVERY_SECONDS", "0"),
        ("WABOT_MEMORY_CHECK_SECONDS", "inf"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        build(**{variable: raw})


def test_values_are_parsed_and_blank_means_default(tmp_path: Path) -> None:
    settings = build(
        PORT="9000",
        WABOT_DRAIN_SECONDS="12.5",
        WABOT_IGNORE_GROUPS="no",
        WABOT_LOG_LEVEL="debug",
        WABOT_DATA_DIR=str(tmp_path),
        WABOT_BUFFER_SECONDS="  ",
    )
    assert (settings.port, settings.drain_seconds, settings.ignore_groups) == (9000, 12.5, False)
    assert settings.log_level == "DEBUG" and settings.data_dir == tmp_path
    assert settings.buffer_seconds == 5.0


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nexport WHAPI_TOKEN='from-file'\nOPENAI_API_KEY=\"key\"\nPORT=7000\n"
    )
    settings = Settings.from_env({"PORT": "7001"}, dotenv=dotenv)
    assert (settings.whapi_token, settings.openai_api_key, settings.port) == (
        "from-file",
        "key",
        7001,
    )
    assert not settings.sandbox
    dotenv.write_text("NOT A PAIR\n")
    with pytest.raises(SettingsError, match=r"\.env:1"):
        Settings.from_env({}, dotenv=dotenv)


def test_every_tunable_field_has_a_variable() -> None:
    covered = {field for _name, field, _convert in _VARIABLES}
    special = {"instructions"}  # WABOT_INSTRUCTIONS / WABOT_INSTRUCTIONS_FILE
    missing = {f.name for f in attrs.fields(Settings)} - covered - special
    assert not missing, f"settings without an environment variable: {sorted(missing)}"
    names = [name for name, _field, _convert in _VARIABLES]
    assert len(names) == len(set(names))


def test_hypercorn_config_is_one_worker_and_leaves_room_for_the_drain() -> None:
    config = HypercornConfig.from_toml(REPO / "hypercorn.toml")
    defaults = Settings()
    assert config.worker_class == "trio" and config.workers in {0, 1}
    assert config.shutdown_timeout > defaults.drain_seconds + 5
    assert 0 < config.graceful_timeout <= 5
    assert config.read_timeout and config.read_timeout <= 60
    assert config.h11_max_incomplete_size <= 64 * 1024
    assert config.accesslog == "-" and "%(s)s" in config.access_log_format
    # hypercorn's own loggers go through wabot's handler (JSON in production).
    assert config.logconfig_dict["loggers"]["hypercorn.error"]["handlers"] == []
