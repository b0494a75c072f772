"""Client errors answered as JSON ({error, message, problems}), bounded in what they echo, and their handlers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import FieldProblem
from ..text import ECHO_LIMIT, echo
from .encoding import ENCODER, JSON_TYPE, dumps

log = logging.getLogger("engine.service")

MESSAGE_LIMIT = 8_000  # characters of any one error message (a last bound: values are cut to ECHO_LIMIT first)


class ApiError(Exception):
    """A client error answered as JSON: {error, message, problems: [{field, message, value}]}."""

    def __init__(self, status: int, code: str, message: str, problems: list[dict[str, Any]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems = problems or []
        self.headers = dict(headers or {})


def api_problem(field: str, message: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "message": message, "value": value}


def error_response(status: int, code: str, message: str, problems: list[dict[str, Any]] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    # Whatever built the error, what it echoes of the request is bounded here.
    problems = [{**p, "message": _cut(p["message"], MESSAGE_LIMIT), "value": clip(p.get("value"))}
                for p in problems or []]
    body = {"error": code, "message": _cut(message, MESSAGE_LIMIT), "problems": problems}
    return Response(dumps(body), status_code=status, media_type=JSON_TYPE, headers=dict(headers or {}))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def clip(value: Any) -> Any:
    """A client's value as an error echoes it: text (or an array or object as JSON) cut to ECHO_LIMIT characters."""
    if isinstance(value, (list, dict)):
        text = ENCODER.encode(value)
        return value if len(text) <= ECHO_LIMIT else _cut(text, ECHO_LIMIT)
    return _cut(value, ECHO_LIMIT) if isinstance(value, str) else value


def clipped(problem: FieldProblem) -> FieldProblem:
    """The problem with the value's repr in its message cut to ECHO_LIMIT characters (a 9 MB bad value made a
    27 MB answer: the value, its repr in the message, and the message again in the summary; error_response cuts
    the value)."""
    value = problem.value
    if not isinstance(value, str) or len(value) <= ECHO_LIMIT:
        return problem
    return FieldProblem(problem.field, value, problem.message.replace(repr(value), echo(value)))


def order_problems(problems: list[FieldProblem]) -> list[dict[str, Any]]:
    return [api_problem(p.field, p.message, p.value) for p in problems]


def install_error_handlers(app: FastAPI) -> None:
    """Every error answered as JSON in the one shape; an unexpected one as a generic 500, its traceback logged."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _server_error)


# Starlette types a handler as taking any Exception; each is registered above for its own class only.


async def _api_error(_request: Request, exc: Exception) -> Response:
    error = cast(ApiError, exc)
    return error_response(error.status, error.code, error.message, error.problems, error.headers)


async def _http_error(_request: Request, exc: Exception) -> Response:
    error = cast(StarletteHTTPException, exc)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    message = error.detail if isinstance(error.detail, str) else "request failed"
    return error_response(error.status_code, code, message, headers=getattr(error, "headers", None))


async def _validation_error(_request: Request, exc: Exception) -> Response:
    problems = [api_problem(".".join(str(p) for p in e.get("loc", ())), str(e.get("msg", "invalid")))
                for e in cast(RequestValidationError, exc).errors()]
    return error_response(422, "invalid_request", "the request does not match the API schema", problems)


async def _server_error(_request: Request, exc: Exception) -> Response:
    # The traceback goes to the server log only: a response never carries internals.
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error")
