"""Issue 6: evaluate on Dask. A real LocalCluster of 2 worker processes; outputs compared with the local path."""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import AS_OF, LEGACY, ROOT

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import engine  # noqa: E402
from engine import cli, daskio  # noqa: E402
from engine.cluster import compiled_from_source, evaluate_dask, policy_source  # noqa: E402
from engine.csvio import evaluate_csv, read_orders  # noqa: E402
from engine.daskio import read_orders_dask, write_dask  # noqa: E402
from engine.synthetic import synthetic_orders  # noqa: E402

ROWS = 240_000
FILES = 4
BLOCK = 1 << 20  # 1 MB partitions: a few dozen of them, so order across partitions is really exercised


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def orders(tmp_path_factory) -> tuple[Path, Path]:
    """ROWS synthetic orders (with their ~0.1 % bad rows plus a few planted ones) split over FILES CSVs, with a
    BOM and a header in other case and spacing; and the same rows as one file for the local path."""
    folder = tmp_path_factory.mktemp("orders")
    df = synthetic_orders(ROWS, "2026-11-26T12:00:00+00:00", seed=6)
    df.loc[5, "status"] = "Shipped?"
    df.loc[ROWS - 1, "hours_since_contact"] = "-1"
    df.loc[ROWS // 2, "order_id"] = 'AE "quoted", with comma'
    df.columns = [" Status " if c == "status" else c.upper() if c == "order_id" else c for c in df.columns]
    bounds = [ROWS * k // FILES for k in range(FILES + 1)]
    for k in range(FILES):
        df.iloc[bounds[k]:bounds[k + 1]].to_csv(folder / f"orders-{k}.csv", index=False, encoding="utf-8-sig")
    whole = folder / "all.csv"
    df.to_csv(whole, index=False, encoding="utf-8-sig")
    return folder, whole


@pytest.fixture(scope="module")
def local(orders, tmp_path_factory) -> tuple[Path, str]:
    """The local streaming path's output file and summary (without its timing line)."""
    out = tmp_path_factory.mktemp("local") / "out.csv"
    summary = evaluate_csv(engine.load().compiled, orders[1], out, engine.facts.parse_as_of(AS_OF))
    return out, _body(summary)


def _body(summary) -> str:
    return str(summary).split("\n", 1)[1]


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_glob_of_csvs_gives_the_local_output_byte_for_byte(client, orders, local, tmp_path):
    folder, _ = orders
    ddf, header = read_orders_dask(str(folder / "orders-*.csv"), BLOCK)
    assert ddf.npartitions > 2 * FILES
    out = evaluate_dask(engine.load().compiled, ddf, AS_OF)
    target = tmp_path / "out.csv"
    summary = write_dask(out, target, "csv", client, header)
    assert target.read_bytes() == local[0].read_bytes()  # every row, in order, bad rows and all
    assert _body(summary) == local[1]  # counts and the first bad row numbers of each error
    assert summary.rows == ROWS and sum(summary.errors.values()) > 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temp or part files left


def test_csv_folder_parts_read_back_in_order(client, orders, local, tmp_path):
    folder, _ = orders
    ddf, header = read_orders_dask(str(folder / "orders-*.csv"), BLOCK)
    target = tmp_path / "parts"
    write_dask(evaluate_dask(engine.load().compiled, ddf, AS_OF), target, "csv-folder", client, header)
    parts = sorted(target.glob("part.*.csv"))
    assert len(parts) == ddf.npartitions
    header_line, rows = local[0].read_bytes().split(b"\n", 1)
    assert all(p.read_bytes().split(b"\n", 1)[0] == header_line for p in parts)
    assert b"".join(p.read_bytes().split(b"\n", 1)[1] for p in parts) == rows


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Values as Python objects, every kind of missing as None, a fresh index: for comparing across formats."""
    out = df.astype(object).reset_index(drop=True)
    return out.where(out.notna(), None)


def test_parquet_in_and_out(client, orders, tmp_path):
    text = read_orders(orders[1]).iloc[:100_000]
    source = tmp_path / "in"
    source.mkdir()
    text.iloc[:40_000].to_parquet(source / "a.parquet", index=False)
    text.iloc[40_000:].to_parquet(source / "b.parquet", index=False)
    policy = engine.load()
    ddf, header = read_orders_dask(str(source))
    assert header is None
    target = tmp_path / "out.parquet"
    summary = write_dask(evaluate_dask(policy.compiled, ddf, AS_OF), target, "parquet", client)
    assert summary.rows == len(text)
    back = pd.concat([pd.read_parquet(p) for p in sorted(target.glob("part.*.parquet"))], ignore_index=True)
    expected = policy.evaluate(text, as_of=AS_OF)
    pd.testing.assert_frame_equal(_plain(back), _plain(expected))


@pytest.mark.parametrize("which", ["bundled", "legacy", "with_parameters"])
def test_policy_evaluate_takes_a_dask_frame(client, which):
    policy = {"bundled": engine.load, "legacy": lambda: engine.load(LEGACY),
              "with_parameters": lambda: engine.load().with_parameters(seller_reply_hours=30)}[which]()
    df = synthetic_orders(20_000, "2026-11-26T12:00:00+00:00", seed=7)
    lazy = policy.evaluate(dd.from_pandas(df, npartitions=5), as_of=AS_OF)
    assert type(lazy).__module__.startswith("dask")
    got = lazy.compute()
    expected = policy.evaluate(df, as_of=AS_OF)
    pd.testing.assert_frame_equal(_plain(got), _plain(expected))
    assert set(got["policy_version"]) == {policy.version}


def test_the_worker_rebuilds_the_policy_from_its_source():
    policy = engine.load(LEGACY).with_parameters(seller_reply_hours=60)
    source = policy_source(policy.compiled)
    assert [rel for rel, _ in source.files] == ["cancellation.yaml", "variants/legacy-72h.yaml"]
    rebuilt = compiled_from_source(source)
    assert rebuilt.ruleset == policy.compiled.ruleset  # same content, same engine ruleset
    assert rebuilt.spec.parameters == policy.spec.parameters and rebuilt.spec.version == policy.spec.version
    assert compiled_from_source(source) is rebuilt  # compiled once per process


def test_cli_dask_on_a_scheduler_address(client, orders, local, tmp_path, capsys):
    target = tmp_path / "out.csv"
    address = client.scheduler.address
    code = cli.main(["evaluate", str(orders[0] / "orders-*.csv"), "-o", str(target), "--dask", address,
                     "--as-of", AS_OF])
    assert code == 0
    assert target.read_bytes() == local[0].read_bytes()
    err = capsys.readouterr().err
    assert "on 2 Dask workers" in err and local[1] in err


def test_cli_dask_local_cluster_parquet(orders, tmp_path, capsys):
    """No address: the CLI starts its own LocalCluster of 2 worker processes."""
    target = tmp_path / "out.parquet"
    code = cli.main(["evaluate", str(orders[0] / "orders-0.csv"), "-o", str(target), "--dask", "--as-of", AS_OF])
    assert code == 0, capsys.readouterr().err
    back = pd.read_parquet(target)  # a folder of parts (default format for a .parquet name)
    assert len(back) == ROWS // FILES and "on 2 Dask workers" in capsys.readouterr().err
    expected = engine.load().evaluate(read_orders(orders[0] / "orders-0.csv"), as_of=AS_OF)
    pd.testing.assert_frame_equal(_plain(back), _plain(expected))


def test_missing_required_column_stops_before_any_output(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("order_id,seller_reply\nA1,no_reply\n")
    target = tmp_path / "out.csv"
    code = cli.main(["evaluate", str(src), "-o", str(target), "--dask", "--as-of", AS_OF])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "missing required column: status" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize("problem, expected", [
    ("glob", "no file matches"),
    ("header", "header differs"),
    ("long_row", "b.csv: malformed CSV: Error tokenizing data. C error: Expected 2 fields in line 3, saw 3"),
    ("csv_onto_folder", "result.csv: is a folder"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(client, tmp_path, capsys, problem, expected):
    (tmp_path / "a.csv").write_text("order_id,status\nA1,Sent\n")
    second = {"glob": None, "header": "order_id,status,seller_reply\nA2,Sent,\n",
              "long_row": "order_id,status\nA2,Sent\nA3,Sent,extra\n", "csv_onto_folder": None}[problem]
    if second:
        (tmp_path / "b.csv").write_text(second)
    pattern = str(tmp_path / ("none-*.csv" if problem == "glob" else "*.csv"))
    target = tmp_path / "out" / "result.csv"
    target.parent.mkdir()
    if problem == "csv_onto_folder":
        target.mkdir()
    code = cli.main(["evaluate", pattern, "-o", str(target), "--dask", client.scheduler.address, "--as-of", AS_OF])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    left = [target] if problem == "csv_onto_folder" else []
    assert list(target.parent.iterdir()) == left  # neither an output nor a staging folder


def test_a_worker_killed_mid_write_still_yields_every_row_once_and_leaves_nothing(orders, local, tmp_path):
    """SIGKILL a worker process while it writes a part (its temp file open): the nanny restarts it, the
    scheduler reruns its lost tasks, and retried parts overwrite themselves, so every row lands exactly once;
    the dead writer's temp file does not end up in the output folder (issue 9, item 11)."""
    ddf, header = read_orders_dask(str(orders[0] / "orders-*.csv"), BLOCK)
    out = evaluate_dask(engine.load().compiled, ddf, AS_OF)
    target = tmp_path / "out"
    killed: dict[str, int] = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster, distributed.Client(cluster) as c:
        pids = set(c.run(os.getpid).values())

        def kill_a_writer() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                for temp in tmp_path.glob(".out.*.parts/.part.*.tmp"):
                    pid = int(temp.name.split(".")[-3])  # .part.N.csv.<pid>.<thread>.tmp
                    os.kill(pid, signal.SIGSTOP)  # frozen, then killed only if still inside the write
                    if temp.exists() and len(list(temp.parent.glob("part.*.csv"))) < ddf.npartitions - 2:
                        os.kill(pid, signal.SIGKILL)
                        killed.update(pid=pid, size=temp.stat().st_size)
                        return
                    os.kill(pid, signal.SIGCONT)
                time.sleep(0.002)

        thread = threading.Thread(target=kill_a_writer)
        thread.start()
        summary = write_dask(out, target, "csv-folder", c, header)
        thread.join()
        assert killed and killed["pid"] in pids  # a worker died mid-write, and mid-run
        assert killed["pid"] not in c.run(os.getpid).values()  # that worker process is gone (replaced)
    parts = sorted(target.iterdir())
    assert [p.name for p in parts] == [f"part.{i:05d}.csv" for i in range(ddf.npartitions)]  # no .tmp left
    assert b"".join(p.read_bytes().split(b"\n", 1)[1] for p in parts) == local[0].read_bytes().split(b"\n", 1)[1]
    assert summary.rows == ROWS and _body(summary) == local[1]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nor a staging folder


# --- issue 9, item 11: a killed client; item 12: quoted newlines ------------------------------------------

SCRIPT = Path(sys.executable).parent / "cancel-rules"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_client_leaves_no_staging_folder(client, orders, tmp_path, signum):
    """SIGTERM: the client removes its staging folder itself. SIGKILL: the next run to the same output does."""
    target = tmp_path / "out.csv"
    proc = subprocess.Popen([str(SCRIPT), "evaluate", str(orders[0] / "orders-*.csv"), "-o", str(target),
                             "--dask", client.scheduler.address, "--as-of", AS_OF],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.csv.*.parts/part.*.csv")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    [staging] = tmp_path.glob(".out.csv.*.parts")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    if signum == signal.SIGTERM:
        assert list(tmp_path.iterdir()) == []
        assert proc.returncode == 128 + signum
        assert err.splitlines() == ["cancel-rules evaluate: terminated (SIGTERM)"]
        return
    assert proc.returncode == -signum
    assert sum(p.stat().st_size for p in staging.iterdir()) > 1_000_000  # left behind by the killed client
    small = tmp_path / "small.csv"
    small.write_text("order_id,status,seller_reply\nA1,Sent,no_reply\n")
    assert cli.main(["evaluate", str(small), "-o", str(target), "--dask", client.scheduler.address,
                     "--as-of", AS_OF]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "small.csv"]


def test_quoted_newlines_split_safely(client, tmp_path):
    """Values with newlines (LF and CRLF), quotes and commas, one longer than a partition, and a header with a
    quoted newline: many partitions, and the local path's output byte for byte (issue 9, item 12)."""
    df = synthetic_orders(3000, "2026-11-26T12:00:00+00:00", seed=12)
    notes = ["", "plain", 'said "no"\nthen left', "line 1\r\nline 2, with comma", '"\n"', "a\n\n\nb"]
    df.insert(2, "Customer\nnote", [notes[i % len(notes)] for i in range(len(df))])
    df.loc[1500, "Customer\nnote"] = "\n".join(f'line {k} "quoted"' for k in range(2000))  # ~40 kB, 2000 lines
    df.loc[7, "order_id"] = 'AE "7",\nsecond line'
    source = tmp_path / "quoted.csv"
    df.to_csv(source, index=False)
    ddf, header = read_orders_dask(str(source), 8 * 1024)
    assert ddf.npartitions > 20
    target = tmp_path / "dask.csv"
    write_dask(evaluate_dask(engine.load().compiled, ddf, AS_OF), target, "csv", client, header)
    expected = tmp_path / "local.csv"
    evaluate_csv(engine.load().compiled, source, expected, engine.facts.parse_as_of(AS_OF))
    assert target.read_bytes() == expected.read_bytes()
    assert _read_csv(target)["Customer\nnote"].tolist() == df["Customer\nnote"].tolist()


CELLS = st.text(alphabet='ab ,"\n\r', max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(CELLS, min_size=2, max_size=2), max_size=40), blocksize=st.integers(1, 64),
       scan_chunk=st.sampled_from([1, 3, 16, 4096]))
def test_blocks_are_cut_at_record_boundaries(tmp_path, monkeypatch, rows, blocksize, scan_chunk):
    """RFC 4180 text with quotes, commas and newlines in values: the blocks' rows, in order, are the whole
    file's rows (as pandas reads it), whatever the block and scan sizes."""
    monkeypatch.setattr(daskio, "SCAN_CHUNK", scan_chunk)
    path = tmp_path / "in.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows([["id", "note\nx"], *[[f"r{i}", *r[1:]] for i, r in
                                                                                  enumerate(rows)]])
    header_end, blocks = daskio.record_blocks(str(path), blocksize)
    size = path.stat().st_size
    assert blocks[0][0] == 0 and blocks[-1][1] == size and all(a < b for a, b in blocks)
    assert all(stop == start for (_, stop), (start, _) in zip(blocks, blocks[1:], strict=False))
    assert header_end == len(b'id,"note\nx"\n')
    assert len(blocks) <= max(1, size // blocksize)
    whole = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    parts = [daskio._read_block(str(path), a, b, header_end, list(whole.columns), k == len(blocks) - 1)
             for k, (a, b) in enumerate(blocks)]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)


