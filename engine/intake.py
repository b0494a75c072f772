"""Reading an order file laid out otherwise than the policy: its delimiter sniffed, the line each record starts on,
and its header mapped onto the policy's fields (suggested from names and values, checked, applied)."""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import pandas as pd

from .errors import MappingError
from .facts import FIELD_CUTOFF, input_fields
from .model import PolicySpec
from .text import alias_key, did_you_mean

DELIMITERS = ",;\t|"  # tried in this order: a tie goes to the comma
# The spellings a user may give a delimiter in (a tab is hard to type on a command line or in a URL).
DELIMITER_NAMES = {**{d: d for d in DELIMITERS}, "tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";",
                   "pipe": "|"}
SNIFF_LINES = 50
SNIFF_BYTES = 64 * 1024  # of a file or body, read to sniff its delimiter
# How sure a suggestion must be. A column whose folded name ends with the field's ('Order Status' -> status) or
# whose values are the field's own values and aliases ('Sent', 'Closed' -> status) is taken, and one as alike as
# facts.FIELD_CUTOFF asks of a misspelling ('Order Number' -> order_id, never 'order_date').
SUGGEST_CUTOFF = 0.75
VALUE_SHARE = 0.6  # share of a column's non-blank sample values that must be values of an enum fact


def sniff_delimiter(sample: str) -> str:
    """The delimiter of a CSV text: of , ; tab and |, the one that splits the first lines into the same number of
    fields, the most fields winning (a comma inside a quoted field does not count); ',' when none splits them."""
    lines = sample.splitlines()[:SNIFF_LINES]
    if len(sample.splitlines()) > SNIFF_LINES or not sample.endswith(("\n", "\r")):
        lines = lines[:-1] or lines  # the last line of a cut sample may be cut too
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter) if r]
        except csv.Error:
            continue
        widths = {len(r) for r in rows}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = delimiter, width
    return best


def sniff_bytes(data: bytes) -> str:
    """sniff_delimiter of the first SNIFF_BYTES of a file or body, however they decode (a byte that is not UTF-8
    is refused later, with its position, by the reader)."""
    return sniff_delimiter(data[:SNIFF_BYTES].decode("utf-8", errors="replace").removeprefix("\ufeff"))


