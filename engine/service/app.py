"""The app factory: one FastAPI app over one loaded policy, with its routes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..batch import resolve_columns
from ..policy import EXAMPLES_AS_OF, Policy
from .answers import WARNINGS_HEADER, batch_csv, batch_json, clip_errors, warnings_header, with_errors
from .auth import OPEN_PATHS, AllowedHosts, BearerAuth
from .batch import evaluate, frame_from_json, unknown_column_warnings, unknown_key_warnings
from .encoding import CSV_TYPE, JSON_TYPE, dumps
from .errors import install_error_handlers
from .io import (
    frame_from_csv,
    may_hold_surrogates,
    parse_json,
    query_flag,
    read_as_of,
    read_body,
    require_type,
    wants_csv,
)
from .openapi import (
    AS_OF_PARAMETER,
    RAW_PARAMETER,
    STRICT_PARAMETER,
    batch_row_schema,
    decision_schema,
    error_schema,
    errors_doc,
)
from .orders import OrderShape, decision_json
from .settings import Settings

BATCH_THREADS = 2  # batches evaluated at once per worker process


def create_app(policy: Policy, settings: Settings | None = None) -> FastAPI:
    """The service app over one loaded policy."""
    settings = settings or Settings()
    shape = OrderShape(policy)
    order_schema = shape.schema(policy)
    examples = [ex.order for rule in policy.spec.ranked_rules() for ex in rule.examples[:1]][:4]
    example_decision = json.loads(dumps(policy.decide(examples[0], as_of=EXAMPLES_AS_OF))) if examples else None
    # The file's name, not where it lies on the server.
    policy_body = dumps({**policy.to_dict(), "path": Path(policy.spec.path).name})
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
    install_error_handlers(app)
    auth_doc = errors_doc(401) if settings.token else {}
    common_errors = {**auth_doc, **errors_doc(500)}

    @app.get("/healthz", summary="Liveness and the policy served", tags=["service"], responses={200: {
        "description": "The service is up.", "content": {JSON_TYPE: {"schema": {"type": "object", "properties": {
            "status": {"type": "string"}, "policy": {"type": "string"}, "version": {"type": "string"}}},
            "example": {"status": "ok", "policy": policy.name, "version": policy.version}}}}, **errors_doc(500)})
    async def healthz() -> Response:
        return Response(dumps({"status": "ok", "policy": policy.name, "version": policy.version}),
                        media_type=JSON_TYPE)

    @app.post(
        "/v1/decisions", summary="Decide one order", tags=["decisions"],
        description="The next action for one order, the rule that fired, its conditions, and why higher-ranked "
                    "rules did not fire.",
        responses={200: {"description": "The decision with its explanation.",
                         "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Decision"},
                                                 **({"example": example_decision} if example_decision else {})}}},
                   **errors_doc(400, 413, 415, 422), **common_errors},
        openapi_extra={"parameters": [AS_OF_PARAMETER, STRICT_PARAMETER],
                       "requestBody": {"required": True, "content": {JSON_TYPE: {
            "schema": {"$ref": "#/components/schemas/Order"},
            "examples": {f"example{i + 1}": {"summary": f"order {ex.get('order_id', i + 1)}", "value": dict(ex)}
                         for i, ex in enumerate(examples)}}}}},
    )
    async def decide(request: Request) -> Response:
        # as_of is read here, not declared as a FastAPI parameter: that skips per-request dependency solving.
        when = read_as_of(request.query_params.get("as_of"))
        require_type(request, (JSON_TYPE,))
        strict = query_flag(request, "strict")
        body = await read_body(request, settings.max_body_bytes)
        # One decision takes well under a millisecond: running it inline is cheaper than a thread hop.
        return Response(decision_json(policy, shape, parse_json(body), when, may_hold_surrogates(body), strict),
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
            **errors_doc(400, 406, 413, 415, 422), **common_errors},
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
        when = read_as_of(request.query_params.get("as_of"))
        media = require_type(request, (JSON_TYPE, CSV_TYPE))
        as_csv = wants_csv(request)
        raw, strict = query_flag(request, "raw"), query_flag(request, "strict")
        body = await read_body(request, settings.max_body_bytes)

        def work() -> tuple[bytes, list[str]]:
            if media == CSV_TYPE:
                frame = frame_from_csv(body, settings.max_batch_rows, settings.max_columns)
                warnings = unknown_column_warnings(policy, frame)
                # Strict CSV refuses a column that looks like a misspelt field (422).
                result = evaluate(policy, frame, when, strict)
                columns = resolve_columns(policy.spec, list(frame.columns))  # as the engine read them
                result = clip_errors(policy, result, lambda i: {n: frame[c].iat[i] for n, c in columns.items()}, when)
                return (batch_csv(result, raw) if as_csv else batch_json(result)), warnings
            rows = parse_json(body)
            text = may_hold_surrogates(body)
            batch = frame_from_json(policy, shape, rows, settings.max_batch_rows, when, text)
            # Strict JSON gives each order holding an unknown key /v1/decisions' strict problems as its error.
            warnings = unknown_key_warnings(policy, shape, rows, batch.errors, when, strict, text)
            result = clip_errors(policy, evaluate(policy, batch.frame, when),
                                  lambda i: shape.read(rows[i])[0] if type(rows[i]) is dict else {}, when)
            result = with_errors(result, batch.errors)
            return (batch_csv(result, raw) if as_csv else batch_json(result, batch.ids)), warnings

        # Parsing and evaluating a large batch takes tens of milliseconds: off the event loop, and only a few at
        # a time (the engine runs one call at a time anyway; more threads would only hold more frames in memory).
        async with batch_slots:
            body_out, warnings = await run_in_threadpool(work)
        return Response(body_out, media_type=CSV_TYPE if as_csv else JSON_TYPE, headers=warnings_header(warnings))

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
                verify_cache["body"] = dumps(report.to_dict())
        return Response(verify_cache["body"], media_type=JSON_TYPE)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(
                Order=order_schema, Decision=decision_schema(), BatchRow=batch_row_schema(),
                Error=error_schema())
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
