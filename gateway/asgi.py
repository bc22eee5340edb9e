"""The ASGI entry point for running wabot under the ``hypercorn`` command.

    hypercorn --config hypercorn.toml gateway.asgi:app

Hypercorn's master process catches SIGTERM; the worker stops accepting, lets in-flight
requests finish (``graceful_timeout``), then runs the lifespan shutdown, where
``after_serving`` drains wabot: in-flight turns finish within ``WABOT_DRAIN_SECONDS``, actors
stop, the store flushes. quart-trio cancels its background nursery once ``after_serving``
returns (and after ``BACKGROUND_TASK_SHUTDOWN_TIMEOUT``), so that timeout is set past the
drain budget and ``after_serving`` waits until the service has fully closed.
"""

from __future__ import annotations

import os
from functools import partial

import attrs
from quart_trio import QuartTrio

from actors.settings import Settings, SettingsError
from gateway import logs
from gateway.app import create_app
from gateway.service import Service


def create_asgi_app() -> QuartTrio:
    settings = Settings.from_env()
    if settings.production and settings.sandbox:
        raise SettingsError(
            f"WABOT_ENV=production but {', '.join(settings.missing_credentials())} not set"
        )
    logs.configure(
        production=settings.production,
        level=os.environ.get("WABOT_LOG_LEVEL", "INFO"),
        secrets=[
            s
            for s in (
                settings.whapi_token,
                settings.openai_api_key,
                settings.webhook_secret,
                settings.admin_token,
            )
            if s
        ],
    )
    service = Service(settings)
    app = create_app(service)
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.drain_seconds + 15

    @app.before_serving
    async def start_service() -> None:
        if service.settings.sandbox:
            from sandbox.run import run_sandbox

            sandbox = await app.nursery.start(
                partial(run_sandbox, whapi_token="sandbox-whapi", openai_key="sandbox-openai")
            )
            service.settings = attrs.evolve(
                service.settings,
                whapi_token="sandbox-whapi",
                openai_api_key="sandbox-openai",
                whapi_api_url=sandbox.whapi_url,
                openai_base_url=sandbox.openai_url,
            )
        await app.nursery.start(service.run)

    @app.after_serving
    async def stop_service() -> None:
        await service.drain()
        service.stop()
        await service.finished.wait()

    return app


app = create_asgi_app()
