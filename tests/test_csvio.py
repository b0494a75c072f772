"""Streaming CSV evaluation (`engine.csvio`, the real `cancel-rules evaluate`): no row or cell is ever lost or
reordered on fuzzed messy CSVs, and bad input stops the run before anything is written."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import pty
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import engine
from conftest import AS_OF, ROOT, SCRIPT, header_variants, load_policy
from engine import cli
from engine.csvio import read_orders
from engine.loader import RULES_DIR
from engine.synthetic import synthetic_orders

OUTPUT = list(engine.OUTPUT_COLUMNS)
DECISION = ["action", "rule_id", "message", "error"]
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
HERE = Path(__file__).parent


def plain(v):
    """A cell as the reference path gives it: pandas' missing markers as None."""
    return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v


# --- zero loss on fuzzed messy CSVs ---------------------------------------------------------------------

CSV_FACTS = {  # column -> spellings of good and bad values as they show up in exports
    "status": ["Sent", "sent", "  In Transit ", "AWAITING_SHIPMENT", "Awaiting payment", "Closed", "cancelled",
               "Dispute", "Payment being verified", "", " ", "lost", "NaN", "Shipped?"],
    "seller_reply": ["", "No reply", "no_reply", "Full refund", "partial_refund", "Refused", "None", "NA",
                     "silent", "maybe"],
    "hours_since_contact": ["", "48", "47.9", "48.0", " 72 ", "1e2", "NaN", "-1", "soon", "0"],
    "contacted_at": ["", "2026-11-24T12:00:00Z", "2026-11-24T12:00:00.000001Z", "2026-11-24 11:00:00",
                     "yesterday", "2026-13-01T00:00:00"],
    "paid_at": ["", "2026-11-25T12:00:00Z", "2026-11-20"],
    "refund_started_at": ["", "2026-11-19T12:00:00+00:00", "2026-10-01T00:00:00Z"],
    "payment_method": ["", "Credit card", "card", "PayPal", "COD", "Boleto", "crypto"],
    "seller_rating": ["", "95", "89.9", "90", "120", "great"],
}
EXTRA = ["note", "Zip Code", "comment, with comma", "action taken"]
TEXT = st.sampled_from(["", "x", "a,b", 'say "hi"', "two\nlines", " padded ", "NaN", "NA", "null", "ünïcode"])


@st.composite
def messy_csvs(draw) -> tuple[list[str], list[list[str]], bytes]:
    """(header, rows, file bytes): BOM or not, odd header spellings, quoting, CRLF, unknown columns."""
    columns = ["order_id", "status"] + draw(st.lists(st.sampled_from(list(CSV_FACTS)[1:]), unique=True, max_size=5))
    columns += draw(st.lists(st.sampled_from(EXTRA), unique=True, max_size=2))
    columns = draw(st.permutations(columns))
    header = [draw(header_variants(c)) if c in CSV_FACTS or c == "order_id" else c for c in columns]
    n = draw(st.integers(0, 30))
    rows = []
    for i in range(n):
        row = []
        for c in columns:
            if c == "order_id":
                row.append(draw(st.sampled_from([f"AE{i}", f"AE{i},x", f'AE"{i}"', f" AE{i} ", f"AE{i}\nb"])))
            elif c in CSV_FACTS:
                row.append(draw(st.sampled_from(CSV_FACTS[c])))
            else:
                row.append(draw(TEXT))
        rows.append(row)
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
                        lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return header, rows, data


