"""FastAPI dependencies as ``Annotated`` aliases: what a route needs, not how it is built.

Everything comes from the app's :class:`ServiceState` (built in the lifespan), so tests swap
the model, database or settings by building the app with other arguments; no module-level
objects exist to patch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

import anyio
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from gaitid.service.auth import Principal, Scope, authenticate
from gaitid.service.auth_first import ANY_SCOPE, PRINCIPAL_STATE, REQUIRED_SCOPE_ATTR
from gaitid.service.errors import ServiceUnavailableError
from gaitid.service.state import ServiceState

_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="API key from `gaitid keys create --scope S` (scopes: identify, enroll, admin).",
)


def get_state(request: Request) -> ServiceState:
    """The running app's state; 503 while starting or stopping."""
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None or not state.ready:
        raise ServiceUnavailableError("the service is starting or stopping; retry shortly")
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """A read session for the request (writes go through the logic functions)."""
    with state.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def require(scope: Scope | None) -> Callable[..., object]:
    """A dependency that authenticates ``X-API-Key`` and demands ``scope`` (admin implies all;
    ``None``: any valid key).

    ``service.auth_first`` has usually done so already, from the headers and before the body
    was read (it finds this dependency by its ``required_scope``); its principal is reused.
    """

    async def _dependency(
        request: Request, state: StateDep, key: Annotated[str | None, Security(_api_key_header)]
    ) -> Principal:
        early = getattr(request.state, PRINCIPAL_STATE, None)
        if isinstance(early, Principal) and (scope is None or early.allows(scope)):
            return early
        return await anyio.to_thread.run_sync(authenticate, state.db, key, scope)

    needed = ANY_SCOPE if scope is None else scope.value
    _dependency.__name__ = f"require_{needed}"
    setattr(_dependency, REQUIRED_SCOPE_ATTR, needed)
    return _dependency


IdentifyKeyDep = Annotated[Principal, Depends(require(Scope.IDENTIFY))]
EnrollKeyDep = Annotated[Principal, Depends(require(Scope.ENROLL))]
AdminKeyDep = Annotated[Principal, Depends(require(Scope.ADMIN))]
#: Any valid key, whatever its scopes (every key has at least one of identify and enroll,
#: admin implying both): its own description, the model, a preview.
AnyKeyDep = Annotated[Principal, Depends(require(None))]
