"""The one settings object: built from environment variables (and an optional ``.env``).

Every timing and limit of wabot is a field here with a sensible default. ``Settings.from_env``
validates everything at start and raises ``SettingsError`` with a message that names the
variable, so a typo stops the start instead of surfacing hours later.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs

T = TypeVar("T")
log = logging.getLogger("actors.settings")

DEFAULT_INSTRUCTIONS = (
    "Eres el asistente de WhatsApp de la empresa. Responde en el idioma del cliente, con "
    "mensajes breves, cordiales y claros, sin inventar datos. Si no sabes algo, dilo y ofrece "
    "ayuda de una persona del equipo."
)
DEFAULT_FALLBACK = (
    "Disculpa, tuve un problema técnico y no pude responder ahora. Inténtalo de nuevo en unos "
    "minutos, por favor."
)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


@attrs.frozen(kw_only=True)
class Settings:
    # Credentials and endpoints.
    whapi_token: str | None = None
    whapi_api_url: str = "https://gate.whapi.cloud"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-5-mini"
    instructions: str = DEFAULT_INSTRUCTIONS
    fallback_text: str = DEFAULT_FALLBACK

    # Server.
    host: str = "0.0.0.0"
    port: int = 8080
    webhook_secret: str | None = None
    admin_token: str | None = None
    data_dir: Path = Path("data")
    tmp_dir: Path = Path("tmp/audio")
    env: str = "development"
    max_body_bytes: int = 4 * 1024 * 1024
    #: After the drain, open HTTP connections get this long to finish before they are closed.
    http_graceful_seconds: float = 5.0
    #: A client that sends nothing for this long is disconnected (slowloris).
    http_read_timeout_seconds: float = 30.0
    #: An idle connection, or one trickling its request head, is closed after this.
    http_keep_alive_seconds: float = 5.0
    ignore_groups: bool = True

    # Buffering (seconds).
    buffer_seconds: float = 5.0
    voice_buffer_seconds: float = 8.0
    typing_seconds: float = 10.0
    max_wait_seconds: float = 30.0
    max_buffered: int = 50
    max_buffered_chars: int = 8000

    # Actor runtime.
    idle_seconds: float = 900.0
    mailbox_size: int = 64
    max_actors: int = 100_000
    restart_limit: int = 3
    restart_window_seconds: float = 5.0
    restart_backoff_seconds: float = 0.1
    restart_backoff_max_seconds: float = 2.0
    park_seconds: float = 60.0
    dedupe_window_size: int = 50_000
    dedupe_window_seconds: float = 3600.0
    echo_ids_size: int = 256
    drain_seconds: float = 25.0
    #: How long marking answered messages done is retried while the store recovers.
    settle_retry_seconds: float = 120.0
    # Store (see store/config.py for what each one does).
    retention_days: float = 180.0
    dedupe_days: float = 7.0
    backups_hourly: int = 24
    backups_daily: int = 7
    journal_max_mb: float = 64.0
    tmp_max_mb: float = 256.0
    tmp_max_age_seconds: float = 600.0
    handoff_pause_seconds: float = 3600.0
    memory_soft_mb: float = 1024.0
    memory_hard_mb: float = 1536.0
    memory_check_seconds: float = 10.0
    #: After a failed journal write, how often the store retries re-persisting its state.
    store_recovery_seconds: float = 5.0
    log_level: str = "INFO"
    #: Put the customer's message text in the "message received" log line (off: privacy).
    log_message_text: bool = False

    # Turns and upstream calls.
    turn_timeout_seconds: float = 120.0
    openai_timeout_seconds: float = 60.0
    openai_max_attempts: int = 3
    whapi_timeout_seconds: float = 15.0
    whapi_max_attempts: int = 4
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 8.0
    typing_refresh_seconds: float = 8.0
    #: "typing" shows only when a turn takes longer than this (each send simulates typing too).
    typing_delay_seconds: float = 1.0
    #: Turns running at once, process-wide: past it turns wait, so webhooks keep their CPU.
    max_concurrent_turns: int = 32
    #: Connections per upstream client (Whapi, OpenAI).
    http_pool_size: int = 32
    #: Idle connections kept open per upstream client. httpcore probes every idle connection
    #: (a poll syscall each) whenever a request starts or ends, so a full idle pool of 32 cost
    #: ~14 % of a turn's CPU; busier moments still open up to ``http_pool_size``.
    http_keepalive_size: int = 8
    #: At most one automatic full garbage collection per this many seconds (0: CPython's own
    #: pace). Their pause grows with the live actors; see gateway/gcpace.py.
    gc_full_interval_seconds: float = 30.0
    #: A contact's presence subscription is renewed at a turn once older than this.
    presence_resubscribe_seconds: float = 86400.0
    typing_time_min: float = 1.0
    typing_time_max: float = 5.0
    typing_chars_per_second: float = 40.0
    part_pause_seconds: float = 0.5
    max_part_chars: int = 1500

    # What the bot understands (media in).
    media_max_mb: float = 16.0
    media_timeout_seconds: float = 20.0
    transcription_model: str = "gpt-transcribe"
    transcription_language: str | None = "es"
    #: Send images to the model inline (downloaded, base64) instead of by link, for when
    #: Whapi's media links are not reachable from OpenAI.
    image_inline: bool = False

    # Context for the model.
    timezone: str = "America/Bogota"
    context_gap_seconds: float = 3 * 3600.0
    chat_info_ttl_seconds: float = 300.0
    chat_info_max: int = 10_000
    #: A long silence ends the session: the next message starts a fresh conversation.
    session_expiry_seconds: float = 30 * 86400.0
    reset_keywords: tuple[str, ...] = ("/reset", "/reiniciar")
    reset_reply: str = "Listo, empecemos de nuevo. ¿En qué te puedo ayudar?"
    #: Chats the bot never answers (phone digits or chat ids).
    ignored_chats: frozenset[str] = frozenset()

    # Tools.
    tools_module: str | None = None
    tool_rounds: int = 4
    tool_timeout_seconds: float = 20.0
    escalation_label_id: str | None = None
    operator_chat: str | None = None
    history_count: int = 20

    # Replies in voice.
    voice_replies: bool = True
    #: "realtime" (OpenAI's Realtime API) or "http" (``/v1/audio/speech``, which OpenAI shuts
    #: down on 2027-01-06: refused at start from that day).
    speech_backend: str = "realtime"
    speech_model: str = "gpt-realtime-2.1-mini"
    speech_voice: str = "marin"
    speech_speed: float = 1.0
    #: Deadline of one whole synthesis (waiting for a socket, every sentence, the encoding).
    speech_timeout_seconds: float = 30.0
    #: Deadline of the websocket's connection (and of its closing handshake).
    speech_connect_timeout_seconds: float = 10.0
    #: The longest silence allowed between two events of the Realtime server.
    speech_event_timeout_seconds: float = 10.0
    #: Realtime websockets open at once, process-wide (one per synthesis).
    speech_max_sockets: int = 16
    #: Long replies are spoken in responses of whole sentences up to this many characters.
    speech_chunk_chars: int = 400
    #: The cap of output tokens of one Realtime response (OpenAI's maximum is 4096).
    speech_max_output_tokens: int = 4096
    #: Largest normalised word edit distance between the text and what the voice said.
    speech_max_distance: float = 0.15
    #: Worker threads that encode PCM to OGG/Opus at once.
    speech_encode_threads: int = 2
    #: WhatsApp limits of a voice note: a longer or larger one goes as text.
    voice_max_seconds: float = 300.0
    voice_max_mb: float = 16.0
    voice_max_chars: int = 600
    #: Replies matching any of these are sent as text (prices, nights, links, amounts).
    voice_text_patterns: tuple[str, ...] = (
        r"\$\s?\d",
        r"\d[\d.,]*\s*(?:cop|usd|pesos|d[oó]lares|eur)\b",
        r"\bnoches?\b",
        r"\bnights?\b",
        r"https?://|www\.",
        r"\d{5,}",
    )
    public_url: str | None = None
    audio_ttl_seconds: float = 300.0

    # Answer validation.
    validator_module: str | None = None
    validator_cooldown_seconds: float = 300.0

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def sandbox(self) -> bool:
        """True when credentials are missing and the loopback fakes stand in for the vendors."""
        return not (self.whapi_token and self.openai_api_key)

    def missing_credentials(self) -> list[str]:
        names = [("WHAPI_TOKEN", self.whapi_token), ("OPENAI_API_KEY", self.openai_api_key)]
        return [name for name, value in names if not value]

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
    ) -> Settings:
        """Build and validate settings from ``environ`` (default ``os.environ``) over ``.env``."""
        env: dict[str, str] = {}
        if dotenv is not None and dotenv.is_file():
            env.update(read_dotenv(dotenv))
        env.update(os.environ if environ is None else environ)
        return _build(env)


#: ``WABOT_*`` variables that are not settings of the bot: knobs of ``make chaos``/``make
#: crash`` and of the optional conformance test.
NOT_SETTINGS = frozenset(
    {
        "WABOT_CHAOS",
        "WABOT_CRASH",
        "WABOT_CRASH_SEED",
        "WABOT_PROCESS_KILLS",
        "WABOT_STORE_CRASH_CYCLES",
        "WABOT_SHARED_DIR",
    }
)


def variable_names() -> tuple[str, ...]:
    """Every environment variable that is a setting, in the order of ``_VARIABLES``."""
    return (*(name for name, _field, _convert in _VARIABLES), *INSTRUCTION_VARIABLES)


INSTRUCTION_VARIABLES = ("WABOT_INSTRUCTIONS", "WABOT_INSTRUCTIONS_FILE")


def unknown_variables(
    environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")
) -> list[str]:
    """One warning per ``WABOT_*`` variable (environment or ``.env``) that is no setting, with
    the closest setting's name: a misspelled setting is otherwise silently the default."""
    env: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        env.update(read_dotenv(dotenv))
    env.update(os.environ if environ is None else environ)
    known = set(variable_names())
    lines = []
    for name in sorted(env):
        if not name.startswith("WABOT_") or name in known or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name} is not a setting and is ignored{hint} (see `wabot settings`)")
    return lines


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=VALUE`` lines, ``#`` comments, optional quotes."""
    out: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def _number(parse: Callable[[str], T], *, minimum: float, allow_zero: bool = True) -> Any:
    def convert(name: str, raw: str) -> T:
        try:
            value = parse(raw)
        except ValueError:
            kind = "an integer" if parse is int else "a number"
            raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None
        as_float = float(value)  # type: ignore[arg-type]
        if math.isnan(as_float) or math.isinf(as_float):
            raise SettingsError(f"{name} must be finite, got {raw!r}")
        if as_float < minimum or (not allow_zero and as_float == 0):
            bound = f"greater than {minimum}" if not allow_zero else f"at least {minimum}"
            raise SettingsError(f"{name} must be {bound}, got {raw!r}")
        return value

    return convert


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _text(name: str, raw: str) -> str:
    return raw


