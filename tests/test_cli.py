"""The real `cancel-rules` console script, run as a subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

import engine

# The examples' time (conftest): the orders here are the policy's examples and their neighbours.
from conftest import EXAMPLES_AS_OF as AS_OF
from conftest import SCRIPT
from engine import cli
from engine.errors import InputError
from engine.loader import RULES_DIR

HERE = Path(__file__).parent
MALFORMED = HERE / "fixtures" / "malformed"
VALID = HERE / "fixtures" / "valid"
ACCEPTANCE = '{"order_id":"A1","status":"Sent","seller_reply":"no_reply","hours_since_contact":50}'


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], input=stdin, capture_output=True, text=True, timeout=60,
                          cwd=cwd or HERE.parent)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_script_is_installed():
    assert SCRIPT.is_file()


def test_acceptance_command(tmp_path):
    result = run("decide", "--json", ACCEPTANCE, cwd=tmp_path)  # exactly the command, from anywhere
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["action"] == "open_dispute"
    assert data["rule_id"] == "seller_silent_past_window"
    assert data["message"].startswith("The seller has not replied in 50 h")
    assert data["policy_version"] == engine.load().version
    assert data["conditions"] == [
        {"fact": "seller_reply", "op": "eq", "expected": "no_reply", "actual": "no_reply", "passed": True,
         "parameter": None},
        {"fact": "hours_since_contact", "op": "gte", "expected": 48, "actual": 50.0, "passed": True,
         "parameter": "seller_reply_hours"},
    ]
    ranked = [r.id for r in engine.load().spec.ranked_rules()]
    assert [w["rule_id"] for w in data["why_not"]] == ranked[: ranked.index("seller_silent_past_window")]
    for why in data["why_not"]:
        assert why["condition"]["passed"] is False and why["condition"]["actual"] is not None


def test_decide_prints_the_same_decision_as_python():
    result = run("decide", "--json", ACCEPTANCE, "--as-of", AS_OF)
    assert result.returncode == 0
    expected = engine.load().decide(json.loads(ACCEPTANCE), as_of=AS_OF)
    assert json.loads(result.stdout) == json.loads(expected.to_json())


def test_decide_with_timestamp_and_as_of():
    order = json.dumps({"order_id": "T", "status": "Awaiting shipment", "seller_reply": "Silent",
                        "contacted_at": "2025-12-31T00:00:00Z"})
    data = json.loads(run("decide", "--json", order, "--as-of", AS_OF).stdout)
    assert (data["action"], data["facts"]["hours_since_contact"]) == ("wait_for_seller", 24.0)
    data = json.loads(run("decide", "--json", order, "--as-of", "2026-01-02T00:00:00Z").stdout)
    assert data["action"] == "open_dispute"


def test_decide_reads_stdin_and_prints_text():
    result = run("decide", "--json", "-", "--text", "--as-of", AS_OF, stdin=ACCEPTANCE)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("order A1: open_dispute (rule seller_silent_past_window")
    assert "  ✓ hours_since_contact ≥ seller_reply_hours=48 (actual: 50)" in lines
    assert any(line.startswith("  not payment_stuck_in_verification (contact_support): ✗") for line in lines)


def test_decide_with_variant_policy():
    result = run("decide", "--json", ACCEPTANCE, "--as-of", AS_OF,
                 "--policy", str(RULES_DIR / "variants" / "legacy-72h.yaml"))
    data = json.loads(result.stdout)
    assert (data["action"], data["rule_id"]) == ("wait_for_seller", "wait_for_seller_reply")
    assert data["policy"] == "cancellation-legacy-72h"


def test_undecided_order_exits_1_with_the_error_in_json():
    result = run("decide", "--json", '{"order_id":"U","status":"open","seller_reply":"no_reply"}', "--as-of", AS_OF,
                 "--policy", str(VALID / "unique.yaml"))
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["action"] is None
    assert data["error"] == "several rules match under hit policy 'unique': by_status, by_reply"


@pytest.mark.parametrize(("json_text", "message"), [
    ("{bad", "cancel-rules decide: --json is not valid JSON: Expecting property name enclosed in double quotes "
             "at line 1 column 2"),
    ("", "cancel-rules decide: --json is not valid JSON: Expecting value at line 1 column 1"),
    ("[1, 2]", "cancel-rules decide: --json must be a JSON object of order facts"),
    ('{"order_id":"A","status":"shiped","hours_since_contact":-1}',
     "cancel-rules decide: invalid order: status: unknown value 'shiped' (did you mean 'shipped'?); "
     "hours_since_contact: must be >= 0, got -1"),
    ('{"status":"Sent"}', "cancel-rules decide: invalid order: order_id: missing (required)"),
    ('{"order_id":"A","status":"Sent","contacted_at":"2026-02-01T00:00:00Z"}',
     "cancel-rules decide: invalid order: contacted_at: 2026-02-01T00:00:00+00:00 is after the as-of time "
     "2026-01-01T00:00:00+00:00"),
])
def test_invalid_input_is_one_line_and_exit_2(json_text, message):
    assert one_error_line(run("decide", "--json", json_text, "--as-of", AS_OF)) == message


def test_invalid_as_of_is_one_line():
    line = one_error_line(run("decide", "--json", ACCEPTANCE, "--as-of", "next tuesday"))
    assert line == "cancel-rules decide: as-of time is not an ISO 8601 timestamp: 'next tuesday'"


@pytest.mark.parametrize("command", [["decide", "--json", ACCEPTANCE, "--as-of", AS_OF], ["rules"]])
def test_bad_policy_file_prints_every_problem(command):
    path = MALFORMED / "three_mistakes.yaml"
    result = run(*command, "--policy", str(path))
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"cancel-rules {command[0]}: 3 problems in {path}:",
        f"{path}:34:7: rule 'silent': unknown fact 'seller_replies' (did you mean 'seller_reply'?)",
        f"{path}:35:29: rule 'silent': unknown operator 'greater' (did you mean 'gte'?)",
        f"{path}:37:15: rule 'silent': unknown action 'at' (did you mean 'act'?)",
    ]


def test_policy_whose_example_fails_is_refused():
    path = MALFORMED / "example_fails.yaml"
    result = run("rules", "--policy", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"cancel-rules rules: 1 problem in {path}:",
        f"{path}:41:9: rule 'silent': example expects act but the policy gives no action "
        "(no rule decides this order (policy gap))",
    ]


def test_missing_policy_file():
    path = HERE / "no-such-policy.yaml"
    result = run("rules", "--policy", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"cancel-rules rules: 1 problem in {path}:",
                                          f"{path}:1:1: cannot read file: No such file or directory"]


def test_rules_prints_a_table():
    result = run("rules")
    assert result.returncode == 0 and result.stderr == ""
    policy = engine.load()
    lines = result.stdout.splitlines()
    assert lines[0] == f"cancellation {policy.version} (hit policy first, {len(policy.spec.rules)} rules)"
    assert lines[1].split() == ["id", "priority", "when", "action"]
    rows = lines[2:]
    ranked = policy.spec.ranked_rules()
    assert len(rows) == len(ranked)
    for line, rule in zip(rows, ranked, strict=True):
        cells = line.split()
        assert (cells[0], cells[1], cells[-1]) == (rule.id, str(rule.priority), rule.action)
    silent = rows[[r.id for r in ranked].index("seller_silent_past_window")]
    assert "seller_reply eq no_reply, hours_since_contact gte $seller_reply_hours" in silent
    # columns line up: every row's 'when' starts where the header's does
    col = lines[1].index("when")
    assert all(row[col - 2:col] == "  " and row[col] != " " for row in rows)


def test_rules_json_and_variant():
    data = json.loads(run("rules", "--json").stdout)
    assert [row["id"] for row in data] == [r.id for r in engine.load().spec.ranked_rules()]
    result = run("rules", "--policy", str(RULES_DIR / "variants" / "legacy-72h.yaml"))
    assert result.stdout.splitlines()[0].startswith("cancellation-legacy-72h ")


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted (SIGINT)"),
                                                (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_a_library_turns_into_an_error_still_ends_the_run_as_that_signal(monkeypatch, capsys, signum, code,
                                                                                   said):
    """durable_rules catches BaseException in its action callbacks and hands it on as another error: a Ctrl-C
    (or SIGTERM) arriving during an evaluation must still read as the signal, never as bad input (exit 2)."""

    def swallowing(args):
        try:
            signal.raise_signal(signum)
        except BaseException as exc:
            raise InputError("orders.csv", f"cannot read: {type(exc).__name__}") from None
        return 0

    monkeypatch.setattr(cli, "cmd_verify", swallowing)
    # as in a fresh process (an earlier test in this one may have left its own handler, e.g. a server's)
    before = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, signal.SIG_DFL),
                                                  (signal.SIGINT, signal.default_int_handler))}
    try:
        assert cli.main(["verify"]) == code
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers before are back
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert capsys.readouterr().err.splitlines() == [f"cancel-rules verify: {said}"]


def test_a_reader_that_goes_away_ends_the_run_quietly():
    """`cancel-rules verify | head -1`: the reader closes the pipe before the report is written; the run stops
    without a word on stderr (it is not a bug: exit 70 said so before) and exits as a SIGPIPE death would, 141."""
    proc = subprocess.Popen([str(SCRIPT), "verify"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert err == ""
