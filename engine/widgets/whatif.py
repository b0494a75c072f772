"""WhatIf: try a policy change on real orders, with parameter sliders and a variant picker, diffed over the batch."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..html import esc, frame_html
from ..loader import RULES_DIR
from ..model import KeyedParameter
from ..policy import Policy, diff, load
from .common import DESC, FONT, as_of_picker, heading, png, read_orders_from


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def variants() -> dict[str, Path]:
    """Variant policy files bundled with the rules, by file stem."""
    return {p.stem: p for p in sorted((RULES_DIR / "variants").glob("*.yaml"))}


def _slider_range(value: float) -> tuple[float, float, float]:
    high = max(4 * value, 10)
    step = 1.0 if high <= 400 else float(round(high / 400))
    return 0.0, float(high), step


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
        self.sliders: dict[str, w.FloatSlider] = {}  # "name" or "name.key" for a keyed parameter
        self.reset = w.Button(description="Reset to the start policy", layout=w.Layout(width="auto"))
        self.summary = w.HTML()
        self.transitions = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(max_width="640px"))
        self.changed = w.HTML()
        self.candidate: Policy = policy
        self.diff: Any = None
        self.recompute_seconds: deque[float] = deque(maxlen=1000)
        self._base = policy
        self._quiet = False
        groups = []
        for name, param in policy.spec.parameters.items():
            if isinstance(param, KeyedParameter):
                items = [self._slider(f"{name}.{k}", f"{k}", v) for k, v in param.values.items()]
                groups.append(w.VBox([w.HTML(f"<b style='{FONT}'>{esc(name)}</b> "
                                             f"<span style='{FONT};color:#555'>by {esc(param.by)}</span>"), *items]))
            else:
                groups.append(self._slider(name, name, param))
        self.variant.observe(self._variant_changed, "value")
        self.as_of.observe(lambda _: self.recompute(), "value")
        self.reset.on_click(lambda _: self._set_sliders(self._base))
        super().__init__([
            w.HBox([self.variant, self.as_of]), w.VBox(groups), self.reset, self.summary,
            heading("Transitions"), w.HBox([self.transitions, self.chart], layout=w.Layout(flex_flow="row wrap")),
            heading("Orders whose decision changes"), self.changed,
        ])
        self.recompute()

    def _slider(self, key: str, label: str, value: float) -> w.FloatSlider:
        lo, hi, step = _slider_range(float(value))
        slider = w.FloatSlider(value=float(value), min=lo, max=hi, step=step, description=label,
                               continuous_update=False, style={"description_width": "210px"},
                               layout=w.Layout(width="560px"),
                               readout_format=".0f")
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

        def draw(fig: Any) -> None:
            ax = fig.add_subplot(1, 1, 1)
            top = rows.head(8).iloc[::-1]
            labels = [f"{a} → {b}" for a, b in zip(top["old_action"], top["new_action"], strict=True)]
            ax.barh(range(len(top)), top["orders"], color="#1a73e8")
            ax.set_yticks(range(len(top)), labels, fontsize=8)
            ax.set_xlabel("orders")
            ax.set_title("Orders moving between actions")

        self.chart.value = png(draw, height=max(2.0, 0.35 * min(len(rows), 8) + 1)) if len(rows) else b""
        first = [c for c in ("order_id", "old_action", "new_action", "old_rule", "new_rule") if c in changed.columns]
        shown = changed[first + [c for c in changed.columns if c not in first]]
        self.changed.value = frame_html(shown, self.max_rows) if len(changed) else ""
