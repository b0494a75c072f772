"""Reading requests: body size limits, JSON and CSV bodies, query parameters, content negotiation."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import Any

import pandas as pd
from fastapi import Request
from starlette.requests import ClientDisconnect

from ..csvio import DEFAULT_MAX_COLUMNS
from ..facts import parse_as_of
from ..intake import DELIMITER_NAMES, sniff_bytes
from ..tabular import read_csv_text
from .encoding import CSV_TYPE, JSON_TYPE
from .errors import ApiError, api_problem


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_type(request: Request, accepted: tuple[str, ...]) -> str:
    """The body's media type if accepted; an absent Content-Type is read as JSON (curl -d sends a form type)."""
    media = _media_type(request) or JSON_TYPE
    if media not in accepted:
        raise ApiError(415, "unsupported_media_type", f"Content-Type {media!r} is not supported; use "
                       + " or ".join(accepted),
                       [api_problem("Content-Type", f"expected {' or '.join(accepted)}", media)])
    return media


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # chunked bodies carry no length: count while reading
                raise too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or closed for sending too slowly: the answer goes nowhere, nothing to log
        raise ApiError(400, "client_disconnected", "the client closed the connection before the body ended") from None
    return b"".join(chunks)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes",
                    [api_problem("body", f"at most {limit} bytes")])


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int | float:
    # An integer too long for a float would overflow deep in the engine: as a float it is infinite, which
    # the facts validation rejects with the field's name.
    return int(text) if len(text) < 300 else float(text)


def parse_json(body: bytes) -> Any:
    """The JSON document a body holds; 400 saying where it is not JSON."""
    if not body.strip():
        raise ApiError(400, "invalid_json", "the body is empty; send a JSON document",
                       [api_problem("body", "empty")])
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except UnicodeDecodeError:
        message = "not valid JSON: the body is not UTF-8 text"
    except (ValueError, RecursionError) as exc:
        message = f"not valid JSON: {exc}" if isinstance(exc, ValueError) else "not valid JSON: nested too deeply"
    raise ApiError(400, "invalid_json", message, [api_problem("body", message)])


def read_as_of(value: str | None) -> datetime:
    """The as_of query parameter as a time (absent: now); 422 if it is not one."""
    if value is not None:
        # An unescaped "+00:00" in a query string arrives as " 00:00": read it as the offset it was.
        value = re.sub(r" (\d\d:?\d\d)$", r"+\1", value.strip())
    try:
        return parse_as_of(value)
    except ValueError as exc:
        raise ApiError(422, "invalid_as_of", str(exc), [api_problem("as_of", str(exc), value)]) from None


def query_flag(request: Request, name: str) -> bool:
    """A true/false query parameter (absent: false)."""
    value = request.query_params.get(name)
    if value is None or value.strip().lower() in ("false", "0", "no", ""):
        return False
    if value.strip().lower() in ("true", "1", "yes"):
        return True
    message = f"?{name}= takes true or false, got {value[:50]!r}"
    raise ApiError(422, "invalid_query", message, [api_problem(name, message, value[:50])])


def query_delimiter(request: Request) -> str:
    """?delimiter= of a CSV body: , ; | tab (or their names), or auto (sniffed from its first lines); default ,."""
    value = request.query_params.get("delimiter")
    if value is None or value == "auto":
        return value or ","
    if value not in DELIMITER_NAMES:
        message = f"?delimiter= takes , ; | tab or auto, got {value[:50]!r}"
        raise ApiError(422, "invalid_query", message, [api_problem("delimiter", message, value[:50])])
    return DELIMITER_NAMES[value]


def wants_csv(request: Request) -> bool:
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
                       [api_problem("Accept", "accept application/json or text/csv", accept)])
    return csv_q > json_q


def may_hold_surrogates(body: bytes) -> bool:
    """Whether JSON text escapes a UTF-16 surrogate (\\ud800 to \\udfff): only then can a string hold a lone one."""
    return _SURROGATE_ESCAPE.search(body) is not None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def frame_from_csv(body: bytes, limit: int, max_columns: int = DEFAULT_MAX_COLUMNS, delimiter: str = ","
                   ) -> pd.DataFrame:
    """A CSV body (fields separated by delimiter, or 'auto': sniffed) as text columns; 413 beyond `limit` rows or
    `max_columns` columns, 422 if it is not CSV."""
    if not body.strip():
        raise ApiError(422, "invalid_csv", "the CSV body is empty; it needs a header row",
                       [api_problem("body", "empty")])
    if delimiter == "auto":
        delimiter = sniff_bytes(body)
    width = _csv_width(body, delimiter)
    if width > max_columns:  # from the header line alone: pandas takes seconds over 100,000 columns
        raise ApiError(413, "too_many_columns", f"the CSV has {width} columns; the limit is {max_columns}",
                       [api_problem("columns", f"at most {max_columns} columns", width)])
    try:
        # A first row longer than the header would lose its extra fields (pandas reads them as an index, or with
        # index_col=False drops them with a warning); read as data, the header is one row more and pandas refuses
        # a longer row after it, naming its line, as it does any later one.
        read_csv_text(io.BytesIO(body), header=None, nrows=2, sep=delimiter)
        # index_col=False: a row longer than the header must not shift its fields into an index.
        frame = read_csv_text(io.BytesIO(body), sep=delimiter)
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_csv", "the CSV body is not UTF-8 text",
                       [api_problem("body", "not UTF-8")]) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        message = f"not readable as CSV: {' '.join(str(exc).split())}"
        raise ApiError(422, "invalid_csv", message, [api_problem("body", message)]) from None
    if len(frame) > limit:
        raise too_many(limit, len(frame))
    return frame


def _csv_width(body: bytes, delimiter: str = ",") -> int:
    """Fields in the CSV body's header row (0 if it is not readable: pandas then says why)."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    try:
        return len(next(csv.reader(text, delimiter=delimiter), []))
    except (UnicodeDecodeError, csv.Error):
        return 0


def too_many(limit: int, count: int) -> ApiError:
    return ApiError(413, "too_many_rows", f"the batch has {count} rows; the limit is {limit}",
                    [api_problem("rows", f"at most {limit} rows", count)])
