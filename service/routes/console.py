"""``/console``: the operator's console page and its files (not part of the API document)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from gaitid.service import console

router = APIRouter(prefix="/console", include_in_schema=False)


# HEAD as well: a link checker or `curl -I` asks for the page's headers only
@router.api_route("", methods=["GET", "HEAD"])
def page() -> Response:
    """The single page; its script loads the API key from ``sessionStorage`` or asks for it."""
    return _serve(console.asset("index.html"))


@router.api_route("/{name}", methods=["GET", "HEAD"])
def asset(name: Annotated[str, Path(max_length=64)]) -> Response:
    return _serve(console.asset(name))


def _serve(file: console.Asset) -> Response:
    return Response(file.body, media_type=file.media_type, headers=console.SECURITY_HEADERS)
