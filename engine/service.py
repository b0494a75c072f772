"""The HTTP JSON decision service: a FastAPI app over one loaded Policy, served by uvicorn worker processes."""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import gc
import hmac
import io
import ipaddress
import json
import logging
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

from .batch import unknown_columns
from .csvio import DEFAULT_MAX_COLUMNS, ENV_MAX_COLUMNS, frame_csv
from .errors import FieldProblem, InputError, OrderError
from .facts import parse_as_of, unknown_fields
from .model import alias_key
from .policy import EXAMPLES_AS_OF, Policy, load

log = logging.getLogger("engine.service")

# Worker processes are started by uvicorn from an import string, so everything they need travels in the
# environment; these are also the documented knobs of the service.
ENV_POLICY = "CANCEL_RULES_POLICY"
ENV_TOKEN = "CANCEL_RULES_TOKEN"
ENV_TOKEN_FILE = "CANCEL_RULES_TOKEN_FILE"
ENV_MAX_BODY_BYTES = "CANCEL_RULES_MAX_BODY_BYTES"
ENV_MAX_BATCH_ROWS = "CANCEL_RULES_MAX_BATCH_ROWS"
ENV_CORS_ORIGINS = "CANCEL_RULES_CORS_ORIGINS"

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BATCH_ROWS = 100_000
OPEN_PATHS = frozenset({"/healthz"})
DECISION_COLUMNS = ("action", "rule_id", "message", "error", "policy_version")
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
    max_columns: int = DEFAULT_MAX_COLUMNS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from CANCEL_RULES_* variables; raises ValueError naming the bad variable."""
        env = os.environ if environ is None else environ
        token = env.get(ENV_TOKEN, "").strip() or None
        if env.get(ENV_TOKEN_FILE):
            token = read_token_file(env[ENV_TOKEN_FILE])
        origins = tuple(o.strip() for o in env.get(ENV_CORS_ORIGINS, "").split(",") if o.strip())
        return cls(token=token, max_body_bytes=_positive_int(env, ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES),
                   max_batch_rows=_positive_int(env, ENV_MAX_BATCH_ROWS, DEFAULT_MAX_BATCH_ROWS),
                   cors_origins=origins, max_columns=_positive_int(env, ENV_MAX_COLUMNS, DEFAULT_MAX_COLUMNS))


def read_token_file(path: str | Path) -> str:
    """The bearer token held in a file (surrounding whitespace ignored); raises ValueError if unusable."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.__class__.__name__}") from None
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


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
    body = {"error": code, "message": message, "problems": problems or []}
    return Response(_dumps(body), status_code=status, media_type=JSON_TYPE, headers=dict(headers or {}))


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
    return _ENCODER.encode(value).encode()


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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies carry no length: count while reading
            raise _too_large(limit)
        chunks.append(chunk)
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

    def problem(self, name: str, value: Any, field: str | None = None) -> FieldProblem | None:
        kind = self.kinds.get(name)
        if kind is None or value is None or type(value) in self.ALLOWED[kind]:
            return None
        return FieldProblem(field or name, value, f"must be {self.EXPECTED[kind]}, got JSON {_json_kind(value)}")

    def problems(self, order: Mapping[str, Any]) -> list[FieldProblem]:
        return [p for name, value in order.items() if (p := self.problem(name, value)) is not None]

    def bad_cells(self, frame: pd.DataFrame, records: list[Any]) -> dict[int, list[FieldProblem]]:
        """Per row position, the problems of values of a wrong JSON type (as sent: `records` are the frame's
        rows); vectorized over object columns."""
        bad: dict[int, list[FieldProblem]] = {}
        by_key = {alias_key(name): name for name in self.kinds}
        for label in frame.columns:
            # The batch path matches column names as loosely as this (case, spaces): so must the check.
            name = by_key.get(alias_key(str(label)))
            if name is None or (pd.api.types.is_string_dtype(frame[label].dtype) and frame[label].dtype != object):
                continue  # a text column holds only allowed values
            column = frame[label]
            if column.dtype != object:
                if self.kinds[name] == "number" and pd.api.types.is_numeric_dtype(column.dtype) \
                        and not pd.api.types.is_bool_dtype(column.dtype):
                    continue
                # pandas made numbers of the values (and floats of integers beside a missing one): judge them as
                # sent, or a row's answer would depend on its neighbours' types.
                column = pd.Series([r.get(label) for r in records], index=frame.index, dtype=object)
            types = column.map(type)
            # A key missing from some objects is NaN here: that is "not given", not a float.
            wrong = ~types.isin(self.ALLOWED[self.kinds[name]]) & column.notna()
            for position in wrong.to_numpy().nonzero()[0]:
                problem = self.problem(name, column.iat[position], str(label))
                if problem is not None:
                    bad.setdefault(int(position), []).append(problem)
        return bad

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


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array"}.get(type(value), type(value).__name__)


