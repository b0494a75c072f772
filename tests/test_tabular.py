"""Tables in and out (engine.tabular): the one set of CSV read options, formula defusing, the row writer and
frame_csv, and merging partition summaries."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from engine.tabular import OUTPUT_COLUMNS, Summary, defuse, frame_csv, merge_summaries, read_csv_text, write_rows


def test_csvs_are_read_as_text_with_empty_as_empty_and_nan_as_text():
    frame = read_csv_text(io.BytesIO("\ufefforder_id,hours\nA1,NaN\nA2,\nA3,007\n".encode()))
    assert list(frame.columns) == ["order_id", "hours"]
    assert frame["hours"].tolist() == ["NaN", "", "007"]


@pytest.mark.parametrize(("cell", "written"), [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("-2", "-2"), ("+1.5e3", "+1.5e3"), ("-.5", "-.5"), ("plain", "plain"), ("", ""), ("a=b", "a=b"),
])
def test_a_cell_a_spreadsheet_would_run_gets_a_quote(cell, written):
    assert defuse(cell) == written


def test_the_row_writer_defuses_text_in_arrow_as_defuse_does_cell_by_cell():
    cells = ["=1", "-2", "ok", "", "+x", "@a", "-1e3", "-", "\rx"]
    frame = pd.DataFrame({"id": range(len(cells)), "text": cells})
    before = frame.copy()
    for raw, expected in ((False, [defuse(c) for c in cells]), (True, cells)):
        sink = io.BytesIO()
        write_rows(frame, sink, raw=raw)
        assert [row[1] for row in csv.reader(io.StringIO(sink.getvalue().decode()))] == expected
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is left as it was


def test_frame_csv_writes_the_header_and_mixed_columns_as_text():
    frame = pd.DataFrame({"=note": ["=a", 1], "n": [1, 2]})
    assert list(csv.reader(io.StringIO(frame_csv(frame).decode()))) == [["'=note", "n"], ["'=a", "1"], ["1", "2"]]
    assert list(csv.reader(io.StringIO(frame_csv(frame, raw=True).decode()))) == [["=note", "n"], ["=a", "1"],
                                                                                  ["1", "2"]]


def test_partition_summaries_merge_with_rows_numbered_in_the_whole():
    def part(errors: list[str | None]) -> Summary:
        out = pd.DataFrame({"action": [None if e else "wait" for e in errors], "rule_id": [None] * len(errors),
                            "error": errors})
        summary = Summary()
        summary.add(out, 1)
        return summary

    total = merge_summaries([part([None, "bad"]), part(["bad", None, "bad"]), part(["bad"])])
    assert total.rows == 6 and total.actions == {"wait": 2} and total.errors == {"bad": 4}
    assert total.error_rows == {"bad": [2, 3, 5]}  # the first three, counted across the partitions
    assert OUTPUT_COLUMNS == ("action", "rule_id", "message", "error", "policy_version")
