"""Hostile CSV files and CLI inputs, each with its exact outcome: exit status, the one line, what is written.

Big inputs are generated here, never committed. Each case is bounded by construction (a limit that stops it
before the costly part), not by a timer.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import SCRIPT
from engine import cli

HERE = Path(__file__).parent
AS_OF = "2026-03-01T12:00:00+00:00"  # the hostile tests' time, shared with the service's (test_service.py)
HEADER = "order_id,status,seller_reply,hours_since_contact"
DECISION_COLUMNS = ["action", "rule_id", "message", "error", "policy_version"]


def run(*args: str, stdin: str | None = None, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CANCEL_RULES_")}
    return subprocess.run([str(SCRIPT), *args], input=stdin, capture_output=True, text=True, timeout=120,
                          cwd=cwd or HERE, env={**environ, **env})


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The whole stderr of a refused command: exit 2, nothing on stdout, one line, no traceback."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    return lines[0]


def wide_csv(path: Path, columns: int, repeat: str | None = None) -> Path:
    """A valid orders CSV with `columns` columns in all (extra ones named x0, x1, ...), one row."""
    names = HEADER.split(",") + [f"x{i}" for i in range(columns - 4)]
    if repeat is not None:
        names[-1] = repeat
    row = ["W1", "Sent", "no_reply", "50"] + ["v"] * (columns - 4)
    path.write_text(",".join(names) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    return path


# --- wide files (issue 9, item 4) -------------------------------------------------------------------------

def test_a_csv_wider_than_the_default_limit_is_refused_before_anything_is_written(tmp_path):
    src, out = wide_csv(tmp_path / "wide.csv", 1_001), tmp_path / "out.csv"
    line = one_error_line(run("evaluate", str(src), "-o", str(out), "--as-of", AS_OF))
    assert line == (f"cancel-rules evaluate: {src}: 1,001 columns; at most 1,000 are read "
                    f"(--max-columns or CANCEL_RULES_MAX_COLUMNS)")
    assert os.listdir(tmp_path) == ["wide.csv"]


def test_a_csv_exactly_at_the_limit_is_evaluated_every_cell_kept(tmp_path, capsys):
    src, out = wide_csv(tmp_path / "wide.csv", 1_000), tmp_path / "out.csv"
    assert cli.main(["evaluate", str(src), "-o", str(out), "--as-of", AS_OF]) == 0, capsys.readouterr().err
    header, row = read_rows(out)
    assert header == src.read_text().splitlines()[0].split(",") + DECISION_COLUMNS
    assert row[:1_000] == src.read_text().splitlines()[1].split(",") and row[1_000] == "open_dispute"


def test_a_hundred_thousand_columns_are_refused_from_the_header_alone(tmp_path):
    # 0.9 MB of header: pandas alone takes seconds over it, and the old repeated-name check minutes.
    src, out = wide_csv(tmp_path / "wide.csv", 100_000), tmp_path / "out.csv"
    line = one_error_line(run("evaluate", str(src), "-o", str(out), "--as-of", AS_OF))
    assert line == (f"cancel-rules evaluate: {src}: 100,000 columns; at most 1,000 are read "
                    f"(--max-columns or CANCEL_RULES_MAX_COLUMNS)")
    assert not out.exists()


def test_the_column_limit_is_set_by_option_or_environment(tmp_path):
    src = wide_csv(tmp_path / "orders.csv", 6)
    out = tmp_path / "out.csv"
    expected = (f"cancel-rules evaluate: {src}: 6 columns; at most 5 are read "
                f"(--max-columns or CANCEL_RULES_MAX_COLUMNS)")
    assert one_error_line(run("evaluate", str(src), "-o", str(out), "--max-columns", "5")) == expected
    assert one_error_line(run("evaluate", str(src), "-o", str(out), CANCEL_RULES_MAX_COLUMNS="5")) == expected
    # The option wins over the variable; exactly at the limit is accepted.
    ok = run("evaluate", str(src), "-o", str(out), "--as-of", AS_OF, "--max-columns", "6",
             CANCEL_RULES_MAX_COLUMNS="5")
    assert ok.returncode == 0, ok.stderr
    assert list(pd.read_csv(out, dtype=str).columns) == [*HEADER.split(","), "x0", "x1", *DECISION_COLUMNS]


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--max-columns", "0"], {}, "--max-columns must be a positive integer, got 0"),
    ([], {"CANCEL_RULES_MAX_COLUMNS": "many"}, "CANCEL_RULES_MAX_COLUMNS must be a positive integer, got 'many'"),
])
def test_a_bad_column_limit_is_one_line(tmp_path, args, env, expected):
    src = wide_csv(tmp_path / "orders.csv", 6)
    line = one_error_line(run("evaluate", str(src), "-o", str(tmp_path / "out.csv"), *args, **env))
    assert line == f"cancel-rules evaluate: {expected}"


def test_a_repeated_column_among_a_hundred_thousand_is_found_in_one_pass(tmp_path):
    # Allowed this wide on purpose: the repeated-name check itself must stay linear (it was quadratic).
    src = wide_csv(tmp_path / "wide.csv", 100_000, repeat="status")
    line = one_error_line(run("evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--max-columns", "100000"))
    assert line == f"cancel-rules evaluate: {src}: column 'status' appears more than once"


def test_a_missing_column_among_many_names_a_bounded_list(tmp_path):
    names = [f"c{i}" for i in range(900)]
    src = tmp_path / "no_status.csv"
    src.write_text(",".join(["order_id", *names]) + "\n" + ",".join(["A"] + ["v"] * 900) + "\n")
    line = one_error_line(run("evaluate", str(src), "-o", str(tmp_path / "out.csv")))
    assert line == (f"cancel-rules evaluate: {src}: missing required column: status (columns found: order_id, "
                    + ", ".join(names[:19]) + ", ... (901 in all))")


# --- CLI inputs -----------------------------------------------------------------------------------------

def test_json_nested_a_hundred_thousand_deep_is_one_line():
    line = one_error_line(run("decide", "--json", "-", stdin="[" * 100_000))
    assert line == "cancel-rules decide: --json is not valid JSON: nested too deeply"


# --- spreadsheet formulas (issue 9, item 10) ------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example","open")', "+cmd|' /C calc'!A0", "@SUM(A1)", "-2+3", "\t=1+1",
            "\r=1+1", "-", "=", "+"]
NUMBERS = ["-2", "+5", "-0.5", "-1e3", "-.5", "7"]


def formula_csv(path: Path) -> list[list[str]]:
    """One row per hostile text (in order_id and an extra column) and per number-looking text; the header has a
    formula too. Returns the rows as written."""
    rows = [[text, "Sent", "no_reply", "50", text] for text in FORMULAS]
    rows += [[f"N{i}", "Sent", "no_reply", number, number] for i, number in enumerate(NUMBERS)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[*HEADER.split(","), "=note"], *rows])
    return rows


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_formula_cells_get_a_leading_quote_and_numbers_stay(tmp_path):
    src, out = tmp_path / "formulas.csv", tmp_path / "out.csv"
    formula_csv(src)
    result = run("evaluate", str(src), "-o", str(out), "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    header, *back = read_rows(out)
    assert header == [*HEADER.split(","), "'=note", *DECISION_COLUMNS]
    assert [r[0] for r in back[:len(FORMULAS)]] == ["'" + text for text in FORMULAS]
    assert [r[4] for r in back[:len(FORMULAS)]] == ["'" + text for text in FORMULAS]
    assert [r[3:5] for r in back[len(FORMULAS):]] == [[n, n] for n in NUMBERS]
    assert [r[5] for r in back] == ["open_dispute"] * len(FORMULAS) + ["", "wait_for_seller", "", "", "",
                                                                        "wait_for_seller"]
    assert back[len(FORMULAS)][8] == "hours_since_contact: must be >= 0, got -2"


def test_raw_csv_writes_every_cell_as_it_came(tmp_path):
    src, out = tmp_path / "formulas.csv", tmp_path / "out.csv"
    rows = formula_csv(src)
    result = run("evaluate", str(src), "-o", str(out), "--as-of", AS_OF, "--raw-csv")
    assert result.returncode == 0, result.stderr
    header, *back = read_rows(out)
    assert header == [*HEADER.split(","), "=note", *DECISION_COLUMNS]
    assert [r[:5] for r in back] == rows


# --- unknown fields and columns (issue 9, item 9) -------------------------------------------------------

TYPO = '{"order_id": "U1", "status": "Sent", "seller_reply": "no_reply", "hours_since_contakt": 50}'


def test_decide_warns_of_an_unknown_field_and_strict_refuses_it():
    result = run("decide", "--json", TYPO, "--as-of", AS_OF)
    assert result.returncode == 0 and result.stderr == ""
    decision = json.loads(result.stdout)
    assert decision["warnings"] == ["unknown field 'hours_since_contakt' ignored (did you mean 'hours_since_contact'?)"]
    line = one_error_line(run("decide", "--json", TYPO, "--as-of", AS_OF, "--strict"))
    assert line == ("cancel-rules decide: invalid order: hours_since_contakt: unknown field "
                    "(did you mean 'hours_since_contact'?)")


def test_evaluate_keeps_unknown_columns_warns_of_near_misses_and_strict_refuses_them(tmp_path):
    src, out = tmp_path / "orders.csv", tmp_path / "out.csv"
    src.write_text("order_id,status,seller_reply,hours_since_contakt,note,Status\nU1,Sent,no_reply,50,call,Closed\n")
    result = run("evaluate", str(src), "-o", str(out), "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "columns not read by the policy, kept as they are: hours_since_contakt, note, Status" in lines
    assert "warning: column 'hours_since_contakt' is not read by the policy (did you mean " \
           "'hours_since_contact'?)" in lines
    assert "warning: column 'Status' is not read by the policy (did you mean 'status'?)" in lines
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(back.columns[:6]) == ["order_id", "status", "seller_reply", "hours_since_contakt", "note", "Status"]
    assert list(back.iloc[0, :6]) == ["U1", "Sent", "no_reply", "50", "call", "Closed"]
    out.unlink()
    line = one_error_line(run("evaluate", str(src), "-o", str(out), "--as-of", AS_OF, "--strict"))
    assert line == (f"cancel-rules evaluate: {src}: unknown columns 'hours_since_contakt' (did you mean "
                    f"'hours_since_contact'?), 'Status' (did you mean 'status'?)")
    assert sorted(os.listdir(tmp_path)) == ["orders.csv"]


# --- malformed and odd files: the exact outcome of each (in process: the same main() as the script) ---------

REFUSED = {  # file bytes -> the one line after "cancel-rules evaluate: <path>: "
    "empty": (b"", "the file is empty (no header row)"),
    "bom_only": (b"\xef\xbb\xbf", "the file is empty (no header row)"),
    "not_utf8": (b"order_id,status\nA1,Sent\xff\n", "not UTF-8 text (byte 23)"),
    "long_row": (b"order_id,status\nA1,Sent,extra\n", "malformed CSV: a row has more fields than the header"),
    "open_quote": (b'order_id,status\n"A1,Sent\n',
                   "malformed CSV: Error tokenizing data. C error: EOF inside string starting at row 1"),
    "output_column": (b"order_id,status,action\nA1,Sent,x\n",
                      "input already has output column action: rename or drop it first"),
    "huge_header_field": (b"order_id,status," + b"x" * 200_000 + b"\nA1,Sent,v\n",
                          "malformed CSV: field larger than field limit (131072)"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_malformed_files_are_refused_with_one_line_and_nothing_written(tmp_path, capsys, name):
    data, reason = REFUSED[name]
    src = tmp_path / f"{name}.csv"
    src.write_bytes(data)
    assert cli.main(["evaluate", str(src), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"cancel-rules evaluate: {src}: {reason}\n"
    assert os.listdir(tmp_path) == [src.name]


ACCEPTED = {  # file bytes -> (output rows as read back, the error of the row or "" if decided)
    "nul_in_a_value": (b"order_id,status\nA1,Se\x00nt\n", [["A1", "Se\x00nt"]],
                       "status: unknown value 'Se\\x00nt' (did you mean 'Sent'?)"),
    "crlf": (b"order_id,status\r\nA1,Sent\r\n", [["A1", "Sent"]], ""),
    "five_mb_cell": (b"order_id,status,note\nA1,Sent," + b"y" * 5_000_000 + b"\n", [["A1", "Sent", "y" * 5_000_000]],
                     ""),
    "quoted_newline_in_header": (b'order_id,status,"a\nb"\nA1,Sent,v\n', [["A1", "Sent", "v"]], ""),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_odd_but_valid_files_keep_every_cell(tmp_path, capsys, name):
    data, rows, error = ACCEPTED[name]
    src, out = tmp_path / f"{name}.csv", tmp_path / "out.csv"
    src.write_bytes(data)
    assert cli.main(["evaluate", str(src), "-o", str(out), "--as-of", AS_OF]) == 0
    assert capsys.readouterr().out == ""
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(back.columns[-5:]) == DECISION_COLUMNS and len(back.columns) == len(rows[0]) + 5
    assert back.iloc[:, :-5].to_numpy().tolist() == rows
    assert back["error"][0] == error and (back["action"][0] == "") == bool(error)


def test_read_orders_refuses_a_wide_file_or_upload_from_its_header():
    import engine

    data = ",".join(["order_id", "status", *(f"x{i}" for i in range(999))]).encode() + b"\n"
    with pytest.raises(engine.InputError, match="1,001 columns; at most 1,000 are read"):
        engine.read_orders(io.BytesIO(data))  # an upload in the notebook
    assert len(engine.read_orders(io.BytesIO(data), max_columns=1_001).columns) == 1_001
