"""Message templates: the `{name}` and `{a - b}` placeholder grammar, its load-time check, and rendering (one
order's facts, or many rows at once from normalized fact columns)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from .model import FactSpec, KeyedParameter, ParamRef, PolicySpec
from .text import did_you_mean, format_tenths, format_value

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

    literals, placeholders = _parsed(template)
    if all(second is None and first not in spec.facts and not isinstance(spec.parameters[first], KeyedParameter)
           for first, second in placeholders):
        return render(spec, template, {})  # one text, broadcast by the caller
    shown = [_shown(spec, first, second, values, rows) for first, second in placeholders]
    combined, span = np.zeros(len(rows), dtype=np.int64), 1
    for codes, texts in shown:
        if span * len(texts) >= 1 << 62:  # past 64 bits: number the combinations met so far instead
            combined, met = pd.factorize(combined)
            span = len(met)
        combined, span = combined * len(texts) + codes, span * len(texts)
    each, met = pd.factorize(combined)
    first_row = np.zeros(len(met), dtype=np.int64)
    first_row[each[::-1]] = np.arange(len(each))[::-1]
    pieces = [[texts[c] for c in codes[first_row].tolist()] for codes, texts in shown]
    form = "%s".join(literal.replace("%", "%%") for literal in literals)
    return each, [form % combination for combination in zip(*pieces, strict=True)]


def _shown(spec: PolicySpec, first: str, second: str | None, values: dict[str, np.ndarray], rows: np.ndarray
           ) -> tuple[np.ndarray, list[str]]:
    """(code of each row, the text of each code) of one placeholder, the text being what render shows: enum labels,
    parameters, and numbers in tenths (rows showing the same tenths share a code)."""
    import pandas as pd  # as in render_rows

    fact = spec.facts.get(first) if second is None else None
    if fact is not None and fact.type == "enum":
        codes = values[first][rows]
        return np.where(codes < 0, len(fact.values), codes), [*map(fact.label, fact.values), format_value(None)]
    param = spec.parameters.get(first) if second is None and fact is None else None
    if isinstance(param, KeyedParameter):
        codes = values[param.by][rows]
        keys = spec.facts[param.by].values
        return np.where(codes < 0, len(keys), codes), [format_value(param.lookup(v)) for v in [*keys, None]]
    if second is None and fact is None:
        return np.zeros(len(rows), dtype=np.int64), [format_value(param)]
    number = _column(spec, first, values, rows).astype(np.float64) if second is None else \
        _column(spec, first, values, rows) - _column(spec, second, values, rows)
    # text.tenths' arithmetic on the same doubles, elementwise, so the same whole number of tenths.
    codes, tenths = pd.factorize(np.floor(number * 10 + 0.5))  # not given (NaN): code -1
    return np.where(codes < 0, len(tenths), codes), [*(_tenths_text(int(t)) for t in tenths.tolist()),
                                                      format_value(None)]


# The text of a whole number of tenths, for the numbers met lately: rules show the same hours and days over and over.
_tenths_text = lru_cache(maxsize=1 << 16)(format_tenths)


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
