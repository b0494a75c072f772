"""The service's wire formats: the media types it reads and writes, and its JSON encoder."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ..decision import WhyNot
from ..operators import ConditionResult

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
# A decision's parts (dozens per decision): frozen dataclasses whose __init__ sets each field once, in order, so
# an instance's __dict__ is its fields as they are written; no copy needed.
_FIELDS_ARE_DICT: frozenset[type] = frozenset({ConditionResult, WhyNot})


def _jsonable(value: Any) -> Any:
    """json.dumps' hook for what it cannot encode: a dataclass (a Decision and its parts) becomes its fields,
    shallowly, and the C encoder does the rest; the same JSON as `Decision.to_json()` at a fraction of the cost
    (asdict deep-copies every value, which costs as much as the decision itself)."""
    if type(value) in _FIELDS_ARE_DICT:
        return value.__dict__
    names = _FIELD_NAMES.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES.setdefault(type(value), tuple(f.name for f in dataclasses.fields(value)))
    if names is not None:
        return {name: getattr(value, name) for name in names}
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def dumps(value: Any) -> bytes:
    # A lone surrogate (valid in JSON text, not in UTF-8) is written as the JSON escape it arrived as.
    return ENCODER.encode(value).encode("utf-8", "backslashreplace")