def record_lines(text: str, delimiter: str = ",") -> list[int]:
    """The line (1-based; the header is line 1) where each record after the header starts, blank lines skipped
    as pandas skips them; a quoted field holding newlines makes its record span several lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    starts, previous = [], 0
    for record in reader:
        start, previous = previous + 1, reader.line_num
        if record:
            starts.append(start)
    return starts[1:]


def parse_mapping(items: Iterable[str], option: str = "--map") -> dict[str, str]:
    """'Column=field' texts (as --map takes them) as {column: field}; the last '=' splits, spaces around are
    dropped."""
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, name = item.rpartition("=")
        column, name = column.strip(), name.strip()
        if not sep or not column or not name:
            raise MappingError(f"{option} takes COLUMN=FIELD (e.g. \"Order Status=status\"), got {item!r}",
                               column or None, name or None)
        if column in mapping and mapping[column] != name:
            raise MappingError(f"{option} maps column {column!r} twice: to {mapping[column]!r} and {name!r}",
                               column, name)
        mapping[column] = name
    return mapping


def check_fields(spec: PolicySpec, mapping: Mapping[str, str]) -> None:
    """Every field a mapping names is one the policy reads (with did-you-mean when not)."""
    fields = input_fields(spec)
    for column, name in mapping.items():
        if name not in fields:
            hint = did_you_mean(name, fields, fold=True)
            raise MappingError(f"column {column!r} is mapped to {name!r}, which the policy does not read"
                               + (f" (did you mean {hint!r}?)" if hint else f" (fields: {', '.join(fields)})"),
                               column, name)


def apply_mapping(header: Sequence[str], mapping: Mapping[str, str], source: str = "input") -> list[str]:
    """The header with each mapped column renamed to its field. A mapped column must be in the header, once; two
    columns may not end with one name (case and spaces folded: a header reads 'Status' as status)."""
    header = [str(c) for c in header]
    for column in mapping:
        if column not in header:
            hint = did_you_mean(column, header, fold=True)
            raise MappingError(f"{source}: no column {column!r} to map"
                               + (f" (did you mean {hint!r}?)" if hint else ""), column, mapping[column])
        if header.count(column) > 1:
            raise MappingError(f"{source}: column {column!r} appears more than once", column, mapping[column])
    renamed = [mapping.get(c, c) for c in header]
    seen: dict[str, str] = {}
    for old, new in zip(header, renamed, strict=True):
        first = seen.setdefault(alias_key(new), old)
        if first != old and (old in mapping or first in mapping):  # two unmapped ones: the first is read, as ever
            raise MappingError(f"{source}: columns {first!r} and {old!r} would both be read as {new!r}: map only "
                               f"one of them", old if old in mapping else first, new)
    return renamed


def map_frame(frame: pd.DataFrame, mapping: Mapping[str, str], source: str = "input") -> pd.DataFrame:
    """The frame with its mapped columns renamed (the data is not copied)."""
    if not mapping:
        return frame
    return frame.set_axis(apply_mapping(list(frame.columns), mapping, source), axis=1)


def unmatched_fields(spec: PolicySpec, header: Sequence[str]) -> list[str]:
    """The fields no column is named after (case and spaces folded), required facts first; a time-derived fact
    given by its timestamp column (or the other way round) counts as matched."""
    keys = {alias_key(str(c)) for c in header}
    found = {f for f in input_fields(spec) if alias_key(f) in keys}
    out = []
    for name, fact in spec.facts.items():
        if name in found or (fact.from_timestamp and fact.from_timestamp in found):
            continue
        out.append(name)
        if fact.from_timestamp:
            out.append(fact.from_timestamp)
    return sorted(out, key=lambda f: not (f in spec.facts and spec.facts[f].required))


def suggest_mapping(spec: PolicySpec, header: Sequence[str], sample: pd.DataFrame | None = None
                    ) -> dict[str, str]:
    """{column: field} for the fields no column is named after: the column whose name ends with the field's
    ('Order Status' -> status), is much like it, or (given a sample of rows) holds the values of an enum fact,
    its labels and aliases ('Sent', 'Closed' -> status). Each column and field is taken once, surest first."""
    fields = unmatched_fields(spec, header)
    known = {alias_key(f) for f in input_fields(spec)}
    free = [str(c) for c in header if alias_key(str(c)) not in known]
    scored = []
    for name in fields:
        for column in free:
            score = max(_name_score(name, column), _value_score(spec, name, column, sample))
            if score >= SUGGEST_CUTOFF:
                scored.append((score, -fields.index(name), column, name))
    mapping: dict[str, str] = {}
    for _, _, column, name in sorted(scored, reverse=True):
        if column not in mapping and name not in mapping.values():
            mapping[column] = name
    return {c: mapping[c] for c in free if c in mapping}


def _name_score(field: str, column: str) -> float:
    want, have = alias_key(field), alias_key(column)
    if have.endswith(" " + want) or have.startswith(want + " "):
        return 0.9  # 'Order Status', 'status code'
    ratio = difflib.SequenceMatcher(None, want, have).ratio()
    return ratio if ratio >= FIELD_CUTOFF else 0.0  # as misspelt columns are told: 'order_date' is not order_id


def _value_score(spec: PolicySpec, field: str, column: str, sample: pd.DataFrame | None) -> float:
    if sample is None or column not in sample.columns:
        return 0.0
    values = [v for v in sample[column].astype(str) if v.strip()]
    if not values:
        return 0.0
    fact = spec.facts.get(field)
    if fact is not None and fact.type == "enum":
        hits = sum(alias_key(v) in fact.aliases for v in values)
        return 0.95 if hits / len(values) >= VALUE_SHARE else 0.0
    if fact is None and _name_score(field, column) >= 0.5:  # a timestamp column with a name somewhat like it
        stamps = sum(_is_timestamp(v) for v in values)
        return 0.8 if stamps / len(values) >= VALUE_SHARE else 0.0
    return 0.0


def _is_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True
