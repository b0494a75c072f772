"""BatchView: a batch of orders decided at once, summarized by action and by rule, with its bad rows."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..errors import InputError, PolicyError
from ..facts import parse_as_of
from ..html import esc, frame_html
from ..policy import Policy
from .common import DESC, FONT, as_of_picker, heading, png, read_orders_from


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
        self.as_of = as_of_picker(as_of)
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Evaluated", style=DESC,
                                      layout=w.Layout(width="420px"))
        self.status = w.HTML()
        self.summary = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(max_width="990px"))
        self.pick = w.Dropdown(description="Show orders of", options=[], style=DESC,
                               layout=w.Layout(width="480px"))
        self.listing = w.HTML()
        self.errors = w.HTML()
        self.upload.observe(self._uploaded, "value")
        self.as_of.observe(lambda _: self.evaluate(), "value")
        self.pick.observe(lambda _: None if self._quiet else self._list(), "value")
        super().__init__([
            w.HBox([self.upload, self.as_of]), self.progress, self.status,
            heading("Summary"), self.summary, self.chart,
            heading("Orders"), self.pick, self.listing,
            heading("Rows without a decision"), self.errors,
        ])
        if orders is not None:
            self.load(orders, str(orders) if isinstance(orders, (str, Path)) else "DataFrame")

    def load(self, orders: pd.DataFrame | str | Path | bytes, name: str = "orders") -> None:
        """Read the orders (a DataFrame, a CSV path or CSV bytes) and evaluate them."""
        self.source_name = name
        try:
            self.orders = read_orders_from(orders)
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
        self.status.value = f"<div class='cr-problem' style='{FONT};color:#c5221f'>{esc(text)}</div>"
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
        self.status.value = (f"<div class='cr-status' style='{FONT}'><b>{esc(self.source_name)}</b>: "
                             f"{n:,} orders, {n - bad:,} decided, {bad:,} without a decision · "
                             f"as of {esc(parse_as_of(self.as_of.value).isoformat())} · {seconds:.2f} s</div>")
        self._summarize()

    def _summarize(self) -> None:
        res = self.result
        assert res is not None  # evaluate() sets it just before
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
        self.chart.value = png(draw, width=11, height=max(2.4, 0.26 * rows + 1))
        # option values are "column=value" text: the selection widgets mishandle tuple values
        options = [(f"action {a} ({c})", f"action={a}")
                   for a, c in zip(by_action["action"], by_action["orders"], strict=True) if a != "(no decision)"]
        options += [(f"rule {r} ({c})", f"rule_id={r}") for r, c in zip(by_rule["rule"], by_rule["orders"], strict=True)
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
                             else f"<div style='{FONT}'>Every row was decided.</div>")

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
