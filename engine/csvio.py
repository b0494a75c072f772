"""Stream a CSV of orders through the batch path into an output CSV that appears only when complete."""

from __future__ import annotations

import csv
import io
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, NamedTuple

import pandas as pd
import pyarrow as pa

from .atomic import atomic_file, remove_stale
from .batch import check_strict_columns, decide_frame, input_fields, resolve_columns, unknown_columns
from .compiler import CompiledPolicy
from .errors import InputError, UsageError
from .intake import DELIMITER_NAMES, SNIFF_BYTES, apply_mapping, map_frame, sniff_bytes
from .tabular import (
    OUTPUT_COLUMNS,
    NotArrowReadable,
    Summary,
    arrow_text_tables,
    header_line,
    read_csv_text,
    read_reason,
    write_reason,
    write_table,
)

DEFAULT_CHUNKSIZE = 100_000
# A CSV wider than this is refused from its header line alone: pandas spends seconds per 100,000 columns
# before a single row is read, and nothing in a policy reads more than a few dozen.
DEFAULT_MAX_COLUMNS = 1_000
ENV_MAX_COLUMNS = "CANCEL_RULES_MAX_COLUMNS"


def max_columns_from_env(environ: Mapping[str, str] | None = None) -> int:
    """CANCEL_RULES_MAX_COLUMNS, or the default; raises UsageError (a ValueError) naming the variable."""
    text = (os.environ if environ is None else environ).get(ENV_MAX_COLUMNS, "").strip()
    if not text:
        return DEFAULT_MAX_COLUMNS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{ENV_MAX_COLUMNS} must be a positive integer, got {text!r}", ENV_MAX_COLUMNS)
    return value


def check_width(header: list[str], source: str, max_columns: int) -> None:
    """Refuse a header wider than max_columns: checked before anything else reads the file."""
    if len(header) > max_columns:
        raise InputError(source, f"{len(header):,} columns; at most {max_columns:,} are read "
                                 f"(--max-columns or {ENV_MAX_COLUMNS})")


def check_repeated(header: list[str], fields: list[str], source: str) -> None:
    """A field the policy reads must be one column: refuse it repeated (pandas would read 'name.1')."""
    seen: set[str] = set()
    twice: set[str] = set()
    for name in header:
        if name in seen:
            twice.add(name)
        seen.add(name)
    repeated = sorted(twice & set(fields))
    if repeated:
        raise InputError(source, f"column {repeated[0]!r} appears more than once", repeated)


def read_orders(source: str | Path | IO, max_columns: int | None = None, mapping: Mapping[str, str] | None = None,
                delimiter: str = ",") -> pd.DataFrame:
    """A CSV of orders as text columns (UTF-8 with or without BOM); wider than max_columns is refused. mapping
    renames columns to the policy's fields ({"Order Status": "status"}: engine.intake.apply_mapping)."""
    limit = max_columns_from_env() if max_columns is None else max_columns
    if isinstance(source, (str, Path)):
        check_width(read_header(Path(source), delimiter), str(source), limit)
    elif source.seekable():
        check_width(_peek_header(source, delimiter), str(getattr(source, "name", "input")), limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a row longer than the header
            frame = read_csv_text(source, sep=delimiter)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.ParserWarning,
            pd.errors.EmptyDataError) as exc:
        raise InputError(str(getattr(source, "name", source) if not isinstance(source, (str, Path)) else source),
                         read_reason(exc)) from None
    return map_frame(frame, mapping or {}, str(getattr(source, "name", source)))


def _peek_header(handle: IO, delimiter: str = ",") -> list[str]:
    """The header row of an open file, which is left where it was."""
    start = handle.tell()
    try:
        text = handle if isinstance(handle, io.TextIOBase) else io.TextIOWrapper(handle, "utf-8-sig", newline="")
        header = next(csv.reader(text, delimiter=delimiter), [])
        if text is not handle:
            text.detach()
    except (UnicodeDecodeError, csv.Error):
        header = []  # pandas reports it with the file's own words
    handle.seek(start)
    return header


def read_header(source: Path, delimiter: str = ",") -> list[str]:
    """The header row exactly as written (pandas would rename repeated names to 'name.1')."""
    try:
        with source.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(str(source), read_reason(exc)) from None
    if not header:
        raise InputError(str(source), "the file is empty (no header row)")
    return header


def input_delimiter(source: Path, given: str) -> str:
    """The separator source is read with: given (',' ';' '|' tab, or a name of one), or with 'auto' the one that
    splits its first lines into the same number of fields (engine.intake.sniff_bytes)."""
    if given == "auto":
        try:
            with source.open("rb") as handle:
                return sniff_bytes(handle.read(SNIFF_BYTES))
        except OSError as exc:
            raise InputError(str(source), read_reason(exc)) from None
    if given not in DELIMITER_NAMES:
        raise UsageError(f"delimiter must be one of , ; | tab or auto, got {given!r}", "--delimiter")
    return DELIMITER_NAMES[given]


class InputLayout(NamedTuple):
    """How an input file is read: its header as written (what the reader checks), the renames of a column mapping
    (the output has the new names) and its separator."""

    header: list[str]
    renames: dict[str, str]
    delimiter: str


