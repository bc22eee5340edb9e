"""The WhatsApp numbers one deployment serves: channels, read from ``WABOT_CHANNELS_FILE``.

A channel is one Whapi number (one token) with its own settings. Its settings are the
deployment's ``Settings`` with the channel's overrides applied (``attrs.evolve``), each
override read by the same parser as its environment variable. Without ``WABOT_CHANNELS_FILE``
there is one channel, ``default``, whose settings are the deployment's: nothing changes for
an existing deployment. The file (TOML, read with ``tomllib``)::

    [channels.default]                  # POST /hook (and /hook/default)
    [channels.sales]                    # POST /hook/sales
    channel_id = "MANTIS-M7XQ3"         # Whapi's channel_id: another one in a body is a 400
    whapi_token = "env:SALES_WHAPI_TOKEN"
    webhook_secret = "env:SALES_WEBHOOK_SECRET"
    instructions_file = "prompts/sales.md"    # relative to the file
    buffer_seconds = 3

Keys are the names of the settings in ``CHANNEL_KEYS`` (lowercase, as ``Settings`` fields)
plus ``channel_id``, ``instructions`` and ``instructions_file``; any string value may be
``env:NAME``, read from the environment, so that the file can be committed. A problem stops
the start with a ``ChannelsError`` (a ``SettingsError``) naming the file, the channel and the
key.

Identity: a customer of channel ``c`` is keyed ``c:<digits>``, and of ``default`` by the bare
digits, as before channels existed, so that a data directory written before them is the
``default`` channel's. Inbound message ids (the inbox and its dedupe ids) take the same
prefix. A channel's name starts with a letter, so a key with a prefix is never a phone number.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from actors.settings import Settings, SettingsError

DEFAULT = "default"
#: A channel's name: a lowercase letter, then letters, digits, ``-`` or ``_`` (32 at most).
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
SEPARATOR = ":"
#: Settings a channel may set for itself; every other one is the deployment's.
CHANNEL_KEYS = frozenset(
    {
        "whapi_token",
        "whapi_api_url",
        "openai_api_key",
        "openai_base_url",
        "openai_model",
        "webhook_secret",
        "fallback_text",
        "ignore_groups",
        "buffer_seconds",
        "voice_buffer_seconds",
        "typing_seconds",
        "max_wait_seconds",
        "max_buffered",
        "max_buffered_chars",
        "max_concurrent_turns",
        "handoff_pause_seconds",
        "timezone",
        "reset_keywords",
        "reset_reply",
        "ignored_chats",
        "tools_module",
        "validator_module",
        "escalation_label_id",
        "operator_chat",
        "voice_replies",
        "speech_voice",
    }
)
#: Keys of a channel that are not settings.
_OWN_KEYS = frozenset({"channel_id", "instructions", "instructions_file"})
#: Settings whose values are lists (a TOML array of strings, or one comma-separated string).
_LISTS = frozenset({"reset_keywords", "ignored_chats"})
_MAX_CHANNEL_ID = 100


class ChannelsError(SettingsError):
    """The channels file is missing or invalid; the message names the channel and the key."""


@attrs.frozen
class Channel:
    """One WhatsApp number: its name, its settings (the deployment's with its overrides)."""

    name: str
    settings: Settings
    #: Whapi's ``channel_id`` of the number, when the file names it (a body naming another
    #: one is refused).
    channel_id: str | None = None
    #: The settings the channel sets itself, parsed (``rebase`` applies them again).
    overrides: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def prefix(self) -> str:
        """What the channel's keys and message ids start with ("" for ``default``)."""
        return "" if self.name == DEFAULT else f"{self.name}{SEPARATOR}"

    @property
    def hook_path(self) -> str:
        return "/hook" if self.name == DEFAULT else f"/hook/{self.name}"

    def key(self, user: str) -> str:
        """The actor's and the record's key of the channel's customer ``user`` (digits)."""
        return key_for(self.name, user)


def key_for(channel: str, user: str) -> str:
    """``user`` for ``default``, ``<channel>:<user>`` for any other channel."""
    return user if channel == DEFAULT else f"{channel}{SEPARATOR}{user}"


def split_key(key: str) -> tuple[str, str]:
    """(channel, customer digits) of an actor's or a record's key."""
    channel, sep, user = key.partition(SEPARATOR)
    return (channel, user) if sep else (DEFAULT, key)


def one_channel(settings: Settings) -> dict[str, Channel]:
    """The channels of a deployment without a channels file: ``default``, from ``settings``."""
    return {DEFAULT: Channel(DEFAULT, settings)}


def load_channels(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, Channel]:
    """The channels of ``settings.channels_file`` (``one_channel`` without it), validated."""
    path = settings.channels_file
    if path is None:
        return one_channel(settings)
    env = os.environ if environ is None else environ
    where = f"WABOT_CHANNELS_FILE {path}"
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ChannelsError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ChannelsError(f"{where}: not valid TOML: {exc}") from None
    extra = sorted(set(document) - {"channels"})
    if extra:
        raise ChannelsError(f"{where}: unknown table {extra[0]!r}; channels go under [channels.*]")
    tables = document.get("channels")
    if not isinstance(tables, dict) or not tables:
        raise ChannelsError(f"{where}: no channels; add a [channels.<name>] table")
    channels: dict[str, Channel] = {}
    for name, table in tables.items():
        if not NAME.match(name):
            raise ChannelsError(
                f"{where}: channel {name!r}: a name is a lowercase letter, then letters, "
                "digits, - or _ (32 at most)"
            )
        if not isinstance(table, dict):
            raise ChannelsError(f"{where}: channel {name!r} must be a table ([channels.{name}])")
        channels[name] = _channel(name, table, settings, env, path, where)
    _check_distinct(channels, where)
    return channels


def rebase(
    channels: Mapping[str, Channel], settings: Settings, **forced: Any
) -> dict[str, Channel]:
    """The same channels over new deployment settings, with ``forced`` over every override
    (the sandbox points every channel at its fakes)."""
    return {
        name: attrs.evolve(
            channel, settings=attrs.evolve(settings, **{**channel.overrides, **forced})
        )
        for name, channel in channels.items()
    }


def _channel(
    name: str,
    table: dict[str, Any],
    settings: Settings,
    env: Mapping[str, str],
    path: Path,
    where: str,
) -> Channel:
    fields = attrs.fields_dict(Settings)
    overrides: dict[str, Any] = {}
    channel_id: str | None = None
    for key, value in table.items():
        label = f"{where}: channel {name!r} key {key}"
        if key not in CHANNEL_KEYS and key not in _OWN_KEYS:
            known = sorted(CHANNEL_KEYS | _OWN_KEYS)
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else "a deployment-wide setting"
                if key in fields
                else "not a setting"
            )
            raise ChannelsError(f"{label}: not a channel setting ({hint})")
        raw = _raw(value, key, label, env)
        if key == "channel_id":
            if not raw.strip() or len(raw) > _MAX_CHANNEL_ID:
                raise ChannelsError(f"{label}: must be Whapi's channel id, got {raw!r}")
            channel_id = raw.strip()
        elif key in {"instructions", "instructions_file"}:
            if "instructions" in overrides:
                raise ChannelsError(f"{label}: set instructions or instructions_file, not both")
            overrides["instructions"] = _instructions(key, raw, path, label)
        else:
            parse = fields[key].metadata["parse"]
            try:
                overrides[key] = parse(label, raw)
            except ChannelsError:
                raise
            except SettingsError as exc:  # the parser's message names ``label``
                raise ChannelsError(str(exc)) from None
    try:
        channel_settings = attrs.evolve(settings, **overrides)
    except (TypeError, ValueError) as exc:  # attrs validators, should any be added
        raise ChannelsError(f"{where}: channel {name!r}: {exc}") from None
    return Channel(name, channel_settings, channel_id, overrides)


