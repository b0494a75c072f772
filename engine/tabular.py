"""Tables in and out: the decision columns, how CSVs of orders are read, how rows are written (formulas defused),
and the run summary."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

OUTPUT_COLUMNS = ("action", "rule_id", "message", "error", "policy_version")  # added to every row, in this order
# A spreadsheet runs a text cell starting with one of these as a formula (OWASP: CSV injection); such a cell is
# written with a leading ' unless it is a plain number such as -2 or +1.5e3 (ASCII digits, as RE2 reads \d).
FORMULA_STARTS = "=+-@\t\r"
_NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
_RISKY_BYTE = np.zeros(256, dtype=bool)
_RISKY_BYTE[[ord(c) for c in FORMULA_STARTS]] = True
# How every CSV of orders is read: text columns, no NA guessing (an empty cell is 'not given' and the text 'NaN' is
# a bad value, as in decide()), UTF-8 with or without BOM, and no column taken as the index.
CSV_READ_OPTIONS: Mapping[str, Any] = {"dtype": str, "keep_default_na": False, "encoding": "utf-8-sig",
                                       "index_col": False}


def read_csv_text(source: Any, **options: Any) -> Any:
    """pd.read_csv with CSV_READ_OPTIONS (a DataFrame, or with chunksize an iterator of them)."""
    return pd.read_csv(source, **{**CSV_READ_OPTIONS, **options})


class NotArrowReadable(Exception):
    """A CSV the Arrow reader would not read exactly as pandas does (an error, or a byte that the two parsers
    may read differently): its caller reads it with read_csv_text instead, from the start."""


# Arrow reads the input in blocks of this many bytes (about 12,000 orders): memory stays flat.
ARROW_BLOCK_BYTES = 1 << 20
_MARK = "\x01"  # the cells of the row appended after the last byte: read back intact only if every quote closed


class _Sentinel(io.RawIOBase):
    """A binary input that raises NotArrowReadable on a NUL byte or a CR not followed by LF (the parsers differ
    there), and that ends with one row of marks (so an open quote at the end of the file shows)."""

    def __init__(self, handle: IO[bytes], tail: bytes) -> None:
        self.handle, self.tail, self.ended = handle, tail, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = b"" if self.ended else self.handle.read(max(1, len(buffer) - 1))
        if data.endswith(b"\r"):  # a CRLF cut between two reads is still a CRLF
            data += self.handle.read(1)
        if data:
            if b"\0" in data or data.count(b"\r") != data.count(b"\r\n") or data.endswith(b"\r"):
                raise NotArrowReadable("a NUL byte or a lone CR")
        else:  # the input is done: the row of marks, as much of it as fits each time
            self.ended = True
            data, self.tail = self.tail[: len(buffer)], self.tail[len(buffer):]
        buffer[: len(data)] = data
        return len(data)


def arrow_text_tables(handle: IO[bytes], header: list[str], chunksize: int, delimiter: str = ","
                      ) -> Iterator[pa.Table]:
    """The rows of a CSV (fields separated by delimiter) as tables of chunksize string columns, read by Arrow
    exactly as read_csv_text(sep=delimiter) reads them; raises NotArrowReadable (possibly after some chunks) where
    it cannot promise that."""
    if len(header) < 2 or len(set(header)) < len(header) or "" in header:
        # pandas skips a line of spaces in a one-column file and renames a repeated or empty column name
        raise NotArrowReadable("a header Arrow reads otherwise")
    tail = ("\n" + delimiter.join([_MARK] * len(header)) + "\n").encode()
    try:
        reader = pacsv.open_csv(
            io.BufferedReader(_Sentinel(handle, tail), ARROW_BLOCK_BYTES),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=ARROW_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()),
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
        if reader.schema.names != header:
            raise NotArrowReadable("a header Arrow reads otherwise")
        pending: list[pa.RecordBatch] = []
        rows = 0
        for batch in reader:
            pending.append(batch)
            rows += batch.num_rows
            while rows > chunksize:  # the last row may be the marks: always keep one back
                table = pa.Table.from_batches(pending)
                chunk = table.slice(0, chunksize)
                pending, rows = table.slice(chunksize).to_batches(), rows - chunksize
                del table
                yield chunk
                del chunk  # its Arrow buffers go as soon as the caller is done with them
    except pa.ArrowInvalid as exc:  # a short row, bad UTF-8, ...: pandas words it (or reads it its own way)
        raise NotArrowReadable(str(exc)) from None
    table = pa.Table.from_batches(pending, schema=reader.schema)
    if not rows or table.slice(rows - 1).to_pylist()[0] != dict.fromkeys(header, _MARK):
        raise NotArrowReadable("an open quote at the end of the file")
    for start in range(0, rows - 1, chunksize):
        yield table.slice(start, min(chunksize, rows - 1 - start))


def read_reason(exc: Exception) -> str:
    """Why a CSV could not be read, in one line (the file named by the caller)."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "the file is empty (no header row)"
    if isinstance(exc, pd.errors.ParserWarning):
        return "malformed CSV: a row has more fields than the header"
    if isinstance(exc, csv.Error):
        return f"malformed CSV: {exc}"
    return f"malformed CSV: {str(exc).strip().splitlines()[-1]}"