def test_ctrl_c_with_a_local_cluster_is_one_line(orders, tmp_path):
    """Ctrl-C on a terminal signals the whole process group, the local cluster's workers too: the run still
    ends with exit 130 and one line (no worker tracebacks), no staging folder and no worker process left."""
    psutil = pytest.importorskip("psutil")
    target = tmp_path / "out.csv"
    proc = subprocess.Popen([str(SCRIPT), "evaluate", str(orders[0] / "orders-*.csv"), "-o", str(target),
                             "--dask", "--as-of", AS_OF], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, start_new_session=True)  # a process group of its own, as a terminal job
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.csv.*.parts/part.*.csv")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert err.splitlines() == ["cancel-rules evaluate: interrupted (SIGINT)"]
    assert proc.returncode == 130
    assert list(tmp_path.iterdir()) == []
    # The workers get the signal too and exit on their own; give them the moment their shutdown takes.
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not [w for w in alive if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_formula_cells_are_defused_in_every_csv_output_unless_raw(client, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text('order_id,status,=note\n"=HYPERLINK(""http://x"",""y"")",Sent,@SUM(A1)\nB2,Sent,-2\n'
                   "B3,Sent,+cmd|' /C calc'!A0\n")
    local = tmp_path / "local.csv"
    assert cli.main(["evaluate", str(src), "-o", str(local), "--as-of", AS_OF]) == 0
    address = client.scheduler.address
    for fmt, raw in (("csv", False), ("csv-folder", False), ("csv", True)):
        target = tmp_path / f"{fmt}-{raw}.out"
        code = cli.main(["evaluate", str(src), "-o", str(target), "--dask", address, "--as-of", AS_OF,
                         "--output-format", fmt, *(["--raw-csv"] if raw else [])])
        assert code == 0, capsys.readouterr().err
        path = target if fmt == "csv" else target / "part.00000.csv"
        out = pd.read_csv(path, dtype=str, keep_default_na=False)
        cells = [*out.columns[:3], *out["order_id"], *out["=note" if raw else "'=note"]]
        if raw:
            assert cells == ["order_id", "status", "=note", '=HYPERLINK("http://x","y")', "B2", "B3", "@SUM(A1)",
                             "-2", "+cmd|' /C calc'!A0"]
        else:
            assert cells == ["order_id", "status", "'=note", '\'=HYPERLINK("http://x","y")', "B2", "B3",
                             "'@SUM(A1)", "-2", "'+cmd|' /C calc'!A0"]
            assert path.read_bytes() == local.read_bytes()  # the local writer's bytes exactly


def test_wide_or_misspelt_headers_are_refused_before_a_cluster_starts(tmp_path, capsys):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(["order_id", "status", *(f"x{i}" for i in range(999))]) + "\nA1,Sent" + ",v" * 999 + "\n")
    typo = tmp_path / "typo.csv"
    typo.write_text("order_id,status,hours_since_contakt\nA1,Sent,50\n")
    for src, extra, reason in ((wide, [], "1,001 columns; at most 1,000 are read (--max-columns or "
                                            "CANCEL_RULES_MAX_COLUMNS)"),
                               (typo, ["--strict"], "unknown column 'hours_since_contakt' (did you mean "
                                                    "'hours_since_contact'?)")):
        code = cli.main(["evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--dask", "--as-of", AS_OF, *extra])
        assert code == 2 and capsys.readouterr().err == f"cancel-rules evaluate: {src}: {reason}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.csv", "wide.csv"]
