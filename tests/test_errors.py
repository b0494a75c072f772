"""Errors: every domain error is a CancelRulesError of a family, with fields and an exit code; the CLI exits 2
with one line for those and 70 with one line for anything else (a bug), --debug showing the traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest

import engine
from engine import cli
from engine.errors import (
    AsOfError,
    CancelRulesError,
    ComparisonError,
    DefinitionError,
    EngineError,
    InputError,
    OrderError,
    ParameterError,
    PolicyError,
    RuleError,
    UnknownRuleError,
    UsageError,
)
from engine.facts import parse_as_of

TYPED = """policy: typed
version: "1"
facts:
  order_id: {{type: string, required: true}}
  x: {fact}
actions: {{go: Go.}}
rules:
  - id: r
    when: {{x: {when}}}
    then: {{action: go}}
    source: test
    examples: [{{order: {{order_id: T1, x: {example}}}, expect: go}}]
"""


def _typed(tmp_path: Path, kind: str) -> engine.Policy:
    text = TYPED.format(fact="{type: enum, values: {a: , b: }}", when="a", example="a") if kind == "enum" else \
        TYPED.format(fact="{type: number}", when="{gte: 1}", example="1")
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text, encoding="utf-8")
    return engine.load(path)


def test_policy_error_is_the_base_and_the_families_are_under_it():
    assert PolicyError is CancelRulesError
    for family in (DefinitionError, OrderError, InputError, UsageError, EngineError):
        assert issubclass(family, CancelRulesError)
    assert issubclass(RuleError, DefinitionError) and issubclass(ParameterError, DefinitionError)
    assert issubclass(AsOfError, UsageError) and issubclass(UsageError, ValueError)


def test_an_unknown_parameter_edit_is_a_parameter_error_with_its_name(policy):
    with pytest.raises(ParameterError) as info:
        policy.with_parameters(seller_reply_hour=72)
    assert info.value.parameter == "seller_reply_hour" and info.value.exit_code == 2
    assert str(info.value).startswith("unknown parameter 'seller_reply_hour' (parameters: seller_reply_hours")
    with pytest.raises(ParameterError, match="parameter 'refund_days' is keyed by payment_method: give a mapping"):
        policy.with_parameters(refund_days=3)
    with pytest.raises(ParameterError, match="parameter 'refund_days' has no key 'cash'"):
        policy.with_parameters(refund_days={"cash": 3})


def test_a_mapping_for_a_plain_parameter_is_a_parameter_error(policy):
    with pytest.raises(ParameterError) as info:
        policy.with_parameters(seller_reply_hours={"card": 72})
    assert str(info.value) == "parameter 'seller_reply_hours' takes a number, not a mapping"


def test_an_unknown_rule_is_a_definition_error_and_still_a_key_error(policy):
    with pytest.raises(UnknownRuleError) as info:
        policy.spec.rule("no_such_rule")
    assert isinstance(info.value, KeyError) and info.value.rule_id == "no_such_rule"
    assert str(info.value) == "no rule 'no_such_rule'"


def test_a_bad_as_of_is_a_usage_error_naming_it():
    with pytest.raises(AsOfError) as info:
        parse_as_of("tomorrow")
    assert (info.value.option, info.value.value) == ("as_of", "tomorrow")
    assert str(info.value) == "as-of time is not an ISO 8601 timestamp: 'tomorrow'"


def test_an_unknown_evaluation_method_is_a_usage_error(policy):
    frame = pd.DataFrame({"order_id": ["A"], "status": ["delivered"]})
    with pytest.raises(UsageError) as info:
        policy.evaluate(frame, as_of="2026-11-26T12:00:00Z", method="fast")
    assert info.value.option == "method" and str(info.value) == "method must be 'cells' or 'rows', got 'fast'"


def test_policies_typing_one_fact_differently_are_a_comparison_error(tmp_path):
    enum_policy, number_policy = _typed(tmp_path, "enum"), _typed(tmp_path, "number")
    with pytest.raises(ComparisonError) as info:
        engine.diff(enum_policy, number_policy)
    assert (info.value.fact, info.value.types) == ("x", ("enum", "number"))
    assert str(info.value) == "fact 'x' is an enum in one policy and a number in the other; they cannot be compared"


def test_engine_errors_are_exit_70_unless_a_documented_limit():
    assert EngineError("r", "evaluation", "RuntimeError").exit_code == 70
    assert EngineError("r", "evaluation", "more than 64 ...", 303).exit_code == 2


def test_usage_errors_survive_pickling_with_their_text():
    error = pickle.loads(pickle.dumps(UsageError("--json must be a JSON object of order facts", "--json")))
    assert str(error) == "--json must be a JSON object of order facts"


def test_a_domain_error_is_exit_2_in_one_line(capsys):
    assert cli.main(["decide", "--json", '{"order_id": "A"}', "--as-of", "tomorrow"]) == 2
    assert capsys.readouterr().err == ("cancel-rules decide: as-of time is not an ISO 8601 timestamp: 'tomorrow'\n")


def _broken_verify(self):
    raise ValueError("cell table\nout of step")  # a bug deep inside: not the user's input


def test_a_bug_is_exit_70_in_one_line_not_bad_input(monkeypatch, capsys):
    monkeypatch.setattr(engine.Policy, "verify", _broken_verify)
    assert cli.main(["verify"]) == 70
    assert capsys.readouterr().err == ("cancel-rules verify: internal error: ValueError: cell table out of step "
                                       "(run with --debug for the traceback)\n")


def test_debug_lets_the_traceback_through(monkeypatch):
    monkeypatch.setattr(engine.Policy, "verify", _broken_verify)
    with pytest.raises(ValueError, match="out of step"):
        cli.main(["--debug", "verify"])
