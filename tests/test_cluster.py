"""Issue 6: evaluate on Dask. A real LocalCluster of 2 worker processes; outputs compared with the local path."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import engine  # noqa: E402
from engine import cli  # noqa: E402
from engine.cluster import (  # noqa: E402
    compiled_from_source,
    evaluate_dask,
    policy_source,
    read_orders_dask,
    write_dask,
)
from engine.csvio import evaluate_csv, read_orders  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from orders import synthetic_orders  # noqa: E402

AS_OF = "2026-11-26T12:00:00Z"
ROOT = Path(__file__).parent.parent
LEGACY = ROOT / "rules" / "variants" / "legacy-72h.yaml"
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
    out = evaluate_dask(engine.load(), ddf, AS_OF)
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
    write_dask(evaluate_dask(engine.load(), ddf, AS_OF), target, "csv-folder", client, header)
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
    summary = write_dask(evaluate_dask(policy, ddf, AS_OF), target, "parquet", client)
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
    source = policy_source(policy)
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


def test_a_worker_killed_mid_run_still_yields_every_row_once(orders, local, tmp_path):
    """SIGKILL one worker process once the first parts are written: the nanny restarts it, the scheduler
    reruns its lost tasks, and retried parts overwrite themselves, so every row lands exactly once."""
    ddf, header = read_orders_dask(str(orders[0] / "orders-*.csv"), 256 * 1024)
    out = evaluate_dask(engine.load(), ddf, AS_OF)
    target = tmp_path / "out.csv"
    killed: dict[str, int] = {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.CRITICAL) as cluster, distributed.Client(cluster) as c:
        pids = list(c.run(os.getpid).values())

        def kill_after_first_parts() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                staging = list(tmp_path.glob(".out.csv.*.parts"))
                done = list(staging[0].glob("part.*.csv")) if staging else []
                if len(done) >= 3:
                    killed["parts_done"] = len(done)
                    os.kill(pids[0], signal.SIGKILL)
                    killed["pid"] = pids[0]
                    return
                time.sleep(0.005)

        thread = threading.Thread(target=kill_after_first_parts)
        thread.start()
        summary = write_dask(out, target, "csv", c, header)
        thread.join()
        assert killed and killed["parts_done"] < ddf.npartitions  # it died mid-run
        assert pids[0] not in c.run(os.getpid).values()  # that worker process is gone (replaced)
    assert target.read_bytes() == local[0].read_bytes()
    assert summary.rows == ROWS and _body(summary) == local[1]


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
