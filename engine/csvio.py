"""Stream a CSV of orders through the batch path into an output CSV that appears only when complete."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import socket
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .batch import OUTPUT_COLUMNS, check_strict_columns, evaluate_frame, input_fields, resolve_columns, unknown_columns
from .compiler import CompiledPolicy
from .errors import InputError

DEFAULT_CHUNKSIZE = 100_000
# A CSV wider than this is refused from its header line alone: pandas spends seconds per 100,000 columns
# before a single row is read, and nothing in a policy reads more than a few dozen.
DEFAULT_MAX_COLUMNS = 1_000
ENV_MAX_COLUMNS = "CANCEL_RULES_MAX_COLUMNS"
# A spreadsheet runs a text cell starting with one of these as a formula (OWASP: CSV injection); such a cell is
# written with a leading ' unless it is a plain number such as -2 or +1.5e3 (ASCII digits, as RE2 reads \d).
FORMULA_STARTS = "=+-@\t\r"
_NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
_RISKY_BYTE = np.zeros(256, dtype=bool)
_RISKY_BYTE[[ord(c) for c in FORMULA_STARTS]] = True


def _reader(source: str | Path | IO, chunksize: int | None):
    # Text, no NA guessing: an empty cell is 'not given' and the text 'NaN' is a bad value, as in decide().
    return pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=chunksize,
                       index_col=False)


def max_columns_from_env(environ: Mapping[str, str] | None = None) -> int:
    """CANCEL_RULES_MAX_COLUMNS, or the default; raises ValueError naming the variable."""
    text = (os.environ if environ is None else environ).get(ENV_MAX_COLUMNS, "").strip()
    if not text:
        return DEFAULT_MAX_COLUMNS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{ENV_MAX_COLUMNS} must be a positive integer, got {text!r}")
    return value


def check_width(header: list[str], source: str, max_columns: int) -> None:
    """Refuse a header wider than max_columns: checked before anything else reads the file."""
    if len(header) > max_columns:
        raise InputError(source, f"{len(header):,} columns; at most {max_columns:,} are read "
                                 f"(--max-columns or {ENV_MAX_COLUMNS})")


def check_repeated(header: list[str], fields: list[str], source: str) -> None:
    """A field the policy reads must be one column: refuse it repeated (pandas would read 'name.1')."""
    seen: set[str] = set()
    repeated = set()
    for name in header:
        if name in seen:
            repeated.add(name)
        seen.add(name)
    repeated = sorted(repeated & set(fields))
    if repeated:
        raise InputError(source, f"column {repeated[0]!r} appears more than once", repeated)


def read_orders(source: str | Path | IO, max_columns: int | None = None) -> pd.DataFrame:
    """A CSV of orders as text columns (UTF-8 with or without BOM); wider than max_columns is refused."""
    limit = max_columns_from_env() if max_columns is None else max_columns
    if isinstance(source, (str, Path)):
        check_width(read_header(Path(source)), str(source), limit)
    elif source.seekable():
        check_width(_peek_header(source), str(getattr(source, "name", "input")), limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a row longer than the header
            return _reader(source, None)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.ParserWarning,
            pd.errors.EmptyDataError) as exc:
        raise InputError(str(getattr(source, "name", source) if not isinstance(source, (str, Path)) else source),
                         _reason(exc)) from None


def _reason(exc: Exception) -> str:
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


@dataclass
class Summary:
    rows: int = 0
    actions: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    error_rows: dict[str, list[int]] = field(default_factory=dict)  # reason -> first row numbers (1-based)
    seconds: float = 0.0
    unknown_columns: dict[str, str | None] = field(default_factory=dict)  # column -> the field it resembles

    def add(self, out: pd.DataFrame, first_row: int) -> None:
        self.rows += len(out)
        self.actions.update(out["action"].dropna().tolist())
        self.rules.update(out["rule_id"].dropna().tolist())
        bad = out["error"].notna().to_numpy()
        for offset, reason in zip(bad.nonzero()[0], out["error"][bad]):
            self.errors[reason] += 1
            rows = self.error_rows.setdefault(reason, [])
            if len(rows) < 3:
                rows.append(first_row + int(offset))

    def __str__(self) -> str:
        rate = self.rows / self.seconds if self.seconds else 0.0
        lines = [f"{self.rows} orders in {self.seconds:.2f} s ({rate:,.0f} orders/s); "
                 f"{self.rows - sum(self.errors.values())} decided, {sum(self.errors.values())} with errors"]
        lines += ["by action:"] + [f"  {a:<26} {n}" for a, n in self.actions.most_common()]
        lines += ["by rule:"] + [f"  {r:<32} {n}" for r, n in self.rules.most_common()]
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

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "actions": dict(self.actions), "rules": dict(self.rules),
                "errors": dict(self.errors), "seconds": self.seconds, "unknown_columns": dict(self.unknown_columns)}


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
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if pa.types.is_large_string(arr.type) else np.int32)
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
        if any(new is not old for new, old in zip(defused, chunks)):
            column, changed = pa.chunked_array(defused), True
        columns.append(column)
    # One new table at the end: replacing columns one at a time copies the schema each time (quadratic).
    return pa.Table.from_arrays(columns, names=table.column_names) if changed else table


def _write(out: pd.DataFrame, sink: IO[bytes], raw: bool = False) -> None:
    """The rows of out (no header) as CSV; text cells defused unless raw."""
    _write_table(pa.Table.from_pandas(out, preserve_index=False), sink, raw)


def _write_table(table: pa.Table, sink: IO[bytes], raw: bool) -> None:
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
    sink.write(_header_line([str(c) for c in frame.columns], raw))
    _write_table(table, sink, raw)
    return sink.getvalue()


def _peek_header(handle: IO) -> list[str]:
    """The header row of an open file, which is left where it was."""
    start = handle.tell()
    try:
        text = handle if isinstance(handle, io.TextIOBase) else io.TextIOWrapper(handle, "utf-8-sig", newline="")
        header = next(csv.reader(text), [])
        if text is not handle:
            text.detach()
    except (UnicodeDecodeError, csv.Error):
        header = []  # pandas reports it with the file's own words
    handle.seek(start)
    return header


def read_header(source: Path) -> list[str]:
    """The header row exactly as written (pandas would rename repeated names to 'name.1')."""
    try:
        with source.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(str(source), _reason(exc)) from None
    if not header:
        raise InputError(str(source), "the file is empty (no header row)")
    return header


def evaluate_csv(compiled: CompiledPolicy, source: str | Path, target: str | Path, as_of: datetime,
                 chunksize: int = DEFAULT_CHUNKSIZE, progress: Callable[[int, float], None] | None = None,
                 max_columns: int = DEFAULT_MAX_COLUMNS, raw: bool = False, strict: bool = False) -> Summary:
    """Evaluate every row of source into target; target is replaced only once the whole file is written.

    Text cells a spreadsheet would run as formulas get a leading ' unless raw. Columns the policy does not read
    are kept (and listed in the summary); with strict, one that looks like a misspelt field stops the run."""
    started = time.perf_counter()
    source, target = Path(source), Path(target)
    if chunksize < 1:
        raise InputError(str(source), f"chunk size must be at least 1, got {chunksize}")
    if not target.parent.is_dir():
        raise InputError(str(target), f"output folder does not exist: {target.parent}")
    header = read_header(source)
    check_width(header, str(source), max_columns)
    check_repeated(header, input_fields(compiled.spec), str(source))
    resolve_columns(compiled.spec, header, str(source))  # a missing column stops the run before any output
    if strict:
        check_strict_columns(compiled.spec, header, str(source))
    size = source.stat().st_size
    summary = Summary(unknown_columns=unknown_columns(compiled.spec, header))
    remove_stale(target)
    temp = temp_path(target, "part")
    try:
        sink = open(temp, "wb")
    except OSError as exc:
        raise InputError(str(target), _write_reason(exc)) from None
    try:
        with _open_input(source) as handle, sink, warnings.catch_warnings():
            # A row longer than the header would be cut short (index_col=False) or shift every column
            # (pandas' default): make it an error instead.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            sink.write(_header_line(header + list(OUTPUT_COLUMNS), raw))
            for chunk in _chunks(handle, chunksize, source):
                chunk.index = range(summary.rows, summary.rows + len(chunk))
                out = evaluate_frame(compiled, chunk, as_of, source=str(source))
                _write(out, sink, raw)
                summary.add(out, summary.rows + 1)
                if progress:
                    progress(summary.rows, handle.tell() / size if size else 1.0)
        os.replace(temp, target)
    except OSError as exc:  # the input's failures are InputErrors by now: a write, the flushing close, the rename
        temp.unlink(missing_ok=True)
        raise InputError(str(target), _write_reason(exc)) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _open_input(source: Path) -> IO[bytes]:
    try:
        return source.open("rb")
    except OSError as exc:
        raise InputError(str(source), _reason(exc)) from None


def _chunks(handle: IO[bytes], chunksize: int, source: Path) -> Iterator[pd.DataFrame]:
    """The input's chunks of text columns; a failure to read them is the input's."""
    try:
        yield from _reader(handle, chunksize)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise InputError(str(source), _reason(exc)) from None


def _header_line(names: list[str], raw: bool = False) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(names if raw else [defuse(n) for n in names])
    return text.getvalue().encode("utf-8")


def terminal_progress(stream: IO[str] = sys.stderr) -> Callable[[int, float], None] | None:
    """A one-line progress bar on a terminal; nothing when stderr is a file or pipe."""
    if not stream.isatty():
        return None

    def show(rows: int, fraction: float) -> None:
        filled = int(30 * min(fraction, 1.0))
        stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} {rows:,} rows")
        stream.flush()

    return show


# ---------------------------------------------------------------------------------------------------------
# Temp files: an output is written under a temp name next to it, then renamed. The name says which process
# on which machine writes it, so a later run can remove what a killed run (SIGKILL, power loss) left.

TEMP_KINDS = ("part", "parts", "old")  # the output file being written, a Dask staging folder, a replaced folder
_TEMP_TAIL = re.compile(r"(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9_.-]+)\.(?:" + "|".join(TEMP_KINDS) + ")")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"


def temp_path(target: Path, kind: str) -> Path:
    """This process's temp name for target: `.NAME.<pid>@<host>.<kind>` in target's folder."""
    return target.with_name(f".{target.name}.{os.getpid()}@{_host()}.{kind}")


def _write_reason(exc: OSError) -> str:
    return f"cannot write: {exc.strerror or exc}"


def _process_gone(pid: int) -> bool:
    """Whether no process of this pid runs on this machine (a zombie is gone too). Only a sure 'gone' counts:
    a pid reused by another process keeps the dead run's temp until that process ends as well."""
    if pid == os.getpid() or os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # another user's process, or not a pid at all
        return False
    try:  # /proc/<pid>/stat: "pid (name) state ...", the state is Z for a process nobody waited for
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def remove_temp(path: Path) -> None:
    """Remove a temp file or folder, never following a link. A folder is emptied until it is gone: a Dask
    worker still running a killed run's task may create a file in it while it is being removed."""
    for _ in range(20):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.05)


def remove_stale(target: Path) -> list[Path]:
    """Remove the temp files and folders that runs writing target left when they were killed: those named
    for this machine and a process that is gone. Another machine's (a shared folder) are kept: its pids
    cannot be checked from here."""
    prefix, host, removed = f".{target.name}.", _host(), []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_TAIL.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
        if match and match["host"] == host and _process_gone(int(match["pid"])):
            remove_temp(target.parent / name)
            removed.append(target.parent / name)
    return removed
