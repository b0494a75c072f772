"""Jupyter views of a policy: Explorer (one order), BatchView (a batch of orders), WhatIf (a policy change)."""

from __future__ import annotations

import io
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from .decision import Decision
from .errors import FieldProblem, InputError, OrderError, PolicyError
from .facts import parse_as_of
from .html import changes_html, esc, frame_html, result_card_html, rules_table_html
from .loader import RULES_DIR
from .model import FactSpec, KeyedParameter
from .policy import Policy, load
from .probe import what_would_change
from .text import alias_key, humanize

NOT_GIVEN = ""  # dropdown value of "not given": None would read as "nothing selected"
_DESC = {"description_width": "175px"}
_FONT = "font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px"


def _heading(text: str, level: int = 3) -> w.HTML:
    return w.HTML(f"<h{level} style='margin:6px 0 4px 0;{_FONT};font-size:{18 - 2 * level + 6}px'>"
                  f"{esc(text)}</h{level}>")


def _as_of_picker(as_of: str | datetime | None) -> w.DatetimePicker:
    return w.DatetimePicker(value=parse_as_of(as_of), description="As of", style=_DESC)


def _enum_code(fact: FactSpec, value: Any) -> str:
    """A starting value for an enum control: codes and display labels both accepted."""
    if value is None or value == "":
        return NOT_GIVEN if fact.optional else (fact.default or fact.values[0])
    code = value if value in fact.values else fact.aliases.get(alias_key(str(value)))
    if code is None:
        raise ValueError(f"{fact.name}: unknown value {value!r}")
    return code


class Explorer(w.VBox):
    """Shape one order with a control per declared fact and watch which rule fires, and why."""

    def __init__(self, policy: Policy, order: Mapping[str, Any] | None = None,
                 as_of: str | datetime | None = None) -> None:
        self.policy = policy
        spec = policy.spec
        order = dict(order or {})
        self.inputs: dict[str, w.ValueWidget] = {}
        self.not_given: dict[str, w.Checkbox] = {}
        self.stamps: dict[str, w.Text] = {}  # a time-derived fact can come from a timestamp and the as-of
        self.as_of = _as_of_picker(as_of)
        self.result = w.HTML()
        self.hint = w.HTML()
        self.rules = w.HTML()
        self.decision: Decision | None = None
        self.error: OrderError | None = None
        self.update_seconds: deque[float] = deque(maxlen=1000)  # recent redraw times, for measuring
        self._quiet = False
        rows = [self._control(fact, order) for fact in spec.facts.values()]
        rows.append(self.as_of)
        self.as_of.observe(self._changed, "value")
        controls = w.VBox([_heading("Order"), *rows], layout=w.Layout(width="48%", min_width="430px"))
        outcome = w.VBox([_heading("Decision"), self.result, _heading("What would change it", 4), self.hint],
                         layout=w.Layout(width="50%", min_width="360px"))
        title = w.HTML(f"<div style='{_FONT};color:#555'>policy <b>{esc(spec.name)}</b> {esc(spec.version)} · "
                       f"{len(spec.rules)} rules, first hit by priority</div>")
        super().__init__([title, w.HBox([controls, outcome], layout=w.Layout(flex_flow="row wrap",
                                                                          justify_content="space-between")),
                          _heading("Rules in firing order"), self.rules])
        self.add_class("cr-explorer")  # lets a page tell the live explorer from a displayed Decision
        self.update()

    def _control(self, fact: FactSpec, order: Mapping[str, Any]) -> w.Widget:
        name, label = fact.name, humanize(fact.name)
        common = dict(description=label, style=_DESC, tooltip=fact.description or label)
        if fact.type == "enum":
            options = [(fact.label(v), v) for v in fact.values]
            if fact.optional:
                options.insert(0, ("not given", NOT_GIVEN))
            widget = w.Dropdown(options=options, value=_enum_code(fact, order.get(name)),
                                layout=w.Layout(width="400px"), **common)
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
            box = w.Checkbox(value=not given, description="not given", indent=False,
                             layout=w.Layout(width="90px"))
            box.observe(self._changed, "value")
            self.not_given[name] = box
            parts.append(box)
        if fact.type == "number" and fact.from_timestamp:
            stamp = w.Text(value=str(order.get(fact.from_timestamp) or ""),
                           placeholder=f"or {fact.from_timestamp} (ISO 8601)",
                           tooltip=f"{fact.from_timestamp}: when set, {name} is counted from it to the as-of time",
                           layout=w.Layout(width="230px"))
            stamp.observe(self._changed, "value")
            self.stamps[name] = stamp
            parts.append(stamp)
        return w.HBox(parts) if len(parts) > 1 else widget

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
            if stamp is not None:
                widget.disabled = bool(stamp.value.strip())
                if stamp.value.strip():
                    order[fact.from_timestamp] = stamp.value.strip()
                    continue
            if name in self.not_given and self.not_given[name].value:
                continue
            if widget.value != NOT_GIVEN:
                order[name] = widget.value
        return order

    def update(self) -> None:
        """Decide the order and redraw the result card, the rules table and the hint."""
        start = time.perf_counter()
        spec = self.policy.spec
        self.decision, self.error = None, None
        as_of = self.as_of.value
        if as_of is None:
            self.result.value = result_card_html(None, OrderError([_as_of_problem()]))
            self.hint.value, self.rules.value = "", rules_table_html(spec)
            return
        try:
            self.decision = self.policy.decide(self.order(), as_of=as_of)
        except OrderError as exc:
            self.error = exc
        d = self.decision
        self.result.value = result_card_html(d, self.error, spec.actions)
        if d is None:
            self.rules.value, self.hint.value = rules_table_html(spec), ""
        else:
            self.rules.value = rules_table_html(spec, d.facts, d.rule_id, d.also_matched)
            self.hint.value = changes_html(what_would_change(self.policy, d.facts, parse_as_of(as_of)), spec.actions)
        self.update_seconds.append(time.perf_counter() - start)


