"""``GET /audio/<file>``: synthesized voice notes for Whapi to fetch (the original's route).

Only names the audio shelf created, unexpired, are served; everything else — unknown names,
``..``, encoded separators, absolute paths, symlinks — is a 404 that says nothing more.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio

from gateway.service import Service


def register_audio(app: QuartTrio, service: Service) -> None:
    @app.get("/audio/<path:name>")
    async def audio(name: str) -> Response:
        shelf = service.deps.shelf if service.deps is not None else None
        path = shelf.path(name) if shelf is not None else None
        if path is None:
            return Response('{"error":"not found"}', status=404, mimetype="application/json")
        try:
            content = path.read_bytes()
        except OSError:
            return Response('{"error":"not found"}', status=404, mimetype="application/json")
        return Response(
            content,
            status=200,
            mimetype="audio/ogg",
            headers={
                "Content-Type": "audio/ogg; codecs=opus",
                "Cache-Control": "no-cache, no-store, must-revalidate",
            },
        )
