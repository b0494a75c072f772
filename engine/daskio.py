"""Order files on Dask: reading CSVs (cut at record boundaries) or Parquet into a lazy frame, and writing the
evaluated partitions as parts that appear only complete (one CSV, a folder of CSV parts, or of Parquet parts).

Dask is imported on use: `import engine` never needs it.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import pandas as pd

from .atomic import atomic_file, remove_stale, remove_temp, temp_path
from .batch import check_strict_columns, input_fields, resolve_columns
from .csvio import DEFAULT_MAX_COLUMNS, check_repeated, check_width, read_header
from .errors import InputError
from .model import OutputFormat, PolicySpec
from .tabular import (
    OUTPUT_COLUMNS,
    Summary,
    header_line,
    merge_summaries,
    read_csv_text,
    read_reason,
    write_reason,
    write_rows,
)

if TYPE_CHECKING:  # pragma: no cover
    import dask.dataframe as dd
    from distributed import Client

DEFAULT_BLOCKSIZE = 16 * 2**20  # bytes of CSV per partition: about 120 k orders, like the local chunks
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
PARQUET_SUFFIXES = (".parquet", ".pq")


class PartitionError(ValueError):
    """A partition could not be read on a worker; plain (picklable) so it crosses back to the client."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# ---------------------------------------------------------------------------------------------------------
# Input: a CSV, a glob of CSVs (same header), or Parquet (a file, a folder or a glob).

def is_parquet(path: str) -> bool:
    p = Path(path)
    return path.lower().endswith(PARQUET_SUFFIXES) or p.is_dir()


def expand_inputs(path: str) -> list[str]:
    """The files a path names, sorted (a glob), or the path itself; none found is an InputError."""
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path) if Path(f).is_file())
        if not files:
            raise InputError(path, "no file matches")
        return files
    if not Path(path).exists():
        raise InputError(path, "no such file")
    return [path]


def _parse_block(block: bytes, header: bytes | None, path: str, names: list[str]) -> pd.DataFrame:
    """One byte block of a CSV (the file's header line prepended after the first block) as text columns."""
    data = block if header is None else header + block
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a row longer than the header
            df = read_csv_text(io.BytesIO(data))
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError) as exc:
        raise PartitionError(path, read_reason(exc)) from None
    if list(df.columns) != names:
        raise PartitionError(path, "malformed CSV: a block's header does not match the file's")
    return df