def _url(name: str, raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def _list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _patterns(name: str, raw: str) -> tuple[str, ...]:
    """Regular expressions: one per line, or a JSON array of strings (a comma is part of a
    pattern such as ``\\d{5,}``, so it cannot separate them)."""
    text = raw.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise SettingsError(f"{name}: not a JSON array of strings: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SettingsError(f"{name}: expected a JSON array of strings")
        return tuple(i for i in items if i.strip())
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _chats(name: str, raw: str) -> frozenset[str]:
    return frozenset(item.split("@", 1)[0] for item in _list(name, raw))


def _optional(name: str, raw: str) -> str | None:
    return None if raw.strip().lower() in {"", "none", "off"} else raw.strip()


def _timezone(name: str, raw: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"{name} must be an IANA time zone such as America/Bogota, got {raw!r}"
        ) from None
    return raw


def _env_name(name: str, raw: str) -> str:
    if raw not in {"development", "production"}:
        raise SettingsError(f"WABOT_ENV must be development or production, got {raw!r}")
    return raw


def _log_level(name: str, raw: str) -> str:
    if raw.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return raw.upper()


def _choice(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return value


def _between(
    low: float, high: float, parse: Callable[[str], Any] = float, *, allow_zero: bool = True
) -> Any:
    """A number in ``[low, high]``."""
    at_least = _number(parse, minimum=low, allow_zero=allow_zero)

    def convert(name: str, raw: str) -> Any:
        value = at_least(name, raw)
        if value > high:
            raise SettingsError(f"{name} must be at most {high}, got {raw!r}")
        return value

    return convert


SPEECH_BACKENDS = ("realtime", "http")

_seconds = _number(float, minimum=0.0)
_positive_seconds = _number(float, minimum=0.0, allow_zero=False)
_count = _number(int, minimum=1)
_port = _between(0, 65535, int)

# environment variable -> (settings field, converter)
_VARIABLES: tuple[tuple[str, str, Callable[[str, str], Any]], ...] = (
    ("WHAPI_TOKEN", "whapi_token", _text),
    ("WHAPI_API_URL", "whapi_api_url", _url),
    ("OPENAI_API_KEY", "openai_api_key", _text),
    ("OPENAI_BASE_URL", "openai_base_url", _url),
    ("OPENAI_MODEL", "openai_model", _text),
    ("WABOT_FALLBACK_TEXT", "fallback_text", _text),
    ("HOST", "host", _text),
    ("PORT", "port", _port),
    ("WABOT_WEBHOOK_SECRET", "webhook_secret", _text),
    ("WABOT_ADMIN_TOKEN", "admin_token", _text),
    ("WABOT_DATA_DIR", "data_dir", lambda _n, raw: Path(raw)),
    ("WABOT_TMP_DIR", "tmp_dir", lambda _n, raw: Path(raw)),
    ("WABOT_ENV", "env", _env_name),
    ("WABOT_MAX_BODY_BYTES", "max_body_bytes", _count),
    ("WABOT_HTTP_GRACEFUL_SECONDS", "http_graceful_seconds", _seconds),
    ("WABOT_HTTP_READ_TIMEOUT_SECONDS", "http_read_timeout_seconds", _positive_seconds),
    ("WABOT_HTTP_KEEP_ALIVE_SECONDS", "http_keep_alive_seconds", _positive_seconds),
    ("WABOT_IGNORE_GROUPS", "ignore_groups", _bool),
    ("WABOT_BUFFER_SECONDS", "buffer_seconds", _seconds),
    ("WABOT_VOICE_BUFFER_SECONDS", "voice_buffer_seconds", _seconds),
    ("WABOT_TYPING_SECONDS", "typing_seconds", _seconds),
    ("WABOT_MAX_WAIT_SECONDS", "max_wait_seconds", _seconds),
    ("WABOT_MAX_BUFFERED", "max_buffered", _count),
    ("WABOT_MAX_BUFFERED_CHARS", "max_buffered_chars", _count),
    ("WABOT_IDLE_SECONDS", "idle_seconds", _positive_seconds),
    ("WABOT_MAILBOX_SIZE", "mailbox_size", _count),
    ("WABOT_MAX_ACTORS", "max_actors", _count),
    ("WABOT_RESTART_LIMIT", "restart_limit", _count),
    ("WABOT_RESTART_WINDOW_SECONDS", "restart_window_seconds", _positive_seconds),
    ("WABOT_RESTART_BACKOFF_SECONDS", "restart_backoff_seconds", _seconds),
    ("WABOT_RESTART_BACKOFF_MAX_SECONDS", "restart_backoff_max_seconds", _seconds),
    ("WABOT_PARK_SECONDS", "park_seconds", _seconds),
    ("WABOT_DEDUPE_WINDOW_SIZE", "dedupe_window_size", _count),
    ("WABOT_DEDUPE_WINDOW_SECONDS", "dedupe_window_seconds", _positive_seconds),
    ("WABOT_ECHO_IDS_SIZE", "echo_ids_size", _count),
    ("WABOT_DRAIN_SECONDS", "drain_seconds", _seconds),
    ("WABOT_SETTLE_RETRY_SECONDS", "settle_retry_seconds", _seconds),
    ("WABOT_RETENTION_DAYS", "retention_days", _positive_seconds),
    ("WABOT_DEDUPE_DAYS", "dedupe_days", _positive_seconds),
    ("WABOT_BACKUPS_HOURLY", "backups_hourly", _number(int, minimum=0)),
    ("WABOT_BACKUPS_DAILY", "backups_daily", _number(int, minimum=0)),
    ("WABOT_JOURNAL_MAX_MB", "journal_max_mb", _positive_seconds),
    ("WABOT_TMP_MAX_MB", "tmp_max_mb", _positive_seconds),
    ("WABOT_TMP_MAX_AGE_SECONDS", "tmp_max_age_seconds", _positive_seconds),
    ("WABOT_HANDOFF_PAUSE_SECONDS", "handoff_pause_seconds", _positive_seconds),
    ("WABOT_MEMORY_SOFT_MB", "memory_soft_mb", _seconds),
    ("WABOT_MEMORY_HARD_MB", "memory_hard_mb", _seconds),
    ("WABOT_MEMORY_CHECK_SECONDS", "memory_check_seconds", _positive_seconds),
    ("WABOT_STORE_RECOVERY_SECONDS", "store_recovery_seconds", _positive_seconds),
    ("WABOT_LOG_LEVEL", "log_level", lambda name, raw: _log_level(name, raw)),
    ("WABOT_LOG_MESSAGE_TEXT", "log_message_text", _bool),
    ("WABOT_TURN_TIMEOUT_SECONDS", "turn_timeout_seconds", _positive_seconds),
    ("WABOT_OPENAI_TIMEOUT_SECONDS", "openai_timeout_seconds", _positive_seconds),
    ("WABOT_OPENAI_MAX_ATTEMPTS", "openai_max_attempts", _count),
    ("WABOT_WHAPI_TIMEOUT_SECONDS", "whapi_timeout_seconds", _positive_seconds),
    ("WABOT_WHAPI_MAX_ATTEMPTS", "whapi_max_attempts", _count),
    ("WABOT_RETRY_BASE_SECONDS", "retry_base_seconds", _seconds),
    ("WABOT_RETRY_MAX_SECONDS", "retry_max_seconds", _seconds),
    ("WABOT_TYPING_REFRESH_SECONDS", "typing_refresh_seconds", _positive_seconds),
    ("WABOT_TYPING_DELAY_SECONDS", "typing_delay_seconds", _seconds),
    ("WABOT_MAX_CONCURRENT_TURNS", "max_concurrent_turns", _count),
    ("WABOT_HTTP_POOL_SIZE", "http_pool_size", _count),
    ("WABOT_HTTP_KEEPALIVE_SIZE", "http_keepalive_size", _count),
    ("WABOT_GC_FULL_INTERVAL_SECONDS", "gc_full_interval_seconds", _seconds),
    ("WABOT_PRESENCE_RESUBSCRIBE_SECONDS", "presence_resubscribe_seconds", _seconds),
    ("WABOT_TYPING_TIME_MIN", "typing_time_min", _seconds),
    ("WABOT_TYPING_TIME_MAX", "typing_time_max", _seconds),
    ("WABOT_TYPING_CHARS_PER_SECOND", "typing_chars_per_second", _positive_seconds),
    ("WABOT_PART_PAUSE_SECONDS", "part_pause_seconds", _seconds),
    ("WABOT_MAX_PART_CHARS", "max_part_chars", _count),
    ("WABOT_MEDIA_MAX_MB", "media_max_mb", _positive_seconds),
    ("WABOT_MEDIA_TIMEOUT_SECONDS", "media_timeout_seconds", _positive_seconds),
    ("WABOT_TRANSCRIPTION_MODEL", "transcription_model", _text),
    ("WABOT_TRANSCRIPTION_LANGUAGE", "transcription_language", _optional),
    ("WABOT_IMAGE_INLINE", "image_inline", _bool),
    ("WABOT_TIMEZONE", "timezone", _timezone),
    ("WABOT_CONTEXT_GAP_SECONDS", "context_gap_seconds", _seconds),
    ("WABOT_CHAT_INFO_TTL_SECONDS", "chat_info_ttl_seconds", _seconds),
    ("WABOT_CHAT_INFO_MAX", "chat_info_max", _count),
    ("WABOT_SESSION_EXPIRY_SECONDS", "session_expiry_seconds", _seconds),
    ("WABOT_RESET_KEYWORDS", "reset_keywords", _list),
    ("WABOT_RESET_REPLY", "reset_reply", _text),
    ("WABOT_IGNORED_CHATS", "ignored_chats", _chats),
    ("WABOT_TOOLS_MODULE", "tools_module", _optional),
    ("WABOT_TOOL_ROUNDS", "tool_rounds", _count),
    ("WABOT_TOOL_TIMEOUT_SECONDS", "tool_timeout_seconds", _positive_seconds),
    ("WABOT_ESCALATION_LABEL_ID", "escalation_label_id", _optional),
    ("WABOT_OPERATOR_CHAT", "operator_chat", _optional),
    ("WABOT_HISTORY_COUNT", "history_count", _count),
    ("WABOT_VOICE_REPLIES", "voice_replies", _bool),
    ("WABOT_SPEECH_BACKEND", "speech_backend", lambda n, raw: _choice(n, raw, SPEECH_BACKENDS)),
    ("WABOT_SPEECH_MODEL", "speech_model", _text),
    ("WABOT_SPEECH_VOICE", "speech_voice", _text),
    ("WABOT_SPEECH_SPEED", "speech_speed", _between(0.25, 1.5)),
    ("WABOT_SPEECH_TIMEOUT_SECONDS", "speech_timeout_seconds", _positive_seconds),
    ("WABOT_SPEECH_CONNECT_TIMEOUT_SECONDS", "speech_connect_timeout_seconds", _positive_seconds),
    ("WABOT_SPEECH_EVENT_TIMEOUT_SECONDS", "speech_event_timeout_seconds", _positive_seconds),
    ("WABOT_SPEECH_MAX_SOCKETS", "speech_max_sockets", _count),
    ("WABOT_SPEECH_CHUNK_CHARS", "speech_chunk_chars", _number(int, minimum=40)),
    ("WABOT_SPEECH_MAX_OUTPUT_TOKENS", "speech_max_output_tokens", _between(1, 4096, int)),
    ("WABOT_SPEECH_MAX_DISTANCE", "speech_max_distance", _between(0.0, 1.0)),
    ("WABOT_SPEECH_ENCODE_THREADS", "speech_encode_threads", _count),
    ("WABOT_VOICE_MAX_SECONDS", "voice_max_seconds", _positive_seconds),
    ("WABOT_VOICE_MAX_MB", "voice_max_mb", _between(0.0, 16.0, allow_zero=False)),
    ("WABOT_VOICE_MAX_CHARS", "voice_max_chars", _count),
    ("WABOT_VOICE_TEXT_PATTERNS", "voice_text_patterns", lambda n, raw: _patterns(n, raw)),
    ("WABOT_PUBLIC_URL", "public_url", _url),
    ("WABOT_AUDIO_TTL_SECONDS", "audio_ttl_seconds", _positive_seconds),
    ("WABOT_VALIDATOR_MODULE", "validator_module", _optional),
    ("WABOT_VALIDATOR_COOLDOWN_SECONDS", "validator_cooldown_seconds", _seconds),
)


def _build(env: Mapping[str, str]) -> Settings:
    values: dict[str, Any] = {}
    for name, field, convert in _VARIABLES:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            continue
        values[field] = convert(name, raw.strip() if convert is not _text else raw)

    inline, path = env.get("WABOT_INSTRUCTIONS"), env.get("WABOT_INSTRUCTIONS_FILE")
    if inline and path:
        raise SettingsError("set WABOT_INSTRUCTIONS or WABOT_INSTRUCTIONS_FILE, not both")
    if path:
        try:
            values["instructions"] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"WABOT_INSTRUCTIONS_FILE: cannot read {path}: {exc}") from None
    elif inline:
        values["instructions"] = inline.strip()
    if not values.get("instructions", DEFAULT_INSTRUCTIONS):
        raise SettingsError("WABOT_INSTRUCTIONS / WABOT_INSTRUCTIONS_FILE is empty")

    settings = Settings(**values)
    if settings.typing_time_min > settings.typing_time_max:
        raise SettingsError("WABOT_TYPING_TIME_MIN must not exceed WABOT_TYPING_TIME_MAX")
    if settings.typing_time_max > 60:
        raise SettingsError("WABOT_TYPING_TIME_MAX must be at most 60 (Whapi's limit)")
    for pattern in settings.voice_text_patterns:
        try:
            re.compile(pattern, re.I)
        except re.error as exc:
            raise SettingsError(
                f"WABOT_VOICE_TEXT_PATTERNS: invalid pattern {pattern!r}: {exc}"
            ) from None
    if settings.max_part_chars > 4096:
        raise SettingsError("WABOT_MAX_PART_CHARS must be at most 4096")
    return settings


#: OpenAI's announced shutdown dates of the speech, Realtime and transcription models.
SPEECH_SHUTDOWN = date(2027, 1, 6)
REALTIME_ALIASES_SHUTDOWN = date(2027, 1, 20)
TRANSCRIPTION_SHUTDOWN = date(2027, 2, 26)
_REALTIME = "gpt-realtime-2.1-mini"

#: A model id (or a prefix, ending in ``*``) that OpenAI retires: its shutdown date, and what
#: replaces it. Every ``/v1/audio/speech`` model goes on 2027-01-06; the Realtime aliases on
#: 2027-01-20; every transcription model but ``gpt-transcribe`` on 2027-02-26.
RETIRED_MODELS: tuple[tuple[str, date, str], ...] = (
    ("tts-1", SPEECH_SHUTDOWN, f"{_REALTIME} (with WABOT_SPEECH_BACKEND=realtime)"),
    ("tts-1-hd", SPEECH_SHUTDOWN, f"{_REALTIME} (with WABOT_SPEECH_BACKEND=realtime)"),
    ("gpt-4o-mini-tts*", SPEECH_SHUTDOWN, f"{_REALTIME} (with WABOT_SPEECH_BACKEND=realtime)"),
    ("gpt-realtime", REALTIME_ALIASES_SHUTDOWN, _REALTIME),
    ("gpt-realtime-2025-08-28", REALTIME_ALIASES_SHUTDOWN, _REALTIME),
    ("gpt-realtime-mini*", REALTIME_ALIASES_SHUTDOWN, _REALTIME),
    ("gpt-audio-mini*", REALTIME_ALIASES_SHUTDOWN, _REALTIME),
    ("whisper-1", TRANSCRIPTION_SHUTDOWN, "gpt-transcribe"),
    ("gpt-4o-transcribe*", TRANSCRIPTION_SHUTDOWN, "gpt-transcribe"),
    ("gpt-4o-mini-transcribe*", TRANSCRIPTION_SHUTDOWN, "gpt-transcribe"),
)


def retirement(model: str) -> tuple[date, str] | None:
    """(shutdown date, replacement) of a retired model id; None for one with no such date."""
    for pattern, shutdown, replacement in RETIRED_MODELS:
        prefix = pattern.removesuffix("*")
        if model == prefix or (pattern.endswith("*") and model.startswith(prefix)):
            return shutdown, replacement
    return None


def warn_retired_models(settings: Settings, *, today: date | None = None) -> list[str]:
    """Log (WARNING) and return one line per configured model id that OpenAI retires."""
    today = today or datetime.now(UTC).date()
    lines: list[str] = []
    for name, model in (
        ("OPENAI_MODEL", settings.openai_model),
        ("WABOT_SPEECH_MODEL", settings.speech_model),
        ("WABOT_TRANSCRIPTION_MODEL", settings.transcription_model),
    ):
        retired = retirement(model)
        if retired is None:
            continue
        shutdown, replacement = retired
        when = "shut it down" if today >= shutdown else "shuts it down"
        lines.append(
            f"{name}={model} is a retired model: OpenAI {when} on {shutdown:%Y-%m-%d}; "
            f"set {name} to {replacement}"
        )
    for line in lines:
        log.warning("%s", line)
    return lines
