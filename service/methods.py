"""The ``Allow`` header of a 405: every method the path takes, not one route's.

Starlette answers a method a path does not take with the ``Allow`` of the first route whose
path matched, so ``OPTIONS /galleries`` named ``GET`` although ``POST /galleries`` exists
(a route per method, as the routers declare them). RFC 9110 asks for every method of the
resource; this asks the app's router which methods it would route at the path.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match

#: The methods a route of this API may take.
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at ``request``'s path, sorted."""
    routes = request.app.router.routes
    allowed = []
    for method in METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed
