"""The one settings object: built from environment variables (and an optional ``.env``).

Every timing and limit of wabot is declared once, as a field of ``Settings``: its default, its
meaning, its group, and (when they differ from the conventions) its variable and parser, e.g.
``buffer_seconds: float = buffering(5.0, "wait after ...")`` reads ``WABOT_BUFFER_SECONDS``
as seconds. The variable table, ``wabot settings``, the README tables and ``.env.example`` are
read from these declarations; the actor runtime's and the store's defaults are taken from
their own config classes, not copied. ``Settings.from_env`` validates everything at start and
raises ``SettingsError`` with a message that names the variable, so a typo stops the start
instead of surfacing hours later.
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

from actors.runtime.supervisor import RuntimeConfig
from store.config import StoreConfig

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


DATA_DIR = Path("data")
#: The runtime's and the store's own defaults: the settings take them, never a copy.
_RUNTIME = {f.name: f.default for f in attrs.fields(RuntimeConfig)}
_STORE = {f.name: f.default for f in attrs.fields(StoreConfig)}
TMP_DIR = Path("tmp/audio")


#: What one customer with a turn waiting on the model costs in memory: actor, record, turn,
#: request and connection (``bench.inflight``, bench/RESULTS.md "Turns in flight").
TURN_IN_FLIGHT_BYTES = 100 * 1024
#: The share of the soft memory limit the derived bound gives to turns in flight.
TURN_MEMORY_SHARE = 0.25
MIN_TURNS_IN_FLIGHT = 32
DEFAULT_MEMORY_SOFT_MB = 1024.0


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


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


def _optional_number(name: str, raw: str) -> float | None:
    """A positive number, or nothing (``none``/``off``/empty)."""
    if raw.strip().lower() in {"", "none", "off"}:
        return None
    return _number(float, minimum=0.0, allow_zero=False)(name, raw)


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


#: A field's parser when the declaration names none: by the type of its default.
_PARSERS: dict[type, Callable[[str, str], Any]] = {
    bool: _bool,
    float: _seconds,
    int: _count,
    str: _text,
}


@attrs.frozen
class Group:
    """Declares the settings of one group (``wabot settings`` and the README show them by
    group): ``buffer_seconds: float = buffering(5.0, "what it means")``.

    The environment variable is ``WABOT_`` + the field's name in capitals unless ``env``
    says otherwise (``None``: not read from one variable); the parser, which raises
    ``SettingsError`` naming the variable, follows the default's type unless ``parse`` is
    given. ``_VARIABLES``, ``wabot settings``, the README tables and ``.env.example`` are
    all read from these declarations.
    """

    name: str

    def __call__(
        self,
        default: Any,
        help: str,
        *,
        env: str | bool | None = True,
        parse: Callable[[str, str], Any] | None = None,
    ) -> Any:
        return attrs.field(
            default=default,
            metadata={
                "help": help,
                "group": self.name,
                "env": env,
                "parse": parse or _PARSERS.get(type(default), _text),
            },
        )


upstream, server, buffering, runtime, store = map(
    Group, ("upstream", "server", "buffering", "runtime", "store")
)
media, context, replies, tools, voice, booking = map(
    Group, ("media", "context", "replies", "tools", "voice", "booking")
)
knowledge = Group("knowledge")
#: The order ``wabot settings`` and the README show the groups in.
GROUPS = (
    "upstream",
    "server",
    "buffering",
    "runtime",
    "store",
    "media",
    "context",
    "replies",
    "tools",
    "knowledge",
    "voice",
    "booking",
)


def _named(cls: type, fields: list[attrs.Attribute]) -> list[attrs.Attribute]:
    """attrs field transformer: a declaration's default variable name, from the field name."""
    return [
        f.evolve(metadata={**f.metadata, "env": f"WABOT_{f.name.upper()}"})
        if f.metadata.get("env") is True
        else f
        for f in fields
    ]


