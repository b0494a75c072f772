"""Write plain data as YAML in the dialect the rule reader reads (YAML 1.1, PyYAML's emitter) and the way the
policy files are written: block sequences under their key, short plain collections on one line, 72 written 72."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import date
from typing import Any

import yaml

from .errors import EditError

WIDTH = 110  # where long text is wrapped, as the bundled policy is written
FLOW_WIDTH = 72  # a collection of plain values at most this long is written on one line: {gte: $x}, [a, b]
INDENT = 2


class _Dumper(yaml.SafeDumper):
    """Block sequences indented under their key (`key:\\n  - item`), as the policy files are written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True  # a value given twice is written twice, never as an anchor and an alias


class _InlineDumper(_Dumper):
    pass


class _Flow(dict):
    """A mapping to be written on one line."""


def _float(dumper: yaml.SafeDumper, value: float) -> yaml.Node:
    if value.is_integer() and abs(value) < 2**53:  # 72.0 is written 72, as a person writes it
        return dumper.represent_int(int(value))
    return dumper.represent_float(value)


def _text(style: str) -> Any:
    def represent(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style if "\n" in value else None)
    return represent


def _flow(dumper: yaml.SafeDumper, value: _Flow) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(value), flow_style=True)


for _dumper, _style in ((_Dumper, "|"), (_InlineDumper, '"')):
    _dumper.add_representer(float, _float)
    _dumper.add_representer(str, _text(_style))
    _dumper.add_representer(_Flow, _flow)


def data(value: Any, what: str = "value") -> Any:
    """value as plain YAML data (numpy scalars as Python numbers, tuples as lists); EditError if it is not."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str | int | float | bool):
                raise EditError(what, f"{what} has a key that is not text: {key!r}")
        return {key: data(v, what) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [data(v, what) for v in value]
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    if value is None or isinstance(value, str | int | float | bool | date):
        return value
    raise EditError(what, f"{what} holds {type(value).__name__} {value!r}, which is not YAML data")


def inline(value: Any, style: str | None = None) -> str:
    """value written on one line (a flow scalar or collection); text quoted with style (' or ") if given."""
    out = yaml.dump([value], Dumper=_InlineDumper, default_flow_style=True, width=1 << 30, allow_unicode=True,
                    sort_keys=False, default_style=style if isinstance(value, str) else None)
    return out.strip()[1:-1]


def _flowed(value: Any) -> Any:
    """value with each collection of plain values that is short enough marked to be written on one line."""
    if isinstance(value, dict | list) and fits_line(value):
        return _Flow(value) if isinstance(value, dict) else value
    if isinstance(value, dict):
        return {k: _flowed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_flowed(v) for v in value]
    return value


def _leafy(value: Any) -> bool:
    inner = value.values() if isinstance(value, dict) else value
    return all(not isinstance(v, dict | list) or (isinstance(v, list) and _leafy(v)) for v in inner)


def fits_line(value: Any) -> bool:
    return not isinstance(value, dict | list) or (_leafy(value) and len(inline(value)) <= FLOW_WIDTH)


def block(value: Any) -> str:
    """value written as a block (several lines, no final newline), short plain collections on one line each."""
    if fits_line(value):
        return inline(value)
    out = yaml.dump(_flowed(value), Dumper=_Dumper, default_flow_style=False, sort_keys=False, allow_unicode=True,
                    width=WIDTH, indent=INDENT)
    return out.rstrip("\n")


def block_scalar(value: str, style: str | None, indent: int) -> str | None:
    """value as a folded (>-) or literal (|-) block scalar whose lines start at indent, or None if it cannot be
    written so and read back the same."""
    pad = " " * indent
    if style == ">" and "\n" not in value:
        lines = textwrap.wrap(value, width=max(40, WIDTH - indent), break_long_words=False, break_on_hyphens=False)
        if lines and " ".join(lines) == value and not value[0].isspace():
            return ">-\n" + "\n".join(pad + line for line in lines)
    if style == "|" and value and not value[0].isspace() and not value.endswith("\n\n"):
        lines = value.removesuffix("\n").split("\n")
        return ("|" if value.endswith("\n") else "|-") + "".join("\n" + (pad + line if line else "") for line in lines)
    return None