def _as_of_problem() -> FieldProblem:
    return FieldProblem("as_of", None, "choose an as-of time")


# ---------------------------------------------------------------------------------------------- batch


def _read(orders: pd.DataFrame | str | Path | bytes) -> pd.DataFrame:
    if isinstance(orders, pd.DataFrame):
        return orders
    from . import read_orders  # the batch module's CSV reader; imported late so the Explorer needs none

    if isinstance(orders, (bytes, bytearray, memoryview)):
        return read_orders(io.BytesIO(bytes(orders)))
    return read_orders(orders)


def _png(draw: Callable[[Any], None], width: float = 7.0, height: float = 3.2) -> bytes:
    """Draw on a fresh Agg figure (no pyplot: no global state, no GUI backend) and return PNG bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    draw(fig)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _counts(series: pd.Series, name: str) -> pd.DataFrame:
    counts = series.fillna("(no decision)").value_counts()
    total = int(counts.sum()) or 1
    return pd.DataFrame({name: counts.index.astype(str), "orders": counts.to_numpy(),
                         "share": [f"{100 * c / total:.1f} %" for c in counts.to_numpy()]})


class BatchView(w.VBox):
    """A batch of orders decided at once: summary by action and by rule, the orders of one, and bad rows."""

    def __init__(self, policy: Policy, orders: pd.DataFrame | str | Path | None = None,
                 as_of: str | datetime | None = None, chunk_rows: int = 25_000, max_rows: int = 200) -> None:
        self.policy = policy
        self.chunk_rows = chunk_rows
        self.max_rows = max_rows
        self.orders: pd.DataFrame | None = None
        self.result: pd.DataFrame | None = None
        self.source_name = ""
        self._quiet = False
        self.upload = w.FileUpload(accept=".csv", multiple=False, description="Upload CSV")
        self.as_of = _as_of_picker(as_of)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Evaluated", style=_DESC,
                                      layout=w.Layout(width="420px"))
        self.status = w.HTML()
        self.summary = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(max_width="990px"))
        self.pick = w.Dropdown(description="Show orders of", options=[], style=_DESC,
                               layout=w.Layout(width="480px"))
        self.listing = w.HTML()
        self.errors = w.HTML()
        self.upload.observe(self._uploaded, "value")
        self.as_of.observe(lambda _: self.evaluate(), "value")
        self.pick.observe(lambda _: None if self._quiet else self._list(), "value")
        super().__init__([
            w.HBox([self.upload, self.as_of]), self.progress, self.status,
            _heading("Summary"), self.summary, self.chart,
            _heading("Orders"), self.pick, self.listing,
            _heading("Rows without a decision"), self.errors,
        ])
        if orders is not None:
            self.load(orders, str(orders) if isinstance(orders, (str, Path)) else "DataFrame")

    def load(self, orders: pd.DataFrame | str | Path | bytes, name: str = "orders") -> None:
        """Read the orders (a DataFrame, a CSV path or CSV bytes) and evaluate them."""
        self.source_name = name
        try:
            self.orders = _read(orders)
        except (InputError, OSError, ValueError) as exc:
            self.orders, self.result = None, None
            self._show_problem(f"cannot read {name}: {exc}")
            return
        self.evaluate()

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if files:
            self.load(files[0]["content"], files[0]["name"])

    def _show_problem(self, text: str) -> None:
        self.status.value = f"<div class='cr-problem' style='{_FONT};color:#c5221f'>{esc(text)}</div>"
        self.summary.value = self.listing.value = self.errors.value = ""
        self.chart.value = b""
        self.pick.options = []

    def evaluate(self) -> None:
        """Decide every order in chunks, so that the progress bar moves on a large file."""
        if self.orders is None:
            return
        if self.as_of.value is None:
            self._show_problem("choose an as-of time")
            return
        df, n = self.orders, len(self.orders)
        start = time.perf_counter()
        self.progress.max, self.progress.value = max(n, 1), 0
        parts = []
        try:
            for lo in range(0, n, self.chunk_rows):
                parts.append(self.policy.evaluate(df.iloc[lo:lo + self.chunk_rows], as_of=self.as_of.value))
                self.progress.value = min(lo + self.chunk_rows, n)
        except (InputError, PolicyError) as exc:
            self.result = None
            self._show_problem(f"{self.source_name}: {exc}")
            return
        self.result = pd.concat(parts) if parts else self.policy.evaluate(df, as_of=self.as_of.value)
        self.progress.value = self.progress.max
        seconds = time.perf_counter() - start
        bad = int(self.result["error"].notna().sum())
        self.status.value = (f"<div class='cr-status' style='{_FONT}'><b>{esc(self.source_name)}</b>: "
                             f"{n:,} orders, {n - bad:,} decided, {bad:,} without a decision · "
                             f"as of {esc(parse_as_of(self.as_of.value).isoformat())} · {seconds:.2f} s</div>")
        self._summarize()

    def _summarize(self) -> None:
        res = self.result
        by_action = _counts(res["action"], "action")
        by_rule = _counts(res["rule_id"], "rule")
        self.summary.value = (f"<div class='cr-summary' style='display:flex;gap:16px;flex-wrap:wrap'>"
                              f"<div>{frame_html(by_action, caption='By action')}</div>"
                              f"<div>{frame_html(by_rule, caption='By rule')}</div></div>")

        def draw(fig: Any) -> None:
            for k, (frame, column, title) in enumerate([(by_action, "action", "Orders by action"),
                                                        (by_rule, "rule", "Orders by rule")]):
                ax = fig.add_subplot(1, 2, k + 1)
                shown = frame.iloc[::-1]
                colors = ["#c5221f" if a == "(no decision)" else "#1e8e3e" if k == 0 else "#1a73e8"
                          for a in shown[column]]
                ax.barh(shown[column], shown["orders"], color=colors)
                ax.set_xlabel("orders")
                ax.set_title(title)
                ax.tick_params(axis="y", labelsize=8)
                for y, v in enumerate(shown["orders"]):
                    ax.text(v, y, f" {v}", va="center", fontsize=7)

        rows = max(len(by_action), len(by_rule))
        self.chart.value = _png(draw, width=11, height=max(2.4, 0.26 * rows + 1))
        # option values are "column=value" text: the selection widgets mishandle tuple values
        options = [(f"action {a} ({c})", f"action={a}") for a, c in zip(by_action["action"], by_action["orders"])
                   if a != "(no decision)"]
        options += [(f"rule {r} ({c})", f"rule_id={r}") for r, c in zip(by_rule["rule"], by_rule["orders"])
                    if r != "(no decision)"]
        bad = res[res["error"].notna()]
        if len(bad):
            options.append((f"rows without a decision ({len(bad)})", "error="))
        previous = self.pick.value
        self._quiet = True
        try:
            self.pick.options = options
            values = [v for _, v in options]
            self.pick.value = previous if previous in values else (values[0] if values else None)
        finally:
            self._quiet = False
        self._list()
        cols = [c for c in ("order_id", "status", "error") if c in bad.columns]
        self.errors.value = (frame_html(bad[cols], self.max_rows) if len(bad)
                             else f"<div style='{_FONT}'>Every row was decided.</div>")

    def select(self, choice: str) -> pd.DataFrame:
        """The rows of one pick option: "action=<code>", "rule_id=<id>" or "error=" (rows without a decision)."""
        res = self.result
        if res is None:
            return pd.DataFrame()
        column, _, value = choice.partition("=")
        if column == "error":
            return res[res["error"].notna()]
        return res[res[column] == value]

    def _list(self) -> None:
        if self.pick.value is None or self.result is None:
            self.listing.value = ""
            return
        rows = self.select(self.pick.value)
        keep = [c for c in rows.columns if c not in ("policy_version",) and rows[c].notna().any()]
        self.listing.value = f"<div class='cr-listing'>{frame_html(rows[keep], self.max_rows)}</div>"


# ---------------------------------------------------------------------------------------------- what if


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
        self.orders = _read(orders)
        self.max_rows = max_rows
        self.as_of = _as_of_picker(as_of)
        self.variant = w.Dropdown(description="Start from", style=_DESC, layout=w.Layout(width="420px"),
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
                groups.append(w.VBox([w.HTML(f"<b style='{_FONT}'>{esc(name)}</b> "
                                             f"<span style='{_FONT};color:#555'>by {esc(param.by)}</span>"), *items]))
            else:
                groups.append(self._slider(name, name, param))
        self.variant.observe(self._variant_changed, "value")
        self.as_of.observe(lambda _: self.recompute(), "value")
        self.reset.on_click(lambda _: self._set_sliders(self._base))
        super().__init__([
            w.HBox([self.variant, self.as_of]), w.VBox(groups), self.reset, self.summary,
            _heading("Transitions"), w.HBox([self.transitions, self.chart], layout=w.Layout(flex_flow="row wrap")),
            _heading("Orders whose decision changes"), self.changed,
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
        from . import diff  # the policy diff lives with the batch code; late so the Explorer needs none

        start = time.perf_counter()
        if self.as_of.value is None:
            self.summary.value = f"<div style='{_FONT};color:#c5221f'>choose an as-of time</div>"
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
            f"<div class='cr-whatif-summary' style='{_FONT};margin:6px 0'>Candidate: {esc(start_name)}, "
            f"{esc(what)}. <b>{len(changed):,}</b> of {n:,} orders change their decision "
            f"({100 * len(changed) / max(n, 1):.1f} %)"
            + (f"; {silent} more transitions happen only in situations no order of the batch is in" if silent else "")
            + ".</div>")
        self.transitions.value = (frame_html(rows, self.max_rows) if len(rows)
                                  else f"<div class='cr-no-change' style='{_FONT}'>No order changes its decision."
                                       f"</div>")

        def draw(fig: Any) -> None:
            ax = fig.add_subplot(1, 1, 1)
            top = rows.head(8).iloc[::-1]
            labels = [f"{a} → {b}" for a, b in zip(top["old_action"], top["new_action"])]
            ax.barh(range(len(top)), top["orders"], color="#1a73e8")
            ax.set_yticks(range(len(top)), labels, fontsize=8)
            ax.set_xlabel("orders")
            ax.set_title("Orders moving between actions")

        self.chart.value = _png(draw, height=max(2.0, 0.35 * min(len(rows), 8) + 1)) if len(rows) else b""
        first = [c for c in ("order_id", "old_action", "new_action", "old_rule", "new_rule") if c in changed.columns]
        shown = changed[first + [c for c in changed.columns if c not in first]]
        self.changed.value = frame_html(shown, self.max_rows) if len(changed) else ""


__all__ = ["BatchView", "Explorer", "WhatIf", "variants"]
