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

from actors.settings import _VARIABLES, INSTRUCTION_VARIABLES, Settings

#: Shown as "set"/"not set", never as their value.
SECRETS = frozenset({"WHAPI_TOKEN", "OPENAI_API_KEY", "WABOT_WEBHOOK_SECRET", "WABOT_ADMIN_TOKEN"})

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

MEANINGS: dict[str, str] = {
    "WHAPI_TOKEN": "Whapi channel token (the sandbox runs when it is missing)",
    "WHAPI_API_URL": "Whapi base URL",
    "OPENAI_API_KEY": "OpenAI API key (the sandbox runs when it is missing)",
    "OPENAI_BASE_URL": "OpenAI base URL (empty: the SDK's; the Realtime websocket follows it)",
    "OPENAI_MODEL": "model of the answers (configuration, not code: models retire)",
    "WABOT_INSTRUCTIONS": "the assistant's system prompt, inline",
    "WABOT_INSTRUCTIONS_FILE": "the assistant's system prompt, from a UTF-8 file",
    "WABOT_FALLBACK_TEXT": "what the customer reads when the model or Whapi failed",
    "HOST": "address to listen on",
    "PORT": "port to listen on (0 to 65535; 0 picks a free one)",
    "WABOT_WEBHOOK_SECRET": "value of the X-Webhook-Secret header every webhook must carry "
    "(required in production)",
    "WABOT_ADMIN_TOKEN": "bearer token of the admin endpoints (empty: they are off, 404)",
    "WABOT_DATA_DIR": "the store's directory: snapshot, journal, backups, lock",
    "WABOT_TMP_DIR": "scratch directory of downloaded and synthesized audio",
    "WABOT_ENV": "development or production (JSON logs; credentials and secret required)",
    "WABOT_MAX_BODY_BYTES": "largest webhook body accepted (413 above)",
    "WABOT_HTTP_GRACEFUL_SECONDS": "after the drain, how long open HTTP connections may finish",
    "WABOT_HTTP_READ_TIMEOUT_SECONDS": "a client that sends nothing for this long is cut",
    "WABOT_HTTP_KEEP_ALIVE_SECONDS": "idle keep-alive connections close after this",
    "WABOT_IGNORE_GROUPS": "ignore group chats (broadcasts and newsletters always are)",
    "WABOT_BUFFER_SECONDS": "wait after a customer's latest message before answering",
    "WABOT_VOICE_BUFFER_SECONDS": "the same wait after a voice note",
    "WABOT_TYPING_SECONDS": "wait after the customer's latest typing/recording presence",
    "WABOT_MAX_WAIT_SECONDS": "hard cap on how long a buffered message waits",
    "WABOT_MAX_BUFFERED": "answer at once when this many messages are waiting",
    "WABOT_MAX_BUFFERED_CHARS": "characters buffered per customer; the excess is dropped (flood)",
    "WABOT_IDLE_SECONDS": "an idle customer's actor stops after this",
    "WABOT_MAILBOX_SIZE": "events queued per actor before it resyncs from the durable inbox",
    "WABOT_MAX_ACTORS": "live actors at most; the idlest are passivated above it",
    "WABOT_RESTART_LIMIT": "crashes of one actor within the window before it is parked",
    "WABOT_RESTART_WINDOW_SECONDS": "the window of the restart limit",
    "WABOT_RESTART_BACKOFF_SECONDS": "first wait before restarting a crashed actor",
    "WABOT_RESTART_BACKOFF_MAX_SECONDS": "longest wait before restarting a crashed actor",
    "WABOT_PARK_SECONDS": "how long a crash-looping actor stays parked",
    "WABOT_DEDUPE_WINDOW_SIZE": "message ids remembered in memory to drop redeliveries fast",
    "WABOT_DEDUPE_WINDOW_SECONDS": "how long the in-memory dedupe window remembers an id",
    "WABOT_ECHO_IDS_SIZE": "ids of our own sends remembered per actor (to ignore their echoes)",
    "WABOT_DRAIN_SECONDS": "on SIGTERM, how long in-flight turns may take to finish",
    "WABOT_SETTLE_RETRY_SECONDS": "how long an actor keeps retrying to mark messages answered",
    "WABOT_RETENTION_DAYS": "records of customers silent for longer are removed",
    "WABOT_DEDUPE_DAYS": "answered message ids are remembered on disk this long",
    "WABOT_BACKUPS_HOURLY": "hourly backups kept",
    "WABOT_BACKUPS_DAILY": "daily backups kept",
    "WABOT_JOURNAL_MAX_MB": "the journal is compacted into a snapshot past this size",
    "WABOT_TMP_MAX_MB": "scratch directory size cap (oldest files removed first)",
    "WABOT_TMP_MAX_AGE_SECONDS": "scratch files older than this are removed",
    "WABOT_HANDOFF_PAUSE_SECONDS": "the bot stays silent this long after a human agent wrote, "
    "an escalation, or an operator's pause without seconds",
    "WABOT_MEMORY_SOFT_MB": "over this RSS idle actors are passivated and caches shrink",
    "WABOT_MEMORY_HARD_MB": "over this RSS new webhooks get 503 until memory falls",
    "WABOT_MEMORY_CHECK_SECONDS": "how often the memory watchdog looks",
    "WABOT_STORE_RECOVERY_SECONDS": "after a failed journal write, how often the store retries",
    "WABOT_LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR",
    "WABOT_LOG_MESSAGE_TEXT": "put the customer's text in the 'message received' log line",
    "WABOT_TURN_TIMEOUT_SECONDS": "deadline of one turn, model calls and sends included",
    "WABOT_OPENAI_TIMEOUT_SECONDS": "deadline of one OpenAI request",
    "WABOT_OPENAI_MAX_ATTEMPTS": "attempts of one OpenAI call (retryable failures only)",
    "WABOT_WHAPI_TIMEOUT_SECONDS": "deadline of one Whapi request",
    "WABOT_WHAPI_MAX_ATTEMPTS": "attempts of one Whapi call (429, 5xx, connection errors)",
    "WABOT_RETRY_BASE_SECONDS": "first backoff between attempts (with jitter)",
    "WABOT_RETRY_MAX_SECONDS": "longest backoff between attempts",
    "WABOT_TYPING_REFRESH_SECONDS": "how often 'typing…' is renewed while a turn runs",
    "WABOT_TYPING_DELAY_SECONDS": "'typing…' shows only for turns longer than this",
    "WABOT_MAX_CONCURRENT_TURNS": "turns running at once, process-wide",
    "WABOT_HTTP_POOL_SIZE": "connections per upstream client (Whapi, OpenAI)",
    "WABOT_HTTP_KEEPALIVE_SIZE": "idle connections kept per upstream client",
    "WABOT_GC_FULL_INTERVAL_SECONDS": "full garbage collections at most this often",
    "WABOT_PRESENCE_RESUBSCRIBE_SECONDS": "renew the presence subscription of a contact after this",
    "WABOT_TYPING_TIME_MIN": "shortest typing_time Whapi shows before a reply part",
    "WABOT_TYPING_TIME_MAX": "longest typing_time before a reply part (at most 60)",
    "WABOT_TYPING_CHARS_PER_SECOND": "typing speed that sizes typing_time",
    "WABOT_PART_PAUSE_SECONDS": "pause between two parts of a long reply",
    "WABOT_MAX_PART_CHARS": "longest reply part (at most 4096)",
    "WABOT_MEDIA_MAX_MB": "largest media downloaded from a customer",
    "WABOT_MEDIA_TIMEOUT_SECONDS": "deadline of one media download",
    "WABOT_TRANSCRIPTION_MODEL": "model that transcribes voice notes",
    "WABOT_TRANSCRIPTION_LANGUAGE": "language hint of transcriptions (none: detect)",
    "WABOT_IMAGE_INLINE": "send images to the model inline instead of by link",
    "WABOT_TIMEZONE": "timezone of the date and time in the context block",
    "WABOT_CONTEXT_GAP_SECONDS": "resend the context block after this much silence",
    "WABOT_CHAT_INFO_TTL_SECONDS": "how long a chat's name and labels are cached",
    "WABOT_CHAT_INFO_MAX": "chats whose name and labels are cached",
    "WABOT_SESSION_EXPIRY_SECONDS": "a conversation silent this long starts afresh, with a summary",
    "WABOT_RESET_KEYWORDS": "words that start a fresh conversation (comma-separated)",
    "WABOT_RESET_REPLY": "the answer to a reset keyword",
    "WABOT_IGNORED_CHATS": "numbers or chat ids the bot never answers (comma-separated)",
    "WABOT_TOOLS_MODULE": "Python module whose register(registry) adds the business's tools",
    "WABOT_TOOL_ROUNDS": "rounds of tool calls per turn at most",
    "WABOT_TOOL_TIMEOUT_SECONDS": "deadline of one tool call",
    "WABOT_ESCALATION_LABEL_ID": "Whapi label put on a chat escalated to a human",
    "WABOT_OPERATOR_CHAT": "chat that is told about escalations",
    "WABOT_HISTORY_COUNT": "chat messages read from Whapi for an escalation's summary",
    "WABOT_VOICE_REPLIES": "answer a voice note with a voice note when the reply may be spoken",
    "WABOT_SPEECH_BACKEND": "realtime (OpenAI's Realtime API) or http (/v1/audio/speech, "
    "refused from 2027-01-06)",
    "WABOT_SPEECH_MODEL": "the speech model",
    "WABOT_SPEECH_VOICE": "the voice (Realtime: alloy, ash, ballad, coral, echo, sage, shimmer, "
    "verse, marin, cedar)",
    "WABOT_SPEECH_SPEED": "speaking speed, 0.25 to 1.5",
    "WABOT_SPEECH_TIMEOUT_SECONDS": "deadline of one whole synthesis",
    "WABOT_SPEECH_CONNECT_TIMEOUT_SECONDS": "deadline of the Realtime websocket's connection",
    "WABOT_SPEECH_EVENT_TIMEOUT_SECONDS": "longest silence between two Realtime events",
    "WABOT_SPEECH_MAX_SOCKETS": "Realtime websockets open at once",
    "WABOT_SPEECH_CHUNK_CHARS": "long replies are spoken in pieces of whole sentences this long",
    "WABOT_SPEECH_MAX_OUTPUT_TOKENS": "output token cap of one Realtime response (at most 4096)",
    "WABOT_SPEECH_MAX_DISTANCE": "largest difference between the text and what the voice said "
    "(0 to 1); above it the reply goes as text",
    "WABOT_SPEECH_ENCODE_THREADS": "threads encoding voice notes to OGG/Opus at once",
    "WABOT_VOICE_MAX_SECONDS": "longest voice note sent; a longer one goes as text",
    "WABOT_VOICE_MAX_MB": "largest voice note sent (WhatsApp's limit is 16)",
    "WABOT_VOICE_MAX_CHARS": "replies longer than this go as text",
    "WABOT_VOICE_TEXT_PATTERNS": "replies matching one of these regexes go as text (prices, "
    "nights, links); one per line, or a JSON array",
    "WABOT_PUBLIC_URL": "public base URL: voice notes are served from /audio/ instead of inline",
    "WABOT_AUDIO_TTL_SECONDS": "how long a served voice note stays available",
    "WABOT_VALIDATOR_MODULE": "Python module whose validate(text, tool_outputs) may ask for a "
    "correction",
    "WABOT_VALIDATOR_COOLDOWN_SECONDS": "at most one correction per customer this often",
}

_FIELDS = {name: field for name, field, _convert in _VARIABLES}
_FIELDS.update({name: "instructions" for name in INSTRUCTION_VARIABLES})


def names() -> list[str]:
    """Every setting's variable, in the settings module's order."""
    return list(_FIELDS)


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
    for name in names():
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
    for name in names():
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
    return _between(text, BEGIN_ALL, END_ALL, markdown_table(names()))


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