def evaluate_csv(compiled: CompiledPolicy, source: str | Path, target: str | Path, as_of: datetime,
                 chunksize: int = DEFAULT_CHUNKSIZE, progress: Callable[[int, float], None] | None = None,
                 max_columns: int = DEFAULT_MAX_COLUMNS, raw: bool = False, strict: bool = False,
                 mapping: Mapping[str, str] | None = None, delimiter: str = ",") -> Summary:
    """Evaluate every row of source into target; target is replaced only once the whole file is written.

    Text cells a spreadsheet would run as formulas get a leading ' unless raw. Columns the policy does not read
    are kept (and listed in the summary); with strict, one that looks like a misspelt field stops the run. mapping
    renames columns to fields as they are read ({"Order Status": "status"}); the output has the new names. The
    input is separated by delimiter (see input_delimiter; 'auto' sniffs it); the output always by commas."""
    started = time.perf_counter()
    source, target = Path(source), Path(target)
    if chunksize < 1:
        raise InputError(str(source), f"chunk size must be at least 1, got {chunksize}")
    if not target.parent.is_dir():
        raise InputError(str(target), f"output folder does not exist: {target.parent}")
    separator = input_delimiter(source, delimiter)
    file_header = read_header(source, separator)
    check_width(file_header, str(source), max_columns)
    renames = dict(mapping or {})
    layout = InputLayout(file_header, renames, separator)
    header = apply_mapping(file_header, renames, str(source))  # a bad mapping stops the run before any output
    check_repeated(header, input_fields(compiled.spec), str(source))
    resolve_columns(compiled.spec, header, str(source))  # a missing column stops the run before any output
    if strict:
        check_strict_columns(compiled.spec, header, str(source))
    summary = Summary(unknown_columns=unknown_columns(compiled.spec, header))
    remove_stale(target)
    try:
        with atomic_file(target) as sink, warnings.catch_warnings():
            # A row longer than the header would be cut short (index_col=False) or shift every column
            # (pandas' default): make it an error instead.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                _write_all(compiled, source, sink, layout, as_of, chunksize, progress, raw, summary, arrow=True)
            except NotArrowReadable:  # pandas reads it its own way, or words its error: start again with it
                sink.seek(0)
                sink.truncate()
                summary = Summary(unknown_columns=summary.unknown_columns)
                _write_all(compiled, source, sink, layout, as_of, chunksize, progress, raw, summary, arrow=False)
    except OSError as exc:  # the input's failures are InputErrors by now: the output's open, writes, close, rename
        raise InputError(str(target), write_reason(exc)) from None
    summary.seconds = time.perf_counter() - started
    return summary


def _write_all(compiled: CompiledPolicy, source: Path, sink: IO[bytes], layout: InputLayout, as_of: datetime,
               chunksize: int, progress: Callable[[int, float], None] | None, raw: bool, summary: Summary,
               arrow: bool) -> None:
    """Every row of source, decided, into sink after the header; Arrow reads it, or pandas."""
    size = source.stat().st_size
    with _open_input(source) as handle:
        sink.write(header_line([layout.renames.get(name, name) for name in layout.header] + list(OUTPUT_COLUMNS),
                               raw))
        for table, frame in _chunks(handle, chunksize, source, layout, arrow):
            fields = resolve_columns(compiled.spec, list(table.column_names), str(source))
            if frame is None:  # pandas for what normalizing reads only: the rest goes out as Arrow read it
                frame = table.select(list(dict.fromkeys(fields.values()))).to_pandas()
            decided = decide_frame(compiled, frame, fields, as_of)
            out = table.columns + [pa.chunked_array([column]) for column in decided.arrow_columns()]
            write_table(pa.Table.from_arrays(out, names=table.column_names + list(OUTPUT_COLUMNS)), sink, raw)
            decided.count_into(summary, summary.rows + 1)
            if progress:
                progress(summary.rows, handle.tell() / size if size else 1.0)


def _open_input(source: Path) -> IO[bytes]:
    try:
        return source.open("rb")
    except OSError as exc:
        raise InputError(str(source), read_reason(exc)) from None


def _chunks(handle: IO[bytes], chunksize: int, source: Path, layout: InputLayout, arrow: bool
            ) -> Iterator[tuple[pa.Table, pd.DataFrame | None]]:
    """The input's chunks of text columns (renamed), read by Arrow (it may raise NotArrowReadable), else by pandas
    (then the frame too); a failure to read them is the input's."""
    renames = layout.renames
    try:
        if arrow:
            for table in arrow_text_tables(handle, layout.header, chunksize, layout.delimiter):
                yield table.rename_columns([renames.get(name, name) for name in table.column_names]), None
        else:
            for frame in read_csv_text(handle, chunksize=chunksize, sep=layout.delimiter):
                frame = frame.rename(columns=renames) if renames else frame
                yield pa.Table.from_pandas(frame, preserve_index=False), frame
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise InputError(str(source), read_reason(exc)) from None


def terminal_progress(stream: IO[str] = sys.stderr) -> Callable[[int, float], None] | None:
    """A one-line progress bar on a terminal; nothing when stderr is a file or pipe."""
    if not stream.isatty():
        return None

    def show(rows: int, fraction: float) -> None:
        filled = int(30 * min(fraction, 1.0))
        stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:6.1%} {rows:,} rows")
        stream.flush()

    return show
