"""One order as JSON: the types its fields may take, field matching, and the single decision."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..errors import FieldProblem, OrderError
from ..facts import input_fields
from ..policy import Policy
from ..text import alias_key
from .encoding import dumps
from .errors import ApiError, api_problem, clipped, order_problems

ID = "order_id"  # the field echoed with every batch row


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
            return FieldProblem(name, value, f"must be {self.EXPECTED[kind]}, got JSON {json_kind(value)}")
        if text and type(value) is str and (char := _lone_surrogate(value)):
            return FieldProblem(name, value, f"is not valid Unicode text (a lone surrogate \\u{ord(char):04x})")
        return None

    def problems(self, order: Mapping[str, Any], text: bool = False) -> list[FieldProblem]:
        return [p for name, value in order.items() if (p := self.problem(name, value, text=text)) is not None]


def _lone_surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def json_kind(value: Any) -> str:
    """What JSON calls the type of a parsed value."""
    if isinstance(value, bool):
        return "boolean"
    return _JSON_KINDS.get(type(value), type(value).__name__)


_JSON_KINDS: dict[type, str] = {dict: "object", list: "array"}


def problems_with(policy: Policy, order: Mapping[str, Any], bad: list[FieldProblem],
                  as_of: datetime, strict: bool = False) -> list[FieldProblem]:
    """`bad` (values the engine must not see) and the engine's problems with the other fields, each clipped."""
    fields = {p.field for p in bad}
    try:
        policy.decide({k: v for k, v in order.items() if k not in fields}, as_of=as_of, strict=strict)
    except OrderError as exc:
        return [clipped(p) for p in bad + [p for p in exc.problems if p.field not in fields]]
    return [clipped(p) for p in bad]


def decision_json(policy: Policy, shape: OrderShape, order: Any, as_of: datetime, text: bool,
                  strict: bool = False) -> bytes:
    """The decision on one JSON order, as JSON; ApiError 422 naming every bad field."""
    if not isinstance(order, dict):
        raise ApiError(422, "invalid_order", f"the body must be a JSON object of order facts, got JSON "
                       f"{json_kind(order)}", [api_problem("body", "must be a JSON object")])
    order, fields = as_read(shape, order)
    problems = shape.problems(fields, text)
    if problems:
        problems = problems_with(policy, order, problems, as_of, strict)
    else:
        try:
            return dumps(policy.decide(order, as_of=as_of, strict=strict))
        except OrderError as exc:
            problems = [clipped(p) for p in exc.problems]
    raise ApiError(422, "invalid_order", "invalid order: " + "; ".join(str(p) for p in problems),
                   order_problems(problems))


def as_read(shape: OrderShape, order: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the order as the engine gets it, its fields): the fields under their own names, so that a row of a batch
    and the same order alone read the same values, and keys naming no field as they came (warned, not read)."""
    fields, ignored = shape.read(order)
    return {**fields, **{key: order[key] for key in ignored}}, fields
