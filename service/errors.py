"""The service's errors and the one JSON error body every 4xx and 5xx response uses.

Logic modules raise the typed exceptions below (or ``gaitid.errors`` ones from decoding); they
know nothing of HTTP. This module is the single place that maps them to status codes and
renders ``{"error": {"code", "message", "details"}}``; :func:`install_error_handlers` wires
it into the app, including FastAPI's own validation and HTTP errors, so clients and the
OpenAPI spec see one schema.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gaitid.errors import (
    GaitidError,
    InvalidSequenceError,
    TooFewFramesError,
    UploadError,
    UploadTooLargeError,
)
from gaitid.segment import (
    BackgroundNeededError,
    IndistinctPeopleError,
    NoPersonFoundError,
    PersonChoiceError,
)
from gaitid.service.db.failures import RETRY_AFTER_S, DatabaseFailure, classify
from gaitid.service.methods import allowed_methods
from gaitid.service.walks.batching import BatcherClosedError

logger = logging.getLogger(__name__)


# --- domain errors -------------------------------------------------------------------------
class ServiceError(GaitidError):
    """Base of the service's own typed errors."""

    code = "service_error"


class NotFoundError(ServiceError):
    code = "not_found"


class ConflictError(ServiceError):
    code = "conflict"


class InvalidRequestError(ServiceError):
    """A request that is well-formed HTTP but asks for something impossible."""

    code = "invalid_request"


