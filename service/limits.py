"""Request-level limits as pure ASGI middleware: body size, a whole-request timeout, and
work that stops when the client goes away.

- Body size: a ``Content-Length`` over the cap is answered 413 before a byte of the body is
  read; a body without one (chunked) is counted while it streams and cut off at the cap, so an
  oversized upload is never buffered in full. The multipart parser sits behind this.
- Timeout: the whole request (upload included, which also bounds slow senders) must finish in
  ``request_timeout_s``; otherwise the client gets 504 with the JSON error body. Work already
  handed to a worker thread (a commit and its index update) runs to completion first; it is
  never cut in half.
- Disconnect: once the body has been read, a client that closes its connection cancels its
  request the same way, so an upload nobody waits for stops decoding
  (``gaitid.service.walks.uploads``).
"""

from __future__ import annotations

import asyncio

import anyio
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gaitid.service.errors import RequestTooLargeError, error_response


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when the streamed body passes the cap.

    An ``HTTPException`` so that FastAPI's body parsing re-raises it as is (it turns other
    errors raised while reading the body into a generic 400) and the app's handler renders it.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"request body exceeds the limit of {max_bytes} bytes "
            "(GAITID_MAX_UPLOAD_BYTES plus form overhead)",
        )


class BodyLimitMiddleware:
    """413 for request bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"request body of {size} exceeds the limit of {self.max_bytes} bytes "
            "(GAITID_MAX_UPLOAD_BYTES plus form overhead)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            exc = self._too_large(f"{declared} bytes")
            response = error_response(413, exc.code, str(exc), headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0
        tracked = _ResponseStarted(send)

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, tracked)
        except _BodyTooLarge:
            if tracked.started:
                raise
            exc = self._too_large(f"more than {self.max_bytes} bytes")
            response = error_response(413, exc.code, str(exc), headers={"Connection": "close"})
            await response(scope, receive, send)


class _ResponseStarted:
    """``send`` that remembers whether the response has begun: after that, an error can no
    longer be turned into a JSON error response, only re-raised."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class TimeoutMiddleware:
    """504 JSON when a request runs longer than ``timeout_s``."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = _ResponseStarted(send)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, tracked)
        except TimeoutError:
            if tracked.started:
                raise
            response = error_response(
                504,
                "timeout",
                f"request took longer than {self.timeout_s:g} s (GAITID_REQUEST_TIMEOUT_S)",
            )
            await response(scope, receive, send)


#: Set in the ASGI scope when a request was cancelled because its client went away, so the
#: metrics can count it as 499 ("client closed request") rather than as an error.
CLIENT_GONE = "gaitid.client_gone"


class CancelOnDisconnectMiddleware:
    """Cancel a request's work when its client disconnects before the answer.

    After the request body has been received, the server's ``receive`` returns only when the
    connection closes or the response is complete. A watcher task waits for that; if the
    client left while the response was still pending, it cancels the handler (work in
    worker threads that must not be cut, such as a commit, finishes first: it is shielded).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = anyio.Event()
        answered = False

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_read.set()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        async def watch(scope_to_cancel: anyio.CancelScope) -> None:
            await body_read.wait()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
            if not answered:
                scope[CLIENT_GONE] = True
                scope_to_cancel.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(watch, group.cancel_scope)
            try:
                await self.app(scope, tracked_receive, tracked_send)
            finally:
                group.cancel_scope.cancel()  # the answer is out: stop watching
