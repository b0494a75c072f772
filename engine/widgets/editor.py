"""PolicyEditor: author a policy in the notebook: its rules as a decision table and its YAML kept in sync, checked
on every change (problems next to the rule, rule examples, verify, the diff over the loaded orders), then saved."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..compiler import compile_policy
from ..errors import CancelRulesError, EditError, RuleError, RuleProblem
from ..html import esc
from ..loader import DEFAULT_POLICY, RULES_DIR, load_spec_text
from ..policy import Policy, diff, loads
from ..yamledit import Key, append, delete, replace, tree
from .checks import diff_parts, example_results, examples_html, rule_status_html, verify_html
from .common import DESC, FONT, as_of_picker, heading, read_orders_from
from .ruletable import CellError, RuleTable, cell_edit, cell_text, cell_value, new_rule, rules_of
from .testview import TestView

DEBOUNCE_SECONDS = 0.4  # edits closer together than this are checked once, after the last
SHIPPED_CASES = RULES_DIR / "tests" / "cancellation-cases.csv"  # the bundled policy's test cases


def bump_version(version: str) -> str:
    """The version with its last number one up (2026.11.1 -> 2026.11.2); '.1' appended if it has none."""
    found = list(re.finditer(r"\d+", version))
    if not found:
        return f"{version}.1"
    last = found[-1]
    return version[:last.start()] + str(int(last.group()) + 1) + version[last.end():]


def parameter_rows(doc: Mapping[str, Any]) -> dict[str, tuple[tuple[Key, ...], Any]]:
    """Editable parameter values by label ('name', or 'name.key' of a keyed one): their place and value."""
    params = doc.get("parameters")
    rows: dict[str, tuple[tuple[Key, ...], Any]] = {}
    for name, value in (params if isinstance(params, dict) else {}).items():
        if isinstance(value, dict) and isinstance(value.get("values"), dict):
            rows.update({f"{name}.{k}": (("parameters", name, "values", k), v) for k, v in value["values"].items()})
            if "default" in value:
                rows[f"{name}.default"] = (("parameters", name, "default"), value["default"])
        else:
            rows[name] = (("parameters", name), value)
    return rows


class PolicyEditor(w.VBox):
    """Edit a (base) policy's rules and parameters in a table or its YAML, see every check at once, then Save.
    The test cases (`cases`, an upload, or the shipped ones for the bundled policy) run again on every change."""

    def __init__(self, policy: Policy, orders: pd.DataFrame | str | Path, as_of: str | datetime | None = None,
                 path: str | Path | None = None, debounce: float = DEBOUNCE_SECONDS, max_rows: int = 200,
                 cases: pd.DataFrame | str | Path | None = None) -> None:
        if len(policy.spec.sources) != 1:
            raise EditError(policy.spec.path, "the editor edits a base policy (a variant only overrides "
                                              "parameters: use with_parameters or WhatIf)")
        self.source = policy.spec.path
        self.saved, self.saved_text = policy, policy.to_yaml()
        self.candidate: Policy = policy  # the last text that loaded: checked, diffed, what Save would write
        self.text = self.saved_text
        self.problems: list[RuleProblem] = []
        self.orders = read_orders_from(orders)
        self.debounce, self.max_rows = debounce, max_rows
        self._pending: asyncio.TimerHandle | None = None
        self._quiet = False
        self.as_of = as_of_picker(as_of)
        self.path = w.Text(value=str(path or policy.spec.path), description="Save to", style=DESC,
                           layout=w.Layout(width="640px"))
        self.bump = w.Checkbox(value=False, description="bump version", indent=False)
        self.save_button = w.Button(description="Save", button_style="primary")
        self.revert_button = w.Button(description="Revert")
        self.status, self.message = w.HTML(), w.HTML()
        self.params: dict[str, w.Text] = {}
        self.param_box = w.Box(layout=w.Layout(flex_flow="row wrap"))
        self.table = RuleTable(self._cell_changed, self._add_rule)
        self.yaml = w.Textarea(value=self.text, continuous_update=False,
                               layout=w.Layout(width="100%", height="420px"))
        self.yaml.add_class("cr-yaml")
        self.examples, self.verify, self.summary, self.transitions, self.changed = (w.HTML() for _ in range(5))
        self.chart = w.Image(format="png", layout=w.Layout(max_width="640px"))
        self.tests = w.VBox()
        if cases is None and Path(policy.spec.path).resolve() == DEFAULT_POLICY.resolve():
            cases = SHIPPED_CASES
        self.attach_tests(TestView(policy, cases, as_of=as_of, max_rows=max_rows))
        self.save_button.on_click(lambda _: self.save())
        self.revert_button.on_click(lambda _: self.revert())
        self.yaml.observe(self._yaml_changed, "value")
        self.as_of.observe(lambda _: self._schedule(), "value")
        super().__init__([
            w.HBox([self.path, self.bump, self.save_button, self.revert_button]), self.message, self.status,
            heading("Parameters"), self.param_box, heading("Rules"), self.table, heading("YAML"), self.yaml,
            heading("Rule examples"), self.examples, heading("Verify"), self.verify,
            heading("Against the saved policy"), w.HBox([self.as_of]), self.summary,
            w.HBox([self.transitions, self.chart], layout=w.Layout(flex_flow="row wrap")),
            heading("Orders whose decision changes"), self.changed, self.tests])
        self.add_class("cr-policy-editor")
        self.refresh()

    def attach_tests(self, view: TestView) -> None:
        """Show this test view in the editor and run its cases against the edited policy on every change."""
        self.test_view = view
        self.tests.children = [heading("Test scenarios"), view]
        if view.policy is not self.candidate:
            view.set_policy(self.candidate)

    # ------------------------------------------------------------------------------------------ edits

    def edit(self, path: tuple[Key, ...], value: Any) -> None:
        """Put value at path of the text (None removes what is there), as a table cell does; then check."""
        try:
            if value is None:
                text = delete(self.text, path, self.source)
            else:
                text = replace(self.text, path, value, self.source)
        except CancelRulesError as exc:
            self.message.value = f"<div class='cr-edit-error' style='{FONT};color:#c5221f'>{exc}</div>"
            return
        self._set_text(text)

    def _set_text(self, text: str) -> None:
        self.text = text
        self._quiet = True
        try:
            self.yaml.value = text
        finally:
            self._quiet = False
        self._schedule()

    def _yaml_changed(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self.text = change["new"]
            self._schedule()

    def _cell_changed(self, index: int, column: str) -> None:
        try:
            rule = rules_of(tree(self.text, self.source).plain())[index]
            path, value = cell_edit(index, column, self.table.cells(index), self.table.columns, rule)
        except (CellError, CancelRulesError) as exc:
            self.table.mark(index, "", f"<div class='cr-problem' style='color:#c5221f'>⚠ {exc}</div>")
            return
        if value is None and column in ("id", "action"):
            self.table.mark(index, "", f"<div class='cr-problem' style='color:#c5221f'>⚠ {column} is needed</div>")
            return
        self.edit(path, value)

    def _add_rule(self) -> None:
        try:
            rule = new_rule(self.table.new_cells(), self.table.columns)
            text = append(self.text, ("rules",), rule, self.source)
        except (CellError, CancelRulesError) as exc:
            self.message.value = f"<div class='cr-edit-error' style='{FONT};color:#c5221f'>{exc}</div>"
            return
        for cell in self.table.new.values():
            cell.value = ""
        self._set_text(text)

    def _param_changed(self, label: str) -> None:
        rows = parameter_rows(tree(self.text, self.source).plain())
        try:
            value = cell_value(self.params[label].value)
        except CellError as exc:
            self.message.value = f"<div class='cr-edit-error' style='{FONT};color:#c5221f'>{exc}</div>"
            return
        self.edit(rows[label][0], value)

    # ------------------------------------------------------------------------------------------ checks

    def _schedule(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): check at once
            loop = None
        if loop is None or self.debounce <= 0:
            self.refresh()
        else:
            self._pending = loop.call_later(self.debounce, self._refresh_later)

    def _refresh_later(self) -> None:
        # Run by the event loop, which would only log an exception: show it where the user looks instead.
        try:
            self.refresh()
        except Exception as exc:
            self.status.value = (f"<div class='cr-editor-status' data-valid='false' style='{FONT};color:#c5221f'>"
                                 f"internal error while checking: {_escape(f'{type(exc).__name__}: {exc}')}</div>")
            raise

    def refresh(self) -> None:
        """Check the current text: fill table and parameters from it, then validate, run examples, verify, diff."""
        self._pending = None
        try:
            doc = tree(self.text, self.source).plain()
        except RuleError as exc:
            self._show_problems(exc.problems, None)
            return
        if not isinstance(doc, dict):
            doc = {}
        self.table.show(doc)
        self._show_parameters(doc)
        try:
            spec = load_spec_text(self.text, self.source)
            self.candidate = Policy(spec, compile_policy(spec))
        except RuleError as exc:
            self._show_problems(exc.problems, doc)
            return
        except CancelRulesError as exc:
            self._show_problems([RuleProblem(self.source, 1, 1, str(exc))], doc)
            return
        self._check_candidate(doc)

    def _check_candidate(self, doc: Mapping[str, Any]) -> None:
        results = example_results(self.candidate)
        self.problems = [r.problem for r in results if r.problem is not None]
        failing = len(self.problems)
        self.status.value = (f"<div class='cr-editor-status' data-valid='true' style='{FONT};margin:4px 0'>"
                             f"The policy reads and compiles; "
                             + (f"<b style='color:#c5221f'>{failing} rule example{'s' if failing != 1 else ''} "
                                f"fail</b> (Save needs them to pass)." if failing else "all rule examples pass.")
                             + "</div>")
        self._mark_rules(doc, [], results)
        self.examples.value = examples_html(results)
        self.verify.value = verify_html(self.candidate.verify())
        self._show_diff()
        self.test_view.set_policy(self.candidate)

    def _show_problems(self, problems: list[RuleProblem], doc: Mapping[str, Any] | None) -> None:
        """The text does not load: its problems next to their rules; the rest still shows the last valid policy."""
        self.problems = list(problems)
        unplaced = [p for p in problems if doc is None or p.rule_id not in
                    {r.get("id") for r in rules_of(doc)}]
        self.status.value = (
            f"<div class='cr-editor-status' data-valid='false' style='{FONT};margin:4px 0;color:#c5221f'>"
            f"<b>{len(problems)} problem{'s' if len(problems) != 1 else ''}</b>: the checks below still show the "
            "last policy that loaded.</div>" + "".join(f"<div class='cr-problem' style='{FONT};color:#c5221f'>"
                                                       f"{_escape(str(p))}</div>" for p in unplaced))
        if doc is not None:
            self._mark_rules(doc, problems, example_results(self.candidate))

    def _mark_rules(self, doc: Mapping[str, Any], problems: list[RuleProblem], results: list) -> None:
        for index, rule in enumerate(rules_of(doc)):
            rule_id = str(rule.get("id", ""))
            own = [p for p in problems if p.rule_id == rule_id]
            self.table.mark(index, rule_id, rule_status_html(own, [r for r in results if r.rule == rule_id]))

    def _show_parameters(self, doc: Mapping[str, Any]) -> None:
        rows = parameter_rows(doc)
        if list(rows) != list(self.params):
            self.params = {label: w.Text(description=label, continuous_update=False,
                                         style={"description_width": "210px"}, layout=w.Layout(width="330px"))
                           for label in rows}
            for label, box in self.params.items():
                box.observe(lambda _, name=label: None if self._quiet else self._param_changed(name), "value")
            self.param_box.children = list(self.params.values())
        self._quiet = True
        try:
            for label, (_, value) in rows.items():
                self.params[label].value = cell_text(value)
        finally:
            self._quiet = False

    def _show_diff(self) -> None:
        if self.as_of.value is None:
            self.summary.value = f"<div style='{FONT};color:#c5221f'>choose an as-of time</div>"
            return
        result = diff(self.saved, self.candidate, orders=self.orders, as_of=self.as_of.value)
        summary, table, chart, listing = diff_parts(result, len(self.orders), self.max_rows)
        self.summary.value, self.transitions.value, self.chart.value, self.changed.value = \
            summary, table, chart, listing

    # ------------------------------------------------------------------------------------------ save, revert

    def save(self) -> Path | None:
        """Write the text to the Save-to path (its version bumped if asked) when it loads and its examples pass."""
        text = self.text
        try:
            if self.bump.value:
                text = replace(text, ("version",), bump_version(str(self.candidate.version)), self.source)
            policy = loads(text, source=self.source)
            target = policy.save(self.path.value)
        except (CancelRulesError, OSError) as exc:
            self.message.value = (f"<div class='cr-save-error' style='{FONT};color:#c5221f'>Not saved: "
                                  f"{_escape(str(exc))}</div>")
            return None
        self.saved, self.saved_text = policy, text
        self.message.value = (f"<div class='cr-saved' style='{FONT};color:#188038'>Saved {_escape(str(target))} "
                              f"(version {_escape(policy.version)}).</div>")
        self._set_text(text)
        return target

    def revert(self) -> None:
        """Back to the saved text."""
        self.message.value = ""
        self._set_text(self.saved_text)


def _escape(text: str) -> str:
    return esc(text).replace("\n", "<br>")
