"""Normalize a DataFrame of orders column by column: the vectorized twin of facts.normalize.

Each fact becomes one array: enum codes (NOT_GIVEN, INVALID) or floats (NaN: not given); a row with any bad
field is marked bad (its error is then worded by the per-row path). Each distinct spelling of a column is
parsed once, exactly as the per-row path parses it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .facts import elapsed, enum_value, is_blank, number_value
from .model import INVALID, MAX_NUMBER, NOT_GIVEN, TIME_UNITS, FactSpec, PolicySpec


@dataclass
class Normalized:
    """Normalized fact columns: enum codes (NOT_GIVEN, INVALID) and floats (NaN: not given), plus bad rows."""

    values: dict[str, np.ndarray]
    bad: np.ndarray


def _missing(raw: Any) -> bool:
    """A blank, or one of pandas' missing markers (in a frame NaN means 'not given')."""
    return is_blank(raw) or _missing_marker(raw)


def _missing_marker(value: Any) -> bool:
    """NaN, None, NA or NaT (a list or a dict is a value, never missing)."""
    return pd.api.types.is_scalar(value) and not isinstance(value, str) and pd.isna(value)


class _Own:
    """Stands for one unhashable cell in factorize: equal to nothing else, so judged on its own."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _factorize(col: pd.Series) -> tuple[np.ndarray, Any]:
    """(codes, distinct values) of a column; a cell holding a list or a dict is a distinct value of its own
    (pandas cannot hash it, and one such cell must not fail the whole batch)."""
    try:
        return pd.factorize(col, use_na_sentinel=False)
    except TypeError:
        keys = np.empty(len(col), dtype=object)
        for i, value in enumerate(col.to_numpy(dtype=object)):
            try:
                hash(value)
                keys[i] = value
            except TypeError:
                keys[i] = _Own(value)
        codes, uniques = pd.factorize(keys, use_na_sentinel=False)
        return codes, [u.value if isinstance(u, _Own) else u for u in uniques]


def _blank(col: pd.Series) -> np.ndarray:
    """Missing markers and empty or all-space text."""
    return (col.isna() | (col.astype("string").str.strip() == "")).to_numpy(dtype=bool, na_value=True)


def _enum_column(fact: FactSpec, col: pd.Series) -> np.ndarray:
    codes, uniques = _factorize(col)
    index = {v: i for i, v in enumerate(fact.values)}
    table = np.empty(len(uniques) + 1, dtype=np.int64)
    for i, raw in enumerate(uniques):
        if _missing(raw):
            value = fact.default
            table[i] = INVALID if value is None and fact.required else index.get(value, NOT_GIVEN)
        else:
            code, problem = enum_value(fact, raw)
            table[i] = INVALID if problem or code is None else index[code]
    return table[codes]


def _number_column(fact: FactSpec, col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values with NaN where not given, bad mask)."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        blank = np.isnan(values)
        with np.errstate(invalid="ignore"):
            bad = np.isinf(values) | (np.abs(values) > MAX_NUMBER)
            if fact.min is not None:
                bad |= values < fact.min
            if fact.max is not None:
                bad |= values > fact.max
    else:  # text: parse each distinct spelling once, exactly as the per-row path does
        codes, uniques = _factorize(col)
        parsed = np.full(len(uniques), np.nan)
        unique_blank = np.zeros(len(uniques), dtype=bool)
        unique_bad = np.zeros(len(uniques), dtype=bool)
        for i, raw in enumerate(uniques):
            if _missing(raw):
                unique_blank[i] = True
                continue
            number, problem = number_value(fact, raw)
            unique_bad[i] = problem is not None
            parsed[i] = np.nan if problem else number
        values, blank, bad = parsed[codes], unique_blank[codes], unique_bad[codes]
        if col.dtype == object:  # factorize files True under 1.0; the per-row path rejects booleans
            is_bool = np.fromiter((isinstance(v, (bool, np.bool_)) for v in col), dtype=bool, count=len(col))
            bad |= is_bool
            values = np.where(is_bool, np.nan, values)
            blank &= ~is_bool
    return np.where(bad | blank, np.nan, values), bad  # defaults come after the timestamp, in normalize_frame


# The plain ISO 8601 stamps: YYYY-MM-DD, optionally [T ]HH:MM[:SS[.f{1,6}]] then Z or +-HH:MM (ASCII digits, every
# part in range, a date that exists). Both Arrow and datetime.fromisoformat (the per-row parser) read them as the same
# instant, so they are parsed vectorized, byte by byte; every other text goes through the per-row parser itself.
_CORE_WIDTHS = frozenset({10, 16, 19, 21, 22, 23, 24, 25, 26})  # date, +time, +seconds, +1..6 fraction digits
_MAX_WIDTH = 32  # the longest plain stamp: 26 + an offset of 6
_EXACT_MICROS = 2**53  # below this a count of microseconds is an exact float: one rounding, as timedelta divides


def _arrow_texts(col: pd.Series) -> pa.Array | None:
    """The column's text cells as an Arrow string array (null where not text), or None when it holds no text."""
    if not len(col) or not pd.api.types.is_string_dtype(col.dtype):
        return None
    if col.dtype == object:  # a date object, a number, a list: never taken for text
        is_text = np.fromiter((isinstance(v, str) for v in col), dtype=bool, count=len(col))
        texts = pa.array(np.where(is_text, col.to_numpy(dtype=object), None), type=pa.large_string())
    else:
        texts = pa.array(col.array, type=pa.large_string(), from_pandas=True)  # large: no 2 GB limit, no copy
    return texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts


