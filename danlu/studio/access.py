"""Who may use the studio.

By default it listens on the loopback interface only, and answers only requests addressed to a local
name (the Host header): a web page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding)
reads nothing. On any other address it needs a key, DANLU_API_KEY as for `danlu serve`, and refuses to
start without one. With a key, every page and API call needs it: a script sends `Authorization: Bearer
<key>`; a browser posts it once to /login and then carries a cookie (HttpOnly, SameSite=Strict) holding
an HMAC of the key, never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
from urllib.parse import parse_qs

COOKIE = "danlu_studio"
OPEN = ("/login", "/static/")  # the login form and the page assets: nothing from the runs


def is_local(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_value(key: str) -> str:
    return hmac.new(key.encode(), b"danlu-studio-session", hashlib.sha256).hexdigest()


class KeyGate:
    """ASGI middleware: with `api_key`, requests without it get 401 (a login form for a browser's page
    request); with `local_only`, requests naming a non-local host get 400."""

    def __init__(self, app, api_key: str | None, local_only: bool):
        self.app, self.api_key, self.local_only = app, api_key, local_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if self.local_only and not is_local(_host_name(headers.get("host", ""))):
            return await reply(send, 400, "text/plain", b"the studio answers requests to localhost only")
        path = scope.get("path", "")
        if self.api_key is None or path.startswith(OPEN) or self._holds_key(headers):
            if self.api_key is not None and path == "/login":
                return await self._login(scope, receive, send)
            return await self.app(scope, receive, send)
        if "text/html" in headers.get("accept", "") and scope.get("method") == "GET":
            return await reply(send, 401, "text/html; charset=utf-8", login_page(path).encode())
        await reply(send, 401, "application/json",
                     b'{"detail": "missing or wrong API key: send \'Authorization: Bearer <DANLU_API_KEY>\'"}',
                     [(b"www-authenticate", b"Bearer")])

    def _holds_key(self, headers: dict) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return True
        cookies = dict(part.strip().split("=", 1) for part in headers.get("cookie", "").split(";") if "=" in part)
        return hmac.compare_digest(cookies.get(COOKIE, "").encode(), cookie_value(self.api_key).encode())

    async def _login(self, scope, receive, send):
        if scope.get("method") != "POST":
            return await reply(send, 200, "text/html; charset=utf-8", login_page("/").encode())
        body = b""
        while True:  # a form of one field: bounded, whatever a client sends
            message = await receive()
            body += message.get("body", b"")
            if len(body) > 8192:
                return await reply(send, 413, "text/plain", b"too long for a key")
            if not message.get("more_body"):
                break
        form = parse_qs(body.decode("utf-8", "replace"))
        key, target = form.get("key", [""])[0], form.get("next", ["/"])[0]
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return await reply(send, 401, "text/html; charset=utf-8", login_page(target, wrong=True).encode())
        if not target.startswith("/") or target.startswith("//"):  # only back into the studio
            target = "/"
        cookie = f"{COOKIE}={cookie_value(self.api_key)}; Path=/; HttpOnly; SameSite=Strict"
        await reply(send, 303, "text/plain", b"", [(b"location", target.encode("utf-8")),
                                                    (b"set-cookie", cookie.encode())])


def _host_name(host: str) -> str:
    if host.startswith("["):  # [::1]:8765
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def login_page(target: str, wrong: bool = False) -> str:
    note = "<p class=bad>That is not the key.</p>" if wrong else ""
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>danlu studio: key</title>"
            '<link rel=stylesheet href="/static/studio.css"></head><body><main>'
            "<h1>danlu studio</h1><p>This studio needs its key (DANLU_API_KEY).</p>" + note +
            '<form method=post action="/login"><input type=password name=key aria-label=key autofocus> '
            f'<input type=hidden name=next value="{html.escape(target)}"><button>Open</button></form>'
            "</main></body></html>")


async def reply(send, status: int, media: str, body: bytes, extra: list | None = None) -> None:
    headers = [(b"content-type", media.encode()), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
