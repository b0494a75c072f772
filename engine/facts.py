"""Normalize one order: aliases to codes, timestamps to elapsed time, defaults, per-field validation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from .errors import AsOfError, FieldProblem, OrderError
from .model import MAX_NUMBER, TIME_UNITS, FactSpec, PolicySpec
from .text import alias_key, did_you_mean, echo

# How alike (difflib ratio, after folding case and separators) a field name must be to a field the policy
# reads to count as a misspelling of it: 'hours_since_contakt' (0.95) is, 'order_date' (0.78 to 'order_id')
# or 'paid' (0.73 to 'paid_at') are columns of their own.
FIELD_CUTOFF = 0.8
VALUE_CUTOFF = 0.6
HINTED = 1_000  # unknown names given a hint, per call: as many as a CSV may have columns by default


def parse_as_of(value: str | datetime | None) -> datetime:
    """The explicit as-of time (ISO 8601 text or datetime; naive means UTC); None means now in UTC."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is None:
            raise AsOfError(value)
        return parsed
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_timestamp(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_blank(value: Any) -> bool:
    """None, empty text and pandas' NA mean 'not given'; NaN is a bad value, not a blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, np.datetime64):
        return bool(np.isnat(value))
    return type(value).__name__ in ("NAType", "NaTType")


def input_fields(spec: PolicySpec) -> list[str]:
    """Every field name the policy reads: facts and the timestamps they can be derived from."""
    names = list(spec.facts)
    names += [f.from_timestamp for f in spec.facts.values() if f.from_timestamp]
    return names


def unknown_fields(spec: PolicySpec, names: Iterable[str], loose: bool = False) -> dict[str, str | None]:
    """The names the policy does not read, each with the field it is probably a misspelling of (or None).

    Exact names, as an order dict is read; loose=True matches case and separators, as a header is read. Only
    the first HINTED unknown names are compared (difflib): an order with thousands of keys stays cheap."""
    fields = tuple(input_fields(spec))
    known = {alias_key(f) for f in fields} if loose else set(fields)
    unknown = [name for name in names if (alias_key(str(name)) if loose else name) not in known]
    return {name: did_you_mean(name, fields, FIELD_CUTOFF, fold=True) if i < HINTED else None
            for i, name in enumerate(unknown)}


def _hint_text(hint: str | None) -> str:
    return f" (did you mean {hint!r}?)" if hint else ""


def unknown_field_warnings(spec: PolicySpec, order: Mapping[str, Any]) -> tuple[str, ...]:
    """One warning per field of the order the policy does not read."""
    return tuple(f"unknown field {name!r} ignored{_hint_text(hint)}"
                 for name, hint in unknown_fields(spec, order).items())


def enum_value(fact: FactSpec, value: Any) -> tuple[str | None, str | None]:
    """(code, None) or (None, problem message) for one enum input."""
    if not isinstance(value, str):
        return None, f"must be text, got {echo(value)}"
    code = fact.aliases.get(alias_key(value))
    if code is None:
        # Codes first, then labels, then the (folded) aliases: a hint names a spelling that is accepted.
        hint = did_you_mean(value, (*fact.values, *fact.labels.values(), *fact.aliases), VALUE_CUTOFF, fold=True)
        return None, f"unknown value {echo(value)}{_hint_text(hint)}"
    return code, None


def number_value(fact: FactSpec, value: Any) -> tuple[float | None, str | None]:
    """(number, None) or (None, problem message) for one numeric input."""
    if isinstance(value, bool):
        return None, f"must be a number, got {echo(value)}"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None, f"not a number: {echo(value)}"
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None, f"is too large (at most {MAX_NUMBER:g})"
    except (TypeError, ValueError):
        return None, f"not a number: {echo(value)}"
    if math.isnan(number):
        return None, "is NaN (leave it empty when it is not known)"
    if math.isinf(number):
        return None, "is not finite"
    if abs(number) > MAX_NUMBER:  # far past any real elapsed time; keeps rounding and the engine exact
        return None, f"is too large (at most {MAX_NUMBER:g})"
    if fact.min is not None and number < fact.min:
        return None, f"must be >= {fact.min:g}, got {number:g}"
    if fact.max is not None and number > fact.max:
        return None, f"must be <= {fact.max:g}, got {number:g}"
    return number, None


def elapsed(fact: FactSpec, value: Any, as_of: datetime) -> tuple[float | None, str | None]:
    """Time from a timestamp input to the as-of time, in the fact's unit."""
    if isinstance(value, np.datetime64) and not np.isnat(value):  # what a pandas datetime column holds
        value = value.astype("datetime64[us]").astype(datetime)
    if not isinstance(value, (str, datetime)):
        return None, f"not an ISO 8601 timestamp: {echo(value)}"
    stamp = parse_timestamp(value) if isinstance(value, str) else parse_as_of(value)
    if stamp is None:
        return None, f"not an ISO 8601 timestamp: {echo(value)}"
    amount = (as_of - stamp).total_seconds() / TIME_UNITS[fact.per]
    if amount < 0:
        return None, f"{stamp.isoformat()} is after the as-of time {as_of.isoformat()}"
    return amount, None


def normalize(spec: PolicySpec, order: Mapping[str, Any], as_of: datetime, strict: bool = False) -> dict[str, Any]:
    """Canonical facts of one order; raises OrderError naming every bad field (with strict, every field the
    policy does not read too). Not-given facts are absent."""
    facts: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for name, fact in spec.facts.items():
        raw = order.get(name)
        field, problem = name, None
        value: Any = None
        if is_blank(raw) and fact.from_timestamp and not is_blank(order.get(fact.from_timestamp)):
            field, raw = fact.from_timestamp, order.get(fact.from_timestamp)
            value, problem = elapsed(fact, raw, as_of)
        elif is_blank(raw):
            value = fact.default
            if value is None and fact.required:
                problem = "missing (required)"
        elif fact.type == "enum":
            value, problem = enum_value(fact, raw)
        elif fact.type == "number":
            value, problem = number_value(fact, raw)
        else:
            value = str(raw)
        if problem:
            problems.append(FieldProblem(field, raw, problem))
        elif value is not None:
            facts[name] = value
    if strict:
        problems += [FieldProblem(name, order[name], f"unknown field{_hint_text(hint)}")
                     for name, hint in unknown_fields(spec, order).items()]
    if problems:
        order_id = order.get("order_id")
        raise OrderError(problems, None if is_blank(order_id) else str(order_id))
    return facts
