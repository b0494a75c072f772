"""The CSV run's Arrow output path (decisions as codes, written as Arrow dictionary columns next to the input's
Arrow columns) writes exactly what the pandas frame path writes: Policy.evaluate, then frame_csv."""

from __future__ import annotations

import csv
import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import AS_OF, AS_OF_DT, load_policy
from engine.csvio import evaluate_csv, read_orders
from engine.decided import Texts
from engine.tabular import Summary, frame_csv

VALUES = {  # column -> good and bad spellings
    "status": ["Sent", " in transit ", "AWAITING_SHIPMENT", "Awaiting payment", "Closed", "Dispute", "", "lost"],
    "seller_reply": ["", "No reply", "Full refund", "partial_refund", "Refused", "maybe"],
    "hours_since_contact": ["", "48", "47.9", " 72 ", "1e2", "NaN", "-1", "soon"],
    "contacted_at": ["", "2026-11-24T12:00:00Z", "2026-11-24 11:00:00", "2026-13-01T00:00:00", "yesterday"],
    "paid_at": ["", "2026-11-25T12:00:00Z", "2026-11-20"],
    "refund_started_at": ["", "2026-11-19T12:00:00+00:00", "2026-10-01T00:00:00Z"],
    "payment_method": ["", "Credit card", "PayPal", "Boleto", "crypto"],
    "seller_rating": ["", "95", "89.9", "120", "great"],
}
# Cells a spreadsheet would run (defused unless raw), plain numbers (never defused), quoting, newlines; a lone CR
# sends the file to the pandas reader.
HOSTILE = ["=1+2", "+1.5e3", "-2", "-x", "@SUM(A1)", "\tx", "'quoted", 'say "hi"', "a,b", "two\nlines", "a\r\nb",
           "lone\rcr", " ", "ünï", "NaN"]


@st.composite
def hostile_files(draw) -> tuple[bytes, dict[str, str]]:
    """(file bytes, column mapping): the policy's columns and others, good, bad and hostile cells."""
    columns = ["order_id", "status"] + draw(st.lists(st.sampled_from(list(VALUES)[1:]), unique=True, max_size=7))
    columns += draw(st.lists(st.sampled_from(["note", "@cmd", "-x"]), unique=True, max_size=2))
    columns = draw(st.permutations(columns))
    mapping = {"Order Status": "status"} if draw(st.booleans()) else {}
    rows = []
    for i in range(draw(st.integers(0, 25))):
        rows.append([draw(st.sampled_from(VALUES.get(c, [f"A{i}"])) | st.sampled_from(HOSTILE)) for c in columns])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow([("Order Status" if mapping and c == "status" else c) for c in columns])
    writer.writerows(rows)
    return buffer.getvalue().encode(), mapping


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(case=hostile_files(), raw=st.booleans(), chunksize=st.sampled_from([1, 3, 100_000]))
def test_arrow_output_path_writes_what_the_pandas_frame_path_writes(tmp_path, case, raw, chunksize):
    data, mapping = case
    policy = load_policy("default")
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_bytes(data)
    summary = evaluate_csv(policy.compiled, source, target, AS_OF_DT, chunksize=chunksize, raw=raw, mapping=mapping)
    out = policy.evaluate(read_orders(source, mapping=mapping), as_of=AS_OF)
    assert target.read_bytes() == frame_csv(out, raw=raw)
    reference = Summary()
    reference.add(out, 1)
    got = summary.to_dict()
    assert {k: got[k] for k in ("rows", "actions", "rules", "errors")} == \
        {k: reference.to_dict()[k] for k in ("rows", "actions", "rules", "errors")}
    assert list(got["actions"]) == list(reference.actions) and list(got["errors"]) == list(reference.errors)
    assert summary.error_rows == reference.error_rows


def test_dictionary_columns_are_written_as_their_texts():
    texts = Texts()
    codes = np.array([texts.code(t) for t in ["a,b", None, 'x"y', "", "a,b", "two\nlines"]], dtype=np.int32)
    plain = pa.array(texts.objects(codes).tolist(), type=pa.string())

    def written(column: pa.Array) -> bytes:
        sink = io.BytesIO()
        pacsv.write_csv(pa.table({"m": column}), sink, pacsv.WriteOptions(include_header=False,
                                                                          quoting_style="needed"))
        return sink.getvalue()

    assert texts.texts == ["a,b", 'x"y', "", "two\nlines"]  # each once
    assert written(texts.arrow(codes)) == written(plain) == b'"a,b"\n\n"x""y"\n""\n"a,b"\n"two\nlines"\n'


def test_summary_from_codes_counts_a_value_shared_by_several_codes_in_order_of_first_appearance():
    summary = Summary()
    winner = np.array([2, -1, 0, 2, 1, 0], dtype=np.int64)
    errors = np.array([-1, 0, -1, -1, -1, -1], dtype=np.int32)
    summary.add_codes(6, (winner, ["refund", "dispute", "dispute"]), (winner, ["r0", "r1", "r2"]),
                      (errors, ["gap"]), 10)
    assert list(summary.actions.items()) == [("dispute", 3), ("refund", 2)]
    assert list(summary.rules.items()) == [("r2", 2), ("r0", 2), ("r1", 1)]
    assert summary.errors == {"gap": 1} and summary.error_rows == {"gap": [11]}


def test_a_file_handed_to_pandas_after_chunks_were_written_is_written_once_from_the_start(tmp_path):
    """A lone CR past what Arrow reads ahead: chunks were decided and written before the reader sees it; the output
    is started again by the pandas reader and holds every row once."""
    policy = load_policy("default")
    header = ["order_id", "status", "seller_reply", "hours_since_contact", "note"]
    rows = [f"A{i},Sent,No reply,{i % 100},n" for i in range(300_000)]  # 8 MB: past what Arrow reads ahead
    rows[-3] = 'A-late,Sent,No reply,5,"lone\rcr"'
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_bytes("\n".join([",".join(header), *rows, ""]).encode())
    summary = evaluate_csv(policy.compiled, source, target, AS_OF_DT, chunksize=10_000)  # 8 chunks written first
    out = policy.evaluate(read_orders(source), as_of=AS_OF)
    assert summary.rows == len(out) == 300_000
    assert target.read_bytes() == frame_csv(out)