def _raw(value: Any, key: str, label: str, env: Mapping[str, str]) -> str:
    """A TOML value as its environment variable would be written (``env:NAME`` read)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list) and key in _LISTS:
        if not all(isinstance(item, str) for item in value):
            raise ChannelsError(f"{label}: must be an array of strings")
        return ",".join(value)
    if not isinstance(value, str):
        raise ChannelsError(f"{label}: unexpected {type(value).__name__} value")
    if value.startswith("env:"):
        variable = value[len("env:") :]
        found = env.get(variable)
        if not variable or found is None or not found.strip():
            raise ChannelsError(f"{label}: the environment variable {variable!r} is not set")
        return found
    return value


def _instructions(key: str, raw: str, path: Path, label: str) -> str:
    if key == "instructions":
        text = raw.strip()
    else:
        file = Path(raw)
        if not file.is_absolute():
            file = path.parent / file
        try:
            text = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ChannelsError(f"{label}: cannot read {file}: {exc.strerror or exc}") from None
    if not text:
        raise ChannelsError(f"{label}: the instructions are empty")
    return text


def _check_distinct(channels: Mapping[str, Channel], where: str) -> None:
    """One token is one number, one ``channel_id`` one channel: never two channels' each."""
    for key in ("whapi_token", "channel_id"):
        seen: dict[str, str] = {}
        for name, channel in channels.items():
            value = channel.channel_id if key == "channel_id" else channel.settings.whapi_token
            if not value:
                continue
            if value in seen:
                raise ChannelsError(
                    f"{where}: channel {name!r} key {key}: the same as channel "
                    f"{seen[value]!r} (one Whapi channel is one number; a channel without a "
                    "whapi_token has the deployment's WHAPI_TOKEN)"
                )
            seen[value] = name
