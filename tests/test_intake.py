"""Order files laid out otherwise than the policy (engine.intake): delimiter sniffing, CSV line numbers, column
mapping suggested, checked and applied in the API and the CLI; rule coverage (Policy.coverage, the summary)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

import engine
from conftest import AS_OF, SAMPLE_ORDERS, SCRIPT
from engine.cli import main
from engine.intake import apply_mapping, parse_mapping, record_lines, sniff_delimiter, suggest_mapping
from engine.tabular import frame_csv

RENAMED = "Order ID;Order Status;Seller reply;hours_since_contact\nA;Sent;No reply;50\nB;Closed;;\nC;Lost;;\n"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_sniff_finds_the_delimiter_that_splits_every_line_alike(delimiter):
    text = RENAMED.replace(";", delimiter)
    assert sniff_delimiter(text) == delimiter
    assert sniff_delimiter(text[:-7]) == delimiter  # a cut last line is not held against it


def test_sniff_is_not_fooled_by_commas_inside_quotes_and_defaults_to_comma():
    text = 'order_id;status;note\nA;Sent;"late, and silent"\nB;Closed;"x, y, z"\n'
    assert sniff_delimiter(text) == ";"
    assert sniff_delimiter("order_id\nA\nB\n") == ","  # one column: nothing to split
    assert sniff_delimiter("") == ","


def test_record_lines_follow_blank_lines_and_quoted_newlines():
    text = 'order_id,status,note\nA,Sent,x\n\nB,Sent,"two\nlines"\nC,Closed,\n'
    lines = record_lines(text)
    assert lines == [2, 4, 6]
    assert len(lines) == len(pd.read_csv(io.StringIO(text)))  # pandas reads the same records


def test_parse_mapping_and_its_one_line_errors():
    assert parse_mapping(["Order Status=status", " a=b = seller_reply "]) == \
        {"Order Status": "status", "a=b": "seller_reply"}  # the last '=' splits
    for bad in ("Order Status", "=status", "Order Status=", "="):
        with pytest.raises(engine.MappingError) as info:
            parse_mapping([bad])
        assert info.value.exit_code == 2 and "COLUMN=FIELD" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(engine.MappingError, match="twice"):
        parse_mapping(["A=status", "A=order_id"])


def test_apply_mapping_refuses_missing_repeated_and_clashing_columns():
    header = ["Order ID", "Order Status", "Status"]
    assert apply_mapping(header[:2], {"Order Status": "status"}) == ["Order ID", "status"]
    with pytest.raises(engine.MappingError, match="no column 'Order Statu' to map .did you mean 'Order Status'"):
        apply_mapping(header, {"Order Statu": "status"})
    with pytest.raises(engine.MappingError, match="'Status' and 'Order Status'|'Order Status' and 'Status'"):
        apply_mapping(header, {"Order Status": "status"})  # 'Status' is read as status already
    with pytest.raises(engine.MappingError, match="appears more than once"):
        apply_mapping(["x", "x", "Order ID"], {"x": "status"})
    assert apply_mapping(["status", "Status"], {}) == ["status", "Status"]  # no mapping: nothing new refused


def test_suggestions_come_from_names_and_from_the_values_of_the_facts(policy):
    spec = policy.spec
    frame = pd.read_csv(io.StringIO(RENAMED), sep=";", dtype=str, keep_default_na=False)
    assert suggest_mapping(spec, list(frame.columns), frame) == {"Order Status": "status"}
    # a name that says nothing, values that do: 'Sent', 'Closed' are the status fact's labels
    state = frame.rename(columns={"Order Status": "State"})
    assert suggest_mapping(spec, list(state.columns)) == {}
    assert suggest_mapping(spec, list(state.columns), state) == {"State": "status"}
    # 'order_date' is not order_id, whatever difflib thinks; the sought fields are named in full
    assert suggest_mapping(spec, ["order_date", "status"]) == {}
    assert suggest_mapping(spec, ["Order Number", "Current status", "contacted"]) == \
        {"Current status": "status", "contacted": "contacted_at"}


def test_read_orders_and_evaluate_take_the_mapping(policy):
    frame = engine.read_orders(io.BytesIO(RENAMED.encode()), delimiter=";", mapping={"Order Status": "status"})
    assert list(frame.columns) == ["Order ID", "status", "Seller reply", "hours_since_contact"]
    raw = engine.read_orders(io.BytesIO(RENAMED.encode()), delimiter=";")
    out = policy.evaluate(raw, as_of=AS_OF, mapping={"Order Status": "status"})
    assert list(out["action"].fillna("-")) == ["open_dispute", "wait_for_refund", "-"]
    assert "status" in out.columns and "Order Status" not in out.columns
    assert list(raw.columns)[1] == "Order Status"  # the caller's frame is left as it was
    with pytest.raises(engine.MappingError, match="does not read .did you mean 'status'"):
        policy.evaluate(raw, as_of=AS_OF, mapping={"Order Status": "stauts"})
    with pytest.raises(engine.InputError, match="missing required column: status"):
        policy.evaluate(raw, as_of=AS_OF)


def test_coverage_lists_every_rule_with_its_hits_zero_included(policy):
    orders = engine.read_orders(SAMPLE_ORDERS)
    decided = policy.evaluate(orders, as_of=AS_OF)
    cov = policy.coverage(orders, as_of=AS_OF)
    assert list(cov.columns) == ["rule_id", "action", "priority", "orders", "share"]
    assert list(cov["rule_id"]) == [r.id for r in policy.spec.ranked_rules()]
    counts = decided["rule_id"].value_counts()
    assert dict(zip(cov["rule_id"], cov["orders"], strict=True)) == \
        {r.id: int(counts.get(r.id, 0)) for r in policy.spec.rules}
    zero = set(cov.loc[cov["orders"] == 0, "rule_id"])
    assert {"refund_overdue", "reply_window_unknown"} <= zero  # the two: on the sample they never fire
    assert cov.equals(policy.coverage(decided))  # decisions given: not evaluated again
    assert cov["share"].sum() == pytest.approx(100 * decided["rule_id"].notna().sum() / len(decided), abs=0.6)


def test_cli_evaluate_maps_columns_and_lists_zero_hit_rules(tmp_path):
    source = tmp_path / "renamed.csv"
    source.write_text(RENAMED.replace(";", ","))
    out = tmp_path / "out.csv"
    import subprocess

    result = subprocess.run([str(SCRIPT), "evaluate", str(source), "-o", str(out), "--as-of", AS_OF,
                             "--map", "Order Status=status", "--map", "Seller reply=seller_reply"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(written.columns[:4]) == ["Order ID", "status", "seller_reply", "hours_since_contact"]
    assert list(written["action"]) == ["open_dispute", "wait_for_refund", ""]
    idle = next(line for line in result.stderr.splitlines() if line.startswith("rules with no hit"))
    assert "refund_overdue" in idle and "seller_silent_past_window" not in idle


@pytest.mark.parametrize(("maps", "expected"), [
    (["Order Status"], "--map takes COLUMN=FIELD"),
    (["Order Statu=status"], "no column 'Order Statu' to map (did you mean 'Order Status'?)"),
    (["Order Status=stauts"], "which the policy does not read (did you mean 'status'?)"),
    (["Order Status=status", "Order ID=status"], "would both be read as 'status'"),
])
def test_cli_bad_mapping_exits_2_with_one_line(tmp_path, capsys, maps, expected):
    source = tmp_path / "renamed.csv"
    source.write_text(RENAMED.replace(";", ","))
    args = ["evaluate", str(source), "-o", str(tmp_path / "out.csv"), "--as-of", AS_OF]
    for item in maps:
        args += ["--map", item]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and err.startswith("cancel-rules evaluate: ")
    assert not (tmp_path / "out.csv").exists()


def test_bad_rows_download_is_defused(policy):
    out = policy.evaluate(pd.DataFrame({"order_id": ["=HYPERLINK(1)"], "status": ["Lost"]}), as_of=AS_OF)
    assert frame_csv(out[out["error"].notna()]).splitlines()[1].startswith(b"\"'=HYPERLINK(1)\"")
