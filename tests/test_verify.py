"""Verification over the whole fact space: planted gaps, unreachable rules and overlaps are found, each with an
example order that reproduces the finding through decide(); the bundled policy and its variant verify clean."""

from __future__ import annotations

import functools
import json
import subprocess

import numpy as np
import pandas as pd
import pytest

import engine
from conftest import AS_OF, LEGACY, POLICIES, ROOT, SCRIPT, load_policy
from engine.space import FactSpace

WHAT_IF = {"seller_reply_hours": 72, "refund_days": {"card": 21}}  # of the default


def policy(name: str) -> engine.Policy:
    """conftest.load_policy's names, and 'what_if': the default with this file's WHAT_IF parameters."""
    return load_policy("default", **WHAT_IF) if name == "what_if" else load_policy(name)


@functools.cache
def report(name: str) -> engine.VerifyReport:
    return policy(name).verify()


def decide(name: str, order: dict) -> engine.Decision:
    return policy(name).decide(order, as_of=AS_OF)


def winners_by_tables(name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Independently of verify(): over every non-empty cell, which rules match (Python's condition tables)."""
    p = policy(name)
    space = FactSpace.of(p.spec)
    ids = np.arange(space.n_cells, dtype=np.int64)
    ids = ids[space.nonempty(ids)]
    return ids, space.matches(ids)


# --- the bundled policy and its variants ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["default", "legacy", "what_if", "ops"])
def test_shipped_policies_verify_clean(name):
    r = report(name)
    assert r.ok, str(r)
    assert r.gaps == []
    assert r.unreachable == []
    assert r.hit_policy == "first"
    assert sum(r.wins.values()) == r.cells  # under 'first' with no gap, every cell has exactly one winner
    assert set(r.wins) == {rule.id for rule in policy(name).spec.rules}
    assert all(count > 0 for count in r.wins.values())
    assert r.policy == policy(name).name and r.version == policy(name).version


@pytest.mark.parametrize("name", ["empty_bin", "defaulted"])
def test_numbers_with_a_default_verify_clean(name):
    """A number with a default is never 'not given'; empty_bin.yaml's lowest threshold equals its minimum."""
    r = policy(name).verify()
    assert r.ok, str(r)
    assert r.gaps == [] and r.unreachable == []


@pytest.mark.parametrize("name", ["default", "legacy"])
def test_cell_count_and_engine_calls(name):
    r = report(name)
    space = FactSpace.of(policy(name).spec)
    ids = np.arange(space.n_cells, dtype=np.int64)
    assert r.cells == int(space.nonempty(ids).sum())
    assert 0 < r.canonical_cells < r.cells / 50
    assert r.engine_calls <= r.canonical_cells


@pytest.mark.parametrize("name", ["default", "legacy"])
def test_no_gap_by_the_condition_tables_either(name):
    ids, matches = winners_by_tables(name)
    any_rule = np.zeros(len(ids), dtype=bool)
    for hit in matches.values():
        any_rule |= hit
    assert any_rule.all()


@pytest.mark.parametrize("name", ["default", "legacy", "ops"])
def test_every_overlap_example_reproduces_through_decide(name):
    r = report(name)
    assert r.overlaps, "the bundled policy's seller rules overlap the status rules"
    for finding in r.overlaps:
        assert finding.kind == "overlap"
        assert len(finding.rules) > 1 and finding.cells > 0
        d = decide(name, finding.example)
        assert d.error is None
        assert d.rule_id == finding.winner == finding.rules[0]
        assert (d.rule_id, *d.also_matched) == finding.rules


def test_report_to_dict_and_text():
    r = report("default")
    data = r.to_dict()
    assert data["ok"] is True and data["gaps"] == [] and data["unreachable"] == []
    json.dumps(data, default=str)
    assert "OK" in str(r).splitlines()[-1]


# --- a planted gap ----------------------------------------------------------------------------------------

def test_planted_gap_is_found():
    r = report("gap")
    assert not r.ok
    assert r.unreachable == [] and r.overlaps == []
    assert len(r.gaps) == 1
    gap = r.gaps[0]
    assert gap.kind == "gap" and gap.rules == () and gap.winner is None and gap.cells == 1
    # the hole is exactly at the limit: closed orders with hours == 10 (lt 10 and gt 10 leave it out)
    assert gap.example["status"] == "closed" and gap.example["hours"] == 10
    d = decide("gap", gap.example)
    assert d.action is None and d.rule_id is None
    assert "gap" in d.error
    # and beside it the policy decides
    for hours in (9.999, 10.001):
        assert decide("gap", {**gap.example, "hours": hours}).action is not None


def test_planted_gap_through_the_batch_paths():
    df = pd.DataFrame({"order_id": ["a", "b", "c"], "status": ["Closed"] * 3, "hours": ["10", "10.0", "9"]})
    for method in ("cells", "rows"):
        out = policy("gap").evaluate(df, as_of=AS_OF, method=method)
        assert out["action"].tolist()[:2] == [None, None]
        assert all("gap" in e for e in out["error"].tolist()[:2])
        assert out["rule_id"].tolist()[2] == "closed_early"


# --- a planted unreachable rule ---------------------------------------------------------------------------

def test_planted_unreachable_rule_is_found():
    r = report("unreachable")
    assert not r.ok
    assert r.unreachable == ["open_late"]
    assert r.gaps == []
    assert r.wins["open_late"] == 0
    # reproduce: an order that satisfies open_late's conditions is decided by 'open', open_late only also matches
    for example in policy("unreachable").spec.rule("open_late").examples:
        d = decide("unreachable", example.order)
        assert d.rule_id == "open" and "open_late" in d.also_matched
    # the overlap that shadows it is reported too, with an example that reproduces it
    (finding,) = r.overlaps
    assert finding.rules == ("open", "open_late") and finding.winner == "open"
    d = decide("unreachable", finding.example)
    assert (d.rule_id, *d.also_matched) == ("open", "open_late")


def test_unreachable_rule_by_the_condition_tables():
    """Independently: wherever open_late matches, a rule that fires before it matches too."""
    ids, matches = winners_by_tables("unreachable")
    ranked = [r.id for r in policy("unreachable").spec.ranked_rules()]
    earlier = np.zeros(len(ids), dtype=bool)
    for rule in ranked[: ranked.index("open_late")]:
        earlier |= matches[rule]
    assert matches["open_late"].any()
    assert (earlier[matches["open_late"]]).all()


# --- a planted overlap ------------------------------------------------------------------------------------

def test_planted_overlap_under_unique_is_an_error():
    r = report("overlap_unique")
    assert r.hit_policy == "unique"
    assert not r.ok
    assert r.gaps == [] and r.unreachable == []
    (finding,) = r.overlaps
    assert finding.kind == "overlap"
    assert finding.rules == ("by_status", "by_reply")
    assert finding.winner is None
    assert finding.cells == 2  # open, silent, hours at 24 or above it
    ex = finding.example
    assert ex["status"] == "open" and ex["reply"] == "silent" and ex["hours"] >= 24
    d = decide("overlap_unique", ex)
    assert d.action is None
    assert "by_status" in d.error and "by_reply" in d.error
    assert d.also_matched == ("by_status", "by_reply")
    assert "overlap" in str(r) and "NOT OK" in str(r)


def test_planted_overlap_under_first_is_reported_but_ok():
    r = report("overlap_first")
    assert r.hit_policy == "first"
    assert r.ok, str(r)
    assert r.gaps == [] and r.unreachable == []
    (finding,) = r.overlaps
    assert finding.rules == ("by_status", "by_reply")
    assert finding.winner == "by_status"
    d = decide("overlap_first", finding.example)
    assert d.rule_id == "by_status" and d.also_matched == ("by_reply",)


def test_overlap_cells_agree_with_the_condition_tables():
    ids, matches = winners_by_tables("overlap_unique")
    both = matches["by_status"] & matches["by_reply"]
    assert int(both.sum()) == report("overlap_unique").overlaps[0].cells


# --- the verify command -----------------------------------------------------------------------------------

def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_verify_command_exits_0_on_the_bundled_policy_and_variant():
    for extra in ([], ["--policy", str(LEGACY)]):
        result = run("verify", *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["gap", "unreachable", "overlap_unique"])
def test_verify_command_fails_on_planted_problems(name):
    result = run("verify", "--policy", str(POLICIES / f"{name}.yaml"))
    assert result.returncode not in (0, None), result.stdout
    assert "Traceback" not in result.stderr


def test_verify_command_json_and_overlap_under_first():
    result = run("verify", "--policy", str(POLICIES / "overlap_first.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and len(data["overlaps"]) == 1
    result = run("verify", "--policy", str(POLICIES / "gap.yaml"), "--json")
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["gaps"][0]["example"]["hours"] == 10
