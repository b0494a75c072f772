"""Issue 9 item 14: durable_rules' fixed limits are named, with their numbers, and never fail a whole batch.

What a ruleset needs is known when it is compiled, so a policy past a limit is a RuleError located at the
rule that goes past it (before durable_rules is asked: past one limit its compiler never returns). How many
tests one order satisfies at once is known only when it is evaluated: that order gets the error, its batch
does not.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

import engine
from conftest import AS_OF
from engine import cli, compiler
from engine.loader import RULES_DIR


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


def _line_of(path: Path, rule_id: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if f"id: {rule_id}," in line)


# ------------------------------------------------------------------------------------------ at load time


def test_257_rules_with_the_same_conditions_are_a_located_rule_error(tmp_path):
    """durable_rules links at most 256 rules to one node (error 108): it said only "failed during compilation"."""
    assert len(engine.load(_policy(tmp_path, ["{status: delivered}"] * 256, "fits")).spec.rules) == 256
    path = _policy(tmp_path, ["{status: delivered}"] * 257)
    with pytest.raises(engine.RuleError) as info:
        engine.load(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:{_line_of(path, 'r256')}:5: rule 'r256': 257 rules have the same conditions (status = 'delivered') "
        f"in the same order; durable_rules allows at most 256 (error 108)"]


def test_in_lists_sharing_a_value_past_128_are_a_located_rule_error(tmp_path):
    path = _policy(tmp_path, [f"{{status: {{in: [delivered, shipped]}}, x: {{gte: {i}}}}}" for i in range(129)])
    with pytest.raises(engine.RuleError) as info:
        engine.load(path)
    assert {p.rule_id for p in info.value.problems} == {"r128"}
    assert {p.message for p in info.value.problems} == {
        f"129 'in'/keyed-parameter branches and 'given: false' tests hang on the same conditions (status = "
        f"'{value}'); durable_rules allows at most 128 (error 107)" for value in ("delivered", "shipped")}


def test_two_keyed_parameters_in_one_rule_are_a_located_rule_error(tmp_path):
    """Each keyed parameter makes an 'or' of one 'and' per key: two of them pass durable_rules' 31 expressions
    of one rule (error 113). A realistic rule of the bundled policy's kind."""
    doc = yaml.safe_load((RULES_DIR / "cancellation.yaml").read_text(encoding="utf-8"))
    doc["rules"].insert(0, {"id": "refund_late_and_paid_recently", "priority": 5,
                            "when": {"days_since_refund": {"gte": "$refund_days"},
                                     "hours_since_payment": {"lt": "$refund_days"}},
                            "then": {"action": "contact_support"}, "source": "test", "examples": []})
    path = tmp_path / "two-keyed.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with pytest.raises(engine.RuleError) as info:
        engine.load(path)
    (problem,) = info.value.problems
    assert (problem.rule_id, problem.line) == ("refund_late_and_paid_recently", _line_of_key(path, "refund_late"))
    assert problem.message.startswith("its conditions make 18 and/or groups")
    assert problem.message.endswith("durable_rules allows at most 14 (error 113)")


def _line_of_key(path: Path, fragment: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if fragment in line)


def test_513_tests_after_one_node_are_refused_instead_of_hanging(tmp_path):
    """durable_rules' compiler loops forever on the 513th different test after one node: the CLI used to hang."""
    path = _policy(tmp_path, [f"{{x: {{gte: {i}}}}}" for i in range(513)])
    try:
        done = subprocess.run([*_command(), "rules", "--policy", str(path)], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("loading the policy did not return in 120 s")
    assert done.returncode == 2
    assert done.stderr.splitlines()[1] == (
        f"{path}:{_line_of(path, 'r512')}:5: rule 'r512': 513 different tests come first in rules; durable_rules "
        f"allows at most 512 (its compiler never returns with more)")


# ------------------------------------------------------------------------------------------ at evaluation


@pytest.fixture(scope="module")
def seventy(tmp_path_factory) -> Path:
    """70 rules `x >= i`: an order with x >= 64 satisfies more than 64 tests at once."""
    return _policy(tmp_path_factory.mktemp("limits"), [f"{{x: {{gte: {i}}}}}" for i in range(70)], "seventy")


def test_an_order_past_64_matches_names_the_limit_and_the_engine_recovers(seventy):
    policy = engine.load(seventy)
    with pytest.raises(engine.EngineError) as info:
        policy.decide({"order_id": "o", "status": "shipped", "x": 69.5}, as_of=AS_OF)
    assert info.value.code == 303
    assert re.fullmatch(r"rules engine failed during evaluation on ruleset 'seventy-\w+' \(order matches 70 rules; "
                        r"more than 64 of the policy's tests hold at once: durable_rules' limit \(error 303\)\)",
                        str(info.value))
    # the same order again, and others: the engine's state after the failure does not leak into them
    with pytest.raises(engine.EngineError, match="order matches 66 rules"):
        policy.decide({"order_id": "o", "status": "shipped", "x": 65}, as_of=AS_OF)
    for x in (0, 12, 63.5, 0.5):
        decision = policy.decide({"order_id": "o", "status": "shipped", "x": x}, as_of=AS_OF)
        assert (decision.rule_id, len(decision.also_matched)) == ("r0", int(x))


def test_cli_decide_past_the_limit_is_one_line_exit_2(seventy, capsys):
    order = json.dumps({"order_id": "o", "status": "shipped", "x": 64})
    assert cli.main(["decide", "--policy", str(seventy), "--json", order, "--as-of", AS_OF]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "order matches 65 rules" in err and "(error 303)" in err


@pytest.mark.parametrize("method", ["cells", "rows"])
def test_a_batch_row_past_the_limit_gets_its_own_error(seventy, method):
    policy = engine.load(seventy)
    orders = pd.DataFrame({"order_id": ["a", "b", "c", "d"], "status": ["shipped", "Delivered", "shipped", "Sent"],
                           "x": ["3", "70", "", "64"]})
    out = policy.evaluate(orders, as_of=AS_OF, method=method)
    assert list(out["action"]) == ["a", None, None, None]
    assert out["error"].iloc[1].endswith("(order matches 70 rules; more than 64 of the policy's tests hold at once: "
                                         "durable_rules' limit (error 303))")
    assert "order matches 65 rules" in out["error"].iloc[3]
    assert out["error"].iloc[2] == "no rule decides this order (policy gap)"
    assert list(out["message"])[0] == "rule 0"


def test_evaluation_limit_matches_durable_rules_constant():
    """The number named in the errors is the one the engine enforces (MAX_STACK_SIZE in events.c)."""
    assert compiler.MAX_MATCHING_TESTS == 64 and "64" in compiler._LIMITS[303]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_service_batch_gives_the_row_past_the_limit_an_error(seventy, tmp_path):
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
        assert [(r["order_id"], r["action"]) for r in results] == [("a", "a"), ("b", None), ("c", "a")]
        assert "order matches 70 rules" in results[1]["error"] and "(error 303)" in results[1]["error"]
    finally:
        server.terminate()
        server.wait(timeout=15)
