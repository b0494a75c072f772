"""Issue 13 item 2: durable_rules' fixed sizes are no limit on a policy (engine.shards spreads it over rulesets).

Each size measured last session is passed on purpose, and the decision (winner, every other match in firing order,
the explanation, which decide checks against the engine) must equal the rules evaluated directly in Python:
255 rules on identical conditions (256 crashed, 257 was error 108), 511 distinct tests after one node (512 hung),
127 'in'/keyed branches after one node (128 was error 107), 14 and/or groups in one rule (error 113), and an order
satisfying 64 tests at once (error 303).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

import engine
from conftest import AS_OF
from engine import cli, shards
from engine.facts import normalize, parse_as_of
from engine.loader import RULES_DIR
from engine.operators import check


def _policy(tmp_path: Path, conditions: list[str], name: str = "limits") -> Path:
    """A small policy with one rule per `when` given (first one first), all deciding action `a`."""
    rules = "".join(f"  - {{id: r{i}, priority: {5000 - i}, when: {when}, then: {{action: a, message: 'rule {i}'}}, "
                    f"source: test, examples: []}}\n" for i, when in enumerate(conditions))
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""policy: {name}
version: "1"
facts:
  order_id: {{type: string, required: true}}
  status: {{type: enum, required: true, values: {{delivered: {{label: Delivered}}, shipped: {{label: Sent}}}}}}
  x: {{type: number, min: 0}}
actions:
  a: The action.
rules:
{rules}""", encoding="utf-8")
    return path


def _command() -> list[str]:
    script = Path(sys.executable).with_name("cancel-rules")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def direct(policy: engine.Policy, order: Mapping[str, Any]) -> tuple[str, ...]:
    """The reference: every rule whose conditions hold, in firing order, evaluated in Python (no engine)."""
    spec = policy.spec
    facts = normalize(spec, order, parse_as_of(AS_OF))
    return tuple(r.id for r in spec.ranked_rules() if all(check(spec, c, facts).passed for c in r.conditions))


def assert_exact(policy: engine.Policy, order: Mapping[str, Any]) -> engine.Decision:
    decision = policy.decide(order, as_of=AS_OF)
    expected = direct(policy, order)
    assert ((decision.rule_id,) if decision.rule_id else ()) + decision.also_matched == expected
    return decision


# ------------------------------------------------------------------------------------------ at load time


def test_more_than_256_rules_on_the_same_conditions_compile_and_the_first_fires(tmp_path):
    """durable_rules links at most 255 rules to one node (256 crashed, 257+ was error 108)."""
    policy = engine.load(_policy(tmp_path, ["{status: delivered}"] * 1000))
    assert len(policy.compiled.shards) > 1
    decision = assert_exact(policy, {"order_id": "o", "status": "delivered", "x": 1})
    assert decision.rule_id == "r0" and decision.also_matched == tuple(f"r{i}" for i in range(1, 1000))
    assert decision.message == "rule 0"
    gap = assert_exact(policy, {"order_id": "o", "status": "shipped"})
    assert gap.error == "no rule decides this order (policy gap)"


def test_the_first_hit_is_the_firing_order_across_shards(tmp_path):
    """The rule that fires first sits in the last shard: the winner is by priority, not by shard."""
    conditions = ["{status: delivered}"] * 600
    path = _policy(tmp_path, conditions)
    text = path.read_text().replace("id: r599, priority: 4401", "id: r599, priority: 9999")
    path.write_text(text)
    policy = engine.load(path)
    decision = assert_exact(policy, {"order_id": "o", "status": "delivered"})
    assert decision.rule_id == "r599" and decision.also_matched[:2] == ("r0", "r1")


def test_in_lists_sharing_a_value_past_128_compile_and_decide_exactly(tmp_path):
    """Each 'in' is an 'or' whose branches join after the node they share (128 branches was error 107)."""
    policy = engine.load(_policy(tmp_path, [f"{{status: {{in: [delivered, shipped]}}, x: {{gte: {i}}}}}"
                                            for i in range(300)]))
    for x in (0, 127.5, 128, 299, 1e6):
        decision = assert_exact(policy, {"order_id": "o", "status": "shipped", "x": x})
        assert len(decision.also_matched) == min(int(x), 299)


def test_two_keyed_parameters_in_one_rule_compile_and_decide_exactly(tmp_path):
    """Two keyed parameters make 18 and/or groups in one rule, past durable_rules' 14 (error 113): the rule is
    split into engine rules with the same action, and fires exactly where its conditions hold."""
    doc = yaml.safe_load((RULES_DIR / "cancellation.yaml").read_text(encoding="utf-8"))
    doc["rules"].insert(0, {"id": "refund_late_and_paid_recently", "priority": 999,
                            "when": {"days_since_refund": {"gte": "$refund_days"},
                                     "hours_since_payment": {"lt": "$refund_days"}},
                            "then": {"action": "contact_support"}, "source": "test", "examples": []})
    path = tmp_path / "two-keyed.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    policy = engine.load(path)
    rule = next(r for s in policy.compiled.shards for r in s.definition if r.startswith("refund_late_and_paid"))
    assert "#" in rule  # split into pieces
    fired = 0
    for method in ("card", "paypal", "boleto", "cash_on_delivery", None):
        for days, hours in ((0, 0), (30, 1), (30, 29.5), (200, 0.5), (3, 100)):
            order = {"order_id": "o", "status": "cancelled", "seller_reply": "full_refund",
                     "days_since_refund": days, "hours_since_payment": hours}
            if method:
                order["payment_method"] = method
            fired += assert_exact(policy, order).rule_id == "refund_late_and_paid_recently"
    assert 0 < fired < 25