def _plain_micros(texts: pa.Array, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(plain mask, microseconds since the epoch where plain) of texts without nulls, of these byte lengths: stamps
    of one width at a time are a matrix of bytes."""
    plain = np.zeros(len(texts), dtype=bool)
    micros = np.zeros(len(texts), dtype=np.int64)
    widths = np.minimum(widths, _MAX_WIDTH + 1)
    counts = np.bincount(widths, minlength=_MAX_WIDTH + 2)
    for width in np.flatnonzero(counts[10:_MAX_WIDTH + 1]).tolist():
        width += 10
        if counts[width] == len(texts) - counts[0]:  # every text given has this width: its bytes, as they are
            rows, same = np.flatnonzero(widths == width), texts
        else:
            rows = np.flatnonzero(widths == width)
            same = texts.take(pa.array(rows))
        offsets = np.frombuffer(same.buffers()[1], dtype=np.int64)
        first = int(offsets[same.offset])
        block = np.frombuffer(same.buffers()[2], dtype=np.uint8)[first: first + len(rows) * width]
        plain[rows], micros[rows] = _stamps(block.reshape(len(rows), width))
    return plain, micros


def _stamps(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(plain mask, microseconds) of stamps of one width, one per row of a matrix of bytes; rows are told apart by
    how they end (Z, an offset, nothing), which fixes where every part lies."""
    width = block.shape[1]
    ok = np.zeros(len(block), dtype=bool)
    micros = np.zeros(len(block), dtype=np.int64)
    zulu = block[:, -1] == ord("Z")
    signed = ~zulu & (width >= 16)
    if width >= 16:
        signed &= ((block[:, -6] == ord("+")) | (block[:, -6] == ord("-"))) & (block[:, -3] == ord(":"))
    for which, end in ((~zulu & ~signed, ""), (zulu, "Z"), (signed, "+")):
        core = width - len(end) - (5 if end == "+" else 0)
        rows = np.flatnonzero(which)
        if not len(rows) or core not in _CORE_WIDTHS or (core == 10 and end):
            continue  # an offset needs a time of day
        every = len(rows) == len(block)  # rows of one kind: slices of the block, no copy
        for at in range(0, len(rows), _STAMP_ROWS):  # bounded temporaries, however many rows
            some = slice(at, at + _STAMP_ROWS) if every else rows[at: at + _STAMP_ROWS]
            ok[some], micros[some] = _stamps_read(block[some], _layout(core, width, end))
    return ok, micros


_STAMP_ROWS = 1 << 16
_FIELDS = ("year", "month", "day", "hour", "minute", "second", "micro", "offset_hour", "offset_minute")
_LEAST = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0])
_MOST = np.array([9999, 12, 31, 23, 59, 59, 999_999, 23, 59])


