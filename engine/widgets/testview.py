"""TestView: test cases run against a policy: the cases that fail, and how often the cases and the rule examples
hit each rule."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..errors import CancelRulesError
from ..facts import parse_as_of
from ..html import esc, frame_html
from ..policy import Policy
from ..scenarios import Cases, ScenarioReport, read_cases
from .common import FONT, as_of_picker, heading

FAILURE_COLUMNS = ["case", "expected_action", "expected_rule", "action", "rule_id", "why"]


class TestView(w.VBox):
    """Test cases (a CASES CSV or a frame) run against a policy: the failures table and the rules' coverage.
    `set_policy` runs them again against another policy (an editor calls it on every change)."""

    __test__ = False  # a widget, not a pytest test class

    def __init__(self, policy: Policy, cases: pd.DataFrame | str | Path | None = None,
                 as_of: str | datetime | None = None, max_rows: int = 200) -> None:
        self.policy = policy
        self.max_rows = max_rows
        self.cases: Cases | None = None
        self.report: ScenarioReport | None = None
        self.upload = w.FileUpload(accept=".csv", multiple=False, description="Load cases")
        self.as_of = as_of_picker(as_of)
        self.status = w.HTML()
        self.failures = w.HTML()
        self.coverage = w.HTML()
        self.upload.observe(self._uploaded, "value")
        self.as_of.observe(lambda _: self.run(), "value")
        super().__init__([w.HBox([self.upload, self.as_of]), self.status, heading("Failures"), self.failures,
                          heading("Coverage of the rules (cases and rule examples)"), self.coverage])
        if cases is not None:
            self.load(cases, str(cases) if isinstance(cases, (str, Path)) else "cases")

    def load(self, cases: pd.DataFrame | str | Path | bytes, name: str = "cases") -> None:
        """Read the cases (a frame, a CSV path or CSV bytes) and run them."""
        try:
            if isinstance(cases, pd.DataFrame):
                self.cases = Cases(cases.set_axis([str(c) for c in cases.columns], axis=1), name)
            else:
                self.cases = read_cases(cases, name=name if isinstance(cases, bytes) else None)
        except CancelRulesError as exc:  # read_cases names the file in its errors
            self.cases = self.report = None
            self._show_problem(str(exc))
            return
        self.run()

    def set_policy(self, policy: Policy) -> None:
        """Run the loaded cases against this policy from now on."""
        self.policy = policy
        self.run()

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if files:
            self.load(bytes(files[0]["content"]), files[0]["name"])

    def _show_problem(self, text: str) -> None:
        self.status.value = f"<div class='cr-problem' style='{FONT};color:#c5221f'>{esc(text)}</div>"
        self.failures.value = self.coverage.value = ""

    def run(self) -> None:
        """Run the cases against the policy and show the result; bad cases are shown as the one located line."""
        if self.cases is None:
            return
        if self.as_of.value is None:
            self._show_problem("choose an as-of time")
            return
        try:
            report = self.policy.test_report(self.cases, as_of=parse_as_of(self.as_of.value))
        except CancelRulesError as exc:
            self.report = None
            self._show_problem(str(exc))
            return
        self.report = report
        failed = report.failures
        color = "#1e8e3e" if report.ok else "#c5221f"
        self.status.value = (f"<div class='cr-test-status' style='{FONT}'><b>{esc(self.cases.source)}</b>: "
                             f"{len(report.results)} cases, <span style='color:{color}'>"
                             f"{len(report.results) - len(failed)} passed, {len(failed)} failed</span> · policy "
                             f"{esc(report.policy)}</div>")
        self.failures.value = (f"<div class='cr-failures'>{frame_html(failed[FAILURE_COLUMNS], self.max_rows)}</div>"
                               if len(failed) else f"<div class='cr-failures' style='{FONT}'>Every case passed.</div>")
        zero = report.zero_hit_rules
        never = (f"<div class='cr-zero-hit' style='{FONT};color:#c5221f'>Rules no case or example hits: "
                 f"{esc(', '.join(zero))}</div>" if zero else
                 f"<div class='cr-zero-hit' style='{FONT}'>Every rule is hit by a case or an example.</div>")
        self.coverage.value = f"<div class='cr-coverage'>{frame_html(report.coverage, 1000)}</div>{never}"