def test_513_tests_after_one_node_load_instead_of_hanging(tmp_path):
    """durable_rules' compiler loops forever on the 512th different test after one node: now spread over shards."""
    path = _policy(tmp_path, [f"{{x: {{gte: {i}}}}}" for i in range(513)])
    try:
        done = subprocess.run([*_command(), "decide", "--policy", str(path), "--as-of", AS_OF,
                               "--json", json.dumps({"order_id": "o", "status": "shipped", "x": 511.5})],
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("deciding did not return in 120 s")
    assert done.returncode == 0, done.stderr
    decision = json.loads(done.stdout)
    assert (decision["rule_id"], len(decision["also_matched"])) == ("r0", 511)


# ------------------------------------------------------------------------------------------ at evaluation


@pytest.fixture(scope="module")
def seventy(tmp_path_factory) -> Path:
    """70 rules `x >= i`: an order with x >= 64 satisfies more than 64 tests at once (was error 303)."""
    return _policy(tmp_path_factory.mktemp("limits"), [f"{{x: {{gte: {i}}}}}" for i in range(70)], "seventy")


def test_an_order_matching_more_than_64_rules_is_decided_exactly(seventy):
    policy = engine.load(seventy)
    for x in (69.5, 65, 64, 63.5, 12, 0.5, 0):
        decision = assert_exact(policy, {"order_id": "o", "status": "shipped", "x": x})
        assert (decision.rule_id, len(decision.also_matched)) == ("r0", min(int(x), 69))


def test_an_order_matching_a_thousand_rules_in_lists_is_decided_exactly(tmp_path):
    """With 'in' the stack filled faster (about 62 matches were the limit)."""
    policy = engine.load(_policy(tmp_path, [f"{{status: {{in: [shipped, delivered]}}, x: {{lte: {i}}}}}"
                                            for i in range(1000)]))
    decision = assert_exact(policy, {"order_id": "o", "status": "delivered", "x": 0})
    assert len(decision.also_matched) == 999


def test_cli_decide_past_64_matches_prints_the_decision(seventy, capsys):
    order = json.dumps({"order_id": "o", "status": "shipped", "x": 64})
    assert cli.main(["decide", "--policy", str(seventy), "--json", order, "--as-of", AS_OF]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert (decision["rule_id"], decision["also_matched"]) == ("r0", [f"r{i}" for i in range(1, 65)])


@pytest.mark.parametrize("method", ["cells", "rows"])
def test_a_batch_row_past_64_matches_is_decided(seventy, method):
    policy = engine.load(seventy)
    orders = pd.DataFrame({"order_id": ["a", "b", "c", "d"], "status": ["shipped", "Delivered", "shipped", "Sent"],
                           "x": ["3", "70", "", "64"]})
    out = policy.evaluate(orders, as_of=AS_OF, method=method)
    assert list(out["action"]) == ["a", "a", None, "a"]
    assert list(out["rule_id"]) == ["r0", "r0", None, "r0"]
    assert out["error"].iloc[2] == "no rule decides this order (policy gap)"
    assert out["error"].iloc[[0, 1, 3]].isna().all()


def test_shards_stay_inside_durable_rules_constants():
    """The sizes a shard may use are below the ones the engine enforces (rules.h, rete.h, events.c of 2.0.28)."""
    assert (shards.MAX_STACK, shards.MAX_RULES_PER_NODE, shards.MAX_BRANCHES_PER_NODE) == (64, 255, 127)
    assert shards.SHARD_STACK < shards.MAX_STACK and shards.SHARD_RULES_PER_NODE < shards.MAX_RULES_PER_NODE
    assert shards.SHARD_BRANCHES_PER_NODE < shards.MAX_BRANCHES_PER_NODE
    assert shards.SHARD_TESTS_PER_NODE < shards.MAX_TESTS_PER_NODE and shards.SHARD_RULES < shards.MAX_RULES_PER_RULESET
    assert shards.SHARD_FACTS < shards.MAX_FACTS_PER_MESSAGE


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_service_batch_decides_the_row_past_64_matches(seventy, tmp_path):
    pytest.importorskip("fastapi")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCEL_RULES_")}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([*_command(), "serve", "--port", str(port), "--policy", str(seventy)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        rows = [{"order_id": "a", "status": "shipped", "x": 2}, {"order_id": "b", "status": "shipped", "x": 99},
                {"order_id": "c", "status": "delivered", "x": 0}]
        response = httpx.post(f"http://127.0.0.1:{port}/v1/decisions/batch?as_of={AS_OF}", json=rows, timeout=30)
        assert response.status_code == 200, response.text
        results = response.json()  # one object per row, in order
        assert [(r["order_id"], r["action"], r["rule_id"]) for r in results] == [
            ("a", "a", "r0"), ("b", "a", "r0"), ("c", "a", "r0")]
        assert all(r["error"] is None for r in results)
    finally:
        server.terminate()
        server.wait(timeout=15)
