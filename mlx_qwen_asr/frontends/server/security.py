"""Who may use the server: the API key, the Host and Origin checks, the upload size limit.

* With `--api-key`, every endpoint (the page and the WebSocket included) wants it, as
  `Authorization: Bearer KEY` or, for the page's own requests, the HttpOnly cookie that
  the page's key form sets (a browser cannot send a header on navigation or WebSocket).
* Bound to loopback, the server answers only Host names of loopback (a DNS-rebinding page
  cannot reach it by another name), and a request carrying an Origin other than the
  server's own is refused: web pages the user visits cannot post audio to it or open its
  WebSocket, with or without a key.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from urllib.parse import urlsplit

COOKIE = "mlx_qwen_asr_key"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def cookie(scope, name: str) -> str | None:
    raw = header(scope, b"cookie") or ""
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def key_matches(scope, api_key: str | None) -> bool:
    """No key configured: everyone. Else the Bearer header or the page's cookie must hold it."""
    if not api_key:
        return True
    given = None
    auth = header(scope, b"authorization") or ""
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    elif cookie(scope, COOKIE):
        given = cookie(scope, COOKIE)
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())


def origin_problem(scope, loopback_only: bool) -> str | None:
    """Why this request's Host or Origin is refused, or None."""
    host = header(scope, b"host") or ""
    if loopback_only and not is_loopback(_host_name(host)):
        return f"host {host!r} is not served: the server listens on loopback only"
    origin = header(scope, b"origin")
    if origin and origin != "null":
        parts = urlsplit(origin)
        if parts.netloc.lower() != host.lower():
            return f"cross-origin requests are refused (origin {origin})"
    elif origin == "null":
        return "cross-origin requests are refused (origin null)"
    return None


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


class TooLarge(Exception):
    pass


class Guard:
    """ASGI middleware: Host/Origin check on every request, and a request-body limit that
    stops reading an upload as soon as it passes `max_bytes` (Content-Length is checked first)."""

    def __init__(self, app, loopback_only: bool, max_bytes: int):
        self.app = app
        self.loopback_only = loopback_only
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        problem = origin_problem(scope, self.loopback_only)
        if problem:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": problem[:120]})
                return
            return await _send_error(send, 403, problem, "permission_error")
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_error(send, 413, _too_large(self.max_bytes), code="file_too_large")
        received = 0
        limit = self.max_bytes

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(_too_large(limit))
            return message

        return await self.app(scope, counted, send)


def _too_large(limit: int) -> str:
    return f"the upload exceeds the server's limit of {limit / 1e6:g} MB (--max-upload-mb)"


async def _send_error(send, status: int, message: str, type_: str = "invalid_request_error", code=None):
    body = error_body(message, type_, code=code)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