def _read_block(path: str, start: int, stop: int, header_end: int, names: list[str], last: bool) -> pd.DataFrame:
    """Bytes start:stop of a CSV (record boundaries), parsed; blocks after the first get the header record."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(header_end) if start > 0 else None
            handle.seek(start)
            block = handle.read(stop - start)
    except OSError as exc:  # e.g. a worker on another machine that does not see the input
        raise PartitionError(path, read_reason(exc)) from None
    try:
        return _parse_block(block, header, path, names)
    except PartitionError as exc:
        if last or "EOF inside string" not in exc.reason:
            raise
        raise PartitionError(path, f"{exc.reason} (a quote inside an unquoted value? --dask cuts files at newlines "
                                   f"outside quotes; without --dask the file is read whole)") from None


SCAN_CHUNK = 4 * 2**20


def record_blocks(path: str, blocksize: int) -> tuple[int, list[tuple[int, int]]]:
    """The length of a CSV's header record and its byte blocks: size // blocksize blocks of about equal size
    (as dask's read_bytes makes them), each cut at the first record boundary at or past its nominal offset. A
    record boundary is a newline outside quotes, where the count of quote characters before it is even. That
    parity is exact for RFC 4180 CSV (a quote inside a quoted value is doubled), so a value with newlines stays
    in one block. Where a file breaks the rule (a lone quote inside an unquoted value), a cut can land inside
    a value as pandas reads it; the block before it then fails to parse ('EOF inside string'): never a
    silently different row. One streaming pass up to the last cut; bytes.count and bytes.find do the work,
    the Python loop runs once per cut and per quote inside a quoted value at a cut."""
    cuts: list[int] = []  # record starts: the header's end first, then one per block
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        count = max(1, size // max(1, blocksize))
        wants = [1, *(size * k // count for k in range(1, count))]  # the header's end, then the nominal offsets
        inside = 0  # quote parity of the bytes before base + pos (1: inside a quoted value)
        base = 0
        while wants and (chunk := handle.read(SCAN_CHUNK)):
            pos = 0
            while wants:
                ahead = wants[0] - 1 - base  # the newline ending a record that starts at wants[0] or later
                if ahead > pos:
                    inside ^= chunk.count(b'"', pos, ahead) & 1
                    pos = ahead
                if inside:  # every newline before the next quote is inside the value
                    quote = chunk.find(b'"', pos)
                    if quote < 0:
                        pos = len(chunk)
                        break
                    inside, pos = 0, quote + 1
                    continue
                newline = chunk.find(b"\n", pos)
                if newline < 0:
                    break
                inside ^= chunk.count(b'"', pos, newline) & 1
                pos = newline + 1
                if not inside:
                    cuts.append(base + pos)
                    wants = [w for w in wants if w > base + pos]
            inside ^= chunk.count(b'"', pos) & 1
            base += len(chunk)
    cuts = [c for c in cuts if c < size]
    header_end = cuts.pop(0) if cuts else size
    starts = [0, *cuts]
    return header_end, list(zip(starts, [*starts[1:], size], strict=True))


def read_orders_dask(path: str, blocksize: int = DEFAULT_BLOCKSIZE, max_columns: int = DEFAULT_MAX_COLUMNS
                     ) -> tuple[dd.DataFrame, list[str] | None]:
    """Orders as a lazy dask frame of text columns (the local reader's conventions) and, for CSV, the header
    exactly as written. Every CSV file must have the same header; headers are checked here, eagerly."""
    import dask.dataframe as dd
    from dask import delayed

    files = expand_inputs(path)
    if is_parquet(files[0]):
        try:
            found = [os.path.abspath(f) for f in files]
            return dd.read_parquet(found if len(found) > 1 else found[0]), None
        except (OSError, ValueError) as exc:
            raise InputError(path, f"cannot read Parquet: {str(exc).strip().splitlines()[0]}") from None
    header = read_header(Path(files[0]))
    check_width(header, files[0], max_columns)
    for other in files[1:]:
        if read_header(Path(other)) != header:
            raise InputError(other, f"header differs from {files[0]}'s")
    parts, meta = [], None
    for file in files:
        try:
            header_end, blocks = record_blocks(file, blocksize)
        except OSError as exc:
            raise InputError(file, read_reason(exc)) from None
        if meta is None:  # the column names as pandas reads them (a repeated name becomes 'name.1')
            with open(file, "rb") as handle:
                meta = read_csv_text(io.BytesIO(handle.read(header_end)))
        absolute = os.path.abspath(file)  # workers may run in another working folder
        parts += [delayed(_read_block)(absolute, start, stop, header_end, list(meta.columns), k == len(blocks) - 1)
                  for k, (start, stop) in enumerate(blocks)]
    return dd.from_delayed(parts, meta=meta, verify_meta=False), header


def check_input(spec: PolicySpec, path: str, header: list[str] | None, columns: list[str], strict: bool = False
                ) -> None:
    """What the local path refuses before writing anything: repeated or missing columns, output columns, and with
    strict misspelt ones."""
    if header is not None:
        check_repeated(header, input_fields(spec), path)
    resolve_columns(spec, header if header is not None else columns, path)
    if strict:
        check_strict_columns(spec, header if header is not None else columns, path)


# ---------------------------------------------------------------------------------------------------------
# Output: each partition written by the worker that computed it (a temp name, then renamed: a retried task
# overwrites its own part, so every row lands exactly once), a small summary returned to the client.

def _write_part(out: pd.DataFrame, index: int, folder: str, fmt: OutputFormat, width: int,
                header: list[str] | None, raw: bool = False) -> Summary:
    name = f"part.{index:0{width}d}.{'parquet' if fmt == 'parquet' else 'csv'}"
    # A temp name of this process and thread: a task retried elsewhere writes its own, then replaces the part.
    with atomic_file(Path(folder, name), Path(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")) as sink:
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pandas(out, preserve_index=False), sink)
        else:
            if fmt == "csv-folder":
                sink.write(header_line(_input_columns(out, header) + list(OUTPUT_COLUMNS), raw))
            write_rows(out, sink, raw)
    summary = Summary()
    summary.add(out, 1)
    return summary


def _input_columns(out: pd.DataFrame | dd.DataFrame, header: list[str] | None) -> list[str]:
    """The input's column names as written (the CSV header), or as the frame has them before the decision columns."""
    return list(header) if header is not None else [str(c) for c in out.columns[:-len(OUTPUT_COLUMNS)]]


def output_format(target: str, fmt: str | None) -> OutputFormat:
    """The format asked for, or by target's suffix: Parquet for .parquet and .pq, else one CSV."""
    if fmt is None:
        return "parquet" if target.lower().endswith(PARQUET_SUFFIXES) else "csv"
    for known in OUTPUT_FORMATS:
        if fmt == known:
            return known
    raise InputError(target, f"unknown output format {fmt!r} (use one of: {', '.join(OUTPUT_FORMATS)})")


def check_target(target: Path, fmt: OutputFormat, shown: str) -> None:
    """What makes an output impossible, found before anything is computed."""
    if not target.parent.is_dir():
        raise InputError(shown, f"output folder does not exist: {target.parent}")
    if fmt != "csv" and target.exists() and not target.is_dir():
        raise InputError(shown, f"exists and is not a folder (the {fmt} output is a folder of parts)")
    if fmt == "csv" and target.is_dir():
        raise InputError(shown, "is a folder (use --output-format csv-folder or parquet for a folder of parts)")


def write_dask(out: dd.DataFrame, target: str | Path, fmt: OutputFormat, client: Client,
               header: list[str] | None = None,
               progress: Callable[[int, float], None] | None = None, raw: bool = False) -> Summary:
    """Compute `out` on the client's cluster into target: a single CSV (parts joined in partition order), a
    folder of CSV parts or of Parquet parts (part.00000.* in partition order). Target appears only complete.

    The target folder must be reachable by the workers under the same path (a shared file system). CSV text
    cells a spreadsheet would run as formulas get a leading ' unless raw."""
    from dask import delayed
    from distributed import as_completed

    started = time.perf_counter()
    shown, target = str(target), Path(target).absolute()  # workers may run in another working folder
    check_target(target, fmt, shown)
    remove_stale(target)
    staging = temp_path(target, "parts")
    try:
        staging.mkdir()
    except OSError as exc:
        raise InputError(shown, write_reason(exc)) from None
    try:
        parts = out.to_delayed()
        width = max(5, len(str(len(parts) - 1)))
        tasks = [delayed(_write_part)(part, i, str(staging), fmt, width, header, raw) for i, part in enumerate(parts)]
        futures = client.compute(tasks)
        rows = done = 0
        for future in as_completed(futures):
            rows += future.result().rows
            done += 1
            if progress:
                progress(rows, done / len(futures))
        summary = merge_summaries(client.gather(futures))
        _finish(staging, target, fmt, header, out, width, len(parts), raw)
    except OSError as exc:  # e.g. a worker on another machine that does not see the output folder
        remove_temp(staging)
        raise InputError(shown, f"cannot write: {exc.strerror or exc} (the output folder must be reachable "
                                f"by every worker under the same path)") from None
    except BaseException:  # workers may still be writing parts into staging: remove_temp sees to it
        remove_temp(staging)
        raise
    summary.seconds = time.perf_counter() - started
    return summary


def _finish(staging: Path, target: Path, fmt: OutputFormat, header: list[str] | None, out: dd.DataFrame, width: int,
            count: int, raw: bool = False) -> None:
    if fmt == "csv":
        with atomic_file(target) as sink:
            sink.write(header_line(_input_columns(out, header) + list(OUTPUT_COLUMNS), raw))
            for i in range(count):
                with open(staging / f"part.{i:0{width}d}.csv", "rb") as part:
                    shutil.copyfileobj(part, sink, 2**20)
        remove_temp(staging)
        return
    parts = {f"part.{i:0{width}d}.{'parquet' if fmt == 'parquet' else 'csv'}" for i in range(count)}
    for stray in staging.iterdir():  # the temp file of a writer that was killed mid-write (its task reran)
        if stray.name not in parts:
            remove_temp(stray)
    old = None
    if target.exists():  # a folder from an earlier run: swapped out, then removed
        old = temp_path(target, "old")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        remove_temp(old)
