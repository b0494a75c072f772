"""Where the time of a CSV run goes: CPU seconds of each stage of `cancel-rules evaluate`, run one after the other.

Each stage is timed alone over all the chunks (the run does them chunk by chunk), the deciding split by a profile
of its main steps, next to pyarrow's own read+write of the file.
Usage: python bench/bench_csv_stages.py [--rows 1000000] [--chunksize 100000]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from orders import AS_OF  # noqa: E402
from orders import main as write_orders  # noqa: E402

STEPS = {  # a step of deciding -> the function whose cumulative time it is
    "normalizing (frames.normalize_frame)": "normalize_frame",
    "binning (FactSpace axes' bins_of)": "bins_of",
    "rows to matched rule sets (RuleBits.matched_rows)": "matched_rows",
    "answers per rule set (answer_classes)": "answer_classes",
    "messages (render_codes)": "render_codes",
}


def cpu(func: Callable[[], Any]) -> tuple[float, Any]:
    started = time.process_time()
    result = func()
    return time.process_time() - started, result


def startup_cpu() -> float:
    """CPU seconds of a process that imports what the CLI's evaluate imports and loads the bundled policy."""
    code = ("import resource, engine.cli, engine.csvio, engine; engine.load(); "
            "r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=tempfile.gettempdir()).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunksize", type=int, default=100_000)
    args = parser.parse_args()
    import pyarrow as pa
    import pyarrow.csv as pacsv

    import engine
    from engine.batch import decide_frame, resolve_columns
    from engine.csvio import read_header
    from engine.facts import parse_as_of
    from engine.tabular import OUTPUT_COLUMNS, Summary, arrow_text_tables, write_table

    policy, as_of = engine.load(), parse_as_of(AS_OF)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "orders.csv")
        write_orders([str(args.rows), str(src)])
        header = read_header(src)
        with src.open("rb") as handle:
            read_s, tables = cpu(lambda: list(arrow_text_tables(handle, header, args.chunksize)))
        fields = resolve_columns(policy.spec, header)
        names = list(dict.fromkeys(fields.values()))
        frames_s, frames = cpu(lambda: [t.select(names).to_pandas() for t in tables])
        decide_frame(policy.compiled, frames[0].head(1000), fields, as_of)  # the cell answers, as a run has them
        profile = cProfile.Profile()
        decide_s, decided = cpu(lambda: profile.runcall(
            lambda: [decide_frame(policy.compiled, f, fields, as_of) for f in frames]))
        columns_s, columns = cpu(lambda: [d.arrow_columns() for d in decided])
        summary = Summary()
        summary_s, _ = cpu(lambda: [d.count_into(summary, 1) for d in decided])
        names_out = header + list(OUTPUT_COLUMNS)
        out = [pa.Table.from_arrays(t.columns + [pa.chunked_array([c]) for c in cols], names=names_out)
               for t, cols in zip(tables, columns, strict=True)]
        with open(Path(tmp, "out.csv"), "wb") as sink:
            write_s, _ = cpu(lambda: [write_table(t, sink) for t in out])
        baseline_read, table = cpu(lambda: pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False)))
        baseline_write, _ = cpu(lambda: pacsv.write_csv(pa.concat_tables(out), Path(tmp, "baseline.csv")))
    stats = pstats.Stats(profile, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    steps = {label: sum(v[3] for k, v in stats.items() if k[2] == name) for label, name in STEPS.items()}
    rows = [("start-up: imports + policy load (own process)", startup_cpu()),
            ("Arrow read (arrow_text_tables)", read_s),
            ("columns normalizing reads to pandas", frames_s), ("deciding (decide_frame), of which:", decide_s)]
    rows += [(f"  {label} (profiled)", seconds) for label, seconds in steps.items()]
    rows += [("decision columns as Arrow dictionaries", columns_s), ("Summary from codes", summary_s),
             ("defuse + CSV write (write_table)", write_s)]
    print(f"CSV run stages, {args.rows:,} rows in chunks of {args.chunksize:,}, CPU seconds, one after the other:")
    for label, seconds in rows:
        print(f"  {label:<58} {seconds:6.3f}")
    print(f"  {'sum (stages, not the profiled steps)':<58} "
          f"{sum(s for label, s in rows if not label.startswith('  ')):6.3f}")
    print(f"pyarrow read_csv + write_csv of the same (multithreaded read): {baseline_read:.3f} + "
          f"{baseline_write:.3f} s CPU")


if __name__ == "__main__":
    main()