def read_back(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    return table[0], table[1:]


def run_main(*args: str) -> tuple[int, str, str]:
    """The CLI's own entry point, in this process (the fuzz runs it many times)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def run_script(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=cwd or ROOT)


def check_zero_loss(header: list[str], rows: list[list[str]], out_path: Path) -> tuple[list[str], list[list[str]]]:
    out_header, out_rows = read_back(out_path)
    assert out_header == header + OUTPUT
    assert len(out_rows) == len(rows)
    k = len(header)
    assert [r[:k] for r in out_rows] == rows  # every input cell, as written, in input order
    id_col = next(i for i, h in enumerate(header) if h.strip().lower().replace(" ", "_") == "order_id")
    assert [r[id_col] for r in out_rows] == [r[id_col] for r in rows]
    action, error = k + OUTPUT.index("action"), k + OUTPUT.index("error")
    for r in out_rows:
        assert (r[action] == "") != (r[error] == ""), r
    return out_header, out_rows


@settings(max_examples=50, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=messy_csvs())
def test_zero_loss_on_fuzzed_csvs(tmp_path_factory, case):
    header, rows, data = case
    folder = tmp_path_factory.mktemp("csv")
    src = folder / "in.csv"
    src.write_bytes(data)
    # The project's CSV reader: text columns, nothing guessed, the same rows in the same order.
    frame = read_orders(src)
    assert list(frame.columns) == header
    assert frame.astype(object).values.tolist() == rows if rows else len(frame) == 0
    expected = load_policy("default").evaluate(frame, as_of=AS_OF, method="rows")
    # The CLI, in chunks of 7 and in one chunk: the same output file, byte for byte.
    code, _, err = run_main("evaluate", str(src), "-o", str(folder / "small.csv"), "--as-of", AS_OF,
                            "--chunksize", "7")
    assert code == 0, err
    code, _, err = run_main("evaluate", str(src), "-o", str(folder / "big.csv"), "--as-of", AS_OF,
                            "--chunksize", "100000")
    assert code == 0, err
    assert (folder / "small.csv").read_bytes() == (folder / "big.csv").read_bytes()
    _, out_rows = check_zero_loss(header, rows, folder / "big.csv")
    k = len(header)
    for j, col in enumerate(OUTPUT):  # the decisions are the per-row reference's
        assert [r[k + j] for r in out_rows] == ["" if plain(v) is None else str(v) for v in expected[col]], col
    assert sorted(os.listdir(folder)) == ["big.csv", "in.csv", "small.csv"]  # no temporary file left behind


# --- the real `cancel-rules evaluate` ---------------------------------------------------------------------

def write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode())


def one_line_exit_2(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_evaluate_script_keeps_every_row_and_column(tmp_path):
    df = synthetic_orders(500, as_of=AS_OF.replace("Z", "+00:00"), seed=9, bad_rate=0.02)
    df.insert(2, "Customer Note", ["a,b" if i % 7 == 0 else 'say "x"' if i % 11 == 0 else "" for i in range(500)])
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    header, rows = read_back(src)
    result = run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    _, out_rows = check_zero_loss(header, rows, tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    expected = load_policy("default").evaluate(read_orders(src), as_of=AS_OF, method="rows")
    for col in DECISION:
        assert out[col].tolist() == ["" if plain(v) is None else v for v in expected[col]], col
    # the summary on stderr: every action and rule that occurs, and the error reasons
    for name in (set(out["action"]) | set(out["rule_id"])) - {""}:
        assert name in result.stderr
    assert "500" in result.stderr
    for reason in set(out["error"]) - {""}:
        assert reason in result.stderr


def test_evaluate_script_shows_progress_only_on_a_terminal(tmp_path):
    df = synthetic_orders(60, as_of=AS_OF.replace("Z", "+00:00"), seed=8)
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    piped = run_script("evaluate", str(src), "-o", str(tmp_path / "piped.csv"), "--as-of", AS_OF,
                       "--chunksize", "20")
    assert piped.returncode == 0 and "\r" not in piped.stderr
    main_fd, terminal_fd = pty.openpty()
    try:
        code = subprocess.run([str(SCRIPT), "evaluate", str(src), "-o", str(tmp_path / "tty.csv"), "--as-of",
                               AS_OF, "--chunksize", "20"], stderr=terminal_fd, stdout=subprocess.DEVNULL,
                              timeout=120, cwd=ROOT).returncode
        os.close(terminal_fd)
        shown = b""
        while True:
            try:
                part = os.read(main_fd, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not part:
                break
            shown += part
    finally:
        os.close(main_fd)
    assert code == 0
    assert b"\r" in shown and b"60" in shown  # a bar redrawn in place, counting the rows
    assert (tmp_path / "tty.csv").read_bytes() == (tmp_path / "piped.csv").read_bytes()


def test_evaluate_script_tolerates_bom_and_header_case(tmp_path):
    header = [" Order_ID ", "STATUS ", "Seller Reply", "hours_since_contact"]
    rows = [["A1", "Sent", "No reply", "50"], ["A2", "awaiting_payment", "", ""], ["A3", "lost", "", ""]]
    src = tmp_path / "in.csv"
    write_csv(src, header, rows, bom=True)
    result = run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    _, out_rows = check_zero_loss(header, rows, tmp_path / "out.csv")
    assert [r[4] for r in out_rows] == ["open_dispute", "cancel_directly", ""]
    assert "status" in out_rows[2][7]


def test_evaluate_script_chunksize_gives_identical_output(tmp_path):
    for rows, sizes in ((301, ("7", "1000000")), (30, ("1", "30"))):
        df = synthetic_orders(rows, as_of=AS_OF.replace("Z", "+00:00"), seed=12, bad_rate=0.05)
        src = tmp_path / f"in{rows}.csv"
        df.to_csv(src, index=False)
        outputs = []
        for size in sizes:
            target = tmp_path / f"out{rows}-{size}.csv"
            result = run_script("evaluate", str(src), "-o", str(target), "--as-of", AS_OF, "--chunksize", size)
            assert result.returncode == 0, result.stderr
            outputs.append(target.read_bytes())
        assert outputs[0] == outputs[1]
        assert len(read_back(tmp_path / f"out{rows}-{sizes[0]}.csv")[1]) == rows


def test_evaluate_script_header_only_file(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("order_id,status,note\n")
    result = run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    header, rows = read_back(tmp_path / "out.csv")
    assert header == ["order_id", "status", "note"] + OUTPUT and rows == []


@pytest.mark.parametrize("missing", ["order_id", "status"])
def test_evaluate_script_missing_required_column(tmp_path, missing):
    header = [c for c in ["order_id", "status", "seller_reply"] if c != missing]
    src = tmp_path / "in.csv"
    write_csv(src, header, [["x", "y"]] * 3)
    (tmp_path / "keep.csv").write_text("old output\n")
    before = sorted(os.listdir(tmp_path))
    for target in ("out.csv", "keep.csv"):
        line = one_line_exit_2(run_script("evaluate", str(src), "-o", str(tmp_path / target), "--as-of", AS_OF))
        assert missing in line
        assert sorted(os.listdir(tmp_path)) == before  # nothing written, no temporary file left
    assert (tmp_path / "keep.csv").read_text() == "old output\n"  # an existing output is left alone


def test_evaluate_script_missing_column_in_a_big_file_writes_nothing(tmp_path):
    df = synthetic_orders(2000, seed=1).drop(columns=["status"])
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    line = one_line_exit_2(run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF,
                                      "--chunksize", "7"))
    assert "status" in line
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


@pytest.mark.parametrize("kind", ["no_such_file", "directory", "not_utf8", "empty"])
def test_evaluate_script_unreadable_file(tmp_path, kind):
    src = tmp_path / "in.csv"
    if kind == "directory":
        src.mkdir()
    elif kind == "not_utf8":
        src.write_bytes(b"order_id,status\nA1,\xff\xfe\xfa\n" * 5)
    elif kind == "empty":
        src.write_bytes(b"")
    before = sorted(os.listdir(tmp_path))
    line = one_line_exit_2(run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF))
    assert "in.csv" in line
    assert sorted(os.listdir(tmp_path)) == before


def test_evaluate_script_row_with_an_extra_field_does_not_shift_the_columns(tmp_path):
    """A first data row with one field too many must not turn order_id into an index (and drop it): either the
    run stops with one line, or every order keeps its own id."""
    src = tmp_path / "in.csv"
    src.write_text("order_id,status\nA1,Sent,extra\nA2,Sent\nA3,Closed\n")
    result = run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF)
    if result.returncode == 0:
        header, rows = read_back(tmp_path / "out.csv")
        assert [r[header.index("order_id")] for r in rows] == ["A1", "A2", "A3"]
    else:
        one_line_exit_2(result)
        assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_evaluate_script_output_directory_missing_names_the_output(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, ["order_id", "status"], [["A1", "Sent"]])
    target = tmp_path / "no-such-dir" / "out.csv"
    line = one_line_exit_2(run_script("evaluate", str(src), "-o", str(target), "--as-of", AS_OF))
    assert "out.csv" in line or "no-such-dir" in line, line  # the output is the problem, not the input


def test_evaluate_bad_chunksize_is_refused(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, ["order_id", "status"], [["A1", "Sent"]])
    code, _, err = run_main("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF,
                            "--chunksize", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_evaluate_keeps_duplicate_header_names(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, ["order_id", "status", "note", "note"], [["A1", "Sent", "x", "y"]])
    code, _, err = run_main("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF)
    assert code == 0, err
    check_zero_loss(["order_id", "status", "note", "note"], [["A1", "Sent", "x", "y"]], tmp_path / "out.csv")


def test_evaluate_script_bad_policy_writes_nothing(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, ["order_id", "status"], [["A1", "Sent"]])
    bad = HERE / "fixtures" / "malformed" / "unknown_fact.yaml"
    for policy_path in (bad, tmp_path / "no-such-policy.yaml"):
        result = run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF,
                            "--policy", str(policy_path))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.startswith("cancel-rules evaluate:")
        assert sorted(os.listdir(tmp_path)) == ["in.csv"]


def test_evaluate_script_with_a_policy_and_variant(tmp_path):
    src = tmp_path / "in.csv"
    write_csv(src, ["order_id", "status", "seller_reply", "hours_since_contact"],
              [["A1", "Sent", "no_reply", "50"], ["A2", "Sent", "no_reply", "72"]])
    result = run_script("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF,
                        "--policy", str(RULES_DIR / "variants" / "legacy-72h.yaml"))
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert out["action"].tolist() == ["wait_for_seller", "open_dispute"]
    assert set(out["policy_version"]) == {load_policy("legacy").version}


# --- inputs separated otherwise: --delimiter ---------------------------------------------------------------

def separated(header: list[str], rows: list[list[str]], delimiter: str, quoting: int = csv.QUOTE_MINIMAL) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n", quoting=quoting).writerows([header, *rows])
    return buffer.getvalue().encode()


@settings(max_examples=25, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=messy_csvs(), delimiter=st.sampled_from([";", "\t", "|"]), spelling=st.sampled_from(["char", "auto"]))
def test_a_file_separated_otherwise_gives_its_comma_twins_output(tmp_path_factory, case, delimiter, spelling):
    """Every row and cell, and every decision, as from the same rows separated by commas (output: commas)."""
    header, rows, _ = case
    folder = tmp_path_factory.mktemp("sep")
    (folder / "comma.csv").write_bytes(separated(header, rows, ","))
    (folder / "other.csv").write_bytes(separated(header, rows, delimiter))
    code, _, err = run_main("evaluate", str(folder / "comma.csv"), "-o", str(folder / "comma-out.csv"), "--as-of",
                            AS_OF)
    assert code == 0, err
    given = delimiter if spelling == "char" or len(rows) < 2 else "auto"  # one row: too little to sniff from
    code, _, err = run_main("evaluate", str(folder / "other.csv"), "-o", str(folder / "other-out.csv"), "--as-of",
                            AS_OF, "--delimiter", given)
    assert code == 0, err
    assert (folder / "other-out.csv").read_bytes() == (folder / "comma-out.csv").read_bytes()


@pytest.mark.parametrize("delimiter,name", [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_a_file_pandas_reads_is_separated_alike(tmp_path, delimiter, name):
    """A lone CR in a value hands the file to pandas: it splits at the same separator (by its name here)."""
    header = ["order_id", "status", "seller_reply", "note"]
    rows = [["A1", "shipped", "no_reply", "one\rtwo"], ["A2", "awaiting_shipment", "", "x;y|z"]]
    (tmp_path / "comma.csv").write_bytes(separated(header, rows, ",", csv.QUOTE_ALL))  # the CR inside quotes
    (tmp_path / "other.csv").write_bytes(separated(header, rows, delimiter, csv.QUOTE_ALL))
    for src, sep in (("comma.csv", ","), ("other.csv", name)):
        code, _, err = run_main("evaluate", str(tmp_path / src), "-o", str(tmp_path / f"out-{src}"), "--as-of", AS_OF,
                                "--delimiter", sep)
        assert code == 0, err
    assert (tmp_path / "out-other.csv").read_bytes() == (tmp_path / "out-comma.csv").read_bytes()
    assert read_back(tmp_path / "out-other.csv")[1][1][:4] == rows[1]


def test_a_separator_the_reader_does_not_know_is_refused(tmp_path):
    write_csv(tmp_path / "in.csv", ["order_id", "status"], [["A1", "shipped"]])
    code, _, err = run_main("evaluate", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF,
                            "--delimiter", "::")
    assert code == 2
    assert err.strip() == "cancel-rules evaluate: delimiter must be one of , ; | tab or auto, got '::'"
    assert not (tmp_path / "out.csv").exists()


def test_dask_refuses_a_separator_other_than_the_comma(tmp_path):
    write_csv(tmp_path / "in.csv", ["order_id", "status"], [["A1", "shipped"]])
    code, _, err = run_main("evaluate", str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF,
                            "--dask", "--delimiter", ";")
    assert code == 2
    assert "--delimiter is not supported with --dask" in err
    assert not (tmp_path / "out.csv").exists()