@attrs.frozen(kw_only=True, field_transformer=_named)
class Settings:
    # Credentials and endpoints.
    whapi_token: str | None = upstream(
        None,
        "Whapi channel token (the sandbox runs when it is missing)",
        env="WHAPI_TOKEN",
        parse=_text,
    )
    whapi_api_url: str = upstream(
        "https://gate.whapi.cloud", "Whapi base URL", env="WHAPI_API_URL", parse=_url
    )
    openai_api_key: str | None = upstream(
        None,
        "OpenAI API key (the sandbox runs when it is missing)",
        env="OPENAI_API_KEY",
        parse=_text,
    )
    openai_base_url: str | None = upstream(
        None,
        "OpenAI base URL (empty: the SDK's; the Realtime websocket follows it)",
        env="OPENAI_BASE_URL",
        parse=_url,
    )
    openai_model: str = upstream(
        "gpt-5-mini",
        "model of the answers (configuration, not code: models retire)",
        env="OPENAI_MODEL",
    )
    instructions: str = upstream(
        DEFAULT_INSTRUCTIONS,
        "the assistant's system prompt (WABOT_INSTRUCTIONS or _FILE)",
        env=None,
    )
    fallback_text: str = replies(
        DEFAULT_FALLBACK, "what the customer reads when the model or Whapi failed"
    )

    # Server.
    host: str = server("0.0.0.0", "address to listen on", env="HOST")
    port: int = server(
        8080, "port to listen on (0 to 65535; 0 picks a free one)", env="PORT", parse=_port
    )
    webhook_secret: str | None = server(
        None,
        "value of the X-Webhook-Secret header every webhook must carry (required in production)",
        parse=_text,
    )
    admin_token: str | None = server(
        None, "bearer token of the admin endpoints (empty: they are off, 404)", parse=_text
    )
    data_dir: Path = server(  # noqa: RUF009 (a Path default is immutable)
        DATA_DIR,
        "the store's directory: snapshot, journal, backups, lock",
        parse=lambda _n, raw: Path(raw),
    )
    tmp_dir: Path = server(  # noqa: RUF009 (a Path default is immutable)
        TMP_DIR,
        "scratch directory of downloaded and synthesized audio",
        parse=lambda _n, raw: Path(raw),
    )
    env: str = server(
        "development",
        "development or production (JSON logs; credentials and secret required)",
        parse=_env_name,
    )
    max_body_bytes: int = server(4 * 1024 * 1024, "largest webhook body accepted (413 above)")
    ignore_groups: bool = server(True, "ignore group chats (broadcasts and newsletters always are)")
    console_language: str = server(
        "es",
        "language of the operator console (/console): es or en",
        parse=lambda name, raw: _choice(name, raw, ("es", "en")),
    )
    console_session_seconds: float = server(
        8 * 3600.0, "an operator's console login expires after this", parse=_positive_seconds
    )

    # Buffering (seconds).
    buffer_seconds: float = buffering(
        5.0, "wait after a customer's latest message before answering"
    )
    voice_buffer_seconds: float = buffering(8.0, "the same wait after a voice note")
    typing_seconds: float = buffering(
        10.0, "wait after the customer's latest typing/recording presence"
    )
    max_wait_seconds: float = buffering(30.0, "hard cap on how long a buffered message waits")
    max_buffered: int = buffering(50, "answer at once when this many messages are waiting")
    max_buffered_chars: int = buffering(
        8000, "characters buffered per customer; the excess is dropped (flood)"
    )
    supersede: bool = buffering(
        True,
        "messages sent while a turn thinks, before any part of its reply went out: its answer "
        "is dropped (and taken back from the conversation) and one turn answers them all",
    )
    supersede_max: int = buffering(
        2, "times one turn may give way like that; past it, later messages get the next turn"
    )

    # Actor runtime.
    idle_seconds: float = runtime(
        _RUNTIME["idle_seconds"],
        "an idle customer's actor stops after this",
        parse=_positive_seconds,
    )
    mailbox_size: int = runtime(
        _RUNTIME["mailbox_size"], "events queued per actor before it resyncs from the durable inbox"
    )
    max_actors: int = runtime(
        _RUNTIME["max_actors"], "live actors at most; the idlest are passivated above it"
    )
    restart_limit: int = runtime(
        _RUNTIME["restart_limit"], "crashes of one actor within the window before it is parked"
    )
    restart_window_seconds: float = runtime(
        _RUNTIME["restart_window_seconds"],
        "the window of the restart limit",
        parse=_positive_seconds,
    )
    restart_backoff_seconds: float = runtime(
        _RUNTIME["restart_backoff_seconds"], "first wait before restarting a crashed actor"
    )
    restart_backoff_max_seconds: float = runtime(
        _RUNTIME["restart_backoff_max_seconds"], "longest wait before restarting a crashed actor"
    )
    park_seconds: float = runtime(
        _RUNTIME["park_seconds"], "how long a crash-looping actor stays parked"
    )
    dedupe_window_size: int = runtime(
        50_000, "message ids remembered in memory to drop redeliveries fast"
    )
    dedupe_window_seconds: float = runtime(
        3600.0, "how long the in-memory dedupe window remembers an id", parse=_positive_seconds
    )
    echo_ids_size: int = runtime(
        256, "ids of our own sends remembered per actor (to ignore their echoes)"
    )
    drain_seconds: float = runtime(25.0, "on SIGTERM, how long in-flight turns may take to finish")
    #: How long marking answered messages done is retried while the store recovers.
    settle_retry_seconds: float = runtime(
        120.0, "how long an actor keeps retrying to mark messages answered"
    )
    # Store (see store/config.py for what each one does).
    retention_days: float = store(
        _STORE["retention_days"],
        "records of customers silent for longer are removed",
        parse=_positive_seconds,
    )
    dedupe_days: float = store(
        _STORE["dedupe_window_seconds"] / 86400,
        "answered message ids are remembered on disk this long",
        parse=_positive_seconds,
    )
    backups_hourly: int = store(
        _STORE["backups_hourly"], "hourly backups kept", parse=_number(int, minimum=0)
    )
    backups_daily: int = store(
        _STORE["backups_daily"], "daily backups kept", parse=_number(int, minimum=0)
    )
    journal_max_mb: float = store(
        _STORE["journal_max_bytes"] / 2**20,
        "the journal is compacted into a snapshot past this size",
        parse=_positive_seconds,
    )
    tmp_max_mb: float = server(
        256.0, "scratch directory size cap (oldest files removed first)", parse=_positive_seconds
    )
    tmp_max_age_seconds: float = server(
        600.0, "scratch files older than this are removed", parse=_positive_seconds
    )
    handoff_pause_seconds: float = tools(
        3600.0,
        "the bot stays silent this long after a human agent wrote, an escalation, or an "
        "operator's pause without seconds",
        parse=_positive_seconds,
    )
    memory_soft_mb: float = runtime(
        1024.0, "over this RSS idle actors are passivated and caches shrink"
    )
    memory_hard_mb: float = runtime(1536.0, "over this RSS new webhooks get 503 until memory falls")
    memory_check_seconds: float = runtime(
        10.0, "how often the memory watchdog looks", parse=_positive_seconds
    )
    #: After a failed journal write, how often the store retries re-persisting its state.
    store_recovery_seconds: float = store(
        _STORE["recovery_retry_seconds"],
        "after a failed journal write, how often the store retries",
        parse=_positive_seconds,
    )
    log_level: str = server(
        "INFO", "DEBUG, INFO, WARNING or ERROR", parse=lambda name, raw: _log_level(name, raw)
    )
    #: Put the customer's message text in the "message received" log line (off: privacy).
    log_message_text: bool = server(
        False, "put the customer's text in the 'message received' log line"
    )

    # Turns and upstream calls.
    turn_timeout_seconds: float = upstream(
        120.0, "deadline of one turn, model calls and sends included", parse=_positive_seconds
    )
    openai_timeout_seconds: float = upstream(
        60.0, "deadline of one OpenAI request", parse=_positive_seconds
    )
    openai_max_attempts: int = upstream(3, "attempts of one OpenAI call (retryable failures only)")
    #: The OpenAI project's rate limits; unset, they are learned from OpenAI's answers.
    openai_requests_per_minute: float | None = upstream(
        None,
        "model requests per minute the project may make (empty: learned from OpenAI's headers)",
        parse=lambda n, raw: _optional_number(n, raw),
    )
    openai_tokens_per_minute: float | None = upstream(
        None,
        "model tokens per minute the project may use (empty: learned from OpenAI's headers)",
        parse=lambda n, raw: _optional_number(n, raw),
    )
    whapi_timeout_seconds: float = upstream(
        15.0, "deadline of one Whapi request", parse=_positive_seconds
    )
    whapi_max_attempts: int = upstream(
        4, "attempts of one Whapi call (429, 5xx, connection errors)"
    )
    retry_base_seconds: float = upstream(0.5, "first backoff between attempts (with jitter)")
    retry_max_seconds: float = upstream(8.0, "longest backoff between attempts")
    typing_refresh_seconds: float = replies(
        8.0, "how often 'typing…' is renewed while a turn runs", parse=_positive_seconds
    )
    #: "typing" shows only when a turn takes longer than this (each send simulates typing too).
    typing_delay_seconds: float = replies(1.0, "'typing…' shows only for turns longer than this")
    #: Turns running at once, process-wide, network waits included: past it turns wait. The
    #: bound protects memory (a turn waiting on the model holds its actor, its request and a
    #: connection), not the CPU, which the turns only use between their waits; 0 derives it
    #: from the memory limit (``turns_in_flight``).
    max_concurrent_turns: int = runtime(
        0,
        "turns running at once, process-wide, network waits included (0: a quarter of "
        "WABOT_MEMORY_SOFT_MB at 100 KiB a turn, 2621 at 1024 MB)",
    )
    #: Past this many webhooks being read or journaled at once, webhooks get 503 at once.
    max_pending_webhooks: int = runtime(
        512, "webhooks read or journaled at once; past it webhooks get 503 with Retry-After"
    )
    #: A loop that ran this late lately sheds webhooks (its one core is saturated); 0: never.
    shed_loop_lag_seconds: float = runtime(
        1.0, "webhooks get 503 while the event loop runs later than this (0: never)"
    )
    #: Connections per upstream client (Whapi, OpenAI).
    http_pool_size: int = upstream(
        0, "connections per upstream client, Whapi and OpenAI (0: as many as turns in flight)"
    )
    #: Idle connections kept open per upstream client. httpcore probes every idle connection
    #: (a poll syscall each) whenever a request starts or ends, so a full idle pool of 32 cost
    #: ~14 % of a turn's CPU; busier moments still open up to ``http_pool_size``.
    http_keepalive_size: int = upstream(8, "idle connections kept per upstream client")
    #: At most one automatic full garbage collection per this many seconds (0: CPython's own
    #: pace). Their pause grows with the live actors; see gateway/tuning.py.
    gc_full_interval_seconds: float = runtime(30.0, "full garbage collections at most this often")
    #: A contact's presence subscription is renewed at a turn once older than this.
    presence_resubscribe_seconds: float = buffering(
        86400.0, "renew the presence subscription of a contact after this"
    )
    typing_time_min: float = replies(1.0, "shortest typing_time Whapi shows before a reply part")
    typing_time_max: float = replies(5.0, "longest typing_time before a reply part (at most 60)")
    typing_chars_per_second: float = replies(
        40.0, "typing speed that sizes typing_time", parse=_positive_seconds
    )
    part_pause_seconds: float = replies(0.5, "pause between two parts of a long reply")
    max_part_chars: int = replies(1500, "longest reply part (at most 4096)")

    # What the bot understands (media in).
    media_max_mb: float = media(
        16.0, "largest media downloaded from a customer", parse=_positive_seconds
    )
    media_timeout_seconds: float = media(
        20.0, "deadline of one media download", parse=_positive_seconds
    )
    transcription_model: str = media("gpt-transcribe", "model that transcribes voice notes")
    transcription_language: str | None = media(
        "es", "language hint of transcriptions (none: detect)", parse=_optional
    )
    #: Send images to the model inline (downloaded, base64) instead of by link, for when
    #: Whapi's media links are not reachable from OpenAI.
    image_inline: bool = media(False, "send images to the model inline instead of by link")

    # Context for the model.
    timezone: str = context(
        "America/Bogota", "timezone of the date and time in the context block", parse=_timezone
    )
    context_gap_seconds: float = context(
        3 * 3600.0, "resend the context block after this much silence"
    )
    chat_info_ttl_seconds: float = context(300.0, "how long a chat's name and labels are cached")
    chat_info_max: int = context(10_000, "chats whose name and labels are cached")
    #: A long silence ends the session: the next message starts a fresh conversation.
    session_expiry_seconds: float = context(
        30 * 86400.0, "a conversation silent this long starts afresh, with a summary"
    )
    reset_keywords: tuple[str, ...] = context(
        ("/reset", "/reiniciar"),
        "words that start a fresh conversation (comma-separated)",
        parse=_list,
    )
    reset_reply: str = context(
        "Listo, empecemos de nuevo. ¿En qué te puedo ayudar?", "the answer to a reset keyword"
    )
    #: Chats the bot never answers (phone digits or chat ids).
    ignored_chats: frozenset[str] = context(
        frozenset(), "numbers or chat ids the bot never answers (comma-separated)", parse=_chats
    )

    # Tools.
    tools_module: str | None = tools(
        None, "Python module whose register(registry) adds the business's tools", parse=_optional
    )
    tool_rounds: int = tools(4, "rounds of tool calls per turn at most")
    tool_timeout_seconds: float = tools(20.0, "deadline of one tool call", parse=_positive_seconds)
    escalation_label_id: str | None = tools(
        None, "Whapi label put on a chat escalated to a human", parse=_optional
    )
    operator_chat: str | None = tools(None, "chat that is told about escalations", parse=_optional)
    history_count: int = tools(20, "chat messages read from Whapi for an escalation's summary")

    # Replies in voice.
    voice_replies: bool = voice(
        True, "answer a voice note with a voice note when the reply may be spoken"
    )
    #: "realtime" (OpenAI's Realtime API) or "http" (``/v1/audio/speech``, which OpenAI shuts
    #: down on 2027-01-06: refused at start from that day).
    speech_backend: str = voice(
        "realtime",
        "realtime (OpenAI's Realtime API) or http (/v1/audio/speech, refused from 2027-01-06)",
        parse=lambda n, raw: _choice(n, raw, SPEECH_BACKENDS),
    )
    speech_model: str = voice("gpt-realtime-2.1-mini", "the speech model")
    speech_voice: str = voice(
        "marin",
        "the voice (Realtime: alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar)",
    )
    speech_speed: float = voice(1.0, "speaking speed, 0.25 to 1.5", parse=_between(0.25, 1.5))
    #: Deadline of one whole synthesis (waiting for a socket, every sentence, the encoding).
    speech_timeout_seconds: float = voice(
        30.0, "deadline of one whole synthesis", parse=_positive_seconds
    )
    #: Deadline of the websocket's connection (and of its closing handshake).
    speech_connect_timeout_seconds: float = voice(
        10.0, "deadline of the Realtime websocket's connection", parse=_positive_seconds
    )
    #: The longest silence allowed between two events of the Realtime server.
    speech_event_timeout_seconds: float = voice(
        10.0, "longest silence between two Realtime events", parse=_positive_seconds
    )
    #: Realtime websockets open at once, process-wide (one per synthesis).
    speech_max_sockets: int = voice(16, "Realtime websockets open at once")
    #: Long replies are spoken in responses of whole sentences up to this many characters.
    speech_chunk_chars: int = voice(
        400,
        "long replies are spoken in pieces of whole sentences this long",
        parse=_number(int, minimum=40),
    )
    #: The cap of output tokens of one Realtime response (OpenAI's maximum is 4096).
    speech_max_output_tokens: int = voice(
        4096,
        "output token cap of one Realtime response (at most 4096)",
        parse=_between(1, 4096, int),
    )
    #: Largest normalised word edit distance between the text and what the voice said.
    speech_max_distance: float = voice(
        0.15,
        "largest difference between the text and what the voice said (0 to 1); above it the "
        "reply goes as text",
        parse=_between(0.0, 1.0),
    )
    #: Worker threads that encode PCM to OGG/Opus at once.
    speech_encode_threads: int = voice(2, "threads encoding voice notes to OGG/Opus at once")
    #: WhatsApp limits of a voice note: a longer or larger one goes as text.
    voice_max_seconds: float = voice(
        300.0, "longest voice note sent; a longer one goes as text", parse=_positive_seconds
    )
    voice_max_mb: float = voice(
        16.0,
        "largest voice note sent (WhatsApp's limit is 16)",
        parse=_between(0.0, 16.0, allow_zero=False),
    )
    voice_max_chars: int = voice(600, "replies longer than this go as text")
    #: Replies matching any of these are sent as text (prices, nights, links, amounts).
    voice_text_patterns: tuple[str, ...] = voice(
        (
            r"\$\s?\d",
            r"\d[\d.,]*\s*(?:cop|usd|pesos|d[oó]lares|eur)\b",
            r"\bnoches?\b",
            r"\bnights?\b",
            r"https?://|www\.",
            r"\d{5,}",
        ),
        "replies matching one of these regexes go as text (prices, nights, links); one per "
        "line, or a JSON array",
        parse=lambda n, raw: _patterns(n, raw),
    )
    public_url: str | None = voice(
        None, "public base URL: voice notes are served from /audio/ instead of inline", parse=_url
    )
    audio_ttl_seconds: float = voice(
        300.0, "how long a served voice note stays available", parse=_positive_seconds
    )

    # Answer validation.
    validator_module: str | None = tools(
        None,
        "Python module whose validate(text, tool_outputs) may ask for a correction",
        parse=_optional,
    )
    validator_cooldown_seconds: float = tools(
        300.0, "at most one correction per customer this often"
    )

    # Booking: availability and prices from Beds24 (the check_availability tool).
    beds24_token: str | None = booking(
        None,
        "Beds24 long-life token (read only, enough for availability); turns check_availability on",
        env="BEDS24_TOKEN",
        parse=_optional,
    )
    beds24_refresh_token: str | None = booking(
        None,
        "Beds24 refresh token, exchanged for 24 h tokens; turns check_availability on",
        env="BEDS24_REFRESH_TOKEN",
        parse=_optional,
    )
    beds24_api_url: str = booking(
        "https://api.beds24.com/v2", "Beds24 API v2 base URL", env="BEDS24_API_URL", parse=_url
    )
    beds24_timeout_seconds: float = booking(
        15.0,
        "deadline of one Beds24 request",
        env="BEDS24_TIMEOUT_SECONDS",
        parse=_positive_seconds,
    )
    beds24_max_attempts: int = booking(
        2, "attempts of one Beds24 call (429, 5xx, connection errors)", env="BEDS24_MAX_ATTEMPTS"
    )
    beds24_deadline_seconds: float = booking(
        40.0,
        "deadline of one availability check, every attempt included",
        env="BEDS24_DEADLINE_SECONDS",
        parse=_positive_seconds,
    )
    beds24_cache_seconds: float = booking(
        300.0, "how long an availability answer is reused", env="BEDS24_CACHE_SECONDS"
    )
    beds24_cache_size: int = booking(
        256, "availability answers kept in the cache", env="BEDS24_CACHE_SIZE"
    )
    beds24_max_nights: int = booking(
        30, "longest stay looked up, in nights", env="BEDS24_MAX_NIGHTS"
    )
    beds24_interim_message: str | None = booking(
        "Voy a consultar disponibilidad",
        "sent to the customer, once per turn, before several availability checks (none: off)",
        env="BEDS24_INTERIM_MESSAGE",
        parse=_optional,
    )
    beds24_check_answers: bool = booking(
        False,
        "check apartment names and prices in answers against check_availability: names "
        "corrected, one re-ask per customer per WABOT_VALIDATOR_COOLDOWN_SECONDS",
        env="BEDS24_CHECK_ANSWERS",
    )

    @property
    def beds24(self) -> bool:
        """True when check_availability is on: a Beds24 token or refresh token is set."""
        return bool(self.beds24_token or self.beds24_refresh_token)

    # Answers from the business's own documents (``wabot knowledge sync``).
    #: Stores named here are searched instead of the one ``wabot knowledge sync`` keeps.
    vector_store_ids: tuple[str, ...] = knowledge(
        (),
        "OpenAI vector stores the answers search (comma-separated); empty: the one "
        "`wabot knowledge sync` keeps",
        parse=_list,
    )
    file_search_max_results: int = knowledge(
        5, "passages one document search gives the model (1 to 50)", parse=_between(1, 50, int)
    )
    knowledge_index_timeout_seconds: float = knowledge(
        600.0,
        "how long `wabot knowledge sync` waits for OpenAI to index the documents",
        parse=_positive_seconds,
    )

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def turns_in_flight(self) -> int:
        """The bound on turns in flight: ``max_concurrent_turns``, or derived from memory.

        A quarter of the soft memory limit (the rest is for idle actors, caches and the
        process itself) divided by what one customer with a turn waiting on the model costs
        (``TURN_IN_FLIGHT_BYTES``, measured by ``bench.inflight``).
        """
        if self.max_concurrent_turns:
            return self.max_concurrent_turns
        budget = (self.memory_soft_mb or DEFAULT_MEMORY_SOFT_MB) * 2**20 * TURN_MEMORY_SHARE
        return max(MIN_TURNS_IN_FLIGHT, int(budget // TURN_IN_FLIGHT_BYTES))

    @property
    def pool_size(self) -> int:
        """Connections per upstream client: ``http_pool_size``, or one per turn in flight."""
        return self.http_pool_size or self.turns_in_flight

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


#: The two ways to give the ``instructions`` setting (``_build`` reads them), and their meaning.
INSTRUCTION_VARIABLES = {
    "WABOT_INSTRUCTIONS": "the assistant's system prompt, inline",
    "WABOT_INSTRUCTIONS_FILE": "the assistant's system prompt, from a UTF-8 file",
}


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


#: (environment variable, field, parser) of every setting, in declaration order: read from
#: the declarations, never written a second time.
_VARIABLES: tuple[tuple[str, str, Callable[[str, str], Any]], ...] = tuple(
    (f.metadata["env"], f.name, f.metadata["parse"])
    for f in attrs.fields(Settings)
    if f.metadata.get("env")
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
    if settings.beds24_token and settings.beds24_refresh_token:
        raise SettingsError("set BEDS24_TOKEN or BEDS24_REFRESH_TOKEN, not both")
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
