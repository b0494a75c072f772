"""The HTTP JSON decision service: a FastAPI app over one loaded Policy, served by uvicorn worker processes."""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import errno
import gc
import hmac
import io
import ipaddress
import json
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .batch import resolve_columns, unknown_columns
from .csvio import DEFAULT_MAX_COLUMNS, ENV_MAX_COLUMNS
from .errors import FieldProblem, InputError, OrderError
from .facts import input_fields, parse_as_of, unknown_fields
from .policy import EXAMPLES_AS_OF, Policy, load
from .tabular import OUTPUT_COLUMNS, frame_csv
from .text import alias_key

log = logging.getLogger("engine.service")

# Worker processes are started by uvicorn from an import string, so everything they need travels in the
# environment; these are also the documented knobs of the service.
ENV_POLICY = "CANCEL_RULES_POLICY"
ENV_TOKEN = "CANCEL_RULES_TOKEN"
ENV_TOKEN_FILE = "CANCEL_RULES_TOKEN_FILE"
ENV_MAX_BODY_BYTES = "CANCEL_RULES_MAX_BODY_BYTES"
ENV_MAX_BATCH_ROWS = "CANCEL_RULES_MAX_BATCH_ROWS"
ENV_CORS_ORIGINS = "CANCEL_RULES_CORS_ORIGINS"
ENV_ALLOWED_HOSTS = "CANCEL_RULES_ALLOWED_HOSTS"
ENV_KEEPALIVE_TIMEOUT = "CANCEL_RULES_KEEPALIVE_TIMEOUT"
ENV_HEADER_TIMEOUT = "CANCEL_RULES_HEADER_TIMEOUT"
ENV_BODY_TIMEOUT = "CANCEL_RULES_BODY_TIMEOUT"
ENV_SEND_TIMEOUT = "CANCEL_RULES_SEND_TIMEOUT"

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BATCH_ROWS = 100_000
# Seconds a client may take: idle on a connection (before its first request and between requests), to send a
# request head from its first byte, to send the body once the head is in (10 MB at 1.4 Mbit/s), and to read an
# answer the server is held writing.
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_SEND_TIMEOUT = 60.0
ECHO_LIMIT = 200  # characters of a value sent by a client that an error echoes back
MESSAGE_LIMIT = 8_000  # characters of any one error message (a last bound: values are cut to ECHO_LIMIT first)
OPEN_PATHS = frozenset({"/healthz"})
DECISION_COLUMNS = OUTPUT_COLUMNS
ID = "order_id"  # the field echoed with every batch row
JSON_TYPE = "application/json"
WARNINGS_HEADER = "Cancel-Rules-Warnings"  # batch answers: a JSON array of texts, when there is any
MAX_HEADER_WARNINGS = 20
CSV_TYPE = "text/csv"
BATCH_THREADS = 2  # batches evaluated at once per worker process


@dataclass(frozen=True)
class Settings:
    """Limits and access settings of one service instance."""

    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    cors_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # empty: any Host header
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    max_columns: int = DEFAULT_MAX_COLUMNS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from CANCEL_RULES_* variables; raises ValueError naming the bad variable."""
        env = os.environ if environ is None else environ
        origins = tuple(o.strip() for o in env.get(ENV_CORS_ORIGINS, "").split(",") if o.strip())
        return cls(token=_token(env), max_body_bytes=_positive_int(env, ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
                   max_batch_rows=_positive_int(env, ENV_MAX_BATCH_ROWS, DEFAULT_MAX_BATCH_ROWS),
                   cors_origins=origins, allowed_hosts=_allowed_hosts(env),
                   keepalive_timeout=_seconds(env, ENV_KEEPALIVE_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT),
                   header_timeout=_seconds(env, ENV_HEADER_TIMEOUT, DEFAULT_HEADER_TIMEOUT),
                   body_timeout=_seconds(env, ENV_BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT),
                   send_timeout=_seconds(env, ENV_SEND_TIMEOUT, DEFAULT_SEND_TIMEOUT),
                   max_columns=_positive_int(env, ENV_MAX_COLUMNS, DEFAULT_MAX_COLUMNS))


def _token(env: Mapping[str, str]) -> str | None:
    """The bearer token: from the token file if one is named, else the variable. A variable set but blank is an
    error: a token that did not arrive (an unset secret expanded to nothing) must not turn auth off."""
    for name in (ENV_TOKEN_FILE, ENV_TOKEN):
        if name in env and not env[name].strip():
            raise ValueError(f"{name} is set but blank; unset it to serve without a token")
        if name in env:
            return read_token_file(env[name]) if name == ENV_TOKEN_FILE else env[name].strip()
    return None


def read_token_file(path: str | Path) -> str:
    """The bearer token held in a file (surrounding whitespace ignored); raises ValueError if unusable."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.__class__.__name__}") from None
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number of seconds, got {text!r}")
    return value


_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _allowed_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    """Host names (`*.example.com`: its subdomains) and addresses the service answers for; () means any."""
    if ENV_ALLOWED_HOSTS not in env:
        return ()
    hosts = tuple(h.strip().lower() for h in env[ENV_ALLOWED_HOSTS].split(",") if h.strip())
    if not hosts:
        raise ValueError(f"{ENV_ALLOWED_HOSTS} lists no host; unset it to accept any Host header")
    for host in hosts:
        if ":" in host.strip("[]"):
            try:
                ipaddress.IPv6Address(host.strip("[]"))
                continue
            except ValueError:
                pass
        elif host == "*" or _HOST_NAME.fullmatch(host):
            continue
        raise ValueError(f"{ENV_ALLOWED_HOSTS}: {host!r} is not a host name (give names or addresses without "
                         "scheme or port, e.g. api.example.com,*.example.com,127.0.0.1)")
    return tuple(h.strip("[]").rstrip(".") for h in hosts)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A client error answered as JSON: {error, message, problems: [{field, message, value}]}."""

    def __init__(self, status: int, code: str, message: str, problems: list[dict[str, Any]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems = problems or []
        self.headers = dict(headers or {})


def _problem(field: str, message: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "message": message, "value": value}


def _error_response(status: int, code: str, message: str, problems: list[dict[str, Any]] | None = None,
                    headers: Mapping[str, str] | None = None) -> Response:
    # Whatever built the error, what it echoes of the request is bounded here.
    problems = [{**p, "message": _cut(p["message"], MESSAGE_LIMIT), "value": _clip(p.get("value"))}
                for p in problems or []]
    body = {"error": code, "message": _cut(message, MESSAGE_LIMIT), "problems": problems}
    return Response(_dumps(body), status_code=status, media_type=JSON_TYPE, headers=dict(headers or {}))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _clip(value: Any) -> Any:
    """A client's value as an error echoes it: text (or an array or object as JSON) cut to ECHO_LIMIT characters."""
    if isinstance(value, (list, dict)):
        text = _ENCODER.encode(value)
        return value if len(text) <= ECHO_LIMIT else _cut(text, ECHO_LIMIT)
    return _cut(value, ECHO_LIMIT) if isinstance(value, str) else value


