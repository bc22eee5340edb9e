"""The quart-trio application: health, readiness, metrics, the admin endpoints and audio.

``POST /hook``, the webhook, is served in front of this app by ``gateway.hook`` (a bare ASGI
endpoint: it is the hot path); every other request comes here. Bad input gets a clear status
and changes nothing; a refused admin token (401) is logged once, with the reason.
"""

from __future__ import annotations

import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from actors.events import Control
from gateway.audio import register_audio
from gateway.logs import log_refusal
from gateway.metrics import render
from gateway.service import Service

log = logging.getLogger("gateway.app")

SECRET_HEADER = "X-Webhook-Secret"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json"
    )


def _iso_time(unix: float | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).isoformat()


def secrets_match(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def create_app(service: Service) -> QuartTrio:
    settings = service.settings
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
            "port": settings.port,
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
                "outage_since": _iso_time(stats.outage_since) if stats else None,
                "last_error": stats.last_error if stats else None,
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

    @app.get("/actors")
    async def actors() -> Response:
        if (denied := admin_denied()) is not None:
            return denied
        supervisor = service.supervisor
        cells = supervisor.cells() if supervisor is not None else []
        now = trio.current_time()
        phases: dict[str, int] = {}
        for cell in cells:
            phases[cell.phase] = phases.get(cell.phase, 0) + 1
        busiest = sorted(cells, key=lambda c: (c.mailbox_depth, now - c.spawned_at), reverse=True)
        return _json(
            {
                "live": len(cells),
                "phases": phases,
                "busiest": [
                    {
                        "user": cell.key,
                        "phase": cell.phase,
                        "mailbox": cell.mailbox_depth,
                        "age_seconds": round(now - cell.spawned_at, 3),
                        "idle_seconds": round(now - cell.last_active, 3),
                        "restarts": cell.restarts,
                    }
                    for cell in busiest[:20]
                ],
            }
        )

    @app.get("/actors/<user>")
    async def actor(user: str) -> Response:
        if (denied := admin_denied()) is not None:
            return denied
        include_text = request.args.get("text") in {"1", "true", "yes"}
        cell = service.supervisor.cell(user) if service.supervisor is not None else None
        if cell is not None and cell.behavior is not None:
            info = cell.behavior.inspect(include_text=include_text)
            info.update(
                live=True,
                mailbox=cell.mailbox_depth,
                restarts=cell.restarts,
                parked=cell.parked_until is not None,
                idle_seconds=round(trio.current_time() - cell.last_active, 3),
            )
            return _json(info)
        record = service.store.get(user) if service.store is not None else None
        if record is None:
            return _json({"error": "unknown user"}, 404)
        return _json(
            {"user": user, "live": False, "phase": "passivated", "record": record.to_json()}
        )

    @app.post("/actors/<user>/<action>")
    async def control(user: str, action: str) -> Response:
        if (denied := admin_denied()) is not None:
            return denied
        if action not in {"pause", "resume", "reset"}:
            return _json({"error": "unknown action"}, 404)
        if not user.isdigit() or len(user) > 20:
            return _json({"error": "a user is the phone number's digits"}, 400)
        seconds = request.args.get("seconds", type=float)
        command = Control(action, seconds)
        if service.supervisor is None or service.draining:
            return _json({"error": "not ready"}, 503)
        await service.supervisor.tell(user, command, wait=5.0)
        with trio.move_on_after(10):
            await command.done.wait()
        if not command.done.is_set():
            return _json({"error": "the actor did not answer in time"}, 504)
        return _json(command.result, 200 if command.result.get("ok") else 500)

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
    return app