def _problems_with(policy: Policy, order: Mapping[str, Any], bad: list[FieldProblem],
                   as_of: datetime, strict: bool = False) -> list[FieldProblem]:
    """`bad` (values of a wrong JSON type, which never reach the engine) and the engine's problems with the
    other fields."""
    fields = {p.field for p in bad}
    try:
        policy.decide({k: v for k, v in order.items() if k not in fields}, as_of=as_of, strict=strict)
    except OrderError as exc:
        return bad + [p for p in exc.problems if p.field not in fields]
    return bad


def _decide(policy: Policy, shape: OrderShape, order: Any, as_of: datetime, strict: bool = False) -> bytes:
    if not isinstance(order, dict):
        raise ApiError(422, "invalid_order", f"the body must be a JSON object of order facts, got JSON "
                       f"{_json_kind(order)}", [_problem("body", "must be a JSON object")])
    problems = shape.problems(order)
    if problems:
        problems = _problems_with(policy, order, problems, as_of, strict)
    else:
        try:
            return _dumps(policy.decide(order, as_of=as_of, strict=strict))
        except OrderError as exc:
            problems = exc.problems
    raise ApiError(422, "invalid_order", "invalid order: " + "; ".join(str(p) for p in problems),
                   _order_problems(problems))


# ----------------------------------------------------------------------------------------------- batch


def _frame_from_json(policy: Policy, shape: OrderShape, rows: Any, limit: int,
                     as_of: datetime) -> tuple[pd.DataFrame, dict[int, str]]:
    """The JSON orders as a DataFrame for the engine, and the errors of rows it must not see as they are
    (not objects, or values of a wrong JSON type: those cells are blanked)."""
    if not isinstance(rows, list):
        raise ApiError(422, "invalid_batch", f"the body must be a JSON array of orders, got JSON {_json_kind(rows)}",
                       [_problem("body", "must be a JSON array of order objects")])
    if len(rows) > limit:
        raise _too_many(limit, len(rows))
    errors: dict[int, str] = {}
    records = rows
    if not all(type(row) is dict for row in rows):
        records = []
        for i, row in enumerate(rows):
            if type(row) is not dict:
                errors[i] = f"must be a JSON object of order facts, got JSON {_json_kind(row)}"
            records.append(row if type(row) is dict else {})
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    if len(frame.columns) == 0:
        frame = pd.DataFrame(index=range(len(records)))
    for position, problems in shape.bad_cells(frame, records).items():
        for problem in problems:
            frame.iat[position, frame.columns.get_loc(problem.field)] = None
        errors[position] = "; ".join(str(p) for p in _problems_with(policy, records[position], problems, as_of))
    # A key missing from every object is a missing fact of each row, not a missing CSV column; and a key named
    # like an output column is answered over, not refused for the whole batch.
    keys = {alias_key(str(label)) for label in frame.columns}
    for name in shape.required:
        if alias_key(name) not in keys:
            frame[name] = None
    return frame.drop(columns=[c for c in frame.columns if c in DECISION_COLUMNS]), errors


def _unknown_keys(policy: Policy, shape: OrderShape, rows: list[Any], errors: dict[int, str], as_of: datetime,
                  strict: bool) -> list[str]:
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
                problems = _problems_with(policy, row, shape.problems(row), as_of, strict=True)
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


