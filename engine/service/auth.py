"""Access: bearer-token auth and the allowed Host names, as pure ASGI middlewares."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .errors import api_problem, clip, error_response

OPEN_PATHS = frozenset({"/healthz"})


class BearerAuth:
    """Pure ASGI middleware: every path but the open ones needs `Authorization: Bearer <token>`."""

    def __init__(self, app: Callable[..., Awaitable[None]], token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        scheme, _, given = (header or b"").strip().partition(b" ")
        # compare_digest keeps the comparison time independent of how much of the token matched.
        if header is not None and scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            return await self.app(scope, receive, send)
        message = "missing Authorization header (Bearer token)" if header is None else "invalid bearer token"
        response = error_response(401, "unauthorized", message, [api_problem("Authorization", message)],
                                  {"WWW-Authenticate": 'Bearer realm="cancel-rules"'})
        await response(scope, receive, send)


class AllowedHosts:
    """Pure ASGI middleware: a request whose Host header names none of the allowed hosts gets 400 (a page on a
    rebound DNS name cannot reach the service through a browser)."""

    def __init__(self, app: Callable[..., Awaitable[None]], hosts: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in hosts
        self.names = frozenset(h for h in hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))  # "*.example.com": its subdomains

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or self.any:
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        host = _host_name(header)
        if host in self.names or (host.endswith(self.suffixes) and host not in self.suffixes):
            return await self.app(scope, receive, send)
        message = f"the Host header {clip(header)!r} names no host this service answers for"
        response = error_response(400, "invalid_host", message, [api_problem("Host", "not an allowed host", header)])
        await response(scope, receive, send)


def _host_name(header: str) -> str:
    """The host of a Host header: without its port, brackets or final dot, in lower case."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")