def _clipped(problem: FieldProblem) -> FieldProblem:
    """The problem with the value's repr in its message cut to ECHO_LIMIT characters (a 9 MB bad value made a
    27 MB answer: the value, its repr in the message, and the message again in the summary; _error_response cuts
    the value)."""
    value = problem.value
    if not isinstance(value, str) or len(value) <= ECHO_LIMIT:
        return problem
    short = repr(value[:ECHO_LIMIT])
    short = f"{short[:-1]}…{short[-1]} ({len(value):,} characters)"
    return FieldProblem(problem.field, value, problem.message.replace(repr(value), short))


def _order_problems(problems: list[FieldProblem]) -> list[dict[str, Any]]:
    return [_problem(p.field, p.message, p.value) for p in problems]


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: ApiError) -> Response:
        return _error_response(exc.status, exc.code, exc.message, exc.problems, exc.headers)

    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return _error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        problems = [_problem(".".join(str(p) for p in e.get("loc", ())), str(e.get("msg", "invalid")))
                    for e in exc.errors()]
        return _error_response(422, "invalid_request", "the request does not match the API schema", problems)

    async def server_error(_request: Request, exc: Exception) -> Response:
        # The traceback goes to the server log only: a response never carries internals.
        log.error("unhandled error", exc_info=exc)
        return _error_response(500, "internal_error", "internal server error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)


# ------------------------------------------------------------------------------------------ middleware


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
        response = _error_response(401, "unauthorized", message, [_problem("Authorization", message)],
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
        message = f"the Host header {_clip(header)!r} names no host this service answers for"
        response = _error_response(400, "invalid_host", message, [_problem("Host", "not an allowed host", header)])
        await response(scope, receive, send)


def _host_name(header: str) -> str:
    """The host of a Host header: without its port, brackets or final dot, in lower case."""
    text = header.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


# ------------------------------------------------------------------------------------------ request io


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _jsonable(value: Any) -> Any:
    """json.dumps' hook for what it cannot encode: a dataclass (a Decision and its parts) becomes its fields,
    shallowly, and the C encoder does the rest; the same JSON as `Decision.to_json()` at a fraction of the cost
    (asdict deep-copies every value, which costs as much as the decision itself)."""
    names = _FIELD_NAMES.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES.setdefault(type(value), tuple(f.name for f in dataclasses.fields(value)))
    if names is not None:
        return {name: getattr(value, name) for name in names}
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _dumps(value: Any) -> bytes:
    # A lone surrogate (valid in JSON text, not in UTF-8) is written as the JSON escape it arrived as.
    return _ENCODER.encode(value).encode("utf-8", "backslashreplace")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _require_type(request: Request, accepted: tuple[str, ...]) -> str:
    """The body's media type if accepted; an absent Content-Type is read as JSON (curl -d sends a form type)."""
    media = _media_type(request) or JSON_TYPE
    if media not in accepted:
        raise ApiError(415, "unsupported_media_type", f"Content-Type {media!r} is not supported; use "
                       + " or ".join(accepted), [_problem("Content-Type", f"expected {' or '.join(accepted)}", media)])
    return media


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # chunked bodies carry no length: count while reading
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or closed for sending too slowly: the answer goes nowhere, nothing to log
        raise ApiError(400, "client_disconnected", "the client closed the connection before the body ended") from None
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes",
                    [_problem("body", f"at most {limit} bytes")])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int | float:
    # An integer too long for a float would overflow deep in the engine: as a float it is infinite, which
    # the facts validation rejects with the field's name.
    return int(text) if len(text) < 300 else float(text)


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON document",
                       [_problem("body", "empty")])
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeDecodeError:
        message = "not valid JSON: the body is not UTF-8 text"
    except (ValueError, RecursionError) as exc:
        message = f"not valid JSON: {exc}" if isinstance(exc, ValueError) else "not valid JSON: nested too deeply"
    raise ApiError(400, "invalid_json", message, [_problem("body", message)])


def _as_of(value: str | None) -> datetime:
    if value is not None:
        # An unescaped "+00:00" in a query string arrives as " 00:00": read it as the offset it was.
        value = re.sub(r" (\d\d:?\d\d)$", r"+\1", value.strip())
    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_as_of", str(exc), [_problem("as_of", str(exc), value)]) from None


def _flag(request: Request, name: str) -> bool:
    """A true/false query parameter (absent: false)."""
    value = request.query_params.get(name)
    if value is None or value.strip().lower() in ("false", "0", "no", ""):
        return False
    if value.strip().lower() in ("true", "1", "yes"):
        return True
    message = f"?{name}= takes true or false, got {value[:50]!r}"
    raise ApiError(422, "invalid_query", message, [_problem(name, message, value[:50])])


def _wants_csv(request: Request) -> bool:
    """Content negotiation for the batch answer: CSV only when the client prefers it to JSON."""
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return False
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, val = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))

    def q_of(media: str) -> float:
        kind = media.split("/")[0]
        return quality.get(media, quality.get(f"{kind}/*", quality.get("*/*", 0.0)))

    json_q, csv_q = q_of(JSON_TYPE), q_of(CSV_TYPE)
    if json_q <= 0 and csv_q <= 0:
        raise ApiError(406, "not_acceptable", "the batch answer is application/json or text/csv",
                       [_problem("Accept", "accept application/json or text/csv", accept)])
    return csv_q > json_q


