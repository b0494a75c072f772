"""Explorer: shape one order with a control per declared fact and watch which rule fires, and why."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import ipywidgets as w

from ..decision import Decision
from ..errors import FieldProblem, OrderError
from ..facts import parse_as_of
from ..html import changes_html, decision_html, esc, result_card_html, rules_table_html
from ..model import FactSpec
from ..policy import Policy
from ..probe import what_would_change
from ..text import alias_key, humanize
from .aria import LiveHTML, NamedCheckbox
from .common import DESC, FONT, as_of_picker, heading

NOT_GIVEN_OPTION = ""  # dropdown value of "not given": None would read as "nothing selected"


def _enum_code(fact: FactSpec, value: Any) -> str:
    """A starting value for an enum control: codes and display labels both accepted."""
    if value is None or value == "":
        return NOT_GIVEN_OPTION if fact.optional else (fact.default or fact.values[0])
    code = value if value in fact.values else fact.aliases.get(alias_key(str(value)))
    if code is None:
        raise OrderError([FieldProblem(fact.name, value, f"unknown value {value!r}")])
    return code


class Explorer(w.VBox):
    """Shape one order with a control per declared fact and watch which rule fires, and why."""

    def __init__(self, policy: Policy, order: Mapping[str, Any] | None = None,
                 as_of: str | datetime | None = None) -> None:
        self.policy = policy
        spec = policy.spec
        order = dict(order or {})
        self.inputs: dict[str, w.ValueWidget] = {}
        self.not_given: dict[str, NamedCheckbox] = {}
        self.stamps: dict[str, w.Text] = {}  # a time-derived fact can come from a timestamp and the as-of
        self.as_of = as_of_picker(as_of)
        self.result = LiveHTML(label="Decision")  # announced to screen readers as it changes
        self.plain = w.HTML()  # the same decision as Decision._repr_html_ draws it, for a page to show below
        self.hint = w.HTML()
        self.rules = w.HTML()
        self.decision: Decision | None = None
        self.error: OrderError | None = None
        self.update_seconds: deque[float] = deque(maxlen=1000)  # recent redraw times, for measuring
        self._quiet = False
        rows = [self._control(fact, order) for fact in spec.facts.values()]
        rows.append(self.as_of)
        self.as_of.observe(self._changed, "value")
        controls = w.VBox([heading("Order"), *rows], layout=w.Layout(width="48%", min_width="430px"))
        outcome = w.VBox([heading("Decision"), self.result, heading("What would change it", 4), self.hint],
                         layout=w.Layout(width="50%", min_width="360px"))
        title = w.HTML(f"<div style='{FONT};color:#555'>policy <b>{esc(spec.name)}</b> {esc(spec.version)} · "
                       f"{len(spec.rules)} rules, first hit by priority</div>")
        super().__init__([title, w.HBox([controls, outcome], layout=w.Layout(flex_flow="row wrap",
                                                                          justify_content="space-between")),
                          heading("Rules in firing order"), self.rules])
        self.add_class("cr-explorer")  # lets a page tell the live explorer from a displayed Decision
        self.update()

    def _control(self, fact: FactSpec, order: Mapping[str, Any]) -> w.Widget:
        name, label = fact.name, humanize(fact.name)
        common = dict(description=label, style=DESC, tooltip=fact.description or label)
        if fact.type == "enum":
            options = [(fact.label(v), v) for v in fact.values]
            if fact.optional:
                options.insert(0, ("not given", NOT_GIVEN_OPTION))
            widget = w.Dropdown(options=options, value=_enum_code(fact, order.get(name)),
                                layout=w.Layout(width="400px"), **common)
            widget.tooltip = _code_tooltip(fact, widget.value)
            widget.observe(lambda change: setattr(change["owner"], "tooltip", _code_tooltip(fact, change["new"])),
                           "value")
        elif fact.type == "number":
            start = order.get(name)
            unit = f" ({fact.unit})" if fact.unit else ""
            common["description"] = label + unit
            widget = w.FloatText(value=float(start) if start is not None else 0.0, step=1,
                                 layout=w.Layout(width="260px"), **common)
        else:
            widget = w.Text(value=str(order.get(name, "ORDER-1")), layout=w.Layout(width="400px"), **common)
        self.inputs[name] = widget
        widget.observe(self._changed, "value")
        parts: list[w.Widget] = [widget]
        if fact.type == "number" and not fact.required:
            given = order.get(name) is not None or fact.default is not None
            box = NamedCheckbox(not given, "not given", f"{label} not given")
            box.observe(self._changed, "value")
            self.not_given[name] = box
            parts.append(box)
        row = w.HBox(parts, layout=w.Layout(align_items="center")) if len(parts) > 1 else widget
        if fact.type == "number" and fact.from_timestamp:
            stamp = w.Text(value=str(order.get(fact.from_timestamp) or ""),
                           description=f"or {humanize(fact.from_timestamp)}", style=DESC,
                           placeholder="ISO 8601: 2026-11-25T12:00Z",
                           tooltip=f"{fact.from_timestamp}: when set, {name} is counted from it to the as-of time",
                           layout=w.Layout(width="400px"))
            stamp.observe(self._changed, "value")
            self.stamps[name] = stamp
            return w.VBox([row, stamp])
        return row

    def _changed(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        owner = change["owner"]
        for name, box in self.not_given.items():
            if owner is self.inputs[name] and box.value:
                with self._hold():  # typing a number means the fact is given
                    box.value = False
        self.update()

    @contextmanager
    def _hold(self) -> Iterator[None]:
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def order(self) -> dict[str, Any]:
        """The order the controls describe, as `Policy.decide` takes it."""
        order: dict[str, Any] = {}
        for name, fact in self.policy.spec.facts.items():
            widget = self.inputs[name]
            stamp = self.stamps.get(name)
            if stamp is not None and fact.from_timestamp is not None:
                widget.disabled = bool(stamp.value.strip())
                if stamp.value.strip():
                    order[fact.from_timestamp] = stamp.value.strip()
                    continue
            if name in self.not_given and self.not_given[name].value:
                continue
            if widget.value != NOT_GIVEN_OPTION:
                order[name] = widget.value
        return order

    def update(self) -> None:
        """Decide the order and redraw the result card, the rules table and the hint."""
        start = time.perf_counter()
        spec = self.policy.spec
        self.decision, self.error = None, None
        as_of = self.as_of.value
        if as_of is None:
            self.result.value = self.plain.value = result_card_html(None, OrderError([_as_of_problem()]))
            self.hint.value, self.rules.value = "", rules_table_html(spec)
            return
        try:
            self.decision = self.policy.decide(self.order(), as_of=as_of)
        except OrderError as exc:
            self.error = exc
        d = self.decision
        self.result.value = result_card_html(d, self.error, spec.actions)
        self.plain.value = decision_html(d, spec) if d is not None else self.result.value
        if d is None:
            self.rules.value, self.hint.value = rules_table_html(spec), ""
        else:
            self.rules.value = rules_table_html(spec, d.facts, d.rule_id, d.also_matched)
            self.hint.value = changes_html(what_would_change(self.policy, d.facts, parse_as_of(as_of)), spec.actions)
        self.update_seconds.append(time.perf_counter() - start)


def _code_tooltip(fact: FactSpec, code: str) -> str:
    """A dropdown's hover text: what the fact is, and the code the chosen label stands for."""
    shown = f"{fact.name} = {code}" if code != NOT_GIVEN_OPTION else f"{fact.name} not given"
    return f"{fact.description} ({shown})" if fact.description else shown


def _as_of_problem() -> FieldProblem:
    return FieldProblem("as_of", None, "choose an as-of time")