def write_reason(exc: OSError) -> str:
    """Why an output could not be written, in one line."""
    return f"cannot write: {exc.strerror or exc}"


Coded = tuple[np.ndarray, list[Any]]  # a column as codes into its values, -1 for none


@dataclass
class Summary:
    """What a batch run decided: counts by action, rule and error (with the first rows of each error)."""

    rows: int = 0
    actions: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    error_rows: dict[str, list[int]] = field(default_factory=dict)  # reason -> first row numbers (1-based)
    seconds: float = 0.0
    unknown_columns: dict[str, str | None] = field(default_factory=dict)  # column -> the field it resembles
    rules_declared: tuple[str, ...] = ()  # the policy's rules: those with no hit are listed too

    def add(self, out: pd.DataFrame, first_row: int) -> None:
        """Add the rows of a frame with the decision columns (first_row: the 1-based number of its first row)."""
        actions, rules, errors = ((codes, list(values)) for codes, values in
                                  (pd.factorize(out[name].to_numpy()) for name in ("action", "rule_id", "error")))
        self.add_codes(len(out), actions, rules, errors, first_row)

    def add_codes(self, rows: int, actions: Coded, rules: Coded, errors: Coded, first_row: int) -> None:
        """Add rows given as codes into values (-1: none) of their action, rule and error; an error text appears
        once in its values."""
        self.rows += rows
        _count(self.actions, *actions)
        _count(self.rules, *rules)
        bad = np.flatnonzero(errors[0] >= 0)
        if not len(bad):
            return
        codes, firsts = pd.factorize(errors[0][bad])  # each reason's code, in order of first appearance
        counts = np.bincount(codes, minlength=len(firsts))
        order = np.argsort(codes, kind="stable")  # the bad rows of each reason together, in row order
        starts = np.searchsorted(codes[order], np.arange(len(firsts)))
        for k, code in enumerate(firsts.tolist()):
            reason = errors[1][code]
            self.errors[reason] += int(counts[k])
            rows_of = self.error_rows.setdefault(reason, [])
            take = min(3 - len(rows_of), int(counts[k]))
            rows_of.extend(first_row + int(offset) for offset in bad[order[starts[k]: starts[k] + max(take, 0)]])

    def __str__(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        lines = [f"{self.rows} orders in {self.seconds:.2f} s ({rate:,.0f} orders/s); "
                 f"{self.rows - sum(self.errors.values())} decided, {sum(self.errors.values())} with errors"]
        lines += ["by action:"] + [f"  {a:<26} {n}" for a, n in self.actions.most_common()]
        lines += ["by rule:"] + [f"  {r:<32} {n}" for r, n in self.rules.most_common()]
        idle = self.zero_hit_rules()
        if idle:
            lines.append(f"rules with no hit ({len(idle)}): " + ", ".join(idle))
        if self.errors:
            lines.append("errors:")
            for reason, n in self.errors.most_common():
                rows = ", ".join(map(str, self.error_rows[reason]))
                lines.append(f"  {n} x {reason} (rows {rows}{', ...' if n > 3 else ''})")
        if self.unknown_columns:
            names = list(self.unknown_columns)
            lines.append("columns not read by the policy, kept as they are: " + ", ".join(names[:20])
                         + (f", ... ({len(names)} in all)" if len(names) > 20 else ""))
            lines += [f"warning: column {col!r} is not read by the policy (did you mean {hint!r}?)"
                      for col, hint in self.unknown_columns.items() if hint]
        return "\n".join(lines)

    def zero_hit_rules(self) -> list[str]:
        """The declared rules that decided no row, in the order declared."""
        return [r for r in self.rules_declared if not self.rules[r]]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "actions": dict(self.actions), "rules": dict(self.rules),
                "errors": dict(self.errors), "seconds": self.seconds, "unknown_columns": dict(self.unknown_columns),
                "zero_hit_rules": self.zero_hit_rules()}


def _count(counter: Counter, codes: np.ndarray, values: list[Any]) -> None:
    """Count the values of the codes (-1 left out) in order of first appearance, as row by row would; several
    codes may share a value."""
    present = codes[codes >= 0]
    counts = np.bincount(present, minlength=len(values))
    for code in pd.unique(present).tolist():
        counter[values[code]] += int(counts[code])