# ---------------------------------------------------------------------------------------------- orders


class OrderShape:
    """The JSON types an order's fields may take, derived from the policy's facts schema.

    The engine reads text for every fact (CSV rows are text), so numbers may also come as numeric text; what
    JSON adds, and the engine must never see, are objects, arrays and booleans where a scalar is meant."""

    ALLOWED = {"string": (str, int), "number": (int, float, str), "enum": (str,), "timestamp": (str,)}
    EXPECTED = {"string": "text or an integer", "number": "a number", "enum": "text",
                "timestamp": "an ISO 8601 timestamp"}

    def __init__(self, policy: Policy) -> None:
        self.kinds: dict[str, str] = {}
        for name, fact in policy.spec.facts.items():
            self.kinds[name] = fact.type
            if fact.from_timestamp:
                self.kinds[fact.from_timestamp] = "timestamp"
        self.required = [n for n, f in policy.spec.facts.items() if f.required]
        # What the service reads of an order: the fields the policy reads, and the id it echoes in any case.
        self.fields = tuple(dict.fromkeys([*input_fields(policy.spec), ID]))
        self._by_key = {alias_key(name): name for name in self.fields}

    def field_of(self, key: str) -> str | None:
        """The field a key names, matched as loosely as the batch path matches CSV headers (case, spaces)."""
        return key if key in self.fields else self._by_key.get(alias_key(key))

    def plan(self, keys: tuple[str, ...]) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
        """For objects with these keys: the (field, key) pairs to read, in the policy's order, and the keys
        ignored: those naming no field, and another spelling of a field given twice (its exact name wins, else
        the first spelling)."""
        named = [(key, self.field_of(key)) for key in keys]
        chosen: dict[str, str] = {}
        for key, name in named:
            if name is not None and (name not in chosen or key == name):
                chosen[name] = key
        read = tuple((name, chosen[name]) for name in self.fields if name in chosen)
        return read, tuple(key for key, name in named if name is None or chosen[name] != key)

    def read(self, order: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The order's fields under their own names, and the keys ignored (see plan)."""
        read, ignored = self.plan(tuple(order))
        return {name: order[key] for name, key in read}, ignored

    def problem(self, name: str, value: Any, text: bool = False) -> FieldProblem | None:
        """A value the engine must not see: of a wrong JSON type, or (`text`: when the body escapes surrogates)
        text holding a lone surrogate, which JSON can carry and UTF-8 cannot."""
        kind = self.kinds.get(name)
        if kind is None or value is None:
            return None
        if type(value) not in self.ALLOWED[kind]:
            return FieldProblem(name, value, f"must be {self.EXPECTED[kind]}, got JSON {_json_kind(value)}")
        if text and type(value) is str and (char := _lone_surrogate(value)):
            return FieldProblem(name, value, f"is not valid Unicode text (a lone surrogate \\u{ord(char):04x})")
        return None

    def problems(self, order: Mapping[str, Any], text: bool = False) -> list[FieldProblem]:
        return [p for name, value in order.items() if (p := self.problem(name, value, text=text)) is not None]

    def schema(self, policy: Policy) -> dict[str, Any]:
        """JSON Schema of one order, for the OpenAPI document."""
        props: dict[str, Any] = {}
        for name, fact in policy.spec.facts.items():
            doc = fact.description or name
            if fact.type == "enum":
                known = [*fact.values, *(fact.labels[v] for v in fact.values if v in fact.labels)]
                # The enum documents (and lets generators find) the known spellings; the free-text branch is
                # the truth: aliases are matched case- and space-insensitively, and unknown ones answered 422.
                branches: list[dict[str, Any]] = [{"enum": known}, {"type": "string"}]
                props[name] = {"anyOf": branches if fact.required else [*branches, {"type": "null"}],
                               "description": f"{doc}. One of {', '.join(fact.values)}; display labels and aliases "
                                              f"are accepted, case- and space-insensitive"
                                              + (f". Default: {fact.default}" if fact.default else "")}
            elif fact.type == "number":
                number: dict[str, Any] = {"type": "number"}
                if fact.min is not None:
                    number["minimum"] = fact.min
                if fact.max is not None:
                    number["maximum"] = fact.max
                text = {"type": "string", "description": "the number as text (as in CSV)"}
                props[name] = {"anyOf": [number, text, {"type": "null"}],
                               "description": doc + (f" ({fact.unit})" if fact.unit else "")
                               + (f"; or give {fact.from_timestamp}" if fact.from_timestamp else "")}
            else:
                props[name] = {"type": ["string", "integer"], "description": doc}
            if fact.from_timestamp:
                props[fact.from_timestamp] = {
                    "type": ["string", "null"],
                    "description": f"ISO 8601 time from which {name} is counted to the as-of time "
                                   f"(used when {name} is not given)"}
        return {"type": "object", "properties": props, "required": list(self.required),
                "additionalProperties": True}


def _lone_surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def _may_hold_surrogates(body: bytes) -> bool:
    """Whether JSON text escapes a UTF-16 surrogate (\\ud800 to \\udfff): only then can a string hold a lone one."""
    return _SURROGATE_ESCAPE.search(body) is not None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array"}.get(type(value), type(value).__name__)


def _problems_with(policy: Policy, order: Mapping[str, Any], bad: list[FieldProblem],
                   as_of: datetime, strict: bool = False) -> list[FieldProblem]:
    """`bad` (values the engine must not see) and the engine's problems with the other fields, each clipped."""
    fields = {p.field for p in bad}
    try:
        policy.decide({k: v for k, v in order.items() if k not in fields}, as_of=as_of, strict=strict)
    except OrderError as exc:
        return [_clipped(p) for p in bad + [p for p in exc.problems if p.field not in fields]]
    return [_clipped(p) for p in bad]


def _decide(policy: Policy, shape: OrderShape, order: Any, as_of: datetime, text: bool, strict: bool = False
            ) -> bytes:
    if not isinstance(order, dict):
        raise ApiError(422, "invalid_order", f"the body must be a JSON object of order facts, got JSON "
                       f"{_json_kind(order)}", [_problem("body", "must be a JSON object")])
    order, fields = _as_read(shape, order)
    problems = shape.problems(fields, text)
    if problems:
        problems = _problems_with(policy, order, problems, as_of, strict)
    else:
        try:
            return _dumps(policy.decide(order, as_of=as_of, strict=strict))
        except OrderError as exc:
            problems = [_clipped(p) for p in exc.problems]
    raise ApiError(422, "invalid_order", "invalid order: " + "; ".join(str(p) for p in problems),
                   _order_problems(problems))


def _as_read(shape: OrderShape, order: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the order as the engine gets it, its fields): the fields under their own names, so that a row of a batch
    and the same order alone read the same values, and keys naming no field as they came (warned, not read)."""
    fields, ignored = shape.read(order)
    return {**fields, **{key: order[key] for key in ignored}}, fields


# ----------------------------------------------------------------------------------------------- batch


@dataclass
class JsonBatch:
    """A JSON batch as the engine reads it: one column per field given in some row, whatever other keys the
    objects carry (one column per key took 4 GB for 20,000 rows with a key of their own each)."""

    frame: pd.DataFrame
    errors: dict[int, str]  # rows the engine must not see as they are: not objects, or bad values (blanked)
    ids: list[Any]  # each row's order id as sent
    ignored: set[str]  # keys naming no field, and second spellings of a field (see OrderShape.plan)


def _frame_from_json(policy: Policy, shape: OrderShape, rows: Any, limit: int, as_of: datetime,
                     text: bool = False) -> JsonBatch:
    """The JSON orders for the engine; `text`: strings may hold lone surrogates (see _may_hold_surrogates)."""
    if not isinstance(rows, list):
        raise ApiError(422, "invalid_batch", f"the body must be a JSON array of orders, got JSON {_json_kind(rows)}",
                       [_problem("body", "must be a JSON array of order objects")])
    if len(rows) > limit:
        raise _too_many(limit, len(rows))
    count = len(rows)
    allowed = {name: (*OrderShape.ALLOWED[kind], type(None)) for name, kind in shape.kinds.items()}
    columns: dict[str, list[Any]] = {}
    ids: list[Any] = [None] * count
    errors: dict[int, str] = {}
    bad: dict[int, list[FieldProblem]] = {}
    ignored: set[str] = set()
    plans: dict[tuple[str, ...], tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {}
    for i, row in enumerate(rows):
        if type(row) is not dict:
            errors[i] = f"must be a JSON object of order facts, got JSON {_json_kind(row)}"
            continue
        keys = tuple(row)
        plan = plans.get(keys)
        if plan is None:  # rows mostly share their keys: each set of keys is matched to fields once
            plan = plans[keys] = shape.plan(keys)
        for name, key in plan[0]:
            value = row[key]
            if name == ID:
                ids[i] = value
            if (text or type(value) not in allowed.get(name, (type(value),))) and \
                    (problem := shape.problem(name, value, text=text)) is not None:
                bad.setdefault(i, []).append(problem)
                value = None  # the engine never sees it (and pandas cannot hold a lone surrogate)
            if name not in columns:
                columns[name] = [None] * count
            columns[name][i] = value
        ignored.update(plan[1])
    # Ids are echoed as sent: as objects, never widened to floats by a row without one.
    frame = pd.DataFrame({name: pd.Series(columns[name], dtype=object if shape.kinds.get(name, "string") == "string"
                                          else None) for name in shape.fields if name in columns}, index=range(count))
    for position, problems in bad.items():
        fields = {name: rows[position][key] for name, key in plans[tuple(rows[position])][0]}
        errors[position] = "; ".join(str(p) for p in _problems_with(policy, fields, problems, as_of))
    # A field missing from every object is a missing fact of each row, not a missing CSV column.
    for name in shape.required:
        if name not in frame.columns:
            frame[name] = None
    return JsonBatch(frame, errors, ids, ignored)


def _unknown_keys(policy: Policy, shape: OrderShape, rows: list[Any], errors: dict[int, str], as_of: datetime,
                  strict: bool, text: bool = False) -> list[str]:
    """Warnings for the keys of the JSON orders the policy does not read (from the orders' keys, as the batch
    reads them); with strict, each order holding one gets /v1/decisions' strict problems as its error."""
    keys: dict[str, None] = {}
    for row in rows:
        if type(row) is dict:
            keys.update(dict.fromkeys(row))
    unknown = unknown_fields(policy.spec, keys, loose=True)
    if strict and unknown:
        for i, row in enumerate(rows):
            if type(row) is dict and not unknown.keys().isdisjoint(row):
                order, fields = _as_read(shape, row)
                problems = _problems_with(policy, order, shape.problems(fields, text), as_of, strict=True)
                errors[i] = "; ".join(str(p) for p in problems)
    ranked = sorted(unknown.items(), key=lambda item: item[1] is None)  # look-alikes first: the header is capped
    return [f"unknown field {name!r} ignored" + (f" (did you mean {hint!r}?)" if hint else "") for name, hint in ranked]


def _unknown_columns(policy: Policy, frame: pd.DataFrame) -> list[str]:
    """Warnings for the CSV columns that look like a field but are not read (the others are kept and echoed)."""
    return [f"column {col!r} is not read by the policy (did you mean {hint!r}?)"
            for col, hint in unknown_columns(policy.spec, list(frame.columns)).items() if hint]


def _warnings_header(warnings: list[str]) -> dict[str, str]:
    """The batch's warnings as a header (ASCII JSON), at most MAX_HEADER_WARNINGS of them."""
    if not warnings:
        return {}
    shown = warnings[:MAX_HEADER_WARNINGS]
    if len(warnings) > MAX_HEADER_WARNINGS:
        shown.append(f"... and {len(warnings) - MAX_HEADER_WARNINGS} more")
    return {WARNINGS_HEADER: json.dumps([w[:300] for w in shown])}


def _frame_from_csv(body: bytes, limit: int, max_columns: int = DEFAULT_MAX_COLUMNS) -> pd.DataFrame:
    if not body.strip():
        raise ApiError(422, "invalid_csv", "the CSV body is empty; it needs a header row",
                       [_problem("body", "empty")])
    width = _csv_width(body)
    if width > max_columns:  # from the header line alone: pandas takes seconds over 100,000 columns
        raise ApiError(413, "too_many_columns", f"the CSV has {width} columns; the limit is {max_columns}",
                       [_problem("columns", f"at most {max_columns} columns", width)])
    try:
        # A first row longer than the header would lose its extra fields (pandas reads them as an index, or with
        # index_col=False drops them with a warning); read as data, the header is one row more and pandas refuses
        # a longer row after it, naming its line, as it does any later one.
        pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False, encoding="utf-8-sig", header=None, nrows=2)
        # index_col=False: a row longer than the header must not shift its fields into an index.
        frame = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False, encoding="utf-8-sig", index_col=False)
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_csv", "the CSV body is not UTF-8 text", [_problem("body", "not UTF-8")]) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        message = f"not readable as CSV: {' '.join(str(exc).split())}"
        raise ApiError(422, "invalid_csv", message, [_problem("body", message)]) from None
    if len(frame) > limit:
        raise _too_many(limit, len(frame))
    return frame


