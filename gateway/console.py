"""The operator console: ``/console``, web pages to watch and steer the bot.

``console_blueprint(service)`` is a Quart blueprint served by the same app as the admin API,
and under the same rule: without ``WABOT_ADMIN_TOKEN`` every ``/console`` URL is a 404.

Who gets in:

- ``GET /console/login`` shows a form that takes the admin token; ``POST /console/login``
  compares it (``hmac.compare_digest``) and opens a server-side session: a random id in the
  ``wabot_console`` cookie (HttpOnly, SameSite=Strict, path ``/console``, Secure unless
  ``WABOT_ENV=development``), expiring after ``WABOT_CONSOLE_SESSION_SECONDS``. The login form
  carries its own one-time CSRF value (a cookie and a form field that must match). A refused
  token is one warning (``gateway.logs.log_refusal``) and counts as ``admin_unauthorized``;
  the token itself is never logged, put in a URL or sent back;
- every page and JSON read needs the session (pages redirect to the login form, JSON answers
  401); every state-changing request (``POST``: logout, pause, resume, reset, verify) needs
  the session's CSRF token too, in the ``csrf`` form field or the ``X-CSRF-Token`` header,
  or it is refused with 403 and changes nothing. Sessions live in memory (at most
  ``MAX_SESSIONS``, the oldest closed first): a restart logs everyone out;
- every console response is ``Cache-Control: no-store`` with a Content-Security-Policy that
  allows only the console's own script and style (no inline script runs).

The pages (``gateway/templates/console/``, text from ``gateway.console_i18n`` in
``WABOT_CONSOLE_LANGUAGE``), each readable on a 360-pixel-wide screen:

- ``GET /console/``: the overview, redrawn every ``POLL_MS`` from ``GET /console/api/overview``
  (live actors by phase, turns per minute, the last hour's turns, errors and fallbacks with a
  chart, pending inbox, store health and the newest backup's age, memory against the
  watchdog's limits, Whapi's and OpenAI's health, the customers with activity and the latest
  turns);
- ``GET /console/customers?q=``: customers by number or name, most recent first;
- ``GET /console/customers/<user>``: the record, what the actor is doing now and since when
  (polled from ``GET /console/api/customers/<user>``), the pause, the recent conversation
  (the WhatsApp chat as the customer saw it, from Whapi; the messages received and not yet
  answered, from the store; the OpenAI conversation's items, when the model client has a
  public ``list_items(conversation_id, limit=...)``), and pause/resume/reset buttons
  (``POST /console/customers/<user>/<action>``, each confirmed in the browser) that go
  through ``gateway.control``, the admin API's own control path;
- ``GET /console/data``: the backups with their age and a verify button
  (``POST /console/data/verify``), and the quarantine's latest entries.

Every figure comes from the service's existing read paths: the supervisor's cells and their
``behavior.inspect()``, the store's reads, ``store.backups``, ``quarantine.jsonl``, the memory
watchdog, and the telemetry counters through ``gateway.console_history``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs
import trio
from quart import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from actors.channels import SEPARATOR
from gateway.console_history import ActivityHistory, telemetry_totals
from gateway.console_i18n import age, texts
from gateway.control import ACTIONS, control_actor, valid_user
from gateway.logs import log_refusal
from gateway.watchdog import rss_bytes
from store.backups import list_backups, validate_backup
from store.errors import StoreCorrupt

if TYPE_CHECKING:
    from gateway.service import Service
    from store.records import UserRecord

log = logging.getLogger("gateway.console")

SESSION_COOKIE = "wabot_console"
LOGIN_COOKIE = "wabot_console_login"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS = 64
LOGIN_FORM_SECONDS = 600
#: How often the overview and a customer's page ask for fresh figures.
POLL_MS = 2000
#: The longest pause the console accepts (as the admin API: a longer one is a mistake).
MAX_PAUSE_MINUTES = 30 * 24 * 60
SEARCH_LIMIT = 50
ACTIVE_LIMIT = 50
RECENT_TURNS = 20
QUARANTINE_SHOWN = 50
QUARANTINE_TAIL_BYTES = 256 * 1024
HISTORY_MESSAGES = 20
UPSTREAM_READ_SECONDS = 5.0
BACKUPS_CACHE_SECONDS = 15.0

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Actor phases shown as their own group; any other live phase is a turn's stage.
PHASE_GROUPS = {
    "buffering": "buffering",
    "paused": "paused",
    "idle": "idle",
    "parked": "other",
    "starting": "other",
}
GROUPS = ("buffering", "turn", "paused", "idle", "other")


def phase_group(phase: str) -> str:
    """The overview's group of an actor phase: buffering, turn, paused, idle or other."""
    return PHASE_GROUPS.get(phase, "turn")


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@attrs.define
class ConsoleSession:
    csrf: str
    expires_at: float


