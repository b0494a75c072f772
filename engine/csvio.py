"""Stream a CSV of orders through the batch path into an output CSV that appears only when complete."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .batch import evaluate_frame, resolve_columns
from .compiler import CompiledPolicy
from .errors import InputError

DEFAULT_CHUNKSIZE = 100_000


def _reader(source: str | Path | IO, chunksize: int | None):
    # Text, no NA guessing: an empty cell is 'not given' and the text 'NaN' is a bad value, as in decide().
    return pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=chunksize,
                       skipinitialspace=False)


def read_orders(source: str | Path | IO) -> pd.DataFrame:
    """A CSV of orders as text columns (UTF-8 with or without BOM)."""
    try:
        return _reader(source, None)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(str(source), _reason(exc)) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, pd.errors.EmptyDataError):
        return "the file is empty (no header row)"
    return f"malformed CSV: {str(exc).strip().splitlines()[-1]}"


@dataclass
class Summary:
    rows: int = 0
    actions: Counter = field(default_factory=Counter)
    rules: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    error_rows: dict[str, list[int]] = field(default_factory=dict)  # reason -> first row numbers (1-based)
    seconds: float = 0.0

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
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "actions": dict(self.actions), "rules": dict(self.rules),
                "errors": dict(self.errors), "seconds": self.seconds}


def _write(out: pd.DataFrame, sink: IO[bytes], header: bool) -> None:
    # pyarrow writes CSV several times faster than DataFrame.to_csv; quoting only where needed.
    table = pa.Table.from_pandas(out, preserve_index=False)
    options = pacsv.WriteOptions(include_header=header, quoting_style="needed")
    pacsv.write_csv(table, sink, write_options=options)


def evaluate_csv(compiled: CompiledPolicy, source: str | Path, target: str | Path, as_of: datetime,
                 chunksize: int = DEFAULT_CHUNKSIZE, progress: Callable[[int, float], None] | None = None
                 ) -> Summary:
    """Evaluate every row of source into target; target is replaced only once the whole file is written."""
    started = time.perf_counter()
    source, target = Path(source), Path(target)
    if chunksize < 1:
        raise InputError(str(source), f"chunk size must be at least 1, got {chunksize}")
    try:
        size = source.stat().st_size
        handle = source.open("rb")
    except OSError as exc:
        raise InputError(str(source), _reason(exc)) from None
    summary = Summary()
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with handle, open(temp, "wb") as sink:
            chunks = _reader(handle, chunksize)
            for chunk in chunks:
                if summary.rows == 0:
                    resolve_columns(compiled.spec, list(chunk.columns), str(source))  # before writing anything
                chunk.index = range(summary.rows, summary.rows + len(chunk))
                out = evaluate_frame(compiled, chunk, as_of, source=str(source))
                _write(out, sink, header=summary.rows == 0)
                summary.add(out, summary.rows + 1)
                if progress:
                    progress(summary.rows, handle.tell() / size if size else 1.0)
            if summary.rows == 0:  # a header and no rows still yields a header-only output
                columns = list(chunks.orig_names) if hasattr(chunks, "orig_names") else []
                resolve_columns(compiled.spec, columns, str(source))
                _write(evaluate_frame(compiled, pd.DataFrame(columns=columns, dtype=str), as_of), sink, True)
        os.replace(temp, target)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        temp.unlink(missing_ok=True)
        raise InputError(str(source), _reason(exc)) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def terminal_progress(stream: IO[str] = sys.stderr) -> Callable[[int, float], None] | None:
    """A one-line progress bar on a terminal; nothing when stderr is a file or pipe."""
    if not stream.isatty():
        return None

    def show(rows: int, fraction: float) -> None:
        filled = int(30 * min(fraction, 1.0))
        stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} {rows:,} rows")
        stream.flush()

    return show
