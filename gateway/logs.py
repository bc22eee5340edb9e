"""Logging setup: JSON lines in production, readable lines in development.

Every line about a customer carries their user key, and inside a turn the turn id: a filter
on the handler copies them from the context variables of ``actors.runtime.logcontext`` (bound where
a user actor and a turn start; trio tasks inherit them). Secrets never reach a log line: the
formatter masks every configured token and key wherever it appears, as a last line of
defence behind code that never logs them on purpose. Message text is logged at DEBUG only.

The HTTP and SDK libraries (httpx, httpx2, httpcore, httpcore2, hpack, openai) log every
request and frame at DEBUG and INFO: they are held at WARNING (``library_level``) whatever the
root level, so DEBUG shows wabot's own lines. hypercorn keeps INFO (its start line and the
access log) but never goes below the root level, even after hypercorn resets its loggers' levels
when it starts serving. The access log's request is structured:
``method``, ``path`` (no query string), ``status``, ``duration_ms``, ``bytes`` and ``client``
are fields of the record (JSON keys in production). A 401 is logged once, by the code that
refused it, saying what was refused and why (``log_refusal``); hypercorn's access line for it
is dropped.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from actors.runtime import logcontext

if TYPE_CHECKING:
    from actors.settings import Settings

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
#: The context fields, in the order the text format shows them.
CONTEXT_FIELDS = ("channel", "user", "turn")
#: Libraries whose request-by-request lines are noise: held at ``library_level``.
QUIET_LIBRARIES = ("httpx", "httpx2", "httpcore", "httpcore2", "hpack", "openai")
#: hypercorn's loggers: INFO (its start line, the access log), or the root level if higher.
HYPERCORN_LOGGERS = ("hypercorn.error", "hypercorn.access")
ACCESS_LOGGER = "hypercorn.access"


def secrets_of(settings: Settings) -> list[str]:
    """The configured values that must never appear in a log line, every channel's too."""
    from actors.channels import load_channels
    from actors.settings import SettingsError

    values = [
        settings.whapi_token,
        settings.openai_api_key,
        settings.webhook_secret,
        settings.admin_token,
    ]
    try:
        channels = load_channels(settings)
    except SettingsError:  # the start refuses it, saying why
        channels = {}
    for channel in channels.values():
        values += (
            channel.settings.whapi_token,
            channel.settings.openai_api_key,
            channel.settings.webhook_secret,
        )
    return list(dict.fromkeys(value for value in values if value))


class ContextFilter(logging.Filter):
    """Adds ``user``, ``turn`` (and ``channel``) from ``runtime.logcontext`` (an explicit
    ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in logcontext.current().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


#: Request headers whose values never stay in an access record's atoms (lower case, as
#: hypercorn keys them; ``x-webhook-secret`` is ``gateway.app.SECRET_HEADER``).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-webhook-secret"})


class _Atoms(dict[str, Any]):
    """Access-log atoms without secrets: like hypercorn's, a missing atom formats as ``-``."""

    def __missing__(self, key: str) -> str:
        return "-"


class AccessFields(logging.Filter):
    """Copies hypercorn's access-log atoms into fields; drops 401s (``log_refusal`` logs them).

    hypercorn logs each request as ``access_log_format % atoms``, with the atoms (a mapping)
    as the record's ``args``; the format stays the message and the atoms become ``method``,
    ``path``, ``status``, ``duration_ms``, ``bytes`` and ``client``. hypercorn's atoms also
    hold every request header and every environment variable (credentials included): the
    record keeps only the others, whatever handler sees it. Installed on the access logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != ACCESS_LOGGER or not isinstance(record.args, Mapping):
            return True
        atoms = record.args
        status = _int_or_none(atoms.get("s"))
        if status == 401:
            return False
        record.args = _Atoms(
            (key, value)
            for key, value in atoms.items()
            if not key.endswith("}e") and key.removesuffix("}i").lstrip("{") not in _SECRET_HEADERS
        )
        record.method = atoms.get("m")
        record.path = atoms.get("U")
        record.status = status
        duration = _float_or_none(atoms.get("L"))
        record.duration_ms = None if duration is None else round(duration * 1000, 3)
        record.bytes = _int_or_none(atoms.get("b"))
        record.client = atoms.get("h")
        return True


def guard_access_log() -> None:
    """Install ``AccessFields`` on hypercorn's access logger, once: whoever configured the
    handlers (``configure``, a test's capture, an embedding program), no access record
    reaches them with the request's secrets or the environment in its atoms."""
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, AccessFields) for f in access.filters):
        access.addFilter(AccessFields())


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _float_or_none(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def log_refusal(
    logger: logging.Logger,
    *,
    status: int,
    method: str,
    path: str,
    client: str | None,
    why: str,
) -> None:
    """The one line for a refused request (the access log drops 401s): what, from where, why.

    ``why`` names the header or setting at fault, never a value a client sent.
    """
    logger.warning(
        "refused %s %s from %s with %d: %s",
        method,
        path,
        client or "unknown client",
        status,
        why,
        extra={"method": method, "path": path, "status": status, "client": client},
    )


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


class _HypercornFloor(logging.Filter):
    """Drops hypercorn's records under ``level``: hypercorn sets its loggers' levels from its
    own configuration when it starts serving, after ``configure`` set them."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or not record.name.startswith("hypercorn.")


def configure_for(settings: Settings) -> None:
    """``configure`` as the settings say, then one warning per ``WABOT_*`` variable that is no
    setting (with the closest setting's name)."""
    from actors.settings import unknown_variables

    configure(
        production=settings.production, level=settings.log_level, secrets=secrets_of(settings)
    )
    for line in unknown_variables():
        logging.getLogger("wabot").warning("%s", line)


def configure(
    *,
    production: bool,
    level: str = "INFO",
    secrets: Iterable[str] = (),
    library_level: str = "WARNING",
) -> None:
    """Install the one handler on the root logger and set the levels (module docstring)."""
    redactor = _Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if production else TextFormatter(redactor))
    root = logging.getLogger()
    root.setLevel(level.upper())
    floor = root.level
    handler.addFilter(ContextFilter())
    handler.addFilter(_HypercornFloor(max(floor, logging.INFO)))
    root.handlers[:] = [handler]
    guard_access_log()
    libraries = logging.getLevelName(library_level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(floor, libraries))
    for name in HYPERCORN_LOGGERS:
        logging.getLogger(name).setLevel(max(floor, logging.INFO))