class AuthenticationError(ServiceError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthenticated"


class PermissionDeniedError(ServiceError):
    """A valid key without the scope the endpoint needs."""

    code = "forbidden"


class ServiceUnavailableError(ServiceError):
    """The service cannot serve right now (not ready, shutting down, overloaded)."""

    code = "unavailable"


class RequestTimeoutError(ServiceError):
    code = "timeout"


class RequestTooLargeError(ServiceError):
    """The request body exceeds the configured cap (checked before it is all read)."""

    code = "request_too_large"


class StorageError(ServiceError):
    """The database cannot take the request now (``service.db.failures`` says which kind);
    the client is told when to retry (``Retry-After``). Not a bug: logged once per outage
    by ``service.db.outage``, never per request."""

    code = "database_unavailable"

    def __init__(self, message: str, *, kind: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


class DatabaseUnavailableError(StorageError):
    """Unreachable, locked past the busy timeout, read-only or failing I/O: 503."""

    code = "database_unavailable"


class StorageFullError(StorageError):
    """The database's disk (or its size limit) is full: 507, nothing was stored."""

    code = "storage_full"


_STORAGE_MESSAGES = {
    "unreachable": "the database is unreachable; retry shortly",
    "locked": "the database stayed locked by another writer past its busy timeout; retry",
    "read_only": "the database is read-only; changes are refused until an operator fixes it",
    "full": "the database's disk is full; nothing was stored",
    "io": "the database reported an I/O error; retry later",
}


def storage_error(failure: DatabaseFailure, retry_after_s: int) -> StorageError:
    """The error a client gets for ``failure`` (the driver's text stays in the server log:
    it can name hosts and paths)."""
    cls = StorageFullError if failure.kind == "full" else DatabaseUnavailableError
    return cls(_STORAGE_MESSAGES[failure.kind], kind=failure.kind, retry_after_s=retry_after_s)


class DatabaseNotMigratedError(ServiceError):
    """The database schema is not at the code's revision; the app refuses to start."""

    code = "database_not_migrated"


#: Every error ``code`` the API answers with, and what it means. The OpenAPI document lists
#: them (``ErrorDetail.code`` and the API description); a test checks that no code the
#: handlers can produce is missing here.
ERROR_CODES: dict[str, str] = {
    "bad_request": "The body could not be parsed (malformed multipart or JSON).",
    "unauthenticated": "Missing, unknown or revoked X-API-Key, a key given in the URL, or "
    "/metrics without its bearer token.",
    "forbidden": "The key lacks the endpoint's scope, or is bound to other galleries.",
    "not_found": "No such identity, template, gallery, API key or route.",
    "method_not_allowed": "The route exists but not with this HTTP method.",
    "not_acceptable": "The requested media type cannot be produced.",
    "conflict": "The name is taken (an identity in its gallery, a gallery), or a concurrent "
    "change won; retry.",
    "request_too_large": "The request body, or a text field of the form, is over its limit.",
    "upload_too_large": "The upload is over a decoding limit: bytes, frames, pixels per frame "
    "or per walk, archive members, inflated size or compression ratio.",
    "unsupported_media_type": "The body's content type is not the one the endpoint takes.",
    "invalid_request": "A field is out of range or malformed (top_k, filter, metadata, a name, "
    "a cursor, a text field that is not UTF-8, ...).",
    "validation_error": "The request does not match the schema; `details` lists each problem.",
    "invalid_upload": "The upload cannot be read: unknown format, corrupt or unsafe archive, "
    "unusable values or shapes.",
    "invalid_sequence": "The silhouettes cannot be used as a walk (values, shapes).",
    "too_few_frames": "Fewer usable frames than GAITID_MIN_FRAMES; `details` has usable, "
    "required and total.",
    "no_person_found": "Camera footage or a photo in which no walking person can be followed.",
    "background_needed": "The person never leaves part of the picture (walking towards the "
    "camera): send an empty-scene frame as `background`.",
    "people_indistinct": "Camera footage of people walking so close together that no frame "
    "shows them apart: their walks cannot be told apart, and none is identified.",
    "several_people": "Camera footage of several people where one walk is needed (enrol, "
    "verify): choose whose with `track`; or a `track` the clip does not have. The message "
    "lists the clip's tracks.",
    "too_many_requests": "Rate limited; retry later.",
    "unavailable": "The service is starting or stopping, or cannot reach its database; retry.",
    "database_unavailable": "The database cannot serve the request now (unreachable, locked "
    "past its busy timeout, read-only, I/O error); retry after `Retry-After` seconds. "
    "`details.reason` says which.",
    "storage_full": "The database's disk is full (507); nothing was stored.",
    "timeout": "The request took longer than GAITID_REQUEST_TIMEOUT_S.",
    "database_not_migrated": "The database is not at the code's schema revision.",
    "internal_error": "A bug: the server log has the traceback.",
    "http_error": "Another HTTP error, named by the status.",
}


_CODE_ENUM: list[JsonValue] = [*sorted(ERROR_CODES)]


# --- the one error schema ------------------------------------------------------------------
class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        description="Stable machine-readable error code; every value and its meaning is in "
        "the API description.",
        examples=["not_found"],
        json_schema_extra={"enum": _CODE_ENUM},
    )
    message: str = Field(
        description="What went wrong and what is allowed, for a person.",
        examples=["identity 42 not found"],
    )
    details: Any | None = Field(
        default=None, description="Structured context, e.g. validation errors per field."
    )


class ErrorResponse(BaseModel):
    """Body of every 4xx and 5xx response."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "not_found",
                        "message": "identity 42 not found",
                        "details": None,
                    }
                }
            ]
        },
    )

    error: ErrorDetail


_STATUS: list[tuple[type[Exception], int]] = [
    (UploadTooLargeError, 413),
    (RequestTooLargeError, 413),
    (UploadError, 422),
    (TooFewFramesError, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidRequestError, 422),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (RequestTimeoutError, 504),
    (StorageFullError, 507),
    (DatabaseUnavailableError, 503),
    (ServiceUnavailableError, 503),
    (BatcherClosedError, 503),
    (DatabaseNotMigratedError, 503),
]

_CODES: dict[type[Exception], str] = {
    BackgroundNeededError: "background_needed",
    NoPersonFoundError: "no_person_found",
    IndistinctPeopleError: "people_indistinct",
    PersonChoiceError: "several_people",
    UploadTooLargeError: "upload_too_large",
    TooFewFramesError: "too_few_frames",
    UploadError: "invalid_upload",
    BatcherClosedError: "unavailable",
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
    504: "timeout",
}


def status_for(exc: Exception) -> int:
    """The HTTP status of a typed error (422 for other unusable walks, 500 otherwise).

    Only the sender's errors are 4xx: a plain ``ValueError``, or a project error that is one
    (a ``ContractError`` from a wrong model file), is a bug or a deployment fault, a 500.
    """
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    if isinstance(exc, InvalidSequenceError):
        return 422  # gaitid.errors.InvalidSequenceError and friends
    return 500


def code_for(exc: Exception) -> str:
    for cls, code in _CODES.items():
        if isinstance(exc, cls):
            return code
    if isinstance(exc, ServiceError):
        return exc.code
    return "invalid_sequence" if isinstance(exc, InvalidSequenceError) else "internal_error"


def error_body(code: str, message: str, details: Any | None = None) -> dict[str, Any]:
    return ErrorResponse(error=ErrorDetail(code=code, message=message, details=details)).model_dump(
        mode="json"
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _details_of(exc: Exception) -> Any | None:
    if isinstance(exc, TooFewFramesError):
        return {"usable": exc.usable, "required": exc.required, "total": exc.total}
    if isinstance(exc, StorageError):
        return {"reason": exc.kind}
    return None


async def _gaitid_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    if isinstance(exc, StorageError):
        _count_refusal(request, exc)  # logged once per outage by the circuit, not here
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif status >= 500:
        logger.error("%s: %s", type(exc).__name__, exc)
    return error_response(status, code_for(exc), _plain(str(exc)), _details_of(exc), headers)


def _count_refusal(request: Request, exc: StorageError) -> None:
    """Count a request refused for the database's sake (metrics, end-of-outage warning)."""
    state = getattr(request.app.state, "service", None)
    circuit = getattr(getattr(state, "db", None), "circuit", None)
    if circuit is not None:
        circuit.refused(exc.kind)


#: Starlette's multipart parser refuses a text field over its part size with a 400 of this
#: wording; the API documents an oversized part as 413 (``request_too_large``).
_PART_TOO_LARGE = re.compile(r"^(Part|Field) exceeded maximum size of (\d+)KB\.?$")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        # every method of the path, not only those of the first route that matched it
        allow = ", ".join(allowed_methods(request))
        return error_response(405, "method_not_allowed", str(exc.detail), None, {"Allow": allow})
    if exc.status_code == 400 and isinstance(exc.detail, str):
        too_large = _PART_TOO_LARGE.match(exc.detail)
        if too_large:
            return error_response(
                413,
                "request_too_large",
                f"a form field exceeds {too_large.group(2)} KiB (text fields such as "
                "metadata are bounded; the upload itself goes in the file field)",
            )
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, None, dict(exc.headers or {}) or None)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": list(e.get("loc", ())),
            "msg": _plain(str(e.get("msg", ""))),
            "type": e.get("type", ""),
        }
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return error_response(422, "validation_error", f"{where}: {first['msg']}", errors)


