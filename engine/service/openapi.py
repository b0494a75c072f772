"""The OpenAPI document's parts: query parameters, schemas and error responses."""

from __future__ import annotations

from typing import Any

from .answers import DECISION_COLUMNS, WARNINGS_HEADER
from .encoding import JSON_TYPE

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
