"""BatchView: a batch of orders decided at once: coverage of every rule, the orders in a results grid (filter,
search, sort, download), one order's full explanation on click, and uploads whose columns can be mapped."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..batch import resolve_columns
from ..errors import InputError, MappingError, OrderError, PolicyError
from ..facts import parse_as_of
from ..frames import frame_orders
from ..html import changes_html, chart_html, coverage_html, decision_html, esc, frame_html, result_card_html
from ..intake import map_frame
from ..policy import Policy
from ..probe import what_would_change
from .common import DESC, FONT, LiveHTML, as_of_picker, heading, png, read_orders_with_lines
from .grid import ResultsGrid
from .mapping import MappingStep


def _counts(series: pd.Series, name: str) -> pd.DataFrame:
    counts = series.fillna("(no decision)").value_counts()
    total = int(counts.sum()) or 1
    return pd.DataFrame({name: counts.index.astype(str), "orders": counts.to_numpy(),
                         "share": [f"{100 * c / total:.1f} %" for c in counts.to_numpy()]})


class BatchView(w.VBox):
    """A batch of orders decided at once: coverage by rule, the orders in a grid, one order's explanation."""

    def __init__(self, policy: Policy, orders: pd.DataFrame | str | Path | None = None,
                 as_of: str | datetime | None = None, chunk_rows: int = 25_000, max_rows: int = 200) -> None:
        self.policy = policy
        self.chunk_rows = chunk_rows
        self.max_rows = max_rows
        self.raw: pd.DataFrame | None = None  # as read, before any mapping
        self.orders: pd.DataFrame | None = None
        self.lines: list[int] | None = None  # the CSV line of each row, when read from a CSV
        self.result: pd.DataFrame | None = None
        self.mapping: dict[str, str] = {}
        self.source_name = ""
        self.upload = w.FileUpload(accept=".csv,.txt", multiple=False, description="Upload CSV")
        self.as_of = as_of_picker(as_of)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Evaluated", style=DESC,
                                      layout=w.Layout(width="420px"))
        self.status = LiveHTML(label="Batch status")
        self.mapping_step = MappingStep(policy.spec, self._mapped)
        self.summary = w.HTML()
        self.coverage = w.HTML()
        self.chart = w.HTML()
        self.grid = ResultsGrid(hover={"action": dict(policy.spec.actions)}, name="decisions", label="Orders",
                                filters={"action": "Actions", "rule_id": "Rules"})
        self.grid.on_open(self.show_order)
        self.detail = LiveHTML(label="The chosen order")
        self.errors = w.HTML()
        self.upload.observe(self._uploaded, "value")
        self.as_of.observe(lambda _: self.evaluate(), "value")
        super().__init__([
            w.HBox([self.upload, self.as_of]), self.mapping_step, self.progress, self.status,
            heading("Summary"), self.summary, self.chart, self.coverage,
            heading("Orders (click one to see why)"), self.grid,
            heading("The chosen order"), self.detail,
            heading("Rows without a decision"), self.errors,
        ])
        if orders is not None:
            self.load(orders, str(orders) if isinstance(orders, (str, Path)) else "DataFrame")

    def load(self, orders: pd.DataFrame | str | Path | bytes, name: str = "orders",
             mapping: dict[str, str] | None = None) -> None:
        """Read the orders (a DataFrame, a CSV path or CSV bytes; the delimiter sniffed) and evaluate them; when
        required columns are missing, ask which columns hold them (mapping answers it beforehand)."""
        self.source_name = name
        self.mapping_step.hide()
        try:
            self.raw, self.lines = read_orders_with_lines(orders)
        except (InputError, OSError, ValueError) as exc:
            self.raw = self.orders = self.result = None
            self._show_problem(f"cannot read {name}: {exc}")
            return
        self._mapped(mapping or {})

    def _mapped(self, mapping: dict[str, str]) -> None:
        assert self.raw is not None
        try:
            frame = map_frame(self.raw, mapping, self.source_name)
            resolve_columns(self.policy.spec, list(frame.columns), self.source_name)
        except (InputError, MappingError) as exc:
            self.orders = self.result = None
            missing = isinstance(exc, InputError) and "missing required column" in exc.message
            self._show_problem(f"{exc}" if not missing else f"{exc}: choose the columns below")
            if missing:
                self.mapping_step.show(list(self.raw.columns), self.raw.head(200), self.source_name)
            return
        self.mapping, self.orders = mapping, frame
        self.evaluate()

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = change["new"]
        if files:
            self.load(files[0]["content"], files[0]["name"])

    def _show_problem(self, text: str) -> None:
        self.status.value = f"<div class='cr-problem' style='{FONT};color:#c5221f'>{esc(text)}</div>"
        self.summary.value = self.coverage.value = self.chart.value = self.errors.value = self.detail.value = ""
        self.grid.set_frame(pd.DataFrame())

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
        mapped = ("; columns read as " + ", ".join(f"{c} → {f}" for c, f in self.mapping.items())
                  if self.mapping else "")
        self.status.value = (f"<div class='cr-status' style='{FONT}'><b>{esc(self.source_name)}</b>: "
                             f"{n:,} orders, {n - bad:,} decided, {bad:,} without a decision · "
                             f"as of {esc(parse_as_of(self.as_of.value).isoformat())} · {seconds:.2f} s"
                             f"{esc(mapped)}</div>")
        self.detail.value = ""
        self._summarize()

    def line_column(self) -> str:
        """The grid's first column: the CSV line of each row, or its row number for a DataFrame."""
        return "line" if self.lines is not None else "row"

    def _summarize(self) -> None:
        res = self.result
        assert res is not None  # evaluate() sets it just before
        spec = self.policy.spec
        by_action = _counts(res["action"], "action")
        by_action.insert(1, "meaning", [spec.actions.get(a, "") for a in by_action["action"]])
        cov = self.policy.coverage(res)
        self.summary.value = (f"<div class='cr-summary' style='max-width:640px'>"
                              f"{frame_html(by_action, caption='By action')}</div>")
        self.coverage.value = f"<div class='cr-coverage'>{coverage_html(cov, spec.actions)}</div>"
        self.chart.value = self._chart(by_action, cov)
        shown = res.reset_index(drop=True)
        shown.insert(0, self.line_column(), self.lines if self.lines is not None else range(1, len(res) + 1))
        self.grid.first = (self.line_column(), "action", "rule_id", "message", "error")
        self.grid.set_frame(shown)
        bad = shown[shown["error"].notna()]
        cols = [c for c in (self.line_column(), "order_id", "status", "error") if c in bad.columns]
        self.errors.value = (frame_html(bad[cols], self.max_rows) if len(bad)
                             else f"<div style='{FONT}'>Every row was decided.</div>")

    def _chart(self, by_action: pd.DataFrame, cov: pd.DataFrame) -> str:
        def draw(fig: Any) -> None:
            for k, (labels, counts, title) in enumerate([
                    (by_action["action"], by_action["orders"], "Orders by action"),
                    (cov["rule_id"], cov["orders"], "Orders by rule (all rules; 0: no order)")]):
                ax = fig.add_subplot(1, 2, k + 1)
                labels, counts = list(labels)[::-1], list(counts)[::-1]
                colors = ["#c5221f" if a == "(no decision)" or (k == 1 and c == 0) else
                          "#1e8e3e" if k == 0 else "#1a73e8" for a, c in zip(labels, counts, strict=True)]
                ax.barh(labels, counts, color=colors)
                ax.set_xlabel("orders")
                ax.set_title(title)
                ax.tick_params(axis="y", labelsize=8)
                for y, v in enumerate(counts):
                    ax.text(v, y, f" {v}", va="center", fontsize=7)

        rows = max(len(by_action), len(cov))
        idle = list(cov.loc[cov["orders"] == 0, "rule_id"])
        alt = ("Bar charts. Orders by action: " +
               ", ".join(f"{a} {n}" for a, n in zip(by_action["action"], by_action["orders"], strict=True)) +
               ". Orders by rule: " +
               ", ".join(f"{r} {n}" for r, n in zip(cov["rule_id"], cov["orders"], strict=True) if n) +
               (f". Rules that decided no order: {', '.join(idle)}." if idle else ". Every rule decided an order."))
        return chart_html(png(draw, width=11, height=max(2.4, 0.26 * rows + 1)), alt, "990px")

    def show_order(self, pos: int) -> None:
        """The full explanation of one row (its position in the batch): the decision card, the rules down to
        the one that fired, and what would change it; or why it has no decision."""
        if self.orders is None or self.result is None or not 0 <= pos < len(self.orders):
            return
        columns = resolve_columns(self.policy.spec, list(self.orders.columns))
        order = frame_orders(self.orders.iloc[[pos]], columns)[0]
        where = (f"line {self.lines[pos]}" if self.lines is not None else f"row {pos + 1}")
        head = (f"<div style='{FONT};margin:4px 0'>Order <b>{esc(order.get('order_id') or '(no id)')}</b> · "
                f"{esc(where)} of {esc(self.source_name)}</div>")
        try:
            decision = self.policy.decide(order, as_of=self.as_of.value)
        except OrderError as exc:
            self.detail.value = head + result_card_html(None, exc)
            return
        hint = changes_html(what_would_change(self.policy, decision.facts, parse_as_of(self.as_of.value)),
                            self.policy.spec.actions)
        self.detail.value = (f"<div class='cr-order-detail' data-pos='{pos}'>{head}{decision_html(decision)}"
                             f"<div style='{FONT};font-weight:600;margin-top:6px'>What would change it</div>{hint}"
                             f"</div>")