def _csv_width(body: bytes) -> int:
    """Fields in the CSV body's header row (0 if it is not readable: pandas then says why)."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    try:
        return len(next(csv.reader(text), []))
    except (UnicodeDecodeError, csv.Error):
        return 0


def _too_many(limit: int, count: int) -> ApiError:
    return ApiError(413, "too_many_rows", f"the batch has {count} rows; the limit is {limit}",
                    [_problem("rows", f"at most {limit} rows", count)])


def _evaluate(policy: Policy, frame: pd.DataFrame, as_of: datetime, strict: bool = False) -> pd.DataFrame:
    try:
        return policy.evaluate(frame, as_of=as_of, strict=strict)
    except InputError as exc:
        fields = exc.columns or ["body"]
        raise ApiError(422, "invalid_batch", str(exc.message), [_problem(c, exc.message) for c in fields]) from None


def _with_errors(result: pd.DataFrame, errors: Mapping[int, str]) -> pd.DataFrame:
    """The engine's result with the rows the service refused itself marked: an error and no action."""
    if not errors:
        return result
    result = result.copy()
    rows = list(errors)
    for name in ("action", "rule_id", "message"):
        result.iloc[rows, result.columns.get_loc(name)] = None
    result.iloc[rows, result.columns.get_loc("error")] = list(errors.values())
    return result


