"""Test scenarios: `cancel-rules test CASES.csv` (the real command), Policy.test, coverage, JUnit XML and bad cases."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from test_cli import one_error_line, run

import engine
from conftest import AS_OF, load_policy
from engine.scenarios import CASE_COLUMNS, read_cases

SHIPPED = engine.RULES_DIR / "tests" / "cancellation-cases.csv"
HEADER = "case,order_id,status,seller_reply,hours_since_contact,expected_action,expected_rule\n"


def shipped_rows() -> list[dict[str, str]]:
    with SHIPPED.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def cases_file(tmp_path: Path, body: str, header: str = HEADER, name: str = "cases.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + body, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- the shipped cases


def test_shipped_cases_pass_with_the_real_command(tmp_path):
    # A far as-of for the cases without one: those with timestamps carry their own as_of, so the file passes on
    # any day (and the command names every rule in its coverage).
    result = run("test", str(SHIPPED), "--as-of", "2030-01-01T00:00:00Z", "--junit", str(tmp_path / "out.xml"))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = shipped_rows()
    assert result.stdout.splitlines()[0] == (f"{SHIPPED}: {len(rows)} cases, {len(rows)} passed, 0 failed "
                                             f"(policy cancellation {engine.load().version})")
    assert "failures:" not in result.stdout
    assert result.stdout.rstrip().endswith("rules no case or example hits: none")
    for rule in engine.load().spec.rules:
        assert f"\n  {rule.id} " in result.stdout
    suite = ET.parse(tmp_path / "out.xml").getroot()
    assert suite.attrib["tests"] == str(len(rows)) and suite.attrib["failures"] == suite.attrib["errors"] == "0"
    assert [c.attrib["name"] for c in suite.iter("testcase")] == [r["case"] for r in rows]


def test_shipped_cases_cover_every_rule_threshold_alias_and_timestamp():
    rows = shipped_rows()
    assert len(rows) >= 60
    names = [r["case"] for r in rows]
    assert all(names) and len(set(names)) == len(names)
    assert all(r["expected_rule"] for r in rows)  # each case pins the rule, not only the action
    policy = engine.load()
    hit = {r["expected_rule"] for r in rows}
    assert hit == {r.id for r in policy.spec.rules}
    # both sides of every threshold: the parameter's value itself and a value just under it
    for column, threshold in [("hours_since_payment", 24), ("hours_since_contact", 48), ("seller_rating", 90)]:
        assert {f"{threshold:g}", f"{threshold - 0.1:g}"} <= {r[column] for r in rows}, column
    refund = policy.spec.parameters["refund_days"]
    for code, days in {**refund.values, None: refund.default}.items():
        given = {r["days_since_refund"] for r in rows if _method(policy, r["payment_method"]) == code}
        assert {f"{days:g}", f"{days - 0.1:g}"} <= given, code
    # every spelling of a status the policy accepts (codes, labels, aliases: as folded), and timestamps judged at an
    # explicit as-of
    spelled = {engine.text.alias_key(r["status"]) for r in rows}
    assert set(policy.spec.facts["status"].aliases) <= spelled
    stamped = [r for r in rows if r["contacted_at"] or r["paid_at"] or r["refund_started_at"]]
    assert len(stamped) >= 8 and all(r["as_of"] for r in stamped)


def _method(policy: engine.Policy, text: str) -> str | None:
    if not text:
        return None
    return policy.spec.facts["payment_method"].aliases[engine.text.alias_key(text)]


def test_one_changed_expectation_fails_and_junit_names_that_case(tmp_path):
    rows = shipped_rows()
    k = next(i for i, r in enumerate(rows) if r["expected_action"] == "wait_for_seller" and r["hours_since_contact"])
    changed = rows[k]["case"]
    rows[k] = {**rows[k], "expected_action": "open_dispute", "expected_rule": ""}
    cases = write_rows(tmp_path / "changed.csv", rows)
    out = tmp_path / "junit.xml"
    result = run("test", str(cases), "--as-of", AS_OF, "--junit", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{len(rows)} cases, {len(rows) - 1} passed, 1 failed" in result.stdout
    table = result.stdout.split("failures:\n")[1].splitlines()
    assert table[0].split() == ["case", "expected", "got", "rule", "why"]
    assert table[1].startswith(f"  {changed}  ")
    assert "open_dispute" in table[1] and "wait_for_seller_reply" in table[1]
    root = ET.parse(out).getroot()
    assert (root.attrib["tests"], root.attrib["failures"], root.attrib["errors"]) == (str(len(rows)), "1", "0")
    failed = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.attrib["name"] for c in failed] == [changed]
    assert failed[0].attrib["line"] == str(k + 2) and failed[0].attrib["file"] == str(cases)
    failure = failed[0].find("failure")
    assert failure.attrib["message"] == "expected open_dispute, got wait_for_seller (rule wait_for_seller_reply)"
    assert "why: The seller has had" in failure.text


def test_bad_case_file_exits_2_with_one_located_line_and_writes_no_junit(tmp_path):
    cases = cases_file(tmp_path, "ok,A1,Sent,,,contact_seller,\nsilent,A2,Sent,no_reply,50,opne_dispute,\n")
    out = tmp_path / "junit.xml"
    line = one_error_line(run("test", str(cases), "--as-of", AS_OF, "--junit", str(out)))
    assert line == (f"cancel-rules test: {cases}:3: case 'silent': unknown action 'opne_dispute' in expected_action "
                    "(did you mean 'open_dispute'?)")
    assert not out.exists() and list(tmp_path.iterdir()) == [cases]


def test_missing_expected_action_column_exits_2(tmp_path):
    cases = cases_file(tmp_path, "A1,Sent,contact_seller\n", header="order_id,status,expected\n")
    line = one_error_line(run("test", str(cases)))
    assert line.startswith(f"cancel-rules test: {cases}: no 'expected_action' column")


# ---------------------------------------------------------------------------------------------- bad cases


@pytest.mark.parametrize("body, message", [
    ("a,A1,Sent,,,,\n", "cases.csv:2: case 'a': expected_action is empty"),
    (",A1,Sent,,,wait_for_seler,\n",
     "cases.csv:2: unknown action 'wait_for_seler' in expected_action (did you mean 'wait_for_seller'?)"),
    ("a,A1,Sent,,,contact_seller,contact_seller_to_cancell\n",
     "cases.csv:2: case 'a': unknown rule 'contact_seller_to_cancell' in expected_rule "
     "(did you mean 'contact_seller_to_cancel'?)"),
    ("a,A1,Sent,,,open_dispute,contact_seller_to_cancel\n",
     "cases.csv:2: case 'a': expected_rule 'contact_seller_to_cancel' gives contact_seller, not the expected_action "
     "open_dispute"),
    ("a,A1,Sent,,,contact_seller,\na,A2,Sent,,,contact_seller,\n",
     "cases.csv:3: case 'a': the name repeats the case of line 2"),
    ("a,A1,Sent,,,contact_seller,,extra\n", "cases.csv:2: 8 cells, the header has 7"),
    ('"two\nlines",A1,Sent,,,contact_seller,\n\nb,A2,Sent,,,nope,\n',  # a quoted newline and a blank line
     "cases.csv:5: case 'b': unknown action 'nope' in expected_action"),
    ("", "cases.csv: no cases (a header and no rows)"),
    ('a,A1,"Sent,,,contact_seller,\n', "cases.csv:2: malformed CSV: unexpected end of data"),  # an unclosed quote
    ('a,A1,"Se"nt,,,contact_seller,\n', "cases.csv:2: malformed CSV: ',' expected after '\"'"),
    # a long bad expectation is echoed cut at 200 characters, its length said (it was printed whole)
    (f"a,A1,Sent,,,{'q' * 5000},\n", f"cases.csv:2: case 'a': unknown action '{'q' * 200}…' (5,000 characters) in "
                                      f"expected_action"),
])
def test_bad_cases_are_located(tmp_path, policy, body, message):
    path = cases_file(tmp_path, body)
    with pytest.raises(engine.InputError) as caught:
        policy.test(path, as_of=AS_OF)
    assert str(caught.value) == f"{tmp_path}/{message}"


def test_bad_as_of_of_a_case_is_located(tmp_path, policy):
    path = cases_file(tmp_path, "a,A1,Sent,,,contact_seller,yesterday\n",
                      header="case,order_id,status,seller_reply,hours_since_contact,expected_action,as_of\n")
    with pytest.raises(engine.InputError, match=r"cases.csv:2: case 'a': as_of is not an ISO 8601 timestamp: "
                                                r"'yesterday'$") as caught:
        policy.test(path)
    assert (caught.value.line, caught.value.row, caught.value.case) == (2, 1, "a")


@pytest.mark.parametrize("header, message", [
    ("case,order_id,status,hours_since_contakt,expected_action\n",
     "unknown column 'hours_since_contakt' (did you mean 'hours_since_contact'?)"),
    ("case,order_id,status,expected_action,expected_rul\n",
     "unknown column 'expected_rul' (did you mean 'expected_rule'?)"),
    ("case,order_id,status,expected_action,Expected Action\n",
     "column 'expected_action' appears more than once ('expected_action', 'Expected Action')"),
    ("case,order_id,expected_action\n", "missing required column: status (columns found: order_id)"),
    ("case,order_id,status,status,expected_action\n", "column 'status' appears more than once"),
])
def test_bad_columns_stop_the_run(tmp_path, policy, header, message):
    path = cases_file(tmp_path, ",".join(["x"] * header.count(",")) + ",contact_seller\n", header=header)
    with pytest.raises(engine.InputError) as caught:
        policy.test(path, as_of=AS_OF)
    assert str(caught.value) == f"{path}: {message}"


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty (no header row)"),
    (b"order_id,status,expected_action\nA1,Sent\xff,contact_seller\n", "not UTF-8 text (byte 39)"),
])
def test_unreadable_case_files(tmp_path, content, message):
    path = tmp_path / "cases.csv"
    path.write_bytes(content)
    with pytest.raises(engine.InputError) as caught:
        read_cases(path)
    assert str(caught.value) == f"{path}: {message}"


def test_missing_case_file_exits_2():
    line = one_error_line(run("test", "no/such/cases.csv"))
    assert line == "cancel-rules test: no/such/cases.csv: no such file"


def test_junit_into_a_missing_folder_exits_2(tmp_path):
    line = one_error_line(run("test", str(SHIPPED), "--junit", str(tmp_path / "nope" / "out.xml")))
    assert line == f"cancel-rules test: {tmp_path}/nope/out.xml: output folder does not exist: {tmp_path}/nope"


# ---------------------------------------------------------------------------------------------- Policy.test


def test_policy_test_keeps_every_row_in_order_and_fails_bad_orders(policy):
    cases = pd.DataFrame({
        "order_id": ["B1", "B2", "B3", "B4"],
        "status": ["Sent", "Sentt", "Sent", None],
        "seller_reply": ["no_reply", "no_reply", "Silent", None],
        "hours_since_contact": [50, 10, float("nan"), None],  # NaN in a float column: not given
        "expected_action": ["open_dispute", "wait_for_seller", "wait_for_seller", "contact_seller"],
    }, index=[40, 30, 20, 10])
    out = policy.test(cases, as_of=AS_OF)
    assert list(out.index) == [40, 30, 20, 10]
    assert list(out.columns) == ["case", "passed", "expected_action", "expected_rule", "action", "rule_id", "why",
                                 "error"]
    assert out["case"].tolist() == ["row 1", "row 2", "row 3", "row 4"]
    assert out["passed"].tolist() == [True, False, True, False]
    assert out["rule_id"].tolist() == ["seller_silent_past_window", None, "reply_window_unknown", None]
    assert out.loc[30, "error"] == out.loc[30, "why"] == "status: unknown value 'Sentt' (did you mean 'Sent'?)"
    assert out.loc[10, "error"] == "status: missing (required)"
    assert out.loc[40, "why"].startswith("The seller has not replied in 50 h")


def test_each_case_is_judged_at_its_own_as_of(policy):
    cases = pd.DataFrame({"case": ["own", "shared"], "order_id": ["T1", "T2"], "status": ["Sent", "Sent"],
                          "seller_reply": ["no_reply", "no_reply"],
                          "contacted_at": ["2026-11-24T12:00:00Z", "2026-11-24T12:00:00Z"],
                          "as_of": ["2026-11-25T12:00:00Z", ""],
                          "expected_action": ["wait_for_seller", "open_dispute"]})
    out = policy.test(cases, as_of=AS_OF)  # 24 h for the first case, 48 h for the second
    assert out["passed"].tolist() == [True, True]
    assert out["why"].tolist()[0].startswith("The seller has had 24 h")
    later = policy.test(cases, as_of="2026-11-25T00:00:00Z")  # 12 h for the second: it now fails
    assert later["passed"].tolist() == [True, False]


def test_a_gap_is_a_failing_case_and_a_never_hit_rule_is_listed():
    gap = load_policy("gap")
    out = gap.test(pd.DataFrame({"order_id": ["G"], "status": ["closed"], "hours": [10],
                                 "expected_action": ["act"]}))
    assert not out["passed"][0] and out["action"][0] is None and "no rule" in out["why"][0]
    report = load_policy("unreachable").test_report(pd.DataFrame({
        "case": ["open", "closed"], "order_id": ["1", "2"], "status": ["open", "closed"], "hours": ["12", ""],
        "expected_action": ["wait", "act"]}))
    assert report.ok and report.exit_code == 0
    assert report.coverage.set_index("rule")[["cases", "examples", "hits"]].to_dict("index") == {
        "open": {"cases": 1, "examples": 2, "hits": 3}, "open_late": {"cases": 0, "examples": 0, "hits": 0},
        "closed": {"cases": 1, "examples": 1, "hits": 2}}
    assert report.zero_hit_rules == ["open_late"]
    assert str(report).endswith("rules no case or example hits: open_late")


def test_columns_the_policy_does_not_read_are_listed_not_refused(tmp_path, policy):
    path = cases_file(tmp_path, "a,A1,Sent,contact_seller,from the guide\n",
                      header="case,order_id,status,expected_action,note\n")
    report = policy.test_report(path, as_of=AS_OF)
    assert report.ok and report.unread_columns == ("note",)
    assert "columns not read by the policy: note" in str(report)


def test_a_policy_reading_a_case_column_cannot_be_tested(tmp_path):
    text = (Path(__file__).parent / "fixtures" / "policies" / "unreachable.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("hours:", "as_of:").replace("{hours}", "{as_of}"))
    with pytest.raises(engine.InputError) as caught:
        engine.load(path).test(pd.DataFrame({"order_id": ["1"], "status": ["open"], "expected_action": ["wait"]}))
    assert str(caught.value) == ("cases: the policy reads a field named 'as_of', the column of a case's as-of time: "
                                 "it cannot be tested with cases")


def test_case_columns_match_as_headers_do(policy):
    out = policy.test(pd.DataFrame({" Case ": ["x"], "Order ID": ["1"], "STATUS": ["Sent"], "Expected Action":
                                    ["contact_seller"], "expected rule": ["contact_seller_to_cancel"]}))
    assert out["case"].tolist() == ["x"] and out["passed"].tolist() == [True]
    assert set(CASE_COLUMNS) == {"case", "expected_action", "expected_rule", "as_of"}


def test_junit_holds_only_xml_characters(tmp_path, policy):
    cases = pd.DataFrame({"case": ["bell\x07 and nul\x00 and \ud800"], "order_id": ["1"], "status": ["Sent"],
                          "expected_action": ["open_dispute"]}, dtype=object)
    report = policy.test_report(cases, as_of=AS_OF)
    report.write_junit(tmp_path / "out.xml")
    case = ET.parse(tmp_path / "out.xml").getroot().find("testsuite/testcase")
    assert case.attrib["name"] == "bell\ufffd and nul\ufffd and \ufffd"
    assert "line" not in case.attrib and "file" not in case.attrib  # a frame's rows have no file lines
    assert case.find("failure").attrib["message"] == "expected open_dispute, got contact_seller " \
                                                     "(rule contact_seller_to_cancel)"
    assert "bell\\x07 and nul\\x00" in str(report)  # the terminal gets control characters escaped


def test_read_cases_keeps_text_and_lines():
    cases = read_cases(b"\xef\xbb\xbfcase,order_id,status,expected_action\n\nx,007,Sent,contact_seller\ny,8\n",
                       name="mem.csv")
    assert cases.source == "mem.csv" and cases.lines == (3, 4)
    assert cases.frame.to_dict("records") == [
        {"case": "x", "order_id": "007", "status": "Sent", "expected_action": "contact_seller"},
        {"case": "y", "order_id": "8", "status": "", "expected_action": ""}]


def test_the_72h_variant_fails_exactly_the_cases_silent_48_to_72_hours(legacy):
    out = legacy.test(SHIPPED, as_of=AS_OF)
    failed = out[~out["passed"]]
    assert len(failed) == 6 and len(out) == len(shipped_rows())
    assert set(failed["expected_action"]) == {"open_dispute"} and set(failed["rule_id"]) == {"wait_for_seller_reply"}
    hours = [float(w.split("has had ")[1].split(" h")[0]) for w in failed["why"]]
    assert all(48 <= h < 72 for h in hours), hours
