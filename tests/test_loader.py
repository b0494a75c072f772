"""Loading rule files: the malformed corpus (exact located messages), the bundled policy and its variant."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import yaml

import engine
from engine.errors import RuleError
from engine.loader import DEFAULT_POLICY, RULES_DIR, load_spec
from engine.model import KeyedParameter, ParamRef

HERE = Path(__file__).parent
MALFORMED = HERE / "fixtures" / "malformed"
VALID = HERE / "fixtures" / "valid"
MISSING_BASE = (VALID / "no-such-policy.yaml").resolve()
ALLOWED_TAGS = "allowed: !!str, !!int, !!float, !!bool, !!null, !!seq, !!map"

# Problems load_spec reports, as "line:col: rest" (the path is prepended by the test). Every message names
# the rule it is in; "did you mean" appears wherever a close spelling exists.
SPEC_ERRORS: dict[str, list[str]] = {
    "yaml_syntax": ["20:17: YAML syntax error: expected ',' or '}', but got ':'"],
    "empty": ["1:1: file is empty"],
    "unknown_fact": [
        "35:7: rule 'silent': unknown fact 'hours_since_contcat' (did you mean 'hours_since_contact'?)"],
    "unknown_operator": ["35:29: rule 'silent': unknown operator 'gtee' (did you mean 'gte'?)"],
    "wrong_value_type": ["35:34: rule 'silent': fact 'hours_since_contact' is a number; got 'two days'"],
    "enum_value": [
        "34:21: rule 'silent': 'no_replay' is not a value of fact 'seller_reply' (did you mean 'no_reply'?)"],
    "enum_operator": ["34:22: rule 'silent': operator 'lt' does not apply to enum fact 'seller_reply' "
                      "(use one of: eq, ne, in, not_in, given)"],
    "given_not_bool": ["35:36: rule 'silent': 'given' takes true or false, got 'maybe'"],
    "unknown_parameter": ["35:34: rule 'silent': unknown parameter 'reply_hour' (did you mean 'reply_hours'?)"],
    "duplicate_rule_id": ["43:5: rule 'silent': duplicate rule id (first defined at line 31)"],
    "duplicate_yaml_key": ["33:5: rule 'silent': duplicate key 'priority' in rule #1 (first at line 32)"],
    "unknown_rule_key": ["33:5: rule 'silent': unknown key 'whenn' in rule #1 (did you mean 'when'?)"],
    "missing_action": ["37:7: rule 'silent': missing then.action"],
    "unknown_action": ["37:15: rule 'silent': unknown action 'acts' (did you mean 'act'?)"],
    "example_unknown_action": ["42:17: rule 'silent': example expects unknown action 'open_dispute'"],
    "bad_hit_policy": ["4:13: unknown hit_policy 'frist' (use one of: first, unique) (did you mean 'first'?)"],
    "keyed_parameter_missing_values": ["27:3: parameter 'refund_days' has no value for: boleto (or give a default)"],
    "between_reversed": ["35:38: rule 'silent': 'between' bounds are reversed: 72 > 48"],
    "bad_placeholder": [
        "38:28: rule 'silent': message names unknown fact or parameter 'hours_since_contct' "
        "(did you mean 'hours_since_contact'?)",
        "38:52: rule 'silent': message placeholder '{reply_hours * 2}' must be '{name}' or '{name - name}'",
    ],
    "missing_source_examples": [
        "31:5: rule 'silent': missing 'source' (the guide step or fact the rule encodes)",
        "31:5: rule 'silent': missing 'examples' (at least one order with its expected action)",
    ],
    "priority_not_integer": ["32:15: rule 'silent': priority must be a whole number, got 10.5"],
    "alias_conflict": ["12:41: alias 'done' of fact 'status' names both 'open' and 'closed'"],
    "unknown_top_key": [
        "25:1: unknown key 'paramaters' at the top of the policy (did you mean 'parameters'?)",
        # the parameters block is not read, so the rule's reference to it is reported too
        "35:34: rule 'silent': unknown parameter 'reply_hours'",
    ],
    "fact_without_type": [
        "19:31: fact 'hours_since_contact' needs a type (one of: enum, number, string) (did you mean 'number'?)",
        "35:7: rule 'silent': unknown fact 'hours_since_contact'",
        "38:28: rule 'silent': message names unknown fact or parameter 'hours_since_contact'",
    ],
    "three_mistakes": [
        "34:7: rule 'silent': unknown fact 'seller_replies' (did you mean 'seller_reply'?)",
        "35:29: rule 'silent': unknown operator 'greater' (did you mean 'gte'?)",
        "37:15: rule 'silent': unknown action 'at' (did you mean 'act'?)",
    ],
    "variant_missing_base": [f"2:10: extends '../valid/no-such-policy.yaml': no such file ({MISSING_BASE})"],
    "variant_cycle": ["2:10: extends 'variant_cycle.yaml' makes a cycle"],
    "variant_overrides_rules": [
        "5:1: unknown key 'actions' in a variant (a variant may only override parameters)",
        "9:1: unknown key 'rules' in a variant (a variant may only override parameters)",
    ],
    "variant_unknown_parameter": [
        "6:3: unknown parameter 'reply_hour' (a variant can only override the base's) (did you mean 'reply_hours'?)",
        "8:24: parameter 'refund_days' has no key 'cash'",
    ],
    # Hostile or odd YAML: tags, aliases, nesting, control characters (issue 9, items 5 and 13).
    "tag_python_name": [f"3:10: tag '!!python/name:os.system' is not allowed ({ALLOWED_TAGS})"],
    "tag_unknown": [f"34:21: tag '!foo' is not allowed ({ALLOWED_TAGS})"],
    "tag_bad_int": ["35:34: 'forty' is not a valid !!int"],
    "merge_key": ["19:47: merge key '<<' is not supported (write the keys out, or quote '<<' for the text)"],
    "alias_expands_too_much": [
        "44:49: alias '*a2' repeats 1111 values, past the limit of 10000 values repeated by aliases in one file"],
    "anchor_defined_twice": ["27:16: anchor '&limit' is defined twice (first at line 26)"],
    "alias_recursive": ["3:17: alias '*v' is inside its own anchor (a recursive structure)"],
    "alias_nests_too_deep": ["66:11: alias '*d60' nests values deeper than 64 levels"],
    "nesting_too_deep": ["3:73: values nest deeper than 64 levels"],
    "nul_byte": ["38:23: control character U+0000 is not allowed in YAML"],
    "value_shown_briefly": [
        "3:10: version must be text, got [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16..."],
    # Fact declarations: every key is checked for its type and range.
    "fact_max_text": ["19:52: 'max' of fact 'hours_since_contact' must be a number, got 'hundred'"],
    "fact_max_list": ["19:52: 'max' of fact 'hours_since_contact' must be a number, got [1]"],
    "fact_default_text": ["19:56: 'default' of fact 'hours_since_contact' must be a number, got 'abc'"],
    "fact_required_text": ["19:57: 'required' of fact 'hours_since_contact' takes true or false, got 'no'"],
    "fact_min_nan": ["19:44: 'min' of fact 'hours_since_contact' must be a number, got nan"],
    "fact_min_above_max": ["19:44: fact 'hours_since_contact' has min 10 above its max 5"],
    "fact_default_out_of_range": ["19:56: 'default' of fact 'hours_since_contact' is -1, below its min 0"],
    "fact_from_timestamp_list": [
        "19:63: 'from_timestamp' of fact 'hours_since_contact' must be text, got ['contacted_at']"],
    # Numbers: finite, within the range a fact can take, and numbers rather than text that looks like one.
    "constant_infinity": ["35:33: rule 'silent': fact 'hours_since_contact' takes finite numbers; got inf"],
    "constant_negative_infinity": ["35:39: rule 'silent': fact 'hours_since_contact' takes finite numbers; got -inf"],
    "constant_too_large": [
        "35:34: rule 'silent': fact 'hours_since_contact' takes numbers between -1e+09 and 1e+09; got 1e+16"],
    "constant_exponent_text": ["35:34: rule 'silent': fact 'hours_since_contact' is a number; got '1e-05' "
                               "(YAML reads it as text: write 1.0e-05)"],
    "parameter_infinity": ["26:16: parameter 'reply_hours' must be a finite number, got inf"],
    "keyed_parameter_too_large": [
        "29:32: parameter 'refund_days.boleto' must be between -1e+09 and 1e+09, got 1e+308"],
    # Messages and examples.
    "placeholder_subtracts_text": ["38:53: rule 'silent': message placeholder '{status - seller_reply}' "
                                   "subtracts what is not a number: status, seller_reply"],
    "example_bad_date": ["41:83: '2025-13-45' is not a valid date"],
}

# Files that parse and validate, but whose examples fail: only engine.load (which runs them) reports these.
LOAD_ERRORS: dict[str, list[str]] = {
    "example_fails": [
        "41:9: rule 'silent': example expects act but the policy gives no action "
        "(no rule decides this order (policy gap))"],
    "example_invalid_order": [
        "41:9: rule 'silent': example order is invalid: status: unknown value 'opened' (did you mean 'open'?)"],
    "variant_example_fails": ["8:5: example expects act but the policy gives wait (rule otherwise)"],
}


def fixture(name: str) -> Path:
    return MALFORMED / f"{name}.yaml"


def expected(name: str, entries: list[str]) -> list[str]:
    return [f"{fixture(name)}:{entry}" for entry in entries]


def test_corpus_is_large_and_every_file_has_an_expectation():
    files = {p.stem for p in MALFORMED.glob("*.yaml")}
    assert files == set(SPEC_ERRORS) | set(LOAD_ERRORS)
    assert not set(SPEC_ERRORS) & set(LOAD_ERRORS)
    assert len(files) >= 59


@pytest.mark.parametrize("name", sorted(SPEC_ERRORS))
def test_malformed_file_reports_exact_messages(name):
    with pytest.raises(RuleError) as info:
        load_spec(fixture(name))
    err = info.value
    want = expected(name, SPEC_ERRORS[name])
    assert [str(p) for p in err.problems] == want
    count = len(want)
    assert str(err) == "\n".join([f"{count} problem{'s' if count != 1 else ''} in {fixture(name)}:", *want])
    assert err.path == str(fixture(name))


@pytest.mark.parametrize("name", sorted(SPEC_ERRORS))
def test_engine_load_reports_the_same_problems(name):
    with pytest.raises(RuleError) as info:
        engine.load(fixture(name))
    assert [str(p) for p in info.value.problems] == expected(name, SPEC_ERRORS[name])


@pytest.mark.parametrize("name", sorted(LOAD_ERRORS))
def test_failing_example_is_reported_by_load(name):
    spec = load_spec(fixture(name))  # structurally fine
    assert spec.rules
    with pytest.raises(RuleError) as info:
        engine.load(fixture(name))
    assert [str(p) for p in info.value.problems] == expected(name, LOAD_ERRORS[name])


def test_three_mistakes_are_all_located():
    with pytest.raises(RuleError) as info:
        load_spec(fixture("three_mistakes"))
    problems = info.value.problems
    assert [(p.line, p.col, p.rule_id, p.hint) for p in problems] == [
        (34, 7, "silent", "seller_reply"), (35, 29, "silent", "gte"), (37, 15, "silent", "act")]
    assert all(p.path == str(fixture("three_mistakes")) for p in problems)
    assert str(info.value).splitlines()[0] == f"3 problems in {fixture('three_mistakes')}:"


def test_the_located_lines_hold_the_mistakes():
    """The line:col of each problem points at the offending text in the file."""
    lines = fixture("three_mistakes").read_text().splitlines()
    with pytest.raises(RuleError) as info:
        load_spec(fixture("three_mistakes"))
    found = [lines[p.line - 1][p.col - 1:] for p in info.value.problems]
    assert found[0].startswith("seller_replies:")
    assert found[1].startswith("greater:")
    assert found[2].startswith("at")


def test_string_path_is_reported_as_given():
    with pytest.raises(RuleError) as info:
        load_spec(str(fixture("unknown_action")))
    assert str(info.value.problems[0]).startswith(f"{fixture('unknown_action')}:37:15: rule 'silent': ")


def test_missing_file_is_a_rule_error():
    path = MALFORMED / "does-not-exist.yaml"
    with pytest.raises(RuleError) as info:
        engine.load(path)
    assert [str(p) for p in info.value.problems] == [f"{path}:1:1: cannot read file: No such file or directory"]


# --- the bundled policy and its variant -------------------------------------------------------------

CONTRACT_ACTIONS = {"cancel_directly", "contact_seller", "wait_for_seller", "open_dispute", "accept_full_refund",
                    "consider_partial_refund", "consider_continuing", "wait_for_refund", "contact_support",
                    "wait_for_dispute"}
CONTRACT_ENUMS = {
    "status": {"awaiting_payment", "payment_verifying", "awaiting_shipment", "awaiting_cancellation", "shipped",
               "delivered", "disputed", "cancelled"},
    "seller_reply": {"not_contacted", "no_reply", "full_refund", "partial_refund", "continue_order", "refused"},
    "payment_method": {"card", "paypal", "wallet", "bank_transfer", "boleto", "webmoney", "cash_on_delivery"},
}


def test_bundled_policy_loads_and_keeps_the_contract():
    policy = engine.load()
    spec = policy.spec
    assert Path(spec.path) == DEFAULT_POLICY == RULES_DIR / "cancellation.yaml"
    assert spec.name == "cancellation" and spec.version and spec.hit_policy == "first"
    assert CONTRACT_ACTIONS <= set(spec.actions)
    for fact, values in CONTRACT_ENUMS.items():
        assert set(spec.facts[fact].values) == values
    assert spec.facts["order_id"].required and spec.facts["status"].required
    assert spec.facts["seller_reply"].default == "not_contacted"
    for fact, stamp in [("hours_since_contact", "contacted_at"), ("hours_since_payment", "paid_at"),
                        ("days_since_refund", "refund_started_at")]:
        assert spec.facts[fact].type == "number" and spec.facts[fact].min == 0
        assert spec.facts[fact].from_timestamp == stamp
    assert (spec.facts["seller_rating"].min, spec.facts["seller_rating"].max) == (0, 100)
    assert spec.parameters["seller_reply_hours"] == 48  # the contract's default reply window
    assert isinstance(spec.parameters["refund_days"], KeyedParameter)
    assert set(spec.parameters["refund_days"].values) == CONTRACT_ENUMS["payment_method"]


def test_every_bundled_rule_has_a_source_and_an_example():
    spec = engine.load().spec
    assert len(spec.rules) >= 10
    assert len({r.id for r in spec.rules}) == len(spec.rules)
    for rule in spec.rules:
        assert rule.source.strip(), rule.id
        assert rule.examples, rule.id
        assert rule.action in spec.actions
    # every contract action is the outcome of some rule
    assert {r.action for r in spec.rules} == CONTRACT_ACTIONS


def test_variant_overrides_parameters_only():
    base = engine.load().spec
    variant = engine.load(RULES_DIR / "variants" / "legacy-72h.yaml").spec
    assert variant.name == "cancellation-legacy-72h" and variant.version != base.version
    assert variant.parameters["seller_reply_hours"] == 72
    assert {k: v for k, v in variant.parameters.items() if k != "seller_reply_hours"} == \
        {k: v for k, v in base.parameters.items() if k != "seller_reply_hours"}
    assert variant.rules == base.rules and variant.facts == base.facts and variant.actions == base.actions
    assert variant.examples and variant.path.endswith("legacy-72h.yaml")
    assert [Path(p).name for p, _ in variant.sources] == ["cancellation.yaml", "legacy-72h.yaml"]


def test_variant_of_a_fixture_overrides_keyed_parameter(tmp_path):
    variant = tmp_path / "variant.yaml"
    variant.write_text(f"extends: {VALID / 'mini.yaml'}\npolicy: mini-v\nversion: '2'\n"
                       "parameters:\n  refund_days:\n    values: {card: 12}\n")
    spec = engine.load(variant).spec
    assert spec.parameters["refund_days"] == KeyedParameter("refund_days", "payment_method",
                                                           {"card": 12, "boleto": 5}, 20)
    assert spec.name == "mini-v" and spec.version == "2"


# --- aliases and labels in rule files -----------------------------------------------------------------

def test_labels_and_aliases_in_rules_become_codes():
    spec = load_spec(VALID / "mini.yaml")
    # mini.yaml writes `status: Closed` (a label), `seller_reply: silent` (an alias in another case)
    assert [(c.fact, c.op, c.value) for c in spec.rule("overdue").conditions] == [
        ("status", "eq", "closed"), ("days_since_refund", "gte", ParamRef("refund_days"))]
    assert [(c.fact, c.op, c.value) for c in spec.rule("silent").conditions] == [
        ("seller_reply", "eq", "no_reply"), ("hours_since_contact", "gte", ParamRef("reply_hours"))]
    assert spec.facts["seller_reply"].default == "none"  # written as the label 'nothing yet'


def test_alias_table_folds_case_spaces_and_underscores():
    status = load_spec(VALID / "mini.yaml").facts["status"]
    assert status.labels == {"open": "Open order", "closed": "Closed"}
    assert status.aliases == {"open": "open", "open order": "open", "pending": "open", "in progress": "open",
                              "closed": "closed"}
    assert status.label("open") == "Open order" and status.label("closed") == "Closed"


def test_bundled_status_labels_are_aliases():
    status = engine.load().spec.facts["status"]
    for code in status.values:
        assert status.aliases[code.replace("_", " ")] == code
        assert status.aliases[status.label(code).lower()] == code
    assert status.label("shipped") == "Sent" and status.label("cancelled") == "Closed"


# --- anchors and memory ----------------------------------------------------------------------------------

def test_anchors_and_aliases_within_the_budget_still_work(tmp_path):
    """Anchors share a condition block and one example order fifty times: the policy reads as if written out."""
    plain = (VALID / "mini.yaml").read_text()
    shared = plain.replace("    when:\n      seller_reply: silent\n      hours_since_contact: {gte: $reply_hours}\n",
                           "    when: &silent_long {seller_reply: silent, hours_since_contact: {gte: $reply_hours}}\n")
    shared = shared.replace("- order: {order_id: M2, status: open, seller_reply: Silent, hours_since_contact: 48}",
                            "- order: &m2 {order_id: M2, status: open, seller_reply: Silent, hours_since_contact: 48}")
    shared += ("  - id: silent_again\n    priority: -1\n    when: *silent_long\n    then: {action: act}\n"
               "    source: test\n    examples: []\n")
    shared += "examples:\n" + "  - {order: *m2, expect: act, rule: silent}\n" * 50
    path = tmp_path / "anchors.yaml"
    path.write_text(shared)
    assert path.read_text().count("*m2") == 50 and "when: *silent_long" in path.read_text()
    policy = engine.load(path)
    original = load_spec(VALID / "mini.yaml")
    meaning = [(c.fact, c.op, c.value) for c in original.rule("silent").conditions]
    assert [(c.fact, c.op, c.value) for c in policy.spec.rule("silent").conditions] == meaning
    assert [(c.fact, c.op, c.value) for c in policy.spec.rule("silent_again").conditions] == meaning
    assert [e.order for e in policy.spec.examples[:50]] == [original.rule("silent").examples[0].order] * 50
    d = policy.decide({"order_id": "x", "status": "open", "seller_reply": "silent", "hours_since_contact": 50},
                      as_of="2026-01-01T00:00:00Z")
    assert (d.rule_id, d.also_matched) == ("silent", ("otherwise", "silent_again"))


def live_yaml_nodes() -> int:
    gc.collect()
    return sum(isinstance(obj, yaml.Node) for obj in gc.get_objects())


def test_loading_keeps_no_yaml_nodes_alive():
    """Loading again and again must not keep the node trees of earlier loads (issue 9, item 7)."""
    engine.load()
    after_one = live_yaml_nodes()
    for _ in range(5):
        engine.load()
        load_spec(RULES_DIR / "variants" / "legacy-72h.yaml")
    assert live_yaml_nodes() == after_one == 0


def _tree(node: yaml.Node) -> tuple:
    """A node tree as plain data: kind, tag, value, and where it starts and ends (line, column, index)."""
    where = tuple((m.line, m.column, m.index) for m in (node.start_mark, node.end_mark))
    if isinstance(node, yaml.ScalarNode):
        return ("scalar", node.tag, node.value, where)
    if isinstance(node, yaml.SequenceNode):
        return ("seq", node.tag, tuple(_tree(n) for n in node.value), where)
    return ("map", node.tag, tuple((_tree(k), _tree(v)) for k, v in node.value), where)


@pytest.mark.parametrize("path", sorted({*RULES_DIR.glob("*.yaml"), *VALID.glob("*.yaml"), *MALFORMED.glob("*.yaml"),
                                         *(HERE / "fixtures" / "policies").glob("*.yaml")}), ids=lambda p: p.name)
def test_libyaml_fast_path_builds_the_same_tree_as_pyyaml_or_steps_aside(path):
    """Rule files are parsed by libyaml when it finds no problem (5x faster on 1,000 rules); the tree, marks and
    the text the marks carry must be PyYAML's, and a file either refuses goes to PyYAML for its message."""
    from engine import yamlread

    text = path.read_text(encoding="utf-8-sig")
    try:
        slow = yaml.compose(text, Loader=yamlread._Composer)
    except yaml.YAMLError:
        slow = None
    try:
        fast = yamlread._FastComposer(text).get_single_node()
    except yaml.YAMLError:  # e.g. _StepAside
        fast = None
    if fast is not None and slow is not None:
        assert _tree(fast) == _tree(slow)
        assert fast.start_mark.buffer == text
    elif fast is not None:
        pytest.fail("libyaml builds a tree from a file PyYAML refuses")  # _compose would not report it
