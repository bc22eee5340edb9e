"""``POST /hook`` as a plain Quart route: the alternative ``bench.ingest --hook route`` measures.

wabot serves the webhook through ``gateway.hook.HookEndpoint``, a bare ASGI endpoint in front
of the Quart app. This is the same webhook as a route of that app, as issue 20 asks to compare:
the same secret check, draining answer and rejections counted, with Quart's own limits
(``MAX_CONTENT_LENGTH``, ``BODY_TIMEOUT``) and error handlers. ``bench.botproc`` serves it
instead of the endpoint when ``BENCH_HOOK=route``; nothing in wabot imports it.
"""

from __future__ import annotations

import json
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from gateway.app import SECRET_HEADER, secrets_match
from gateway.service import Service


def register_route(app: QuartTrio, service: Service) -> QuartTrio:
    """Add ``POST /hook`` to ``app`` (the Quart app of ``service``) and return it."""
    secret = service.settings.webhook_secret or None

    @app.post("/hook")
    async def hook() -> Response:
        if secret is not None and not secrets_match(request.headers.get(SECRET_HEADER), secret):
            service.reject("unauthorized")
            return _reply(401, {"error": "unauthorized"})
        gateway = service.gateway
        if service.draining or gateway is None:
            service.reject("draining")
            return _reply(503, {"error": "not ready, retry later"})
        try:
            raw = await request.get_data(cache=False)
        except RequestEntityTooLarge:
            service.reject("too_large")
            raise
        except RequestTimeout:
            service.reject("body_timeout")
            raise
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            service.reject("malformed")
            return _reply(400, {"error": "malformed JSON"})
        # quart-trio cancels the handler when the client leaves; once the body is read, the
        # journaling must not be cut short (the endpoint never reads again, so never is).
        with trio.CancelScope(shield=True):
            outcome = await gateway.handle(body)
        return _reply(outcome.status, outcome.body)

    return app


def _reply(status: int, body: dict[str, Any]) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status=status, mimetype="application/json"
    )
