"""What the policy editor shows after each change, as HTML: problems and example results per rule, the rule
examples, verify findings and the diff against the saved policy over the loaded orders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..compare import PolicyDiff
from ..errors import RuleProblem
from ..html import esc, frame_html
from ..model import Example
from ..policy import Policy, check_examples
from ..verify import VerifyReport
from .common import FONT, png

OK = "#188038"
BAD = "#c5221f"


@dataclass(frozen=True)
class ExampleResult:
    rule: str | None  # None for an example of the whole policy
    example: Example
    problem: RuleProblem | None

    @property
    def passed(self) -> bool:
        return self.problem is None


def example_results(policy: Policy) -> list[ExampleResult]:
    """Every example check_examples judges, with its problem if it fails (matched by its place in the file)."""
    failing = {(p.line, p.col): p for p in check_examples(policy)}
    is_variant = len(policy.spec.sources) > 1
    rules = () if is_variant else policy.spec.rules
    pairs: list[tuple[str | None, Example]] = [(r.id, ex) for r in rules for ex in r.examples]
    pairs += [(None, ex) for ex in policy.spec.examples]
    return [ExampleResult(rule, ex, failing.get((ex.line, ex.col))) for rule, ex in pairs]


def problem_html(problem: RuleProblem) -> str:
    hint = f" (did you mean '{esc(problem.hint)}'?)" if problem.hint else ""
    return (f"<div class='cr-problem' style='color:{BAD}'>⚠ line {problem.line}:{problem.col}: "
            f"{esc(problem.message)}{hint}</div>")


def rule_status_html(problems: list[RuleProblem], results: list[ExampleResult]) -> str:
    """A rule's status cell: its problems, else how many of its examples pass (and which fail)."""
    if problems:
        return "".join(problem_html(p) for p in problems)
    if not results:
        return "<span style='color:#555'>no examples</span>"
    failed = [r for r in results if not r.passed]
    head = (f"<span class='cr-examples-ok' style='color:{OK}'>✓ {len(results)} example"
            f"{'s' if len(results) != 1 else ''} pass</span>" if not failed else
            f"<span class='cr-examples-fail' style='color:{BAD}'>✗ {len(failed)} of {len(results)} examples fail"
            "</span>")
    return head + "".join(problem_html(r.problem) for r in failed if r.problem)


def examples_html(results: list[ExampleResult]) -> str:
    rows = [{"rule": r.rule or "(policy)", "order": r.example.order.get("order_id", ""), "expect": r.example.expect,
             "result": "pass" if r.passed else "FAIL", "why": "" if r.problem is None else r.problem.message}
            for r in results]
    passed = sum(r.passed for r in results)
    head = (f"<div class='cr-examples-summary' style='{FONT};margin:4px 0'><b>{passed}</b> of {len(results)} "
            "rule examples pass.</div>")
    return head + (frame_html(pd.DataFrame(rows), max_rows=200) if rows else "")


def verify_html(report: VerifyReport, max_rows: int = 10) -> str:
    """Gaps and unreachable rules in full, overlaps (normal under 'first') counted with a few examples."""
    lines = [f"<div class='cr-verify' style='{FONT};margin:4px 0'>{report.cells:,} situations checked: "
             f"<b>{len(report.gaps)}</b> gaps, <b>{len(report.unreachable)}</b> unreachable rules, "
             f"{len(report.overlaps)} overlaps (hit policy {esc(report.hit_policy)}).</div>"]
    if report.unreachable:
        lines.append(f"<div style='{FONT};color:{BAD}'>Unreachable: {esc(', '.join(report.unreachable))}</div>")
    for title, findings in (("Gaps (no rule decides)", report.gaps), ("Overlaps", report.overlaps)):
        if findings:
            rows = [{"rules": ", ".join(f.rules) or "(none)", "winner": f.winner or "", "situations": f.cells,
                     "example order": ", ".join(f"{k}={v}" for k, v in f.example.items() if k != "order_id")}
                    for f in findings[:max_rows]]
            lines.append(f"<div style='{FONT};margin-top:4px'><b>{esc(title)}</b></div>"
                         + frame_html(pd.DataFrame(rows)))
    return "".join(lines)


def diff_parts(result: PolicyDiff, orders: int, max_rows: int = 200) -> tuple[str, str, bytes, str]:
    """(summary, transitions table, chart PNG or b"", changed orders) of a diff over the loaded orders."""
    trans = result.transitions
    changed = result.changed if result.changed is not None else pd.DataFrame()
    rows = trans[trans["orders"] > 0].sort_values("orders", ascending=False)
    rows = rows[[c for c in ("old_action", "old_rule", "new_action", "new_rule", "orders", "cells") if c in rows]]
    summary = (f"<div class='cr-diff-summary' style='{FONT};margin:6px 0'><b>{len(changed):,}</b> of {orders:,} "
               f"orders change their decision against the saved policy ({result.changed_cells:,} of "
               f"{result.cells:,} situations).</div>")
    table = (frame_html(rows, max_rows) if len(rows) else
             f"<div class='cr-no-change' style='{FONT}'>No order changes its decision.</div>")

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        top = rows.head(8).iloc[::-1]
        ax.barh(range(len(top)), top["orders"], color="#1a73e8")
        ax.set_yticks(range(len(top)), [f"{a} → {b}" for a, b in zip(top["old_action"], top["new_action"],
                                                                      strict=True)], fontsize=8)
        ax.set_xlabel("orders")
        ax.set_title("Orders moving between actions")

    chart = png(draw, height=max(2.0, 0.35 * min(len(rows), 8) + 1)) if len(rows) else b""
    first = [c for c in ("order_id", "old_action", "new_action", "old_rule", "new_rule") if c in changed.columns]
    listing = frame_html(changed[first + [c for c in changed.columns if c not in first]], max_rows) \
        if len(changed) else ""
    return summary, table, chart, listing
