"""The OpenAPI document and the ``/docs`` page, as honest and as offline as the server.

- ``/docs`` is Swagger UI served from the assets packaged in ``fastapi-offline`` (no CDN, so
  it renders on a site without internet access); ``/redoc`` is not served.
- Limits that are settings are written into the document from the settings the app was built
  with (``top_k``'s maximum is ``GAITID_MAX_TOP_K``), so the schema's maximum is accepted.
- Every error code is listed with its meaning in the API description.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gaitid.service.config import Settings
from gaitid.service.errors import ERROR_CODES

STATIC_DOCS_URL = "/docs-static"


def error_code_table() -> str:
    """Markdown table of every error code, for the API description."""
    rows = [f"| `{code}` | {meaning} |" for code, meaning in sorted(ERROR_CODES.items())]
    return "\n".join(["| code | meaning |", "|---|---|", *rows])


def install(app: FastAPI, settings: Settings) -> None:
    """Replace ``app.openapi`` by a cached builder that writes the settings' limits in."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _set_form_maximum(schema, "/identify", "top_k", settings.max_top_k)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _set_form_maximum(schema: dict[str, Any], path: str, field: str, maximum: int) -> None:
    body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    schema["components"]["schemas"][ref]["properties"][field]["maximum"] = maximum
