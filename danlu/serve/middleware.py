"""Pure ASGI middleware: request metrics, the header limits, and the body's size and time limits.

Pure ASGI rather than BaseHTTPMiddleware: no extra task per request, and the body limit can stop
reading a stream as soon as it goes over, before the app (or pydantic) sees a byte of it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Callable


async def send_json(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class MetricsMiddleware:
    """Counts every HTTP request by endpoint and status and times it, 413s and 500s included."""

    def __init__(self, app, metrics, endpoints: Callable[[], set[str]]):
        self.app, self.metrics, self._endpoints = app, metrics, endpoints
        self._known: set[str] | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self._known is None:  # routes are all added by the first request
            self._known = self._endpoints()
        status = 500
        began = time.perf_counter()

        async def record_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            # The matched route's template (a router included later shows up only here), else the
            # path if it is a known one (a 413 is answered before routing); raw unknown paths would
            # make one time series per scanner probe.
            route = getattr(scope.get("route"), "path", None)
            path = route or (scope["path"] if scope["path"] in self._known else "other")
            self.metrics.observe_request(path, scope["method"], status, time.perf_counter() - began)


CLOSE = [(b"connection", b"close")]  # the unread rest of the request must not be parsed as the next one


class HeaderLimitMiddleware:
    """431 for more than `max_count` headers or more than `max_bytes` of them (names and values).

    uvicorn's httptools parser limits neither (a 1 MB header and 300 headers were accepted); h11 has
    one size limit and answers it with a bare 400. This says which limit was hit. The server has
    buffered the headers by the time an ASGI app sees them: the limit keeps them from the app, its
    logs and its handlers, not from uvicorn's memory.
    """

    def __init__(self, app, max_bytes: int, max_count: int):
        self.app, self.max_bytes, self.max_count = app, max_bytes, max_count

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = scope["headers"]
            if len(headers) > self.max_count:
                return await send_json(send, 431, f"more than {self.max_count} request headers", CLOSE)
            if sum(len(name) + len(value) for name, value in headers) > self.max_bytes:
                return await send_json(send, 431, f"request headers over {self.max_bytes // 1024} KiB in all", CLOSE)
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: by Content-Length at once, or while reading a chunked stream.
    408 for one that has not all arrived `timeout_s` after the request began (a body shorter than its
    Content-Length, a client sending a byte a minute), so that neither holds a connection for ever."""

    def __init__(self, app, max_bytes: int, timeout_s: float = 30.0):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.max_bytes // 1024} KiB (--max-body-kb)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return await send_json(send, 400, "invalid Content-Length", CLOSE)
            if length > self.max_bytes:
                return await send_json(send, 413, too_large, CLOSE)
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                return await send_json(send, 408, f"the request body did not arrive in {self.timeout_s:g} s "
                                       "(is it shorter than its Content-Length?)", CLOSE)
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await send_json(send, 413, too_large, CLOSE)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the disconnect, as the app expects

        await self.app(scope, replay, send)
