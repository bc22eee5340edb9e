"""The quart-trio application: ``POST /hook`` and the health endpoints.

The webhook handler answers in milliseconds: it checks the secret (constant time), the size
and the JSON, hands the body to the gateway actor (which journals the messages before it
returns) and answers. It never waits for a model or a send. Bad input gets a clear status
and changes nothing: 401 wrong secret, 400 malformed JSON, 413 oversized, 503 while
draining or when the inbox cannot be written (Whapi retries), 200 for everything else.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from gateway.service import Service

log = logging.getLogger("gateway.app")

SECRET_HEADER = "X-Webhook-Secret"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json"
    )


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

    @app.post("/hook")
    async def hook() -> Response:
        if settings.webhook_secret is not None and not secrets_match(
            request.headers.get(SECRET_HEADER), settings.webhook_secret
        ):
            return _json({"error": "unauthorized"}, 401)
        if service.draining or service.gateway is None:
            return _json({"error": "not ready, retry later"}, 503)
        length = request.content_length
        if length is not None and length > settings.max_body_bytes:
            return _json({"error": "body too large"}, 413)
        try:
            raw = await request.get_data(cache=False)
        except RequestEntityTooLarge:
            return _json({"error": "body too large"}, 413)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _json({"error": "malformed JSON"}, 400)
        outcome = await service.gateway.handle(body)
        return _json(outcome.body, outcome.status)

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> Response:
        store = service.store
        checks = {
            "draining": service.draining,
            "store_healthy": bool(store and store.healthy),
            "supervisor_running": bool(service.supervisor and service.supervisor.running),
        }
        ready = service.ready
        return _json({"ready": ready, **checks}, 200 if ready else 503)

    @app.get("/health")
    async def health() -> Response:
        """The original bot's fields, plus ours."""
        store = service.store
        supervisor = service.supervisor
        stats = store.stats() if store else None
        body = {
            "status": "healthy" if service.ready else ("draining" if service.draining else "unhealthy"),
            "environment": settings.env,
            "port": settings.port,
            "initialized": service.gateway is not None,
            "activeBuffers": sum(
                1 for cell in (supervisor.cells() if supervisor else []) if cell.phase == "buffering"
            ),
            "threadStats": {
                "totalThreads": stats.records if stats else 0,
                "activeThreads": len(supervisor) if supervisor else 0,
            },
            "liveActors": len(supervisor) if supervisor else 0,
            "inboxPending": stats.pending if stats else 0,
        }
        return _json(body)

    @app.errorhandler(404)
    async def not_found(_error: Exception) -> Response:
        return _json({"error": "not found"}, 404)

    @app.errorhandler(405)
    async def not_allowed(_error: Exception) -> Response:
        return _json({"error": "method not allowed"}, 405)

    @app.errorhandler(413)
    async def too_large(_error: Exception) -> Response:
        return _json({"error": "body too large"}, 413)

    return app