class _Layout(NamedTuple):
    """Where the parts of a stamp of one shape lie."""

    columns: np.ndarray  # the digits' columns, field after field in _FIELDS order
    fields: tuple[int, ...]  # the fields read (positions in _FIELDS)
    ends: tuple[int, ...]  # where each field's digits end in columns
    separator_at: np.ndarray  # the other bytes' columns
    separators: np.ndarray  # and their bytes ('T' for a 'T' or a space)
    micro_scale: int  # ".5" is half a second: the fraction's digits times this are microseconds
    offset: bool  # ends with +HH:MM or -HH:MM


@functools.lru_cache(maxsize=64)
def _layout(core: int, width: int, end: str) -> _Layout:
    spans = {"year": (0, 4), "month": (5, 7), "day": (8, 10)}
    separators = {4: "-", 7: "-"}
    if core > 10:
        spans |= {"hour": (11, 13), "minute": (14, 16)}
        separators |= {10: "T", 13: ":"}
    if core >= 19:
        spans["second"] = (17, 19)
        separators[16] = ":"
    if core >= 21:
        spans["micro"] = (20, core)
        separators[19] = "."
    if end == "Z":
        separators[core] = "Z"
    elif end == "+":
        spans |= {"offset_hour": (core + 1, core + 3), "offset_minute": (core + 4, core + 6)}
        separators[core + 3] = ":"
    return _Layout(np.array([c for a, b in spans.values() for c in range(a, b)]),
                   tuple(_FIELDS.index(name) for name in spans),
                   tuple(np.cumsum([b - a for a, b in spans.values()]).tolist()),
                   np.array(list(separators)), np.array([ord(c) for c in separators.values()], dtype=np.uint8),
                   10 ** (26 - core) if core >= 21 else 1, end == "+")


