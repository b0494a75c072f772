"""Message templates: the `{name}` and `{a - b}` placeholder grammar, its load-time check, and rendering (one
order's facts, or many rows at once from normalized fact columns)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from .model import FactSpec, KeyedParameter, ParamRef, PolicySpec
from .text import did_you_mean, format_value

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDER_BODY = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:-\s*([A-Za-z_]\w*)\s*)?$")


def check(message: str, facts: Mapping[str, FactSpec], params: Collection[str]
          ) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Each placeholder of a message, in order, as written, with its problems (text, did-you-mean hint): the
    loader locates them in the file."""
    names = set(facts) | set(params)
    out: list[tuple[str, list[tuple[str, str | None]]]] = []
    for placeholder in PLACEHOLDER.finditer(message):
        body = placeholder.group(1)
        problems: list[tuple[str, str | None]] = []
        out.append((placeholder.group(0), problems))
        match = PLACEHOLDER_BODY.match(body)
        if not match:
            problems.append((f"message placeholder '{{{body}}}' must be '{{name}}' or '{{name - name}}'", None))
            continue
        for name in filter(None, match.groups()):
            if name not in names:
                problems.append((f"message names unknown fact or parameter '{name}'", did_you_mean(name, names)))
        not_numbers = [n for n in match.groups() if n in facts and facts[n].type != "number"]
        if match.group(2) and not_numbers:
            problems.append((f"message placeholder '{{{body}}}' subtracts what is not a number: "
                             f"{', '.join(not_numbers)}", None))
    return out


def _names(body: str) -> tuple[str, str | None]:
    """The name, or the two names, of a placeholder the loader accepted ('{a}' or '{a - b}')."""
    match = PLACEHOLDER_BODY.match(body)
    assert match is not None, body  # rendering only ever sees templates the loader checked
    return match.group(1), match.group(2)


def render(spec: PolicySpec, template: str, facts: Mapping[str, Any]) -> str:
    """Fill `{name}` and `{a - b}` placeholders with fact values (enum labels) and parameters."""

    def value(name: str) -> Any:
        if name in spec.facts:
            raw = facts.get(name)
            return spec.facts[name].label(raw) if spec.facts[name].type == "enum" and raw else raw
        return spec.resolve(ParamRef(name), facts)

    literals, placeholders = _parsed(template)
    pieces = [literals[0]]
    for (first, second), literal in zip(placeholders, literals[1:], strict=True):
        if second is None:
            pieces.append(format_value(value(first)))
        else:
            a, b = value(first), value(second)
            pieces.append(format_value(None if a is None or b is None else float(a) - float(b)))
        pieces.append(literal)
    return "".join(pieces)


@lru_cache(maxsize=4096)  # one entry per rule message of the policies in use; a template is a few hundred bytes
def _parsed(template: str) -> tuple[tuple[str, ...], tuple[tuple[str, str | None], ...]]:
    """(the literal texts, the placeholders' names between them) of a template, its whitespace runs folded."""
    parts = PLACEHOLDER.split(" ".join(template.split()))
    return tuple(parts[0::2]), tuple(_names(body) for body in parts[1::2])


def render_rows(spec: PolicySpec, template: str, values: dict[str, np.ndarray], rows: np.ndarray
                ) -> np.ndarray | str:
    """One rule's message for the given rows, rendered once per distinct combination of what it shows."""
    rendered = render_codes(spec, template, values, rows)
    return rendered if isinstance(rendered, str) else np.array(rendered[1], dtype=object)[rendered[0]]


def render_codes(spec: PolicySpec, template: str, values: dict[str, np.ndarray], rows: np.ndarray
                 ) -> tuple[np.ndarray, list[str]] | str:
    """render_rows' texts as (each row's code, the distinct texts), or the one text of a template without
    placeholders."""
    import pandas as pd  # here, not at the top: render (one decision) needs no pandas

    keys = []
    for body in PLACEHOLDER.findall(template):
        first, second = _names(body)
        if second is not None:
            keys.append(_tenths_key(_column(spec, first, values, rows) - _column(spec, second, values, rows)))
            continue
        param = spec.parameters.get(first)
        if isinstance(param, KeyedParameter):
            keys.append(values[param.by][rows])
        elif first in spec.facts:
            v = values[first][rows]
            keys.append(v if spec.facts[first].type == "enum" else _tenths_key(v))
    if not keys:
        return render(spec, template, {})  # one text, broadcast by the caller
    combined = np.zeros(len(rows), dtype=np.int64)
    for key in keys:
        k_codes, k_uniques = pd.factorize(key)
        combined = combined * (len(k_uniques) + 1) + k_codes
    codes, uniques = pd.factorize(combined)
    first_row = np.zeros(len(uniques), dtype=np.int64)
    first_row[codes[::-1]] = np.arange(len(codes))[::-1]
    return codes, _render_each(spec, template, values, rows[first_row])


def _render_each(spec: PolicySpec, template: str, values: dict[str, np.ndarray], rows: np.ndarray) -> list[str]:
    """render for each row, one placeholder column at a time (same text, far fewer calls)."""
    parts = PLACEHOLDER.split(" ".join(template.split()))  # literal, placeholder, literal, ...
    columns: list[list[str]] = []
    for body in parts[1::2]:
        first, second = _names(body)
        if second is not None:
            diff = _column(spec, first, values, rows) - _column(spec, second, values, rows)
            columns.append([format_value(None if np.isnan(v) else float(v)) for v in diff])
        elif first in spec.facts and spec.facts[first].type == "enum":
            fact = spec.facts[first]
            labels = [fact.label(v) for v in fact.values]
            columns.append([labels[c] if c >= 0 else format_value(None) for c in values[first][rows]])
        elif first in spec.facts:
            columns.append([format_value(None if np.isnan(v) else float(v)) for v in values[first][rows]])
        else:
            param = spec.parameters[first]
            if isinstance(param, KeyedParameter):
                table = [format_value(param.lookup(v)) for v in spec.facts[param.by].values]
                missing = format_value(param.lookup(None))
                columns.append([table[c] if c >= 0 else missing for c in values[param.by][rows]])
            else:
                columns.append([format_value(param)] * len(rows))
    literals = parts[0::2]
    out = []
    for cells in zip(*columns, strict=True) if columns else [()] * len(rows):
        pieces = [literals[0]]
        for text, literal in zip(cells, literals[1:], strict=True):
            pieces += [text, literal]
        out.append("".join(pieces))
    return out


def _column(spec: PolicySpec, name: str, values: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    if name in spec.facts:
        return values[name][rows]
    param = spec.parameters[name]
    if isinstance(param, KeyedParameter):
        codes = values[param.by][rows]
        table = np.array([param.lookup(v) for v in spec.facts[param.by].values] + [param.lookup(None)],
                         dtype=np.float64)
        return table[np.where(codes < 0, len(table) - 1, codes)]
    return np.full(len(rows), float(param))


def _tenths_key(v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(v), np.iinfo(np.int64).min, np.floor(v * 10 + 0.5)).astype(np.int64)