def _batch_json(result: pd.DataFrame, ids: list[Any] | None = None) -> bytes:
    """JSON rows in input order: the order's id (as given: `ids` of a JSON batch) and the decision columns.

    The caller holds its orders already: echoing each back would double what is sent and parsed."""
    if ids is None:
        id_label = next((c for c in result.columns if alias_key(str(c)) == alias_key(ID)), None)
        ids = result[id_label] if id_label is not None else None
    slim = pd.DataFrame({ID: pd.Series(ids, index=result.index, dtype=object)})
    for name in DECISION_COLUMNS:
        slim[name] = result[name]
    # pandas' C encoder: several times faster than json.dumps over 10,000 rows; NaN becomes null. It writes
    # floats to 10 digits and cannot write a lone surrogate: ids like that take the standard encoder, exact.
    if not any(type(i) is float for i in slim[ID]):
        try:
            return slim.to_json(orient="records", force_ascii=False, default_handler=str).encode()
        except UnicodeEncodeError:
            pass
    return _dumps(slim.astype(object).where(slim.notna(), None).to_dict("records"))


def _clip_errors(policy: Policy, result: pd.DataFrame, orders: Callable[[int], Mapping[str, Any]],
                 as_of: datetime) -> pd.DataFrame:
    """The result with each error that echoes a value longer than ECHO_LIMIT worded again with the value cut, as
    /v1/decisions words it (`orders(i)`: row i's fields)."""
    lengths = result["error"].map(lambda e: len(e) if isinstance(e, str) else 0).to_numpy()
    long_rows = (lengths > ECHO_LIMIT).nonzero()[0]
    if not len(long_rows):
        return result
    result = result.copy()
    column = result.columns.get_loc("error")
    for i in long_rows:
        fields = orders(int(i))
        if any(isinstance(v, str) and len(v) > ECHO_LIMIT for v in fields.values()):
            problems = _problems_with(policy, fields, [], as_of)
            if problems:
                result.iat[i, column] = "; ".join(str(p) for p in problems)
    return result


def _batch_csv(result: pd.DataFrame, raw: bool = False) -> bytes:
    """The rows as CSV by the CLI's writer: text a spreadsheet would run as a formula gets a leading ' unless raw."""
    return frame_csv(result, raw)


# ------------------------------------------------------------------------------------------------ app

STRICT_PARAMETER = {
    "name": "strict", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
    "description": "A field the policy does not read is an error: 422 for one order or a CSV column that looks like "
                   "a misspelt field, the order's error in a JSON batch. Without it each is a warning: in the "
                   f"decision's `warnings`, or in the batch answer's `{WARNINGS_HEADER}` header (a JSON array)."}
RAW_PARAMETER = {
    "name": "raw", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
    "description": "CSV answers only: write text cells as they are. By default a text cell a spreadsheet would run "
                   "as a formula (starting with = + - @ tab or CR, and not a number) gets a leading '."}
AS_OF_PARAMETER = {
    "name": "as_of", "in": "query", "required": False,
    "description": "Time that elapsed hours/days are counted to (ISO 8601; naive means UTC). Default: now, in UTC.",
    "schema": {"type": "string"}, "example": "2026-01-01T00:00:00Z"}


def _error_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["error", "message", "problems"], "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "message": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
            "field": {"type": "string", "description": "the field, parameter, header or part that is wrong"},
            "message": {"type": "string"}, "value": {"description": "the value given, if any"}}}}}}