def _batch_json(result: pd.DataFrame) -> bytes:
    """JSON rows in input order: the order's id (as given) and the decision columns.

    The caller holds its orders already: echoing each back would double what is sent and parsed."""
    id_label = next((c for c in result.columns if alias_key(str(c)) == alias_key("order_id")), None)
    slim = pd.DataFrame({"order_id": result[id_label] if id_label is not None else None}, index=result.index)
    for name in DECISION_COLUMNS:
        slim[name] = result[name]
    # pandas' C encoder: several times faster than json.dumps over 10,000 rows; NaN becomes null.
    return slim.to_json(orient="records", force_ascii=False, default_handler=str).encode()


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
            "properties": {"order_id": {"type": ["string", "number", "null"]},
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
        order = _parse_json(await _read_body(request, settings.max_body_bytes))
        # One decision takes well under a millisecond: running it inline is cheaper than a thread hop.
        return Response(_decide(policy, shape, order, when, strict), media_type=JSON_TYPE)

    @app.post(
        "/v1/decisions/batch", summary="Decide a batch of orders", tags=["decisions"],
        description="A JSON array of orders, or CSV with a header row (`text/csv`). Answers one row per input "
                    "row, in input order: as JSON, each row's `order_id` and its decision columns (action, rule_id, "
                    "message, error, policy_version); with `Accept: text/csv`, the input columns with the decision "
                    "columns added. A bad row gets an `error` and no action, and never fails the batch. At most "
                    f"{settings.max_batch_rows} rows.",
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
            errors: dict[int, str] = {}
            if media == CSV_TYPE:
                frame = _frame_from_csv(body, settings.max_batch_rows, settings.max_columns)
                warnings = _unknown_columns(policy, frame)
            else:
                rows = _parse_json(body)
                frame, errors = _frame_from_json(policy, shape, rows, settings.max_batch_rows, when)
                warnings = _unknown_keys(policy, shape, rows, errors, when, strict)
            # Strict CSV refuses a misspelt column (422); strict JSON gave each order holding one its error.
            result = _with_errors(_evaluate(policy, frame, when, strict and media == CSV_TYPE), errors)
            return (_batch_csv(result, raw) if as_csv else _batch_json(result)), warnings

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
    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: the policy path and settings come from CANCEL_RULES_*."""
    return _settled(create_app(load(os.environ.get(ENV_POLICY) or None), Settings.from_env()))


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
    print(f"cancel-rules serve: policy {policy.name} {policy.version} on http://{args.host}:{args.port} "
          f"({args.workers} worker{'s' if args.workers != 1 else ''}, auth {'on' if settings.token else 'off'})",
          file=sys.stderr, flush=True)
    options: dict[str, Any] = dict(log_level="warning", access_log=False, server_header=False, date_header=False)
    if args.workers == 1:
        uvicorn.run(_settled(create_app(policy, settings)), host=args.host, port=args.port, **options)
        return 0
    if not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run("engine.service:app_from_env", factory=True, workers=args.workers, host=args.host,
                    port=args.port, **options)
        return 0
    return _supervise(args.host, args.port, args.workers, options)


def _listener(host: str, port: int, listen: bool = True) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    if listen:
        sock.listen(2048)
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process: its own listening socket in the port's SO_REUSEPORT group, its own policy."""
    import uvicorn

    sock = _listener(host, port)
    config = uvicorn.Config("engine.service:app_from_env", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _supervise(host: str, port: int, workers: int, options: dict[str, Any]) -> int:
    """Run `workers` processes, each listening on host:port with SO_REUSEPORT, and restart any that dies.

    uvicorn's own supervisor shares one listening socket, and whichever worker wakes first accepts a whole
    burst of connections: with keep-alive clients one worker got 24 of 32 connections and its core saturated
    while the other idled. With one socket per worker the kernel spreads connections across them."""
    import multiprocessing
    import signal
    import threading

    try:
        _listener(host, port, listen=False).close()  # a port in use is reported once, here
    except OSError as exc:
        print(f"cancel-rules serve: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: durable_rules state is per process
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def start() -> multiprocessing.process.BaseProcess:
        proc = context.Process(target=_worker, args=(host, port, options), name="cancel-rules-worker")
        proc.start()
        return proc

    procs = [start() for _ in range(workers)]
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
            procs[i] = start()
    for proc in procs:
        if proc.is_alive():
            proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return status
