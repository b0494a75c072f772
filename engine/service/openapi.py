"""The OpenAPI document: each route's own documentation, the schemas, and what depends on the policy served."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, TypedDict

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..policy import EXAMPLES_AS_OF, Policy
from .answers import DECISION_COLUMNS, WARNINGS_HEADER
from .auth import OPEN_PATHS
from .encoding import CSV_TYPE, JSON_TYPE, dumps
from .settings import Settings

TITLE = "cancel-rules decision service"
STRICT_PARAMETER = {
    "name": "strict", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
    "description": "A field the policy does not read is an error: 422 for one order or a CSV column that looks like "
                   "a misspelt field, the order's error in a JSON batch. Without it each is a warning: in the "
                   f"decision's `warnings`, or in the batch answer's `{WARNINGS_HEADER}` header (a JSON array)."}
RAW_PARAMETER = {
    "name": "raw", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
    "description": "CSV answers only: write text cells as they are. By default a text cell a spreadsheet would run "
                   "as a formula (starting with = + - @ tab or CR, and not a number) gets a leading '."}
DELIMITER_PARAMETER = {
    "name": "delimiter", "in": "query", "required": False, "schema": {"type": "string", "default": ","},
    "description": "CSV bodies only: the field separator, one of , ; | tab (or comma, semicolon, pipe), or auto "
                   "to sniff it from the first lines. CSV answers are comma-separated either way."}
AS_OF_PARAMETER = {
    "name": "as_of", "in": "query", "required": False,
    "description": "Time that elapsed hours/days are counted to (ISO 8601; naive means UTC). Default: now, in UTC.",
    "schema": {"type": "string"}, "example": "2026-01-01T00:00:00Z"}


def error_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["error", "message", "problems"], "properties": {
        "error": {"type": "string", "description": "machine-readable code"},
        "message": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {
            "field": {"type": "string", "description": "the field, parameter, header or part that is wrong"},
            "message": {"type": "string"}, "value": {"description": "the value given, if any"}}}}}}


def decision_schema() -> dict[str, Any]:
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


def batch_row_schema() -> dict[str, Any]:
    maybe = {"type": ["string", "null"]}
    return {"type": "object", "description": "one input row's order id (as given) and its decision columns",
            "properties": {"order_id": {"description": "the order's id exactly as sent (null if none)"},
                           **{name: maybe for name in DECISION_COLUMNS}},
            "required": ["order_id", *DECISION_COLUMNS], "additionalProperties": False}


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "The body is not valid JSON.", 401: "Missing or wrong bearer token.",
            406: "The Accept header allows neither JSON nor CSV.", 413: "The body or the batch is too large.",
            415: "The Content-Type is not supported.", 422: "Invalid input: each bad field is named.",
            500: "Internal error (a generic body, never a traceback)."}
    return {s: {"description": text[s], "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for s in statuses}


def order_schema(policy: Policy) -> dict[str, Any]:
    """JSON Schema of one order of this policy."""
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
    return {"type": "object", "properties": props, "required": [n for n, f in policy.spec.facts.items() if f.required],
            "additionalProperties": True}


# ---------------------------------------------------------------------------------------------- routes


class RouteDoc(TypedDict, total=False):
    """A route's documentation, as its decorator takes it. What depends on the policy served (examples, the row
    limit, the 401s of a token) is added to the document by `document`."""

    summary: str
    description: str
    tags: list[str | Enum]
    responses: dict[int | str, dict[str, Any]]
    openapi_extra: dict[str, Any]


HEALTHZ = RouteDoc(
    summary="Liveness and the policy served", tags=["service"],
    responses={200: {"description": "The service is up.", "content": {JSON_TYPE: {"schema": {
        "type": "object", "properties": {"status": {"type": "string"}, "policy": {"type": "string"},
                                         "version": {"type": "string"}}}}}},
               **errors_doc(500)})

DECIDE = RouteDoc(
    summary="Decide one order", tags=["decisions"],
    description="The next action for one order, the rule that fired, its conditions, and why higher-ranked "
                "rules did not fire.",
    responses={200: {"description": "The decision with its explanation.",
                     "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Decision"}}}},
               **errors_doc(400, 413, 415, 422, 500)},
    openapi_extra={"parameters": [AS_OF_PARAMETER, STRICT_PARAMETER], "requestBody": {
        "required": True, "content": {JSON_TYPE: {"schema": {"$ref": "#/components/schemas/Order"}}}}})

DECIDE_BATCH = RouteDoc(
    summary="Decide a batch of orders", tags=["decisions"],
    description="A JSON array of orders, or CSV with a header row (`text/csv`). Answers one row per input "
                "row, in input order: as JSON, each row's `order_id` (as sent) and its decision columns (action, "
                "rule_id, message, error, policy_version); with `Accept: text/csv`, the input columns (of a JSON "
                "batch: the policy's fields it gives) with the decision columns added. A bad row gets an `error` "
                "and no action, and never fails the batch.",  # `document` adds the row limit
    responses={200: {"description": "One row per input row, in input order.", "content": {
        JSON_TYPE: {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/BatchRow"}}},
        CSV_TYPE: {"schema": {"type": "string"}}}},
        **errors_doc(400, 406, 413, 415, 422, 500)},
    openapi_extra={"parameters": [AS_OF_PARAMETER, STRICT_PARAMETER, RAW_PARAMETER, DELIMITER_PARAMETER],
                   "requestBody": {
        "required": True, "content": {
            # Any item is accepted (a bad one gets an error row, it never fails the batch): anyOf says so.
            JSON_TYPE: {"schema": {"type": "array", "items": {"anyOf": [{"$ref": "#/components/schemas/Order"}, {}]}}},
            CSV_TYPE: {"schema": {"type": "string"},
                       "example": "order_id,status,seller_reply,hours_since_contact\nA1,shipped,no_reply,50\n"
                                  "A2,Awaiting shipment,,\n"}}}})

POLICY = RouteDoc(
    summary="The policy: facts schema, parameters, rules, version", tags=["policy"],
    responses={200: {"description": "The policy as data.", "content": {JSON_TYPE: {"schema": {
        "type": "object", "required": ["policy", "version", "facts", "parameters", "rules"]}}}},
        **errors_doc(500)})

VERIFY = RouteDoc(
    summary="Verify the policy over its whole fact space", tags=["policy"],
    description="Gaps (cells no rule decides), unreachable rules and overlaps, each with an example "
                "order. Computed once per process (the policy cannot change while it is served).",
    responses={200: {"description": "The verification report (`ok` is false if it found problems).",
                     "content": {JSON_TYPE: {"schema": {"type": "object"}}}}, **errors_doc(500)})


# ---------------------------------------------------------------------------------------------- document


def description(policy: Policy, settings: Settings) -> str:
    """The document's description: the policy served and the limits."""
    return (f"What to do next to cancel an order, decided by the policy **{policy.name}** version "
            f"{policy.version}. Time-dependent facts are counted to the `as_of` query parameter "
            f"(default: now, UTC). Limits: bodies up to {settings.max_body_bytes} bytes, batches up to "
            f"{settings.max_batch_rows} rows (413 beyond)."
            + (" Every endpoint but /healthz needs `Authorization: Bearer <token>`." if settings.token else ""))


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of a service app (its state: `policy`, `settings`)."""
    policy: Policy = app.state.policy
    settings: Settings = app.state.settings
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(
        Order=order_schema(policy), Decision=decision_schema(), BatchRow=batch_row_schema(), Error=error_schema())
    for path, parts in _policy_parts(policy, settings).items():
        for method, part in parts.items():
            if method in schema["paths"].get(path, {}):
                _merge(schema["paths"][path][method], _without_nulls(part))
    if settings.token:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():
            if path not in OPEN_PATHS:
                for operation in operations.values():
                    _require_token(operation)
    return schema


def _policy_parts(policy: Policy, settings: Settings) -> dict[str, dict[str, dict[str, Any]]]:
    """What the routes' documentation takes from the policy and settings: examples and the row limit."""
    examples = [ex.order for rule in policy.spec.ranked_rules() for ex in rule.examples[:1]][:4]
    decision = json.loads(dumps(policy.decide(examples[0], as_of=EXAMPLES_AS_OF))) if examples else None
    health = {"status": "ok", "policy": policy.name, "version": policy.version}
    return {
        "/healthz": {"get": {"responses": {"200": {"content": {JSON_TYPE: {"example": health}}}}}},
        "/v1/decisions": {"post": {
            "responses": {"200": {"content": {JSON_TYPE: {"example": decision} if decision else {}}}},
            "requestBody": {"content": {JSON_TYPE: {"examples": {
                f"example{i + 1}": {"summary": f"order {ex.get('order_id', i + 1)}", "value": dict(ex)}
                for i, ex in enumerate(examples)}}}}}},
        "/v1/decisions/batch": {"post": {
            "description": f"{DECIDE_BATCH['description']} At most {settings.max_batch_rows} rows.",
            "requestBody": {"content": {JSON_TYPE: {"example": [dict(ex) for ex in examples]}}}}},
    }


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _without_nulls(value: Any) -> Any:
    # As FastAPI writes what a route's decorator documents (examples included): without null members.
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _require_token(operation: dict[str, Any]) -> None:
    """The operation answers 401 without the token (documented before its 500) and declares the bearer scheme."""
    responses = operation["responses"]
    internal = responses.pop("500", None)
    responses["401"] = errors_doc(401)[401]
    if internal is not None:
        responses["500"] = internal
    operation["security"] = [{"bearer": []}]
