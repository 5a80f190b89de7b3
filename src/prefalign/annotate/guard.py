"""Request guards of the annotation server: body size, cross-site posts, tokens in logs.

* :class:`BodyLimit` refuses a request body over ``MAX_BODY_BYTES`` with 413 before the app
  sees it: a declared ``Content-Length`` over the limit is refused without reading a byte, a
  chunked body is read at most up to the limit. Memory per request is then bounded by the
  limit, whoever sends it (an unauthenticated client included).
* :class:`SameOrigin` refuses state-changing requests (POST and the like) that a browser sent
  from another origin, following OWASP's "verify origin with standard headers": the ``Origin``
  header, else the ``Referer``, must name the server's own origin (``--base-url``, else the
  ``Host`` the request was sent to). Requests with neither header (scripts with a Bearer
  token) pass; they carry no ambient cookie authority from a victim's browser.
* :class:`RedactTokens` is a logging filter that hides invite tokens in access-log lines.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlsplit

# A vote is well under 1 KB; 64 KiB leaves room for any form or JSON the app takes (ours).
MAX_BODY_BYTES = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_INVITE = re.compile(r"(/invite/)[^/?#\s\"]+")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Pure ASGI middleware: bodies over ``limit`` bytes get 413 and never reach the app.

    The body (at most ``limit`` bytes) is read here and handed to the app in one message.
    """

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over {self.limit} bytes; a vote is under 1 KB"
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await _send_error(send, 400, "invalid Content-Length header")
            if int(declared) > self.limit:
                return await _send_error(send, 413, too_large)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await _send_error(send, 413, too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL (lower case, default ports dropped), or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


class SameOrigin:
    """Pure ASGI middleware: 403 for a cross-origin POST (or PUT, PATCH, DELETE).

    Args:
        app: The ASGI app.
        base_url: The address people use (``--base-url``); None: the request's own
            ``scheme://Host``, which is right when no proxy rewrites the Host header.
    """

    def __init__(self, app, base_url: str | None = None):
        self.app = app
        self.expected = origin_of(base_url) if base_url else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            return await self.app(scope, receive, send)
        expected = self.expected
        if expected is None:
            host = _header(scope, b"host") or ""
            expected = origin_of(f"{scope.get('scheme', 'http')}://{host}")
        origin = _header(scope, b"origin")
        referer = _header(scope, b"referer")
        if origin is not None:
            claimed = origin_of(origin) if origin.strip() != "null" else None
        elif referer is not None:
            claimed = origin_of(referer)
        else:
            return await self.app(scope, receive, send)
        if claimed is None or claimed != expected:
            shown = origin if origin is not None else "the Referer"
            message = f"cross-site request refused: {shown} is not this server's origin ({expected})"
            return await _send_error(send, 403, message)
        return await self.app(scope, receive, send)


def redact(text: str) -> str:
    """``text`` with every ``/invite/<token>`` replaced by ``/invite/[redacted]``."""
    return _INVITE.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Hides invite tokens in log records (uvicorn's access log passes the path as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True