def _stamps_read(part: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """(valid, microseconds since the epoch in UTC) of rows of one shape: digits where digits go, each part in
    range, a date that exists."""
    digits = np.ascontiguousarray((part[:, layout.columns] - np.uint8(ord("0"))).T)  # below '0' wraps past 9
    seps = part[:, layout.separator_at]
    time_mark = layout.separator_at == 10  # 'T' or a space
    seps[:, time_mark] = np.where(seps[:, time_mark] == ord(" "), ord("T"), seps[:, time_mark])
    ok = (digits < 10).all(axis=0) & (seps == layout.separators).all(axis=1)
    fields = np.zeros((len(_FIELDS), len(part)), dtype=np.int32)  # below 2**31 even from bytes that are no digits
    start = 0
    for field, end in zip(layout.fields, layout.ends, strict=True):
        value = fields[field]  # a view: summed in place, digit after digit
        for k in range(start, end):
            value *= 10
            value += digits[k]
        start = end
    ok &= ((fields >= _LEAST[:, None]) & (fields <= _MOST[:, None])).all(axis=0)
    year, month, day, hour, minute, second, micro, offset_hour, offset_minute = fields
    year, month = np.minimum(year, 9999), np.minimum(month, 12)  # in the tables' range, wherever not ok
    leap = _LEAP[year]
    ok &= day <= _MONTH_DAYS[leap * 13 + month]
    seconds = (_YEAR_START[year] + _MONTH_START[leap * 13 + month] + (day - 1)) * 86_400
    seconds += hour * 3600 + minute * 60 + second
    if layout.offset:  # the instant in UTC is the local time minus the offset
        seconds -= np.where(part[:, -6] == ord("-"), -60, 60) * (offset_hour * 60 + offset_minute)
    return ok, seconds * 1_000_000 + micro.astype(np.int64) * layout.micro_scale


def _calendar() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per year 0..9999: leap or not, days from 1970-01-01 to its first day; per (leap, month): days before the
    month and days in it (proleptic Gregorian, as datetime counts)."""
    years = np.arange(10_000)
    leap = ((years % 4 == 0) & ((years % 100 != 0) | (years % 400 == 0))).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(365 + leap[:-1])])
    days = np.array([[0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31],
                     [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]])
    before = np.concatenate([np.zeros((2, 1), dtype=np.int64), np.cumsum(days, axis=1)[:, :-1]], axis=1)
    return leap, starts - starts[1970], before.ravel(), days.ravel()  # (leap, month) at leap * 13 + month


_LEAP, _YEAR_START, _MONTH_START, _MONTH_DAYS = _calendar()


def _elapsed_column(fact: FactSpec, col: pd.Series, as_of: datetime, rows: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(elapsed time in the fact's unit with NaN where blank, bad mask) of a timestamp column's cells at rows (a
    mask; every cell when None)."""
    texts = _arrow_texts(col)
    if texts is not None and rows is not None:
        texts = texts.filter(pa.array(rows))
    n = len(col) if rows is None else int(np.count_nonzero(rows))
    values, bad, rest = np.full(n, np.nan), np.zeros(n, dtype=bool), np.arange(n)
    if texts is not None:
        lengths = pc.binary_length(texts)  # null where the cell is not text
        # A null slot may own bytes in Arrow's layout: without one the cells lie back to back.
        plain, micros = _plain_micros(pc.fill_null(texts, "") if texts.null_count else texts,
                                      lengths.fill_null(0).to_numpy(zero_copy_only=False))
        as_of_us = np.datetime64(as_of.astimezone(UTC).replace(tzinfo=None), "us").astype(np.int64)
        delta = as_of_us - micros
        # Whole microseconds divided once, as timedelta.total_seconds() does; a future stamp or one centuries
        # away (not an exact float) is left to the per-row parser.
        plain &= (delta >= 0) & (delta < _EXACT_MICROS)
        values = np.where(plain, delta / 1e6 / TIME_UNITS[fact.per], np.nan)
        rest = np.flatnonzero(~plain & (lengths.fill_null(1).to_numpy(zero_copy_only=False) > 0))  # '' is blank
    if len(rest):
        codes, uniques = _factorize(col.iloc[rest if rows is None else np.flatnonzero(rows)[rest]])
        parsed_rest = np.full(len(uniques), np.nan)
        unique_bad = np.zeros(len(uniques), dtype=bool)
        for i, raw in enumerate(uniques):
            if _missing(raw):
                continue
            amount_i, problem = elapsed(fact, raw, as_of)
            unique_bad[i] = problem is not None
            parsed_rest[i] = np.nan if problem else amount_i
        values[rest], bad[rest] = parsed_rest[codes], unique_bad[codes]
    return values, bad


def normalize_frame(spec: PolicySpec, df: pd.DataFrame, columns: Mapping[str, str], as_of: datetime
                    ) -> Normalized:
    bad = np.zeros(len(df), dtype=bool)
    values: dict[str, np.ndarray] = {}
    for name, fact in spec.facts.items():
        if fact.type == "string":
            if fact.required:
                col = df[columns[name]] if name in columns else pd.Series([None] * len(df))
                bad |= _blank(col)
            continue
        if fact.type == "enum":
            codes = _enum_column(fact, df[columns[name]]) if name in columns else \
                np.full(len(df), INVALID if fact.required else NOT_GIVEN if fact.default is None
                        else fact.values.index(fact.default), dtype=np.int64)
            bad |= codes == INVALID
            values[name] = codes
            continue
        if name in columns:
            number, number_bad = _number_column(fact, df[columns[name]])
        else:
            number, number_bad = np.full(len(df), np.nan), np.zeros(len(df), dtype=bool)
        if fact.from_timestamp is not None and fact.from_timestamp in columns:
            # The number wins when both are given; the timestamp fills the rows where it is blank.
            fill = np.isnan(number) & ~number_bad
            stamp, stamp_bad = _elapsed_column(fact, df[columns[fact.from_timestamp]], as_of, fill)
            number[fill] = stamp
            number_bad[fill] |= stamp_bad
        blank = np.isnan(number) & ~number_bad  # neither the number nor its timestamp given
        if fact.default is not None:
            number[blank] = float(fact.default)
        elif fact.required:
            number_bad |= blank
        bad |= number_bad
        values[name] = number
    return Normalized(values, bad)


def frame_orders(df: pd.DataFrame, columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """Rows as orders keyed by field name; pandas' missing markers (NaN, None, NA, NaT) mean 'not given'."""
    names = list(columns)
    table = df[[columns[n] for n in names]].to_numpy(dtype=object)
    return [{n: None if _missing_marker(v) else v for n, v in zip(names, row, strict=True)} for row in table]
