"""Policies from text and back (loads, to_yaml, save) and edits as data (with_rule, without_rule, with_priority):
byte-for-byte round trips, one-line diffs, and every error located."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pandas as pd
import pytest

import engine
from conftest import AS_OF, LEGACY, SAMPLE_ORDERS
from engine.edits import with_priority_text, with_rule_text, without_rule_text

BUNDLED = engine.DEFAULT_POLICY

NEW_RULE = {
    "id": "seller_refused_low_rating",
    "priority": 58,
    "when": {"seller_reply": "refused", "seller_rating": {"lt": "$low_rating_percent"}},
    "then": {"action": "contact_support", "message": "A low-rated seller refused: ask support."},
    "source": "test",
    "examples": [{"order": {"order_id": "T1", "status": "Sent", "seller_reply": "refused", "seller_rating": 50},
                  "expect": "contact_support"}],
}


def _changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def _where(error: engine.RuleError) -> list[tuple[int, int]]:
    return [(p.line, p.col) for p in error.problems]


def _line_of(text: str, needle: str, after: int = 0) -> int:
    lines = text.splitlines()
    return next(i + 1 for i in range(after, len(lines)) if needle in lines[i])


@pytest.mark.parametrize("path", [BUNDLED, LEGACY], ids=["bundled", "variant"])
def test_save_without_changes_reproduces_the_file_byte_for_byte(path: Path, tmp_path: Path) -> None:
    out = engine.load(path).save(tmp_path / "out.yaml")
    assert out.read_bytes() == Path(path).read_bytes()


def test_save_keeps_crlf_line_ends_byte_for_byte(tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.yaml"
    crlf.write_bytes(Path(BUNDLED).read_bytes().replace(b"\n", b"\r\n"))
    policy = engine.load(crlf).with_parameters(seller_reply_hours=60)
    policy.save(tmp_path / "out.yaml")
    written = (tmp_path / "out.yaml").read_bytes()
    assert written.count(b"\r\n") == written.count(b"\n")
    assert written.replace(b"seller_reply_hours: 60", b"seller_reply_hours: 48") == crlf.read_bytes()


@pytest.mark.parametrize(("path", "change", "line"), [
    (BUNDLED, {"seller_reply_hours": 72}, "  seller_reply_hours: 72"),
    (BUNDLED, {"refund_days": {"paypal": 31.5}},
     "      paypal: 31.5          # not published (christinasbeautyjourney.blogspot.com)"),
    (LEGACY, {"seller_reply_hours": 96}, "  seller_reply_hours: 96"),
], ids=["number", "keyed", "variant"])
def test_one_parameter_change_changes_only_its_line(path: Path, change: dict, line: str) -> None:
    before = Path(path).read_text(encoding="utf-8")
    after = engine.load(path).with_parameters(**change).to_yaml()
    changed = _changed_lines(before, after)
    assert len(changed) == 2 and changed[0].startswith("-") and changed[1] == "+" + line
    comments = [line.split("#", 1)[1] for line in before.splitlines() if "#" in line]
    assert comments and all(comment in after for comment in comments)


def test_a_variant_gets_a_parameter_it_did_not_override() -> None:
    legacy = engine.load(LEGACY)
    after = legacy.with_parameters(low_rating_percent=80).to_yaml()
    assert _changed_lines(LEGACY.read_text(), after) == ["+  low_rating_percent: 80"]
    again = engine.loads(after, base=BUNDLED, source="legacy.yaml")
    assert again.spec.parameters["low_rating_percent"] == 80 and again.name == legacy.name


@pytest.mark.parametrize("path", [BUNDLED, LEGACY], ids=["bundled", "variant"])
def test_loads_of_to_yaml_gives_the_same_decisions_and_ruleset(path: Path) -> None:
    policy = engine.load(path).with_parameters(low_rating_percent=85)  # the rule examples still pass
    base = None if path == BUNDLED else engine.load()
    again = engine.loads(policy.to_yaml(), base=base)
    assert again.compiled.ruleset == policy.compiled.ruleset and again.name == policy.name
    orders = pd.read_csv(SAMPLE_ORDERS, dtype=str, keep_default_na=False)
    cols = ["action", "rule_id", "message", "error"]
    pd.testing.assert_frame_equal(again.evaluate(orders, as_of=AS_OF)[cols], policy.evaluate(orders, as_of=AS_OF)[cols])


def test_saved_edit_reads_back_with_load(tmp_path: Path) -> None:
    policy = engine.load().with_parameters(low_rating_percent=85).with_rule(NEW_RULE)
    read = engine.load(policy.save(tmp_path / "edited.yaml"))
    assert read.compiled.ruleset == policy.compiled.ruleset
    assert "# guide step 2: \"Usually the seller" in (tmp_path / "edited.yaml").read_text()


def test_loads_locates_problems_at_the_source_name() -> None:
    text = Path(BUNDLED).read_text().replace("      seller_reply: refused\n", "      seller_replied: refused\n")
    with pytest.raises(engine.RuleError) as caught:
        engine.loads(text, source="edited.yaml")
    line = _line_of(text, "seller_replied: refused")
    assert str(caught.value.problems[0]) == (f"edited.yaml:{line}:7: rule 'seller_refused': unknown fact "
                                             "'seller_replied' (did you mean 'seller_reply'?)")


def test_loads_locates_a_syntax_error() -> None:
    with pytest.raises(engine.RuleError) as caught:
        engine.loads("policy: x\nrules:\n  - id: [a\n")
    assert re.match(r"<string>:4:1: YAML syntax error", str(caught.value.problems[0]))


def test_loads_of_a_variant_without_its_base_names_the_missing_file() -> None:
    with pytest.raises(engine.RuleError) as caught:
        engine.loads(LEGACY.read_text(), source="/nowhere/legacy.yaml")
    assert str(caught.value.problems[0]).startswith("/nowhere/legacy.yaml:2:10: extends '../cancellation.yaml'")


def test_with_rule_adds_a_rule_and_keeps_every_other_line() -> None:
    policy = engine.load()
    added = policy.with_rule(NEW_RULE)
    assert added.spec.rule(NEW_RULE["id"]).priority == 58 and len(added.spec.rules) == len(policy.spec.rules) + 1
    assert added.to_yaml().startswith(policy.to_yaml())
    assert added.decide({"order_id": "x", "status": "shipped", "seller_reply": "refused", "seller_rating": 10}
                        ).action == "contact_support"


def test_with_rule_replaces_by_id_changing_only_what_differs() -> None:
    policy = engine.load()
    rule = {"id": "refund_overdue", "priority": 80,
            "when": {"status": "cancelled", "days_since_refund": {"gt": "$refund_days"}},
            "then": {"action": "contact_support", "message": (
                "The refund started {days_since_refund} days ago, past the {refund_days} days usual for this payment "
                "method: contact support (for a card, ask the bank with the refund's ARN).")},
            "source": "guide step 4 (a few days to a few weeks); domain facts: refund times by payment method",
            "examples": [{"order": {"order_id": "E4", "status": "Closed", "payment_method": "Credit card",
                                    "days_since_refund": 30}, "expect": "contact_support"},
                         {"order": {"order_id": "E5", "status": "cancelled", "payment_method": "boleto",
                                    "days_since_refund": 8}, "expect": "contact_support"}]}
    after = policy.with_rule(rule).to_yaml()
    assert _changed_lines(policy.to_yaml(), after) == [
        "-      days_since_refund: {gte: $refund_days}", "+      days_since_refund: {gt: $refund_days}",
        "-      - order: {order_id: E5, status: cancelled, payment_method: boleto, days_since_refund: 7}",
        "+      - order: {order_id: E5, status: cancelled, payment_method: boleto, days_since_refund: 8}"]


def test_with_rule_error_is_located_in_the_edited_text() -> None:
    policy = engine.load()
    bad = {**NEW_RULE, "when": {"seller_raply": "refused"}}
    with pytest.raises(engine.RuleError) as caught:
        policy.with_rule(bad)
    text = with_rule_text(policy.spec, bad)
    problem = caught.value.problems[0]
    assert (problem.path, problem.rule_id, problem.hint) == (policy.spec.path, NEW_RULE["id"], "seller_reply")
    line = _line_of(text, "seller_raply")
    assert (problem.line, problem.col) == (line, text.splitlines()[line - 1].index("seller_raply") + 1)
    assert "did you mean 'seller_reply'" in str(problem)


@pytest.mark.parametrize("rule", [{"priority": 3}, {"id": ""}, ["id", "x"], {"id": "x", "when": {"a": object()}}],
                         ids=["no-id", "empty-id", "not-a-mapping", "not-yaml-data"])
def test_with_rule_refuses_what_is_not_a_rule(rule: object) -> None:
    with pytest.raises(engine.EditError):
        engine.load().with_rule(rule)  # type: ignore[arg-type]


def test_rule_edits_of_a_variant_name_its_base() -> None:
    with pytest.raises(engine.EditError, match="a variant only overrides parameters.*cancellation.yaml"):
        engine.load(LEGACY).without_rule("refund_overdue")


def test_without_rule_removes_the_rule_and_its_lines() -> None:
    policy = engine.load()
    after = policy.without_rule("dispute_in_progress")
    assert "dispute_in_progress" not in after.to_yaml()
    assert [r.id for r in after.spec.rules] == [r.id for r in policy.spec.rules if r.id != "dispute_in_progress"]
    removed = _changed_lines(policy.to_yaml(), after.to_yaml())
    assert all(line.startswith("-") for line in removed) and len(removed) == 14


def test_without_rule_unknown_id() -> None:
    with pytest.raises(engine.UnknownRuleError, match="no rule 'nope'"):
        engine.load().without_rule("nope")


def test_without_rule_error_is_located_at_the_example_it_breaks() -> None:
    example = ("examples:\n  - order: {order_id: X, status: Processing, seller_rating: 50}\n"
               "    expect: contact_seller\n    rule: contact_low_rated_seller_now\n")
    policy = engine.loads(Path(BUNDLED).read_text() + example, source="with-examples.yaml")
    with pytest.raises(engine.RuleError) as caught:
        policy.without_rule("contact_low_rated_seller_now")
    line = _line_of(without_rule_text(policy.spec, "contact_low_rated_seller_now"), "order_id: X")
    assert [str(p) for p in caught.value.problems] == [
        f"with-examples.yaml:{line}:5: example expects rule contact_low_rated_seller_now but the policy gives "
        "contact_seller (rule contact_seller_to_cancel)"]


def test_with_priority_changes_one_line_and_the_firing_order() -> None:
    policy = engine.load()
    after = policy.with_priority("seller_refused", 61)
    assert _changed_lines(policy.to_yaml(), after.to_yaml()) == ["-    priority: 57", "+    priority: 61"]
    assert [r.id for r in after.spec.ranked_rules()].index("seller_refused") == \
        [r.id for r in policy.spec.ranked_rules()].index("seller_agreed_full_refund")


def test_with_priority_error_is_located_at_the_example_it_breaks() -> None:
    policy = engine.load()
    with pytest.raises(engine.RuleError) as caught:
        policy.with_priority("contact_seller_to_cancel", 42)  # now above the low-rated seller's rule
    line = _line_of(policy.to_yaml(), "order_id: E17")
    assert [str(p) for p in caught.value.problems] == [
        f"{policy.spec.path}:{line}:9: rule 'contact_low_rated_seller_now': example expects rule "
        "contact_low_rated_seller_now but the policy gives contact_seller (rule contact_seller_to_cancel)"]


def test_with_priority_error_is_located_at_the_priority() -> None:
    policy = engine.load()
    with pytest.raises(engine.RuleError) as caught:
        policy.with_priority("refund_overdue", "high")
    text = with_priority_text(policy.spec, "refund_overdue", "high")
    line = _line_of(text, "priority: high")
    assert str(caught.value.problems[0]) == (f"{policy.spec.path}:{line}:15: rule 'refund_overdue': priority must "
                                             "be a whole number, got 'high'")


def test_with_priority_unknown_id() -> None:
    with pytest.raises(engine.UnknownRuleError):
        engine.load().with_priority("nope", 3)


def test_a_whole_number_parameter_names_the_same_ruleset_as_written() -> None:
    """with_parameters stores 72.0, the file 72: one engine ruleset, as both decide alike."""
    policy = engine.load()
    assert policy.with_parameters(seller_reply_hours=48).compiled.ruleset == policy.compiled.ruleset


def test_save_into_a_missing_folder_is_an_input_error_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "policy.yaml"
    with pytest.raises(engine.InputError, match=r"policy\.yaml: .*(o such file|does not exist)"):
        engine.load().save(target)
    assert not (tmp_path / "missing").exists()


def test_a_variant_read_from_text_travels_to_dask_workers() -> None:
    """engine.cluster rebuilds a policy in a worker from its source texts: a variant given by loads(base=...),
    whose `extends:` points nowhere from where it was read, must rebuild too."""
    pytest.importorskip("dask")
    from engine.cluster import compiled_from_source, policy_source

    variant = engine.loads(LEGACY.read_text(), base=engine.load(), source="<cell legacy>")
    rebuilt = compiled_from_source(policy_source(variant.compiled))
    assert rebuilt.ruleset == variant.compiled.ruleset