def _decision_schema() -> dict[str, Any]:
    condition = {"type": "object", "properties": {
        "fact": {"type": "string"}, "op": {"type": "string"}, "expected": {}, "actual": {},
        "passed": {"type": "boolean"}, "parameter": {"type": ["string", "null"]}}}
    text, maybe = {"type": "string"}, {"type": ["string", "null"]}
    return {"type": "object", "required": ["action", "rule_id", "message", "policy_version", "error"], "properties": {
        "order_id": maybe, "action": {**maybe, "description": "what to do next; null when no rule decides"},
        "rule_id": {**maybe, "description": "the rule that fired"}, "message": text,
        "conditions": {"type": "array", "items": condition, "description": "the winning rule's conditions"},
        "also_matched": {"type": "array", "items": text, "description": "lower-ranked rules that matched too"},
        "why_not": {"type": "array", "description": "higher-ranked rules and a condition that failed",
                    "items": {"type": "object", "properties": {"rule_id": text, "action": text,
                                                               "condition": condition}}},
        "warnings": {"type": "array", "items": text}, "policy": text, "policy_version": text, "as_of": text,
        "facts": {"type": "object", "description": "the normalized facts the rules saw"},
        "error": {**maybe, "description": "why there is no action (a policy gap), else null"}}}


def _batch_row_schema() -> dict[str, Any]:
    maybe = {"type": ["string", "null"]}
    return {"type": "object", "description": "one input row's order id (as given) and its decision columns",
            "properties": {"order_id": {"description": "the order's id exactly as sent (null if none)"},
                           **{name: maybe for name in DECISION_COLUMNS}},
            "required": ["order_id", *DECISION_COLUMNS], "additionalProperties": False}


