"""Pure ASGI middleware: request metrics, and the body-size limit.

Pure ASGI rather than BaseHTTPMiddleware: no extra task per request, and the body limit can stop
reading a stream as soon as it goes over, before the app (or pydantic) sees a byte of it.
"""

from __future__ import annotations

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


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: by Content-Length at once, or while reading a chunked stream."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.max_bytes // 1024} KiB (--max-body-kb)"
        close = [(b"connection", b"close")]  # the unread rest of the body must not be parsed as a request
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                return await send_json(send, 400, "invalid Content-Length", close)
            if length > self.max_bytes:
                return await send_json(send, 413, too_large, close)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await send_json(send, 413, too_large, close)
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
