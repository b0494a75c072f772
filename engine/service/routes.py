"""The service's routes. Each reads what it needs from its app's state (see app.create_app), so any of them can be
mounted and called alone."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..policy import Policy
from . import openapi
from .answers import warnings_header
from .batch import BatchQuery, answer_csv, answer_json
from .encoding import CSV_TYPE, JSON_TYPE, dumps
from .io import (
    may_hold_surrogates,
    parse_json,
    query_delimiter,
    query_flag,
    read_as_of,
    read_body,
    require_type,
    wants_csv,
)
from .orders import decision_json

health_routes = APIRouter()  # state: policy
decision_routes = APIRouter()  # state: policy, shape, settings, batch_slots
policy_routes = APIRouter()  # state: policy_body, policy, verify_lock, verify_body
ROUTERS = (health_routes, decision_routes, policy_routes)


@health_routes.get("/healthz", **openapi.HEALTHZ)
async def healthz(request: Request) -> Response:
    policy: Policy = request.app.state.policy
    return Response(dumps({"status": "ok", "policy": policy.name, "version": policy.version}), media_type=JSON_TYPE)


@decision_routes.post("/v1/decisions", **openapi.DECIDE)
async def decide(request: Request) -> Response:
    state = request.app.state
    # as_of is read here, not declared as a FastAPI parameter: that skips per-request dependency solving.
    when = read_as_of(request.query_params.get("as_of"))
    require_type(request, (JSON_TYPE,))
    strict = query_flag(request, "strict")
    body = await read_body(request, state.settings.max_body_bytes)
    # One decision takes well under a millisecond: running it inline is cheaper than a thread hop.
    return Response(decision_json(state.policy, state.shape, parse_json(body), when, may_hold_surrogates(body),
                                  strict), media_type=JSON_TYPE)


@decision_routes.post("/v1/decisions/batch", **openapi.DECIDE_BATCH)
async def decide_batch(request: Request) -> Response:
    state = request.app.state
    when = read_as_of(request.query_params.get("as_of"))
    media = require_type(request, (JSON_TYPE, CSV_TYPE))
    as_csv = wants_csv(request)
    raw, strict = query_flag(request, "raw"), query_flag(request, "strict")
    body = await read_body(request, state.settings.max_body_bytes)
    query = BatchQuery(when, strict=strict, as_csv=as_csv, raw=raw, delimiter=query_delimiter(request))
    # Parsing and evaluating a large batch takes tens of milliseconds: off the event loop, and only a few at
    # a time (the engine runs one call at a time anyway; more threads would only hold more frames in memory).
    async with state.batch_slots:
        if media == CSV_TYPE:
            answer, warnings = await run_in_threadpool(answer_csv, state.policy, body, query, state.settings)
        else:
            answer, warnings = await run_in_threadpool(answer_json, state.policy, state.shape, body, query,
                                                       state.settings)
    return Response(answer, media_type=CSV_TYPE if as_csv else JSON_TYPE, headers=warnings_header(warnings))


@policy_routes.get("/v1/policy", **openapi.POLICY)
async def get_policy(request: Request) -> Response:
    return Response(request.app.state.policy_body, media_type=JSON_TYPE)


@policy_routes.get("/v1/policy/verify", **openapi.VERIFY)
async def verify_policy(request: Request) -> Response:
    state = request.app.state
    async with state.verify_lock:
        if state.verify_body is None:
            report = await run_in_threadpool(state.policy.verify)
            state.verify_body = dumps(report.to_dict())
    return Response(state.verify_body, media_type=JSON_TYPE)