class ConsoleSessions:
    """Open console sessions by the hash of their id; ``clock`` is monotonic seconds."""

    def __init__(
        self,
        lifetime: float,
        *,
        limit: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._clock = clock
        self._open: OrderedDict[str, ConsoleSession] = OrderedDict()

    def open(self) -> tuple[str, ConsoleSession]:
        """A new session: its id (the cookie's value) and its CSRF token."""
        self._expire()
        while len(self._open) >= self.limit:
            self._open.popitem(last=False)
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(secrets.token_urlsafe(32), self._clock() + self.lifetime)
        self._open[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id:
            return None
        key = _key(session_id)
        session = self._open.get(key)
        if session is not None and session.expires_at <= self._clock():
            del self._open[key]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._open.pop(_key(session_id), None)

    def __len__(self) -> int:
        self._expire()
        return len(self._open)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._open.items() if s.expires_at <= now]:
            del self._open[key]


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a secret a client sent with the expected one."""
    return bool(given and expected) and hmac.compare_digest(
        str(given).encode(), str(expected).encode()
    )


# -- what the pages show ---------------------------------------------------------------------


@attrs.define
class BackupsSeen:
    """The newest backup's time and the count, read at most every ``BACKUPS_CACHE_SECONDS``."""

    directory: Path
    newest: datetime | None = None
    count: int = 0
    read_at: float | None = None

    async def refresh(self) -> None:
        now = trio.current_time()
        if self.read_at is not None and now - self.read_at < BACKUPS_CACHE_SECONDS:
            return
        found = await trio.to_thread.run_sync(list_backups, self.directory)
        self.newest = found[0].taken_at if found else None
        self.count = len(found)
        self.read_at = now


class RecentTurns:
    """The latest finished turns seen on the actors (kept after their actor has stopped)."""

    def __init__(self, size: int = RECENT_TURNS) -> None:
        self._turns: deque[dict[str, Any]] = deque(maxlen=size)
        self._seen: deque[str] = deque(maxlen=size * 4)

    def see(self, user: str, last_turn: dict[str, Any] | None) -> None:
        if not last_turn or not last_turn.get("id") or last_turn["id"] in self._seen:
            return
        self._seen.append(last_turn["id"])
        self._turns.append({"user": user, **last_turn})

    def latest(self) -> list[dict[str, Any]]:
        return sorted(self._turns, key=lambda t: t.get("ended_at") or "", reverse=True)


def _display_name(record: UserRecord | None) -> str | None:
    if record is None:
        return None
    return record.name or (record.user_name if record.user_name != record.user_id else None)


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _seconds_since(value: Any) -> float | None:
    when = _parse_iso(value) if not isinstance(value, datetime) else value
    return None if when is None else (datetime.now(UTC) - when).total_seconds()


def _since(info: dict[str, Any], idle_seconds: float) -> float | None:
    """How long the actor has been doing what it does now, from its inspection."""
    if info.get("turn"):
        return info["turn"].get("elapsed_seconds")
    if info.get("phase") == "buffering":
        return info.get("buffer", {}).get("age_seconds")
    return idle_seconds


async def overview_data(
    service: Service,
    history: ActivityHistory,
    backups: BackupsSeen | None,
    recent: RecentTurns,
) -> dict[str, Any]:
    """The overview's figures (the JSON the page polls)."""
    history.sample()
    supervisor, store = service.supervisor, service.store
    cells = supervisor.cells() if supervisor is not None else []
    now = trio.current_time()
    groups = dict.fromkeys(GROUPS, 0)
    active: list[dict[str, Any]] = []
    for cell in cells:
        phase = cell.phase
        group = phase_group(phase)
        groups[group] += 1
        behavior = cell.behavior
        recent.see(cell.key, getattr(behavior, "last_turn", None))
        if group == "idle" or len(active) >= ACTIVE_LIMIT:
            continue
        idle_seconds = now - cell.last_active
        info = behavior.inspect() if behavior is not None else {"phase": phase}
        record = store.get(cell.key) if store is not None else None
        active.append(
            {
                "user": cell.key,
                "name": _display_name(record),
                "phase": phase,
                "group": group,
                "since_seconds": _rounded(_since(info, idle_seconds)),
                "messages": (info.get("buffer") or {}).get("messages", 0),
            }
        )
    stats = store.stats() if store is not None else None
    if backups is not None:
        await backups.refresh()
    series = history.series()
    last_hour = history.totals()
    watchdog = service.watchdog
    return {
        "at": time.time(),
        "ready": service.ready,
        "draining": service.draining,
        "live": len(cells),
        "groups": groups,
        "active": active,
        "recent_turns": [
            {
                "user": t["user"],
                "outcome": t.get("outcome"),
                "error": t.get("error"),
                "seconds": t.get("seconds"),
                "ago_seconds": _rounded(_seconds_since(t.get("ended_at"))),
            }
            for t in recent.latest()
        ],
        "turns_last_minute": series[-1]["turns"],
        "turns_per_minute_hour": round(last_hour["turns"] / len(series), 2),
        "last_hour": last_hour,
        "chart": [
            {"minute": m["minute"], "turns": m["turns"], "errors": m["errors"]} for m in series
        ],
        "inbox_pending": stats.pending if stats else 0,
        "store": {
            "healthy": bool(stats and stats.healthy),
            "outage_seconds": _rounded(time.time() - stats.outage_since)
            if stats and stats.outage_since
            else None,
            "last_error": stats.last_error if stats else None,
            "records": stats.records if stats else 0,
            "quarantined": stats.quarantined if stats else 0,
            "backups": backups.count if backups else 0,
            "last_backup_seconds": _rounded(_seconds_since(backups.newest))
            if backups and backups.newest
            else None,
        },
        "memory": {
            "rss_bytes": rss_bytes(),
            "soft_bytes": watchdog.soft_bytes,
            "hard_bytes": watchdog.hard_bytes,
            "level": watchdog.level,
        },
        "upstream": history.upstream_health(),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 1)


def actor_state(service: Service, user: str) -> dict[str, Any]:
    """What the customer's actor is doing now (the JSON a customer's page polls)."""
    supervisor = service.supervisor
    cell = supervisor.cell(user) if supervisor is not None else None
    record = service.store.get(user) if service.store is not None else None
    paused = record is not None and record.paused_until is not None
    pause = (
        {"until": record.paused_until.isoformat(), "by": record.paused_by or "unknown"}
        if paused and record is not None and record.paused_until > datetime.now(UTC)
        else None
    )
    if cell is None or cell.behavior is None:
        return {
            "user": user,
            "live": False,
            "phase": "passivated",
            "pause": pause,
            "known": record is not None,
        }
    info = cell.behavior.inspect()
    info.update(
        live=True,
        known=True,
        pause=pause or info.get("pause"),
        mailbox=cell.mailbox_depth,
        restarts=cell.restarts,
        idle_seconds=round(trio.current_time() - cell.last_active, 1),
    )
    return info


def _text_of(message: dict[str, Any]) -> str:
    for field in ("text", "link_preview"):
        body = message.get(field)
        if isinstance(body, dict) and isinstance(body.get("body"), str):
            return body["body"]
    for field in ("image", "video", "document", "audio", "voice"):
        media = message.get(field)
        if isinstance(media, dict):
            caption = media.get("caption") or media.get("filename")
            return f"[{field}] {caption}" if caption else f"[{field}]"
    return f"[{message.get('type') or '?'}]"


def whatsapp_line(message: dict[str, Any]) -> dict[str, Any]:
    """One Whapi chat message as the customer saw it: who (customer, bot, agent), when, text."""
    if not message.get("from_me"):
        who = "customer"
    else:
        who = "bot" if message.get("source") == "api" else "agent"
    stamp = message.get("timestamp")
    at = datetime.fromtimestamp(stamp, UTC) if isinstance(stamp, int | float) else None
    return {"who": who, "at": at, "text": _text_of(message)}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif part.get("type") == "input_image":
                    parts.append("[image]")
        return "\n".join(parts)
    return ""


def openai_line(item: Any) -> dict[str, Any] | None:
    """One Conversations API item for the page: who (user, assistant, tool…) and the text."""
    data = item.model_dump() if hasattr(item, "model_dump") else item
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    if kind == "message":
        return {"who": data.get("role") or "system", "text": _content_text(data.get("content"))}
    if kind == "function_call":
        return {"who": "tool", "text": f"{data.get('name')}({data.get('arguments') or ''})"}
    if kind == "function_call_output":
        return {"who": "tool", "text": str(data.get("output") or "")[:500]}
    return None


async def _bounded(call: Awaitable[Any]) -> Any:
    with trio.fail_after(UPSTREAM_READ_SECONDS):
        return await call


async def conversation(service: Service, record: UserRecord | None) -> dict[str, Any]:
    """The recent conversation: the WhatsApp chat, the unanswered messages, the model's items.

    Each source that fails says why (``*_error``) instead of failing the page.
    """
    out: dict[str, Any] = {
        "whatsapp": None,
        "whatsapp_error": None,
        "pending": [],
        "openai": None,
        "openai_error": None,
        "openai_supported": True,
    }
    if record is None:
        return out
    store = service.store
    if store is not None:
        out["pending"] = [
            {"at": entry.received_at, "text": _text_of(entry.payload)}
            for entry in store.pending_for(record.user_id)
        ]
    deps = service.deps
    if deps is None:
        return out
    try:
        messages = await _bounded(deps.whapi.list_messages(record.chat_id, count=HISTORY_MESSAGES))
        out["whatsapp"] = [whatsapp_line(m) for m in reversed(messages)]
    except Exception as exc:
        out["whatsapp_error"] = _reason(exc)
    lister = getattr(deps.model, "list_items", None)
    if not callable(lister):
        out["openai_supported"] = False
    elif record.conversation_id:
        try:
            items = await _bounded(lister(record.conversation_id, limit=HISTORY_MESSAGES))
            lines = [openai_line(item) for item in items]
            out["openai"] = [line for line in lines if line is not None]
        except Exception as exc:
            out["openai_error"] = _reason(exc)
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return f"no answer within {UPSTREAM_READ_SECONDS:g} s"
    return f"{type(exc).__name__}: {exc}"[:300]


def search_customers(service: Service, query: str) -> list[dict[str, Any]]:
    """Records matching ``query`` (digits of the number, or part of the name), newest first.

    The console is the ``default`` channel's (``actors.channels``): other channels' customers
    are not listed."""
    store = service.store
    if store is None:
        return []
    query = query.strip()
    digits = "".join(ch for ch in query if ch.isdigit())
    by_number = bool(digits) and all(ch.isdigit() or ch in "+-() " for ch in query)
    lowered = query.lower()
    found = []
    for record in store.records():
        if SEPARATOR in record.user_id:  # another channel's customer
            continue
        if query and not (
            (by_number and digits in record.user_id)
            or lowered in (record.name or "").lower()
            or lowered in record.user_name.lower()
        ):
            continue
        found.append(record)
    found.sort(key=lambda r: r.last_activity, reverse=True)
    supervisor = service.supervisor
    rows = []
    for record in found[:SEARCH_LIMIT]:
        cell = supervisor.cell(record.user_id) if supervisor is not None else None
        rows.append(
            {
                "user": record.user_id,
                "name": _display_name(record),
                "last_activity": record.last_activity,
                "phase": cell.phase if cell is not None else "passivated",
            }
        )
    return rows


def read_quarantine(path: Path, count: int = QUARANTINE_SHOWN) -> list[dict[str, Any]]:
    """The newest ``count`` entries of ``quarantine.jsonl``, newest first (read from its end)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - QUARANTINE_TAIL_BYTES))
            tail = f.read()
    except FileNotFoundError:
        return []
    lines = tail.splitlines()
    if size > QUARANTINE_TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    entries = []
    for line in reversed(lines):
        if len(entries) >= count:
            break
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            at = entry.get("at")
            entries.append(
                {
                    "at": datetime.fromtimestamp(at, UTC) if isinstance(at, int | float) else None,
                    "source": entry.get("source"),
                    "key": entry.get("key"),
                    "reason": entry.get("reason"),
                    "raw": json.dumps(entry.get("raw"), ensure_ascii=False, default=str)[:400],
                }
            )
    return entries


def backup_rows(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for backup in list_backups(directory):
        try:
            size = backup.path.stat().st_size
        except OSError:
            size = None
        rows.append(
            {
                "name": backup.path.name,
                "kind": backup.kind,
                "taken_at": backup.taken_at,
                "size": size,
            }
        )
    return rows


def verify_backup(path: Path) -> tuple[int, int] | str:
    """(valid, invalid) records of a backup, or why it cannot be used."""
    try:
        return validate_backup(path)
    except (StoreCorrupt, OSError) as exc:
        return str(exc)


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}"
        value = value / 1024  # type: ignore[assignment]
    return f"{value:.1f} GiB"


# -- the blueprint ---------------------------------------------------------------------------


def console_blueprint(service: Service) -> Blueprint:
    """The console's routes for ``service`` (one blueprint, and its sessions, per app)."""
    settings = service.settings
    words = texts(settings.console_language)
    zone = ZoneInfo(settings.timezone)
    sessions = ConsoleSessions(settings.console_session_seconds)
    history = ActivityHistory(lambda: telemetry_totals(service.telemetry))
    recent = RecentTurns()
    backups_seen: list[BackupsSeen] = []
    sampler = trio.CancelScope()
    bp = Blueprint(
        "console",
        __name__,
        url_prefix="/console",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    def local(value: datetime | None) -> str:
        if value is None:
            return words["none"]
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    def ago(value: datetime | float | None) -> str:
        seconds = _seconds_since(value) if isinstance(value, datetime) else value
        return words["none"] if seconds is None else words["ago"].format(age=age(seconds, words))

    def word(prefix: str, value: str | None) -> str:
        if value is None:
            return words["none"]
        return words.get(f"{prefix}.{value}", value)

    def backups() -> BackupsSeen | None:
        if service.store is None:
            return None
        if not backups_seen:
            backups_seen.append(BackupsSeen(service.store.data_files.backups))
        return backups_seen[0]

    def current() -> tuple[str | None, ConsoleSession | None]:
        session_id = request.cookies.get(SESSION_COOKIE)
        return session_id, sessions.get(session_id)

    def csrf_ok(session: ConsoleSession, form: Any) -> bool:
        given = request.headers.get(CSRF_HEADER) or (form.get("csrf") if form else None)
        return same_secret(given, session.csrf)

    async def page(
        name: str, session: ConsoleSession | None, status: int = 200, **context: Any
    ) -> Response:
        body = await render_template(
            f"console/{name}.html",
            t=words,
            lang=settings.console_language,
            csrf=session.csrf if session else None,
            local=local,
            ago=ago,
            age=lambda s: age(s, words),
            word=word,
            size=_size,
            poll_ms=POLL_MS,
            timezone=settings.timezone,
            **context,
        )
        return Response(body, status=status, mimetype="text/html")

    def forbidden() -> Response:
        return Response(words["error.forbidden"], status=403, mimetype="text/plain")

    def to_login() -> Response:
        return redirect(url_for("console.login"), 303)

    def unauthorized_json() -> Response:
        return Response(
            json.dumps({"error": "log in to the console first"}),
            status=401,
            mimetype="application/json",
        )

    @bp.before_app_serving
    async def start_sampler() -> None:
        async def sample() -> None:
            with sampler:
                await history.run()

        current_app.nursery.start_soon(sample)  # type: ignore[attr-defined]

    @bp.after_app_serving
    async def stop_sampler() -> None:
        sampler.cancel()

    @bp.before_request
    async def console_enabled() -> None:
        if not settings.admin_token:
            abort(404)

    @bp.after_request
    async def protect(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def set_cookie(response: Response, name: str, value: str, max_age: float, path: str) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(max_age),
            path=path,
            secure=settings.env != "development",
            httponly=True,
            samesite="Strict",
        )

    async def login_form(status: int = 200, message: str | None = None) -> Response:
        nonce = secrets.token_urlsafe(24)
        response = await page("login", None, status, login_csrf=nonce, message=message)
        set_cookie(response, LOGIN_COOKIE, nonce, LOGIN_FORM_SECONDS, url_for("console.login"))
        return response

    @bp.get("/login")
    async def login() -> Response:
        if current()[1] is not None:
            return redirect(url_for("console.overview"), 303)
        message = words["login.logged_out"] if request.args.get("bye") else None
        return await login_form(message=message)

    @bp.post("/login")
    async def login_submit() -> Response:
        form = await request.form
        if not same_secret(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
            return await login_form(403, words["login.expired"])
        if not same_secret(form.get("token"), settings.admin_token):
            service.reject("admin_unauthorized")
            log_refusal(
                log,
                status=401,
                method=request.method,
                path=request.path,
                client=request.remote_addr,
                why="no admin token in the console's login form"
                if not form.get("token")
                else "the console login token does not match WABOT_ADMIN_TOKEN",
            )
            return await login_form(401, words["login.wrong"])
        session_id, _session = sessions.open()
        log.info("console: operator logged in from %s", request.remote_addr or "unknown client")
        response = redirect(url_for("console.overview"), 303)
        set_cookie(response, SESSION_COOKIE, session_id, sessions.lifetime, "/console")
        response.delete_cookie(LOGIN_COOKIE, path=url_for("console.login"))
        return response

    @bp.post("/logout")
    async def logout() -> Response:
        session_id, session = current()
        if session is None:
            return to_login()
        if not csrf_ok(session, await request.form):
            return forbidden()
        sessions.close(session_id)
        log.info("console: operator logged out")
        response = redirect(url_for("console.login", bye=1), 303)
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response

    @bp.get("")
    async def root() -> Response:
        return redirect(url_for("console.overview"), 303)

    @bp.get("/")
    async def overview() -> Response:
        _, session = current()
        if session is None:
            return to_login()
        data = await overview_data(service, history, backups(), recent)
        return await page("overview", session, data=data)

    @bp.get("/api/overview")
    async def overview_json() -> Response:
        if current()[1] is None:
            return unauthorized_json()
        data = await overview_data(service, history, backups(), recent)
        return Response(json.dumps(data, default=str), mimetype="application/json")

    @bp.get("/customers")
    async def customers() -> Response:
        _, session = current()
        if session is None:
            return to_login()
        query = request.args.get("q", "")[:100]
        rows = search_customers(service, query)
        return await page("customers", session, query=query, rows=rows)

    @bp.get("/api/customers/<user>")
    async def customer_json(user: str) -> Response:
        if current()[1] is None:
            return unauthorized_json()
        if not valid_user(user):
            abort(404)
        return Response(
            json.dumps(actor_state(service, user), default=str), mimetype="application/json"
        )

    async def customer_page(
        user: str, session: ConsoleSession, status: int = 200, **context: Any
    ) -> Response:
        record = service.store.get(user) if service.store is not None else None
        return await page(
            "customer",
            session,
            status,
            user=user,
            record=record,
            state=actor_state(service, user),
            history=await conversation(service, record),
            done=request.args.get("done") if request.args.get("done") in ACTIONS else None,
            **context,
        )

    @bp.get("/customers/<user>")
    async def customer(user: str) -> Response:
        _, session = current()
        if session is None:
            return to_login()
        if not valid_user(user):
            abort(404)
        return await customer_page(user, session)

    @bp.post("/customers/<user>/<action>")
    async def customer_control(user: str, action: str) -> Response:
        _, session = current()
        if session is None:
            return to_login()
        form = await request.form
        if not csrf_ok(session, form):
            return forbidden()
        if action not in ACTIONS or not valid_user(user):
            abort(404)
        seconds = None
        minutes = (form.get("minutes") or "").strip()
        if action == "pause" and minutes:
            try:
                value = float(minutes)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or not 0 < value <= MAX_PAUSE_MINUTES:
                error = f"minutes: more than 0 and at most {MAX_PAUSE_MINUTES}"
                return await customer_page(user, session, 400, error=error)
            seconds = value * 60
        status, body = await control_actor(service, user, action, seconds)
        if status != 200:
            return await customer_page(user, session, status, error=body.get("error"))
        return redirect(url_for("console.customer", user=user, done=action), 303)

    @bp.get("/data")
    async def data() -> Response:
        _, session = current()
        if session is None:
            return to_login()
        return await data_page(session)

    async def data_page(session: ConsoleSession, status: int = 200, **context: Any) -> Response:
        store = service.store
        if store is None:
            rows, quarantine = [], []
        else:
            files = store.data_files
            rows = await trio.to_thread.run_sync(backup_rows, files.backups)
            quarantine = await trio.to_thread.run_sync(read_quarantine, files.quarantine)
        return await page("data", session, status, backups=rows, quarantine=quarantine, **context)

    @bp.post("/data/verify")
    async def verify() -> Response:
        _, session = current()
        if session is None:
            return to_login()
        form = await request.form
        if not csrf_ok(session, form):
            return forbidden()
        store = service.store
        name = form.get("backup") or ""
        found = (
            await trio.to_thread.run_sync(list_backups, store.data_files.backups)
            if store is not None
            else []
        )
        known = {backup.path.name: backup.path for backup in found}
        if name not in known:
            return await data_page(session, 404, result=words["data.unknown_backup"], failed=True)
        outcome = await trio.to_thread.run_sync(verify_backup, known[name])
        if isinstance(outcome, str):
            result = words["data.invalid"].format(name=name, error=outcome)
            return await data_page(session, result=result, failed=True)
        valid, invalid = outcome
        result = words["data.valid"].format(name=name, valid=valid, invalid=invalid)
        return await data_page(session, result=result, failed=bool(invalid))

    return bp
