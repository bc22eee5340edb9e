"""Logging setup: JSON lines in production, readable lines in development.

Every line about a customer carries their user key, and inside a turn the turn id: a filter
on the handler copies them from the context variables of ``actors.logcontext`` (bound where
a user actor and a turn start; trio tasks inherit them). Secrets never reach a log line: the
formatter masks every configured token and key wherever it appears, as a last line of
defence behind code that never logs them on purpose. Message text is logged at DEBUG only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from actors import logcontext

if TYPE_CHECKING:
    from actors.settings import Settings

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
#: The context fields, in the order the text format shows them.
CONTEXT_FIELDS = ("user", "turn")


def secrets_of(settings: Settings) -> list[str]:
    """The configured values that must never appear in a log line."""
    values = (
        settings.whapi_token,
        settings.openai_api_key,
        settings.webhook_secret,
        settings.admin_token,
    )
    return [value for value in values if value]


class ContextFilter(logging.Filter):
    """Adds ``user`` and ``turn`` from ``actors.logcontext`` (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in logcontext.current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class _Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(sorted((s for s in secrets if s and len(s) >= 6), key=len)[::-1])

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: _Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and value is not None:
                entry[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._redactor.redact(json.dumps(entry, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: _Redactor) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s%(context)s: %(message)s", "%H:%M:%S"
        )
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{key}={value}"
            for key in CONTEXT_FIELDS
            if (value := getattr(record, key, None)) is not None
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        try:
            return self._redactor.redact(super().format(record))
        finally:
            del record.context


def configure(*, production: bool, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    redactor = _Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if production else TextFormatter(redactor))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Their request lines (URLs, never bodies) are noise at INFO.
    for name in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)
