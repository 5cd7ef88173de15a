"""Authenticate from the headers before a byte of the body is read (pure ASGI middleware).

FastAPI reads and parses a form body before it resolves a route's dependencies, so the
``X-API-Key`` dependency alone would let a caller without a key make the server receive a
40 MB upload (or wait for it until the timeout) just to answer 401. This middleware finds the
route a request is for, and when that route demands a scope (``gaitid.service.deps.require``) it
authenticates the key and checks the scope first: a 401 or 403 goes out at once, the body is
never read, and the connection is closed. The principal it resolved is left in the request
state, so the route's dependency does not look the key up a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gaitid.service.auth import Principal, authenticate
from gaitid.service.auth import Scope as KeyScope
from gaitid.service.errors import (
    ServiceError,
    StorageError,
    code_for,
    error_response,
    status_for,
)

#: Request-state key of the principal resolved here (read by ``gaitid.service.deps.require``).
PRINCIPAL_STATE = "principal"
#: Attribute ``gaitid.service.deps.require`` sets on its dependency: the scope it demands.
REQUIRED_SCOPE_ATTR = "required_scope"
#: The ``REQUIRED_SCOPE_ATTR`` of a dependency that takes any valid key, whatever its scopes.
ANY_SCOPE = "any"


class AuthFirstMiddleware:
    """401 / 403 from the request headers, before the body, for routes that need a key.

    ``routes`` are the app's routes as its routers declare them (the middleware matches a
    request against them itself: path and method, as the router will).
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._routes = [(route, _required_scope(route)) for route in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _key_in_url(scope.get("query_string", b"")):
            response = error_response(
                401,
                "unauthenticated",
                "API keys are refused in the URL (URLs end up in logs and browser history): "
                "send the key in the X-API-Key header",
                headers={"WWW-Authenticate": "ApiKey", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        service = getattr(getattr(scope.get("app"), "state", None), "service", None)
        needed = self._needed(scope)
        if needed is None or service is None or not service.ready:
            await self.app(scope, receive, send)  # open route, or 503 from the route
            return
        key = Headers(scope=scope).get("x-api-key")
        scope_needed = None if needed == ANY_SCOPE else KeyScope(needed)
        try:
            principal: Principal = await anyio.to_thread.run_sync(
                authenticate, service.db, key, scope_needed
            )
        except StorageError:
            # The database cannot serve: the route's own key check meets the same error and
            # answers 503 after reading the body, which keeps the connection usable (closing
            # it on an unread body can reset it before the client reads the answer).
            await self.app(scope, receive, send)
            return
        except ServiceError as exc:
            status = status_for(exc)
            headers = {"Connection": "close"}
            if status == 401:
                headers["WWW-Authenticate"] = "ApiKey"
            response = error_response(status, code_for(exc), str(exc), headers=headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await self.app(scope, receive, send)

    def _needed(self, scope: Scope) -> str | None:
        """The scope the route of this request demands, or :data:`ANY_SCOPE` (None: no such
        route, or open)."""
        for route, needed in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return needed
        return None


def _required_scope(route: Any) -> str | None:
    """The scope (or :data:`ANY_SCOPE`) of the first ``require(...)`` dependency in the
    route's dependency tree."""
    pending = list(getattr(getattr(route, "dependant", None), "dependencies", ()))
    while pending:
        dependant = pending.pop(0)
        needed = getattr(dependant.call, REQUIRED_SCOPE_ATTR, None)
        if needed is not None:
            return str(needed)
        pending.extend(dependant.dependencies)
    return None


#: Query parameters that look like an API key: refused, and their values never logged.
KEY_QUERY_PARAMS = frozenset({"api_key", "apikey", "api-key", "key", "x-api-key", "x_api_key"})


def _key_in_url(query_string: bytes) -> bool:
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return any(name.lower() in KEY_QUERY_PARAMS for name, _ in pairs)


def redact_url(path_with_query: str) -> str:
    """``path?query`` with the values of key-like parameters replaced by ``[redacted]``."""
    path, sep, query = path_with_query.partition("?")
    if not sep:
        return path_with_query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() in KEY_QUERY_PARAMS for name, _ in pairs):
        return path_with_query
    cleaned = [(n, "[redacted]" if n.lower() in KEY_QUERY_PARAMS else v) for n, v in pairs]
    return f"{path}?{urlencode(cleaned, safe='[]')}"


class RedactKeysInAccessLog(logging.Filter):
    """Rewrites uvicorn's access-log lines so a key sent in a URL is never written out
    (the request itself is refused by :class:`AuthFirstMiddleware`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_url(args[2]), *args[3:])
        return True