def merge_summaries(parts: list[Summary]) -> Summary:
    """Partition summaries, in partition order, as one: row numbers become the row's place in the whole."""
    total = Summary()
    for part in parts:
        offset = total.rows
        total.rows += part.rows
        total.actions.update(part.actions)
        total.rules.update(part.rules)
        total.errors.update(part.errors)
        for reason, rows in part.error_rows.items():
            kept = total.error_rows.setdefault(reason, [])
            kept.extend(offset + r for r in rows[: max(0, 3 - len(kept))])
    return total


def defuse(text: str) -> str:
    """A text cell as a spreadsheet may open it safely: a formula gets a leading ', anything else stays."""
    if text and text[0] in FORMULA_STARTS and not re.fullmatch(_NUMBER, text):
        return "'" + text
    return text


def _defuse_strings(arr: pa.Array) -> pa.Array:
    """defuse over a string array, vectorized: the first byte of every cell is read with numpy, and only the
    cells starting with a risky byte are checked for being numbers."""
    data = arr.buffers()[2]
    if len(arr) == 0 or data is None or data.size == 0:
        return arr
    offsets: npt.NDArray[np.signedinteger[Any]] = np.frombuffer(
        arr.buffers()[1], dtype=np.int64 if pa.types.is_large_string(arr.type) else np.int32)
    starts, ends = offsets[arr.offset: arr.offset + len(arr)], offsets[arr.offset + 1: arr.offset + len(arr) + 1]
    buffer = np.frombuffer(data, dtype=np.uint8)
    risky = _RISKY_BYTE[buffer[np.minimum(starts, buffer.size - 1)]] & (ends > starts)  # an empty cell is safe
    if not risky.any():
        return arr
    if arr.null_count:
        risky &= arr.is_valid().to_numpy(zero_copy_only=False)
    cells = np.flatnonzero(risky)
    number = pc.match_substring_regex(arr.take(pa.array(cells)), f"^{_NUMBER}$").fill_null(False)
    risky[cells[number.to_numpy(zero_copy_only=False)]] = False
    if not risky.any():
        return arr
    quoted = pc.binary_join_element_wise(pa.scalar("'", arr.type), arr, pa.scalar("", arr.type))
    return pc.if_else(pa.array(risky), quoted, arr)


def _defuse_chunk(arr: pa.Array) -> pa.Array:
    kind = arr.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _defuse_strings(arr)
    if pa.types.is_dictionary(kind):  # a categorical column: its few distinct values
        return pa.DictionaryArray.from_arrays(arr.indices, _defuse_chunk(arr.dictionary))
    if pa.types.is_string_view(kind):
        return _defuse_strings(arr.cast(pa.large_string()))
    return arr  # numbers, timestamps, booleans: written as such, never as formulas


def _defused(table: pa.Table) -> pa.Table:
    columns, changed = [], False
    for column in table.columns:
        chunks = column.chunks  # fresh wrappers at each access: compared with these very objects
        defused = [_defuse_chunk(chunk) for chunk in chunks]
        if any(new is not old for new, old in zip(defused, chunks, strict=True)):
            column, changed = pa.chunked_array(defused), True
        columns.append(column)
    # One new table at the end: replacing columns one at a time copies the schema each time (quadratic).
    return pa.Table.from_arrays(columns, names=table.column_names) if changed else table


def write_rows(out: pd.DataFrame, sink: IO[bytes], raw: bool = False) -> None:
    """The rows of out (no header) as CSV; text cells defused unless raw."""
    write_table(pa.Table.from_pandas(out, preserve_index=False), sink, raw)


def write_table(table: pa.Table, sink: IO[bytes], raw: bool = False) -> None:
    """The rows of table (no header) as CSV; text cells defused unless raw."""
    # pyarrow writes CSV several times faster than DataFrame.to_csv; the header is written apart.
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    pacsv.write_csv(table if raw else _defused(table), sink, write_options=options)


def frame_csv(frame: pd.DataFrame, raw: bool = False) -> bytes:
    """A whole frame as CSV text, header first, by the same writer as the files; any object column is taken
    (a column mixing numbers and text is written as text)."""
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed types, or an int past 64 bits
        text = frame.copy()
        for i, dtype in enumerate(text.dtypes):
            if pd.api.types.is_object_dtype(dtype):
                text.isetitem(i, [None if pd.api.types.is_scalar(v) and pd.isna(v) else str(v)
                                  for v in text.iloc[:, i]])
        table = pa.Table.from_pandas(text, preserve_index=False)
    sink = io.BytesIO()
    sink.write(header_line([str(c) for c in frame.columns], raw))
    write_table(table, sink, raw)
    return sink.getvalue()


def header_line(names: list[str], raw: bool = False) -> bytes:
    """A CSV header line, its names defused unless raw."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(names if raw else [defuse(n) for n in names])
    return text.getvalue().encode("utf-8")
