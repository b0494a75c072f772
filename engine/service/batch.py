"""Batches: JSON orders as columns, CSV as a frame, the warnings about their fields, and the answer to each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from ..batch import unknown_columns
from ..errors import FieldProblem, InputError
from ..facts import unknown_fields
from ..policy import Policy
from .answers import batch_csv, batch_json, with_errors
from .errors import ApiError, api_problem
from .io import frame_from_csv, may_hold_surrogates, parse_json, too_many
from .orders import ID, OrderShape, as_read, json_kind, problems_with
from .settings import Settings


@dataclass
class JsonBatch:
    """A JSON batch as the engine reads it: one column per field given in some row, whatever other keys the
    objects carry (one column per key took 4 GB for 20,000 rows with a key of their own each)."""

    frame: pd.DataFrame
    errors: dict[int, str]  # rows the engine must not see as they are: not objects, or bad values (blanked)
    ids: list[Any]  # each row's order id as sent
    ignored: set[str]  # keys naming no field, and second spellings of a field (see OrderShape.plan)


def frame_from_json(policy: Policy, shape: OrderShape, rows: Any, limit: int, as_of: datetime,
                    text: bool = False) -> JsonBatch:
    """The JSON orders for the engine; `text`: strings may hold lone surrogates (see may_hold_surrogates)."""
    if not isinstance(rows, list):
        raise ApiError(422, "invalid_batch", f"the body must be a JSON array of orders, got JSON {json_kind(rows)}",
                       [api_problem("body", "must be a JSON array of order objects")])
    if len(rows) > limit:
        raise too_many(limit, len(rows))
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
            errors[i] = f"must be a JSON object of order facts, got JSON {json_kind(row)}"
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
        errors[position] = "; ".join(str(p) for p in problems_with(policy, fields, problems, as_of))
    # A field missing from every object is a missing fact of each row, not a missing CSV column.
    for name in shape.required:
        if name not in frame.columns:
            frame[name] = None
    return JsonBatch(frame, errors, ids, ignored)


def unknown_key_warnings(policy: Policy, shape: OrderShape, rows: list[Any], errors: dict[int, str],
                         as_of: datetime, strict: bool, text: bool = False) -> list[str]:
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
                order, fields = as_read(shape, row)
                problems = problems_with(policy, order, shape.problems(fields, text), as_of, strict=True)
                errors[i] = "; ".join(str(p) for p in problems)
    ranked = sorted(unknown.items(), key=lambda item: item[1] is None)  # look-alikes first: the header is capped
    return [f"unknown field {name!r} ignored" + (f" (did you mean {hint!r}?)" if hint else "") for name, hint in ranked]


def unknown_column_warnings(policy: Policy, frame: pd.DataFrame) -> list[str]:
    """Warnings for the CSV columns that look like a field but are not read (the others are kept and echoed)."""
    return [f"column {col!r} is not read by the policy (did you mean {hint!r}?)"
            for col, hint in unknown_columns(policy.spec, list(frame.columns)).items() if hint]


def evaluate(policy: Policy, frame: pd.DataFrame, as_of: datetime, strict: bool = False) -> pd.DataFrame:
    try:
        return policy.evaluate(frame, as_of=as_of, strict=strict)
    except InputError as exc:
        fields = exc.columns or ["body"]
        raise ApiError(422, "invalid_batch", str(exc.message), [api_problem(c, exc.message) for c in fields]) from None


@dataclass(frozen=True)
class BatchQuery:
    """What a batch request asks for besides its orders."""

    as_of: datetime
    strict: bool = False  # a field the policy does not read is an error
    as_csv: bool = False  # the answer as CSV (by Accept), else JSON
    raw: bool = False  # CSV answers: text cells as they are, formulas not neutralized
    delimiter: str = ","  # CSV bodies: the field separator (or 'auto': sniffed)


def answer_csv(policy: Policy, body: bytes, query: BatchQuery, settings: Settings) -> tuple[bytes, list[str]]:
    """The answer to a CSV batch, and its warnings."""
    frame = frame_from_csv(body, settings.max_batch_rows, settings.max_columns, query.delimiter)
    warnings = unknown_column_warnings(policy, frame)
    # Strict CSV refuses a column that looks like a misspelt field (422).
    result = evaluate(policy, frame, query.as_of, query.strict)
    return (batch_csv(result, query.raw) if query.as_csv else batch_json(result)), warnings


def answer_json(policy: Policy, shape: OrderShape, body: bytes, query: BatchQuery, settings: Settings
                ) -> tuple[bytes, list[str]]:
    """The answer to a JSON batch, and its warnings."""
    rows = parse_json(body)
    text = may_hold_surrogates(body)
    batch = frame_from_json(policy, shape, rows, settings.max_batch_rows, query.as_of, text)
    # Strict JSON gives each order holding an unknown key /v1/decisions' strict problems as its error.
    warnings = unknown_key_warnings(policy, shape, rows, batch.errors, query.as_of, query.strict, text)
    result = with_errors(evaluate(policy, batch.frame, query.as_of), batch.errors)
    return (batch_csv(result, query.raw) if query.as_csv else batch_json(result, batch.ids)), warnings
