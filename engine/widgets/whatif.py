"""WhatIf: try a policy change on real orders, with parameter sliders and a variant picker, diffed over the batch."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd

from ..batch import resolve_columns
from ..errors import CancelRulesError
from ..frames import normalize_frame
from ..html import bars_svg, chart_html, esc, frame_html
from ..loader import RULES_DIR
from ..model import FactSpec, KeyedParameter, ParamRef, PolicySpec
from ..policy import Policy, diff, load
from ..text import humanize
from .common import DESC, FONT, LiveHTML, as_of_picker, heading, read_orders_from
from .grid import ResultsGrid
from .slider import NumberSlider

_UNIT_WORDS = {"hours", "days", "percent"}  # a parameter's name ending in its unit: the unit is shown apart


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def variants() -> dict[str, Path]:
    """Variant policy files bundled with the rules, by file stem."""
    return {p.stem: p for p in sorted((RULES_DIR / "variants").glob("*.yaml"))}


def compared_fact(spec: PolicySpec, parameter: str) -> FactSpec | None:
    """The fact a parameter is compared with in the rules (its unit and range are the parameter's)."""
    for rule in spec.rules:
        for cond in rule.conditions:
            values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
            if any(isinstance(v, ParamRef) and v.name == parameter for v in values):
                return spec.facts.get(cond.fact)
    return None


def parameter_label(name: str, unit: str | None) -> str:
    """'seller_reply_hours', 'h' -> 'Seller reply (h)'."""
    words = name.split("_")
    if len(words) > 1 and words[-1] in _UNIT_WORDS:
        words = words[:-1]
    return humanize("_".join(words)) + (f" ({unit})" if unit else "")


def _nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above x."""
    if x <= 0:
        return 10.0
    power = 10 ** math.floor(math.log10(x))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= x)


def slider_range(fact: FactSpec | None, value: float, observed: np.ndarray | None) -> tuple[float, float, float]:
    """(min, max, step) of a parameter's slider: the compared fact's declared range (0-100 for a percentage);
    without a declared maximum, up to the larger of the orders' largest value and twice the parameter's."""
    low = fact.min if fact is not None and fact.min is not None else 0.0
    if fact is not None and fact.max is not None:
        high = fact.max
    else:
        seen = observed[np.isfinite(observed)] if observed is not None else np.empty(0)
        high = _nice_ceiling(max(float(np.max(seen)) if len(seen) else 0.0, 2 * value, low + 1))
    step = 1.0 if high - low <= 1000 else _nice_ceiling((high - low) / 1000)
    return float(low), float(high), step


class WhatIf(w.VBox):
    """Try a policy change on real orders: parameter sliders and a variant picker, diffed over the batch."""

    def __init__(self, policy: Policy, orders: pd.DataFrame | str | Path,
                 as_of: str | datetime | None = None, max_rows: int = 200) -> None:
        self.policy = policy
        self.orders = read_orders_from(orders)
        self.max_rows = max_rows
        self.as_of = as_of_picker(as_of)
        self.variant = w.Dropdown(description="Start from", style=DESC, layout=w.Layout(width="420px"),
                                  options=[(f"current policy ({policy.version})", "")] +
                                          [(name, str(path)) for name, path in variants().items()])
        self.sliders: dict[str, NumberSlider] = {}  # "name" or "name.key" for a keyed parameter
        self.reset = w.Button(description="Reset to the start policy", layout=w.Layout(width="auto"))
        self.summary = LiveHTML(label="What changes")
        self.counts = w.HTML()
        self.chart = w.HTML()
        self.transitions = w.HTML()
        self.grid = ResultsGrid(first=("order_id", "old_action", "new_action", "old_rule", "new_rule"),
                                filters={"old_action": "Before", "new_action": "After"}, error_column=None,
                                hover={c: dict(policy.spec.actions) for c in ("old_action", "new_action")},
                                name="changed-orders", label="Orders whose decision changes")
        self.candidate: Policy = policy
        self.diff: Any = None
        self.recompute_seconds: deque[float] = deque(maxlen=1000)
        self._base = policy
        self._quiet = False
        self._before: tuple[Any, pd.Series] | None = None  # (as of, the current policy's actions), once per as-of
        self.variant.observe(self._variant_changed, "value")
        self.as_of.observe(lambda _: self.recompute(), "value")
        self.reset.on_click(lambda _: self._set_sliders(self._base))
        super().__init__([
            w.HBox([self.variant, self.as_of]), w.VBox(self._controls()), self.reset, self.summary,
            heading("Orders by action, before and after"), w.HBox([self.counts, self.chart],
                                                                  layout=w.Layout(flex_flow="row wrap")),
            heading("Transitions"), self.transitions,
            heading("Orders whose decision changes"), self.grid,
        ])
        self.recompute()

    def _controls(self) -> list[w.Widget]:
        spec = self.policy.spec
        observed = self._observed()
        groups: list[w.Widget] = []
        for name, param in spec.parameters.items():
            fact = compared_fact(spec, name)
            unit = fact.unit if fact is not None else None
            seen = observed.get(fact.name) if fact is not None else None
            if isinstance(param, KeyedParameter):
                by = spec.facts.get(param.by)
                title = f"{parameter_label(name, unit)} by {humanize(param.by).lower()}"
                items = [self._slider(f"{name}.{k}", f"{parameter_label(name, None)} · "
                                      f"{by.label(k) if by is not None else k} ({unit})" if unit else k,
                                      v, fact, seen) for k, v in param.values.items()]
                groups.append(w.VBox([w.HTML(f"<b style='{FONT}'>{esc(title)}</b>"), *items]))
            else:
                groups.append(self._slider(name, parameter_label(name, unit), param, fact, seen))
        return groups

    def _observed(self) -> dict[str, np.ndarray]:
        """The orders' values of each number fact (elapsed times at the as-of), for the sliders' ranges."""
        spec = self.policy.spec
        try:
            columns = resolve_columns(spec, list(self.orders.columns))
            norm = normalize_frame(spec, self.orders, columns, self.as_of.value)
        except CancelRulesError:  # the ranges fall back to the parameters' own values; recompute says what is wrong
            return {}
        return {n: norm.values[n] for n, f in spec.facts.items() if f.type == "number" and n in norm.values}

    def _slider(self, key: str, label: str, value: float, fact: FactSpec | None,
                observed: np.ndarray | None) -> NumberSlider:
        low, high, step = slider_range(fact, float(value), observed)
        compared = f"compared with {humanize(fact.name).lower()}" if fact is not None else ""
        slider = NumberSlider(value=float(value), min=low, max=max(high, float(value)), step=step, label=label,
                              unit=fact.unit or "" if fact is not None else "", help=compared,
                              lowest=low, highest=fact.max if fact is not None else None)
        slider.observe(lambda _: None if self._quiet else self.recompute(), "value")
        self.sliders[key] = slider
        return slider

    def _variant_changed(self, change: dict[str, Any]) -> None:
        self._base = load(change["new"]) if change["new"] else self.policy
        self._set_sliders(self._base)

    def _set_sliders(self, base: Policy) -> None:
        self._quiet = True
        try:
            for name, param in base.spec.parameters.items():
                if isinstance(param, KeyedParameter):
                    for k, v in param.values.items():
                        if f"{name}.{k}" in self.sliders:
                            self.sliders[f"{name}.{k}"].value = float(v)
                elif name in self.sliders:
                    self.sliders[name].value = float(param)
        finally:
            self._quiet = False
        self.recompute()

    def overrides(self) -> dict[str, Any]:
        """Slider values that differ from the start policy's, in the form `Policy.with_parameters` takes."""
        out: dict[str, Any] = {}
        for name, param in self._base.spec.parameters.items():
            if isinstance(param, KeyedParameter):
                keyed = {k: self.sliders[f"{name}.{k}"].value for k in param.values
                         if f"{name}.{k}" in self.sliders and self.sliders[f"{name}.{k}"].value != param.values[k]}
                if keyed:
                    out[name] = keyed
            elif name in self.sliders and self.sliders[name].value != param:
                out[name] = self.sliders[name].value
        return out

    def recompute(self) -> None:
        """Diff the candidate policy against the current one over the batch and redraw."""
        start = time.perf_counter()
        if self.as_of.value is None:
            self.summary.value = f"<div style='{FONT};color:#c5221f'>choose an as-of time</div>"
            return
        overrides = self.overrides()
        self.candidate = self._base.with_parameters(**overrides) if overrides else self._base
        self.diff = diff(self.policy, self.candidate, orders=self.orders, as_of=self.as_of.value)
        self._render(overrides)
        self.recompute_seconds.append(time.perf_counter() - start)

    def by_action(self) -> pd.DataFrame:
        """Orders by action under the current policy (before) and the candidate (after): the changed orders
        moved from the first count to the second."""
        if self._before is None or self._before[0] != self.as_of.value:  # once per as-of, not per change
            actions = self.policy.evaluate(self.orders, as_of=self.as_of.value)["action"].fillna("(no decision)")
            self._before = (self.as_of.value, actions.value_counts())
        before = self._before[1]
        changed = self.diff.changed
        moved_out = changed["old_action"].fillna("(no decision)").value_counts()
        moved_in = changed["new_action"].fillna("(no decision)").value_counts()
        names = list(dict.fromkeys([*before.index, *moved_in.index]))
        after = [int(before.get(a, 0) - moved_out.get(a, 0) + moved_in.get(a, 0)) for a in names]
        table = pd.DataFrame({"action": names, "before": [int(before.get(a, 0)) for a in names], "after": after})
        table["change"] = table["after"] - table["before"]
        return table.sort_values("before", ascending=False, ignore_index=True)

    def _render(self, overrides: Mapping[str, Any]) -> None:
        trans = self.diff.transitions
        changed = self.diff.changed
        n = len(self.orders)
        what = ", ".join(f"{k} = {_plain(v)}" for k, v in overrides.items()) or "no parameter changed"
        start_name = self.variant.label if self.variant.value else "the current policy"
        # transitions that no order of the batch takes are real (cells of the fact space) but not the point here
        rows = trans[trans["orders"] > 0].sort_values("orders", ascending=False)
        rows = rows[[c for c in ("old_action", "old_rule", "new_action", "new_rule", "orders", "cells")
                     if c in rows.columns]]
        silent = len(trans) - len(rows)
        self.summary.value = (
            f"<div class='cr-whatif-summary' style='{FONT};margin:6px 0'>Candidate: {esc(start_name)}, "
            f"{esc(what)}. <b>{len(changed):,}</b> of {n:,} orders change their decision "
            f"({100 * len(changed) / max(n, 1):.1f} %)"
            + (f"; {silent} more transitions happen only in situations no order of the batch is in" if silent else "")
            + ".</div>")
        self.transitions.value = (frame_html(rows, self.max_rows) if len(rows)
                                  else f"<div class='cr-no-change' style='{FONT}'>No order changes its decision."
                                       f"</div>")
        table = self.by_action()
        self.counts.value = f"<div class='cr-by-action' style='min-width:360px'>{frame_html(table, 50)}</div>"
        self.chart.value = self._chart(table)
        self.grid.set_frame(changed)

    def _chart(self, table: pd.DataFrame) -> str:
        svg = bars_svg(list(table["action"]), [("before", "#80868b", list(table["before"])),
                                               ("after", "#1a73e8", list(table["after"]))],
                       "Orders by action: current policy (before) and candidate (after)")
        moves = [f"{a} {b} → {c}" for a, b, c in zip(table["action"], table["before"], table["after"], strict=True)]
        alt = "Bar chart of orders by action, before and after the change: " + "; ".join(moves) + "."
        return chart_html(svg, alt, "640px", kind="svg+xml")