#: Python names in FastAPI's, pydantic's and decoders' messages ("Expected UploadFile,
#: received: <class 'str'>", "cannot identify image file <_io.BytesIO object at 0x...>"):
#: a client reads what to send instead.
_UPLOAD_FILE_EXPECTED = re.compile(r"Expected UploadFile, received: <class '[\w.]+'>")
_PYTHON_CLASS = re.compile(r"<class '[\w.]+'>")
_PYTHON_OBJECT = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def _plain(message: str) -> str:
    """An error message without Python type, class or module names."""
    message = _UPLOAD_FILE_EXPECTED.sub("expected a file part, not a text field", message)
    message = _PYTHON_OBJECT.sub("the data", message)
    return _PYTHON_CLASS.sub("a value of another type", message)


async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


async def _driver_error(request: Request, exc: Exception) -> JSONResponse:
    """A driver error that bypassed ``Database.session`` (which turns those of a database
    that cannot serve into :class:`StorageError`): the same 503/507, else a logged 500."""
    failure = classify(exc)
    if failure is None:
        return await _unhandled(request, exc)
    state = getattr(request.app.state, "service", None)
    circuit = getattr(getattr(state, "db", None), "circuit", None)
    if circuit is not None:
        circuit.failed(failure)  # logs once per outage
    return await _gaitid_error(request, storage_error(failure, RETRY_AFTER_S[failure.kind]))


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as :class:`ErrorResponse`."""
    app.add_exception_handler(GaitidError, _gaitid_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # handled here rather than by the catch-all, which re-raises to the server (a traceback
    # per request, and a closed connection)
    app.add_exception_handler(SQLAlchemyError, _driver_error)
    app.add_exception_handler(sqlite3.Error, _driver_error)
    app.add_exception_handler(Exception, _unhandled)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries: each status documented with :class:`ErrorResponse`."""
    descriptions = {
        401: "Missing, unknown or revoked API key.",
        403: "The API key lacks the scope this endpoint needs.",
        404: "No such resource.",
        409: "Conflicts with the current state.",
        413: "Upload or request body over the configured limit.",
        422: "Invalid request fields or an unusable upload.",
        503: "Not ready, overloaded, or the database cannot serve now (`Retry-After`).",
        507: "The database's disk is full; nothing was stored.",
        504: "The request took longer than the configured timeout.",
    }
    return {
        s: {"model": ErrorResponse, "description": descriptions.get(s, "Error.")} for s in statuses
    }