def _errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "The body is not valid JSON.", 401: "Missing or wrong bearer token.",
            406: "The Accept header allows neither JSON nor CSV.", 413: "The body or the batch is too large.",
            415: "The Content-Type is not supported.", 422: "Invalid input: each bad field is named.",
            500: "Internal error (a generic body, never a traceback)."}
    return {s: {"description": text[s], "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for s in statuses}


def create_app(policy: Policy, settings: Settings | None = None) -> FastAPI:
    """The service app over one loaded policy."""
    settings = settings or Settings()
    shape = OrderShape(policy)
    order_schema = shape.schema(policy)
    examples = [ex.order for rule in policy.spec.ranked_rules() for ex in rule.examples[:1]][:4]
    example_decision = json.loads(_dumps(policy.decide(examples[0], as_of=EXAMPLES_AS_OF))) if examples else None
    # The file's name, not where it lies on the server.
    policy_body = _dumps({**policy.to_dict(), "path": Path(policy.spec.path).name})
    verify_cache: dict[str, bytes] = {}
    verify_lock = asyncio.Lock()
    batch_slots = asyncio.Semaphore(BATCH_THREADS)

    app = FastAPI(
        title="cancel-rules decision service",
        version=policy.version,
        description=f"What to do next to cancel an order, decided by the policy **{policy.name}** version "
                    f"{policy.version}. Time-dependent facts are counted to the `as_of` query parameter "
                    f"(default: now, UTC). Limits: bodies up to {settings.max_body_bytes} bytes, batches up to "
                    f"{settings.max_batch_rows} rows (413 beyond)."
                    + (" Every endpoint but /healthz needs `Authorization: Bearer <token>`." if settings.token
                       else ""),
        redoc_url=None,
    )
    _install_error_handlers(app)
    auth_doc = _errors_doc(401) if settings.token else {}
    common_errors = {**auth_doc, **_errors_doc(500)}

    @app.get("/healthz", summary="Liveness and the policy served", tags=["service"], responses={200: {
        "description": "The service is up.", "content": {JSON_TYPE: {"schema": {"type": "object", "properties": {
            "status": {"type": "string"}, "policy": {"type": "string"}, "version": {"type": "string"}}},
            "example": {"status": "ok", "policy": policy.name, "version": policy.version}}}}, **_errors_doc(500)})
    async def healthz() -> Response:
        return Response(_dumps({"status": "ok", "policy": policy.name, "version": policy.version}),
                        media_type=JSON_TYPE)

    @app.post(
        "/v1/decisions", summary="Decide one order", tags=["decisions"],
        description="The next action for one order, the rule that fired, its conditions, and why higher-ranked "
                    "rules did not fire.",
        responses={200: {"description": "The decision with its explanation.",
                         "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Decision"},
                                                 **({"example": example_decision} if example_decision else {})}}},
                   **_errors_doc(400, 413, 415, 422), **common_errors},
        openapi_extra={"parameters": [AS_OF_PARAMETER, STRICT_PARAMETER],
                       "requestBody": {"required": True, "content": {JSON_TYPE: {
            "schema": {"$ref": "#/components/schemas/Order"},
            "examples": {f"example{i + 1}": {"summary": f"order {ex.get('order_id', i + 1)}", "value": dict(ex)}
                         for i, ex in enumerate(examples)}}}}},
    )
    async def decide(request: Request) -> Response:
        # as_of is read here, not declared as a FastAPI parameter: that skips per-request dependency solving.
        when = _as_of(request.query_params.get("as_of"))
        _require_type(request, (JSON_TYPE,))
        strict = _flag(request, "strict")
        body = await _read_body(request, settings.max_body_bytes)
        # One decision takes well under a millisecond: running it inline is cheaper than a thread hop.
        return Response(_decide(policy, shape, _parse_json(body), when, _may_hold_surrogates(body), strict),
                        media_type=JSON_TYPE)

    @app.post(
        "/v1/decisions/batch", summary="Decide a batch of orders", tags=["decisions"],
        description="A JSON array of orders, or CSV with a header row (`text/csv`). Answers one row per input "
                    "row, in input order: as JSON, each row's `order_id` (as sent) and its decision columns (action, "
                    "rule_id, message, error, policy_version); with `Accept: text/csv`, the input columns (of a JSON "
                    "batch: the policy's fields it gives) with the decision columns added. A bad row gets an `error` "
                    f"and no action, and never fails the batch. At most {settings.max_batch_rows} rows.",
        responses={200: {"description": "One row per input row, in input order.", "content": {
            JSON_TYPE: {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/BatchRow"}}},
            CSV_TYPE: {"schema": {"type": "string"}}}},
            **_errors_doc(400, 406, 413, 415, 422), **common_errors},
        openapi_extra={"parameters": [AS_OF_PARAMETER, STRICT_PARAMETER, RAW_PARAMETER],
                       "requestBody": {"required": True, "content": {
            # Any item is accepted (a bad one gets an error row, it never fails the batch): anyOf says so.
            JSON_TYPE: {"schema": {"type": "array", "items": {"anyOf": [{"$ref": "#/components/schemas/Order"}, {}]}},
                        "example": [dict(ex) for ex in examples]},
            CSV_TYPE: {"schema": {"type": "string"},
                       "example": "order_id,status,seller_reply,hours_since_contact\nA1,shipped,no_reply,50\n"
                                  "A2,Awaiting shipment,,\n"}}}},
    )
    async def decide_batch(request: Request) -> Response:
        when = _as_of(request.query_params.get("as_of"))
        media = _require_type(request, (JSON_TYPE, CSV_TYPE))
        as_csv = _wants_csv(request)
        raw, strict = _flag(request, "raw"), _flag(request, "strict")
        body = await _read_body(request, settings.max_body_bytes)

        def work() -> tuple[bytes, list[str]]:
            if media == CSV_TYPE:
                frame = _frame_from_csv(body, settings.max_batch_rows, settings.max_columns)
                warnings = _unknown_columns(policy, frame)
                # Strict CSV refuses a column that looks like a misspelt field (422).
                result = _evaluate(policy, frame, when, strict)
                columns = resolve_columns(policy.spec, list(frame.columns))  # as the engine read them
                result = _clip_errors(policy, result, lambda i: {n: frame[c].iat[i] for n, c in columns.items()}, when)
                return (_batch_csv(result, raw) if as_csv else _batch_json(result)), warnings
            rows = _parse_json(body)
            text = _may_hold_surrogates(body)
            batch = _frame_from_json(policy, shape, rows, settings.max_batch_rows, when, text)
            # Strict JSON gives each order holding an unknown key /v1/decisions' strict problems as its error.
            warnings = _unknown_keys(policy, shape, rows, batch.errors, when, strict, text)
            result = _clip_errors(policy, _evaluate(policy, batch.frame, when),
                                  lambda i: shape.read(rows[i])[0] if type(rows[i]) is dict else {}, when)
            result = _with_errors(result, batch.errors)
            return (_batch_csv(result, raw) if as_csv else _batch_json(result, batch.ids)), warnings

        # Parsing and evaluating a large batch takes tens of milliseconds: off the event loop, and only a few at
        # a time (the engine runs one call at a time anyway; more threads would only hold more frames in memory).
        async with batch_slots:
            body_out, warnings = await run_in_threadpool(work)
        return Response(body_out, media_type=CSV_TYPE if as_csv else JSON_TYPE, headers=_warnings_header(warnings))

    @app.get("/v1/policy", summary="The policy: facts schema, parameters, rules, version", tags=["policy"],
             responses={200: {"description": "The policy as data.", "content": {JSON_TYPE: {"schema": {
                 "type": "object", "required": ["policy", "version", "facts", "parameters", "rules"]}}}},
                 **common_errors})
    async def get_policy() -> Response:
        return Response(policy_body, media_type=JSON_TYPE)

    @app.get("/v1/policy/verify", summary="Verify the policy over its whole fact space", tags=["policy"],
             description="Gaps (cells no rule decides), unreachable rules and overlaps, each with an example "
                         "order. Computed once per process (the policy cannot change while it is served).",
             responses={200: {"description": "The verification report (`ok` is false if it found problems).",
                              "content": {JSON_TYPE: {"schema": {"type": "object"}}}}, **common_errors})
    async def verify_policy() -> Response:
        async with verify_lock:
            if "body" not in verify_cache:
                report = await run_in_threadpool(policy.verify)
                verify_cache["body"] = _dumps(report.to_dict())
        return Response(verify_cache["body"], media_type=JSON_TYPE)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(
                Order=order_schema, Decision=_decision_schema(), BatchRow=_batch_row_schema(),
                Error=_error_schema())
            if settings.token:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                for path, operations in schema["paths"].items():
                    if path not in OPEN_PATHS:
                        for operation in operations.values():
                            operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token)
    if settings.cors_origins:
        # Added last, so outermost: a browser's preflight carries no token and must be answered before auth.
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=[WARNINGS_HEADER])
    if settings.allowed_hosts:
        # Outermost: a request for another host is refused before anything else looks at it.
        app.add_middleware(AllowedHosts, hosts=settings.allowed_hosts)
    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: the policy path and settings come from CANCEL_RULES_*."""
    settings = Settings.from_env()
    TimedHttpProtocol.limits = settings
    return _settled(create_app(load(os.environ.get(ENV_POLICY) or None), settings))


def _settled(app: FastAPI) -> FastAPI:
    # Imports and the policy leave about a hundred thousand long-lived objects; frozen, the collector's full
    # passes stop walking them (each took tens of milliseconds out of an unlucky request: the tail latency).
    gc.collect()
    gc.freeze()
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TimedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a deadline on every wait for the client.

    uvicorn bounds only the idle time after an answer (its keep-alive timeout): a client held a connection, and
    what the server holds for it, for ever by connecting and sending nothing, by sending a request head or body
    a byte at a time, or by not reading its answers (340 such sockets held for 20 s were never closed). The
    hooks are uvicorn's httptools callbacks; the limits are the Settings of the process."""

    limits = Settings()  # set from the environment when a process starts serving

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading: asyncio.TimerHandle | None = None
        self._sending: asyncio.TimerHandle | None = None
        self._wait_for("idle", self.timeout_keep_alive)  # nothing sent yet: as idle as between requests

    def on_message_begin(self) -> None:  # a request's first byte
        super().on_message_begin()
        self._wait_for("head", self.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._wait_for("body", self.limits.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop_waiting()

    def pause_writing(self) -> None:  # the client is not reading what was sent
        super().pause_writing()
        if self._sending is None:
            # abort, not close: close would wait for the buffer to drain, which is what never happens.
            self._sending = self.loop.call_later(self.limits.send_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_sending()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._stop_sending()
        super().connection_lost(exc)

    def _stop_sending(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None

    def _wait_for(self, part: str, seconds: float) -> None:
        self._stop_waiting()
        self._reading = self.loop.call_later(seconds, self._too_slow, part, seconds)

    def _stop_waiting(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None

    def _too_slow(self, part: str, seconds: float) -> None:
        self._reading = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server holds the reading (an answer in progress), not the client
            self._wait_for(part, seconds)
            return
        cycle = self.cycle
        # Say why, when no answer is under way on this connection (head) or to this request (body).
        if (part == "head" and (cycle is None or cycle.response_complete)) or \
                (part == "body" and cycle is not None and not cycle.response_started):
            body = _dumps({"error": "request_timeout", "message": f"the request {part} did not arrive within "
                                                                  f"{seconds:g} s", "problems": []})
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()


HTTP_PROTOCOL = "engine.service:TimedHttpProtocol"  # as uvicorn imports it in each worker


def serve(args: argparse.Namespace) -> int:
    """Run the service (the `cancel-rules serve` command); returns the exit status."""
    import uvicorn

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.policy:
        os.environ[ENV_POLICY] = str(Path(args.policy).resolve())
    if args.token_file:
        read_token_file(args.token_file)  # fail here, once, rather than in every worker
        os.environ[ENV_TOKEN_FILE] = str(Path(args.token_file).resolve())
    settings = Settings.from_env()
    policy = load(os.environ.get(ENV_POLICY) or None)  # a broken policy stops the command before anything listens
    if not settings.token and not _is_loopback(args.host):
        print(f"cancel-rules serve: warning: listening on {args.host} without a token: anyone who can reach it "
              f"can use it (set {ENV_TOKEN} or --token-file)", file=sys.stderr)
    sockets = _bind_listeners(args.host, args.port, args.workers)  # a port in use stops it here, with exit 2
    port = sockets[0].getsockname()[1]
    print(f"cancel-rules serve: policy {policy.name} {policy.version} on http://{args.host}:{port} "
          f"({args.workers} worker{'s' if args.workers != 1 else ''}, auth {'on' if settings.token else 'off'})",
          file=sys.stderr, flush=True)
    # No WebSocket protocol: the service has no WebSocket route, and an upgraded connection would leave the HTTP
    # protocol's deadlines behind.
    options: dict[str, Any] = dict(log_level="warning", access_log=False, server_header=False, date_header=False,
                                   http=HTTP_PROTOCOL, ws="none", timeout_keep_alive=settings.keepalive_timeout)
    try:
        if args.workers == 1:
            TimedHttpProtocol.limits = settings
            uvicorn.Server(uvicorn.Config(_settled(create_app(policy, settings)), **options)).run(sockets=sockets)
            return 0
        return _supervise(sockets, args.workers, options)
    finally:
        for sock in sockets:
            sock.close()


def _bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """Listening sockets for `count` workers on host:port, shared with no other process; raises ValueError naming
    the port when it is in use. Several workers get a socket each in one SO_REUSEPORT group where the system has
    it (see _supervise), else one socket they share."""
    socks: list[socket.socket] = []
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # A plain socket (no SO_REUSEPORT) first: the kernel refuses it while anything listens on the port, a
        # SO_REUSEPORT group included, which a second server's workers used to join without a word.
        socks.append(_listen(family, kind, proto, address, reuse_port=False))
        if count == 1 or not hasattr(socket, "SO_REUSEPORT"):
            return socks
        address = socks[0].getsockname()  # with port 0, the port the system chose
        socks.pop().close()
        socks += [_listen(family, kind, proto, address, reuse_port=True) for _ in range(count)]
        if _shared_with_others(socks):  # another server passed the same check at the same moment
            raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        return socks
    except OSError as exc:
        for sock in socks:
            sock.close()
        reason = "the port is in use (another server listens on it)" if exc.errno == errno.EADDRINUSE else \
            exc.strerror or str(exc)
        raise ValueError(f"cannot listen on {host}:{port}: {reason}") from None


def _listen(family: int, kind: int, proto: int, address: Any, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _shared_with_others(socks: list[socket.socket]) -> bool:
    """Whether a socket not in `socks` listens on their address and port (Linux; elsewhere False).

    SO_REUSEPORT lets any process of the same user join a port silently. Two servers starting at once can both
    pass the plain bind; whichever listens second finds the other here."""
    ours = {os.fstat(sock.fileno()).st_ino for sock in socks}
    host, port = socks[0].getsockname()[:2]
    mine = ipaddress.ip_address(host)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] != "0A" or int(hex_port, 16) != port or int(fields[9]) in ours:  # 0A: listening
                continue
            raw = bytes.fromhex(address)
            if sys.byteorder == "little":  # the table prints addresses as 32-bit words in host order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            other = ipaddress.ip_address(raw)
            if other == mine or other.is_unspecified or mine.is_unspecified:
                return True
    return False


def _worker(sock: socket.socket, options: dict[str, Any]) -> None:
    """One worker process: serves on a listening socket of the supervisor's, with its own policy."""
    import uvicorn

    config = uvicorn.Config("engine.service:app_from_env", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _supervise(sockets: list[socket.socket], workers: int, options: dict[str, Any]) -> int:
    """Run `workers` processes on the listening sockets, and restart any that dies.

    uvicorn's own supervisor shares one listening socket, and whichever worker wakes first accepts a whole
    burst of connections: with keep-alive clients one worker got 24 of 32 connections and its core saturated
    while the other idled. With one socket per worker (SO_REUSEPORT) the kernel spreads connections across them.
    The supervisor keeps the sockets: a worker started in place of one that died serves the same socket, and the
    connections waiting on it."""
    import multiprocessing
    import signal
    import threading

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: durable_rules state is per process
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def start(i: int) -> multiprocessing.process.BaseProcess:
        proc = context.Process(target=_worker, args=(sockets[i % len(sockets)], options), name="cancel-rules-worker")
        proc.start()
        return proc

    procs = [start(i) for i in range(workers)]
    restarts: list[float] = []
    status = 0
    while not stop.wait(0.5):
        for i, proc in enumerate(procs):
            if proc.is_alive():
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 3 * workers:  # crashing on start: give up rather than spin
                print("cancel-rules serve: workers keep exiting; stopping", file=sys.stderr)
                stop.set()
                status = 1
                break
            print(f"cancel-rules serve: worker {proc.pid} exited with {proc.exitcode}; starting another",
                  file=sys.stderr, flush=True)
            procs[i] = start(i)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return status
