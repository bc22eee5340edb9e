"""The quart-trio application: health, readiness, metrics, the admin endpoints and audio.

``POST /hook``, the webhook, is served in front of this app by ``gateway.hook`` (a bare ASGI
endpoint: it is the hot path); every other request comes here. Bad input gets a clear status
and changes nothing; a refused admin token (401) is logged once, with the reason.

The admin endpoints know the channels (``actors.channels``): ``GET /channels`` lists them, and
``/channels/{channel}/actors[/{user}[/{action}]]`` are ``/actors[/{user}[/{action}]]`` for one
channel; the paths without a channel are the ``default`` channel's.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

import attrs
import trio
from quart import Response, request
from quart_trio import QuartTrio

from actors.channels import DEFAULT, key_for, split_key
from gateway.audio import register_audio
from gateway.console import console_blueprint
from gateway.control import ACTIONS, control_actor, valid_user
from gateway.logs import log_refusal
from gateway.metrics import register_collectors, render
from gateway.service import Service
from store.records import UserRecord

log = logging.getLogger("gateway.app")

SECRET_HEADER = "X-Webhook-Secret"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json"
    )


def _bound_port(server: Any) -> int | None:
    """The port this request came in on (ASGI's ``server``): under ``hypercorn -b`` it is the
    bound one, whatever ``PORT`` says."""
    if isinstance(server, list | tuple) and len(server) == 2 and isinstance(server[1], int):
        return server[1]
    return None


def _iso_time(unix: float | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).isoformat()


#: The longest pause the admin API accepts (a longer one is a mistake, not a handoff).
MAX_PAUSE_SECONDS = 30 * 86400


def pause_seconds(raw: str | None, action: str) -> float | None:
    """``?seconds=`` of a control request: None (the default pause) or a checked number."""
    if raw is None or raw == "":
        return None
    if action != "pause":
        raise ValueError(f"seconds only applies to pause, not to {action}")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"seconds must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_PAUSE_SECONDS:
        raise ValueError(f"seconds must be more than 0 and at most {MAX_PAUSE_SECONDS} (30 days)")
    return seconds


def flag(raw: str | None, name: str) -> bool:
    """A boolean query parameter: absent, 1/true/yes or 0/false/no."""
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in {"1", "true", "yes"}:
        return True
    if value in {"", "0", "false", "no"}:
        return False
    raise ValueError(f"{name} must be 1 or 0, got {raw!r}")


@attrs.frozen
class ActorQuery:
    """``/actors`` filters and paging: ``phase``, ``paused``, ``failing``, ``offset``, ``limit``."""

    phase: str | None = None
    paused: bool | None = None
    failing: bool | None = None
    offset: int = 0
    limit: int = 50

    @classmethod
    def from_args(cls, args: Any) -> ActorQuery:
        def number(name: str, default: int, low: int, high: int) -> int:
            raw = args.get(name)
            if raw is None:
                return default
            if not raw.isdigit() or not low <= int(raw) <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high}")
            return int(raw)

        def tristate(name: str) -> bool | None:
            return None if args.get(name) is None else flag(args.get(name), name)

        unknown = set(args) - {"phase", "paused", "failing", "offset", "limit"}
        if unknown:
            raise ValueError(
                f"unknown parameter {sorted(unknown)[0]!r}: use phase, paused, failing, "
                "offset, limit"
            )
        return cls(
            phase=args.get("phase") or None,
            paused=tristate("paused"),
            failing=tristate("failing"),
            offset=number("offset", 0, 0, 10**9),
            limit=number("limit", 50, 1, 1000),
        )

    def matches(self, cell: Any) -> bool:
        if self.phase is not None and cell.phase != self.phase:
            return False
        if self.paused is not None and _behavior_flag(cell, "paused") != self.paused:
            return False
        return self.failing is None or actor_failing(cell) == self.failing


def record_view(record: UserRecord) -> dict[str, Any]:
    """A stored record as the admin API shows it: snake_case, times in ISO-8601."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    paused = record.paused_until is not None and record.paused_until > datetime.now(UTC)
    return {
        "chat_id": record.chat_id,
        "user_name": record.user_name,
        "name": record.name,
        "labels": list(record.labels),
        "conversation_id": record.conversation_id,
        "created_at": iso(record.created_at),
        "last_activity": iso(record.last_activity),
        "last_turn_at": iso(record.last_turn_at),
        "paused_until": iso(record.paused_until) if paused else None,
        "paused_by": record.paused_by if paused else None,
        "unfinished_turn": record.pending_turn.turn_id if record.pending_turn else None,
    }


def _behavior_flag(cell: Any, name: str) -> bool:
    method = getattr(cell.behavior, name, None)
    return bool(method()) if callable(method) else False


def actor_failing(cell: Any) -> bool:
    """Restarted, parked by the crash-loop guard, or its last turn did not answer."""
    if cell.restarts or cell.parked_until is not None:
        return True
    last_turn = getattr(cell.behavior, "last_turn", None)
    return bool(last_turn) and last_turn.get("outcome") not in {"replied", "cancelled"}


def secrets_match(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def create_quart_app(service: Service) -> QuartTrio:
    """The Quart routes of ``service`` (all but ``POST /hook``); its metrics are registered."""
    settings = service.settings
    register_collectors(service.telemetry.registry, service)
    app = QuartTrio("wabot")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        BODY_TIMEOUT=30,
        RESPONSE_TIMEOUT=60,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.extensions["wabot"] = service
    # '/audio//etc/passwd' must be a plain 404, not a redirect to a merged path.
    app.url_map.merge_slashes = False

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> Response:
        store = service.store
        checks = {
            "draining": service.draining,
            "store_healthy": store is not None and store.healthy,
            "supervisor_running": service.supervisor is not None and service.supervisor.running,
        }
        ready = service.ready
        return _json({"ready": ready, **checks}, 200 if ready else 503)

    @app.get("/health")
    async def health() -> Response:
        """The original bot's fields, plus ours."""
        store = service.store
        supervisor = service.supervisor
        stats = store.stats() if store is not None else None
        body = {
            "status": "healthy"
            if service.ready
            else ("draining" if service.draining else "unhealthy"),
            "environment": settings.env,
            "port": _bound_port(request.scope.get("server")) or settings.port,
            "initialized": service.gateway is not None,
            "activeBuffers": sum(
                1
                for cell in (supervisor.cells() if supervisor is not None else [])
                if cell.phase == "buffering"
            ),
            "threadStats": {
                "totalThreads": stats.records if stats else 0,
                "activeThreads": len(supervisor) if supervisor is not None else 0,
            },
            "liveActors": len(supervisor) if supervisor is not None else 0,
            "inboxPending": stats.pending if stats else 0,
            "store": {
                "healthy": stats.healthy if stats else False,
                "outageSince": _iso_time(stats.outage_since) if stats else None,
                "lastError": stats.last_error if stats else None,
            },
        }
        return _json(body)

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = render(service.telemetry.registry, request.headers.get("Accept"))
        return Response(body, status=200, content_type=content_type)

    def admin_denied() -> Response | None:
        """None if the request carries the admin token; else the response to send."""
        token = settings.admin_token
        if not token:
            return _json({"error": "admin endpoints are disabled (no WABOT_ADMIN_TOKEN)"}, 404)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets_match(given.strip(), token):
            service.reject("admin_unauthorized")
            log_refusal(
                log,
                status=401,
                method=request.method,
                path=request.path,
                client=request.remote_addr,
                why="no bearer token in the Authorization header"
                if scheme.lower() != "bearer" or not given.strip()
                else "the bearer token does not match WABOT_ADMIN_TOKEN",
            )
            return _json({"error": "unauthorized"}, 401)
        return None

    def unknown_channel(channel: str) -> Response | None:
        if channel in service.channels:
            return None
        return _json({"error": f"unknown channel: {channel}"}, 404)

    @app.get("/channels")
    async def channels() -> Response:
        if (denied := admin_denied()) is not None:
            return denied
        supervisor = service.supervisor
        live: dict[str, int] = dict.fromkeys(service.channels, 0)
        for cell in supervisor.cells() if supervisor is not None else []:
            name = split_key(cell.key)[0]
            live[name] = live.get(name, 0) + 1
        gateway = service.gateway
        webhooks: dict[str, dict[str, int]] = {name: {} for name in service.channels}
        for (name, outcome), count in (gateway.channel_webhooks if gateway else {}).items():
            webhooks.setdefault(name, {})[outcome] = count
        return _json(
            {
                "channels": [
                    {
                        "name": name,
                        "hook": channel.hook_path,
                        "channel_id": channel.channel_id,
                        "whapi_api_url": channel.settings.whapi_api_url,
                        "model": channel.settings.openai_model,
                        "overrides": sorted(channel.overrides),
                        "live_actors": live.get(name, 0),
                        "messages": gateway.channel_messages.get(name, 0) if gateway else 0,
                        "webhooks": webhooks.get(name, {}),
                    }
                    for name, channel in service.channels.items()
                ]
            }
        )

    @app.get("/actors")
    async def actors() -> Response:
        return await list_actors(DEFAULT)

    @app.get("/channels/<channel>/actors")
    async def channel_actors(channel: str) -> Response:
        return await list_actors(channel)

    async def list_actors(channel: str) -> Response:
        if (denied := admin_denied()) is not None:
            return denied
        if (missing := unknown_channel(channel)) is not None:
            return missing
        try:
            query = ActorQuery.from_args(request.args)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        supervisor = service.supervisor
        cells = [
            cell
            for cell in (supervisor.cells() if supervisor is not None else [])
            if split_key(cell.key)[0] == channel
        ]
        now = trio.current_time()
        phases: dict[str, int] = {}
        for cell in cells:
            phases[cell.phase] = phases.get(cell.phase, 0) + 1
        matching = [cell for cell in cells if query.matches(cell)]
        busiest = sorted(
            matching, key=lambda c: (c.mailbox_depth, now - c.spawned_at), reverse=True
        )
        page = busiest[query.offset : query.offset + query.limit]
        return _json(
            {
                "live": len(cells),
                "phases": phases,
                "matching": len(matching),
                "offset": query.offset,
                "limit": query.limit,
                "next_offset": query.offset + len(page)
                if query.offset + len(page) < len(matching)
                else None,
                "actors": [
                    {
                        "user": cell.key,
                        "phase": cell.phase,
                        "paused": _behavior_flag(cell, "paused"),
                        "failing": actor_failing(cell),
                        "mailbox": cell.mailbox_depth,
                        "age_seconds": round(now - cell.spawned_at, 3),
                        "idle_seconds": round(now - cell.last_active, 3),
                        "restarts": cell.restarts,
                    }
                    for cell in page
                ],
            }
        )

    @app.get("/actors/<user>")
    async def actor(user: str) -> Response:
        return await show_actor(DEFAULT, user)

    @app.get("/channels/<channel>/actors/<user>")
    async def channel_actor(channel: str, user: str) -> Response:
        return await show_actor(channel, user)

    async def show_actor(channel: str, user: str) -> Response:
        if (denied := admin_denied()) is not None:
            return denied
        if (missing := unknown_channel(channel)) is not None:
            return missing
        include_text = request.args.get("text") in {"1", "true", "yes"}
        key = key_for(channel, user)
        cell = service.supervisor.cell(key) if service.supervisor is not None else None
        if cell is not None and cell.behavior is not None:
            info = cell.behavior.inspect(include_text=include_text)
            info.update(
                live=True,
                mailbox=cell.mailbox_depth,
                restarts=cell.restarts,
                parked=cell.parked_until is not None,
                idle_seconds=round(trio.current_time() - cell.last_active, 3),
                channel=channel,
            )
            return _json(info)
        record = service.store.get(key) if service.store is not None else None
        if record is None:
            return _json({"error": "unknown user"}, 404)
        return _json(
            {
                "user": key,
                "channel": channel,
                "live": False,
                "phase": "passivated",
                "record": record_view(record),
            }
        )

    @app.post("/actors/<user>/<action>")
    async def control(user: str, action: str) -> Response:
        return await control_one(DEFAULT, user, action)

    @app.post("/channels/<channel>/actors/<user>/<action>")
    async def channel_control(channel: str, user: str, action: str) -> Response:
        return await control_one(channel, user, action)

    async def control_one(channel: str, user: str, action: str) -> Response:
        if (denied := admin_denied()) is not None:
            return denied
        if (missing := unknown_channel(channel)) is not None:
            return missing
        if action not in ACTIONS:
            return _json({"error": "unknown action: use pause, resume or reset"}, 404)
        if not valid_user(user):
            return _json({"error": "a user is the phone number's digits"}, 400)
        try:
            seconds = pause_seconds(request.args.get("seconds"), action)
            create = flag(request.args.get("create"), "create")
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
        status, body = await control_actor(
            service, user, action, seconds, create=create, channel=channel
        )
        return _json(body, status)

    @app.errorhandler(404)
    async def not_found(_error: Exception) -> Response:
        return _json({"error": "not found"}, 404)

    @app.errorhandler(405)
    async def not_allowed(_error: Exception) -> Response:
        return _json({"error": "method not allowed"}, 405)

    @app.errorhandler(413)
    async def too_large(_error: Exception) -> Response:
        return _json({"error": "body too large"}, 413)

    register_audio(app, service)
    app.register_blueprint(console_blueprint(service))
    return app
