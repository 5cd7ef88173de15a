"""The OpenAPI document and the ``/docs`` page, as honest and as offline as the server.

- ``/docs`` is Swagger UI served from the assets packaged in ``fastapi-offline`` (no CDN, so
  it renders on a site without internet access); ``/redoc`` is not served.
- Limits that are settings are written into the document from the settings the app was built
  with (``top_k``'s maximum is ``GAITID_MAX_TOP_K``), so the schema's maximum is accepted.
- Every error code is listed with its meaning in the API description.
- The document says what the server accepts, so that a generic client (schemathesis, a
  generated SDK) neither sends what is refused nor is refused what the document allows: a
  form field cannot be null (absent is its null), ``/verify`` takes exactly one of
  ``identity_id`` or ``identity``, identity names carry the pattern of the characters
  :func:`~gaitid.service.schemas.identity_name` refuses, ids are bounded by exact integers,
  and every operation with a body documents the 400 of an unparsable one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gaitid.service.config import Settings
from gaitid.service.db.models import MAX_ID
from gaitid.service.errors import ERROR_CODES
from gaitid.service.schemas import identity_name_pattern

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
            _say_what_is_accepted(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _form(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The component schema of the multipart form ``POST path`` takes."""
    body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    form: dict[str, Any] = schema["components"]["schemas"][ref]
    return form


def _set_form_maximum(schema: dict[str, Any], path: str, field: str, maximum: int) -> None:
    _form(schema, path)["properties"][field]["maximum"] = maximum


#: A value inside a metadata object, as ``schemas.check_metadata`` takes it: any JSON, but
#: integers within 64 bits (signed, or unsigned). A number with a fraction is not an integer.
METADATA_VALUE: dict[str, Any] = {
    "description": "Any JSON value; integers must fit in 64 bits.",
    "anyOf": [
        {"type": "string"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1},
        {"type": "number", "not": {"type": "integer"}},
        {"type": "array", "items": {"$ref": "#/components/schemas/MetadataValue"}},
        {
            "type": "object",
            "additionalProperties": {"$ref": "#/components/schemas/MetadataValue"},
        },
    ],
}

#: The routes that take a multipart form.
FORM_PATHS = ("/enroll", "/identify", "/verify", "/preview")
_BAD_BODY = {
    "description": "The body could not be parsed (malformed multipart or JSON).",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
}


def _say_what_is_accepted(schema: dict[str, Any]) -> None:
    """Narrow the generated document to exactly what the handlers accept (module docstring)."""
    for path in FORM_PATHS:
        for field in _form(schema, path)["properties"].values():
            _drop_null(field)  # a form part is text or a file: a missing field is the null
    _form(schema, "/verify")["oneOf"] = [{"required": ["identity_id"]}, {"required": ["identity"]}]
    names = [
        _form(schema, "/enroll")["properties"]["identity"],
        _form(schema, "/verify")["properties"]["identity"],
        schema["components"]["schemas"]["IdentityUpdate"]["properties"]["name"],
    ]
    for name in names:
        _string_branch(name)["pattern"] = identity_name_pattern()
    _exact_integer_bounds(schema)
    schema["components"]["schemas"]["MetadataValue"] = METADATA_VALUE
    for model in ("GalleryCreate", "GalleryUpdate", "IdentityUpdate"):
        metadata = schema["components"]["schemas"][model]["properties"]["metadata"]
        (as_object,) = [b for b in metadata["anyOf"] if b.get("type") == "object"]
        as_object["additionalProperties"] = {"$ref": "#/components/schemas/MetadataValue"}
    for item in schema["paths"].values():
        for operation in item.values():
            if "requestBody" in operation:
                operation["responses"].setdefault("400", _BAD_BODY)


def _drop_null(field: dict[str, Any]) -> None:
    branches = field.get("anyOf")
    if branches is None or {"type": "null"} not in branches:
        return
    rest = [branch for branch in branches if branch != {"type": "null"}]
    del field["anyOf"]
    if len(rest) == 1:
        field.update(rest[0])
    else:
        field["anyOf"] = rest


def _string_branch(field: dict[str, Any]) -> dict[str, Any]:
    """``field`` itself, or its ``anyOf`` branch of type string."""
    if field.get("type") == "string":
        return field
    (branch,) = [b for b in field.get("anyOf", []) if b.get("type") == "string"]
    return branch


def _exact_integer_bounds(node: Any) -> None:
    """Integer bounds as integers: ``le=MAX_ID`` is written as the float 2**63, one past it."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum"):
                bound = node.get(key)
                if isinstance(bound, float):
                    node[key] = MAX_ID if bound == float(MAX_ID) else int(bound)
        for value in node.values():
            _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)
