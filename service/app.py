"""The app factory: wires settings, middleware, error handlers, routers and the lifespan.

No logic lives here. :func:`create_app` builds nothing heavy: the database engine, the ONNX
session, the batcher and the indexes are created when the app starts (its lifespan; see
``service.state``), and start-up fails, with a message naming the fix, on an unmigrated
database or a bad model file.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from gaitid import __version__
from gaitid.formats import SUPPORTED_FORMATS
from gaitid.service import openapi
from gaitid.service.auth_first import AuthFirstMiddleware, RedactKeysInAccessLog
from gaitid.service.config import Settings, load_settings
from gaitid.service.errors import install_error_handlers
from gaitid.service.limits import (
    BodyLimitMiddleware,
    CancelOnDisconnectMiddleware,
    TimeoutMiddleware,
)
from gaitid.service.metrics import Metrics, MetricsMiddleware
from gaitid.service.openapi import STATIC_DOCS_URL, error_code_table
from gaitid.service.routes import (
    admin,
    console,
    enroll,
    galleries,
    health,
    identify,
    identities,
    keys,
    model,
    preview,
    templates,
    verify,
)
from gaitid.service.state import EmbedderFactory, default_embedder, start_state, stop_state

logger = logging.getLogger(__name__)

DESCRIPTION = (
    """\
Enrol and identify people from silhouette walks.

Authenticate with the `X-API-Key` header (create keys with `gaitid keys create --scope S`;
scopes `identify`, `enroll`, `admin`, where admin implies the others). Uploads are multipart
`file` fields in any of these formats: """
    + SUPPORTED_FORMATS
    + """.
Every error has the body `{"error": {"code", "message", "details"}}`; the codes:

"""
)


def create_app(
    settings: Settings | None = None, *, embedder_factory: EmbedderFactory = default_embedder
) -> FastAPI:
    """Build the service app; ``settings`` default to the ``GAITID_*`` environment."""
    settings = settings if settings is not None else load_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await start_state(settings, metrics, embedder_factory)
        app.state.service = state
        # uvicorn has configured its loggers by now: keys in URLs never reach the access log
        access_log = logging.getLogger("uvicorn.access")
        redact = RedactKeysInAccessLog()
        access_log.addFilter(redact)
        try:
            yield
        finally:
            access_log.removeFilter(redact)
            app.state.service = None
            await stop_state(state)

    app = FastAPIOffline(
        title="gaitid",
        version=__version__,
        description=DESCRIPTION + error_code_table(),
        lifespan=lifespan,
        redoc_url=None,
        static_url=STATIC_DOCS_URL,
        # no online spec-validator badge: /docs must not reach out of an offline site
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.service = None
    app.state.metrics = metrics
    install_error_handlers(app)
    # Starlette runs the last added middleware outermost: metrics see timeouts and 413s.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    # outside the body limit: a caller without a valid key learns nothing about the limits
    # the last three: the operator's console (service/console/) and what it needs besides
    routers = (
        *(enroll, identify, verify, identities, templates, galleries, keys, health, admin),
        *(preview, model, console),
    )
    app.add_middleware(AuthFirstMiddleware, routes=[r for m in routers for r in m.router.routes])
    app.add_middleware(TimeoutMiddleware, timeout_s=settings.request_timeout_s)
    app.add_middleware(CancelOnDisconnectMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for module in routers:
        app.include_router(module.router)
    openapi.install(app, settings)
    return app
