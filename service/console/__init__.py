"""The operator's console (``GET /console``): one page, its script and its style, served by
the app itself from files packaged in the wheel.

The page talks to the same API as any client (``X-API-Key`` from ``fetch``; the key typed by
the operator lives in ``sessionStorage`` only), so there is no second backend and nothing to
build: plain HTML, one ES module, one stylesheet, one icon. No asset comes from elsewhere, so
it works on an offline site, and every answer carries a strict Content-Security-Policy: no
inline script or style, no request outside this origin, no framing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from gaitid.service.errors import NotFoundError

#: The console's files (in this package folder) and their media types.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

#: Scripts and styles from this origin's files only (no inline code, no eval); images from
#: here, or drawn by the page (the preview strip arrives as a data URL, the DET picture as a
#: blob fetched with the key); requests to this origin only; no forms posted natively, no
#: framing, no <base>.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # the files change with the installed version; revalidation is cheap on a local site
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def asset(name: str) -> Asset:
    """A console file by name; 404 for anything that is not one of :data:`ASSETS`."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"the console has no file {name!r}")
    return Asset(resources.files(__name__).joinpath(name).read_bytes(), media_type)
