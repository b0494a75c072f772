"""ResultsGrid: a frame of orders as a sortable, searchable, paged grid (DataTables, from itables' offline bundle),
filtered by several values of chosen columns, each row opening on click, downloadable as CSV as shown."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as w
import itables
import numpy as np
import pandas as pd
import traitlets

from ..tabular import frame_csv

_BUNDLE = Path(itables.__file__).parent / "html"
NONE = ""  # filter value of a missing cell (no code is the empty text)
MAX_CELL = 200  # characters of a cell sent to the browser; the full text is in its title (hover) and downloads
_CSS = """
.cr-grid { font-family: system-ui, -apple-system, Segoe UI, sans-serif; font-size: 13px; max-width: 100%; }
.cr-grid td, .cr-grid th { white-space: nowrap; }
.cr-grid .cr-cell { display: inline-block; max-width: 26em; overflow: hidden; text-overflow: ellipsis;
                    vertical-align: top; }
.cr-grid tr.cr-bad td { background: #fdecea; }
.cr-grid tbody tr { cursor: pointer; }
.cr-grid tbody tr:focus { outline: 2px solid #1a73e8; outline-offset: -2px; }
"""


class DataTable(anywidget.AnyWidget):
    """The browser side of a ResultsGrid: DataTables asking Python for each page (`request` -> `response`)."""

    _esm = Path(__file__).with_name("grid.js")
    _css = (_BUNDLE / "dt_bundle.css").read_text(encoding="utf-8") + _CSS
    _bundle = traitlets.Unicode((_BUNDLE / "dt_bundle.js").read_text(encoding="utf-8")).tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)  # [{name, title, tip}]
    page_length = traitlets.Int(10).tag(sync=True)
    request = traitlets.Dict().tag(sync=True)  # draw, start, length, search, order [[column index, asc|desc]]
    response = traitlets.Dict().tag(sync=True)  # draw, total, filtered, rows
    version = traitlets.Int(0).tag(sync=True)  # bumped when the rows change: the browser asks again


class ResultsGrid(w.VBox):
    """Rows of a frame in a grid: the `first` columns first, sorted and searched (every word, any column, case
    folded) by the grid's header and search box, filtered by several values of each `filters` column at once.
    Download buttons give the rows shown (all pages, as sorted) or the rows with an `error`, as CSV with formulas
    defused. A click (or Enter) on a row calls the `on_open` callbacks with its position in the frame."""

    def __init__(self, frame: pd.DataFrame | None = None, *, first: Sequence[str] = ("action", "rule_id", "message"),
                 filters: Mapping[str, str] | None = None, hover: Mapping[str, Mapping[str, str]] | None = None,
                 titles: Mapping[str, str] | None = None, hidden: Sequence[str] = ("policy_version",),
                 error_column: str | None = "error", name: str = "orders", label: str = "Orders",
                 page_length: int = 10) -> None:
        self.first, self.hidden, self.error_column, self.name = tuple(first), tuple(hidden), error_column, name
        self.filter_labels = dict(filters if filters is not None else {"action": "Actions", "rule_id": "Rules"})
        self.hover = {k: dict(v) for k, v in (hover or {}).items()}  # column -> value -> hover text
        self.titles = dict(titles or {})  # column -> header shown (the column's name on hover)
        self.frame = pd.DataFrame()
        self.columns: list[str] = []
        self.positions = np.arange(0)  # the rows shown, in order: positions in frame
        self.search = ""
        self.order: list[tuple[str, bool]] = []  # (column, ascending)
        self.opened: int | None = None
        self.last_download: tuple[str, bytes] | None = None  # (file name, CSV bytes) last sent to the browser
        self._open_callbacks: list[Callable[[int], None]] = []
        self._cache: dict[str, Any] = {}
        self._quiet = False
        self.table = DataTable(label=label, page_length=page_length)
        self.filters = {col: w.SelectMultiple(description=text, rows=5, style={"description_width": "60px"},
                                              layout=w.Layout(width="400px"))
                        for col, text in self.filter_labels.items()}
        for box in self.filters.values():
            box.observe(lambda _: None if self._quiet else self.refresh(), "value")
        self.download = w.Button(description="Download the rows shown (CSV)", icon="download",
                                 layout=w.Layout(width="auto"))
        self.download_bad = w.Button(description="Download the rows without a decision (CSV)", icon="download",
                                     layout=w.Layout(width="auto"))
        self.download.on_click(lambda _: self._push("shown"))
        self.download_bad.on_click(lambda _: self._push("bad"))
        self.table.observe(self._answer, "request")
        self.table.on_msg(self._message)
        buttons = [self.download] + ([self.download_bad] if error_column else [])
        super().__init__([w.HBox(list(self.filters.values()), layout=w.Layout(flex_flow="row wrap")),
                          self.table, w.HBox(buttons, layout=w.Layout(flex_flow="row wrap"))])
        self.add_class("cr-results")
        self.set_frame(frame if frame is not None else pd.DataFrame())

    # ------------------------------------------------------------------------------------------ the rows

    def set_frame(self, frame: pd.DataFrame) -> None:
        """Show another frame: filters keep the values it still has, search and sort are kept."""
        self.frame = frame.reset_index(drop=True)
        self._cache = {}
        present = [c for c in self.first if c in frame.columns]
        self.columns = present + [str(c) for c in frame.columns if c not in present and c not in self.hidden]
        self._quiet = True
        try:
            for col, box in self.filters.items():
                previous = set(box.value)
                box.options = self._filter_options(col)
                box.value = tuple(v for _, v in box.options if v in previous)
        finally:
            self._quiet = False
        if self.error_column:
            self.download_bad.disabled = not self._bad().any()
        # DataTables shows a title as HTML, and a header may come from an uploaded file: escaped
        self.table.columns = [{"name": c, "title": html.escape(self.titles.get(c, c)),
                               "tip": c if c in self.titles else ""}
                              for c in self.columns]
        self.refresh()

    def _filter_options(self, col: str) -> list[tuple[str, str]]:
        if col not in self.frame.columns:
            return []
        counts = self.frame[col].astype(object).where(self.frame[col].notna(), NONE).astype(str).value_counts()
        label = self.hover.get(col, {})
        return [(f"{v or '(none)'}" + (f" · {label[v]}" if v in label else "") + f" ({n:,})", v)
                for v, n in counts.items()]

    def refresh(self) -> None:
        """Apply the filters, the search and the sort; the browser asks for its page again."""
        self._apply()
        self.table.version += 1

    def _apply(self) -> None:
        mask = np.ones(len(self.frame), dtype=bool)
        for col, box in self.filters.items():
            if box.value and col in self.frame.columns:
                column = self.frame[col]
                chosen = [v for v in box.value if v != NONE]
                mask &= column.isin(chosen).to_numpy() | (column.isna().to_numpy() if NONE in box.value else False)
        positions = np.flatnonzero(mask)
        for term in self.search.casefold().split():
            positions = positions[self._haystack().iloc[positions].str.contains(term, regex=False).to_numpy()]
        for col, ascending in reversed(self.order):  # stable sorts, last key first; missing values last
            keys = self._sort_key(col).iloc[positions]
            positions = keys.sort_values(ascending=ascending, kind="stable", na_position="last").index.to_numpy()
        self.positions = positions

    def _haystack(self) -> pd.Series:
        if "haystack" not in self._cache:  # every shown cell of a row as folded text, once per frame
            text = [self.frame[c].astype(object).where(self.frame[c].notna(), "").astype(str) for c in self.columns]
            joined = text[0].str.cat(text[1:], sep="\x1f") if text else pd.Series([""] * len(self.frame))
            self._cache["haystack"] = joined.str.casefold()
        return self._cache["haystack"]

    def _sort_key(self, col: str) -> pd.Series:
        key = f"sort:{col}"
        if key not in self._cache:  # numbers by value when the column holds numbers (CSV text included)
            column = self.frame[col]
            numbers = pd.to_numeric(column, errors="coerce")
            given = column.notna() & (column.astype(str).str.strip() != "")
            if given.any() and numbers[given].notna().mean() >= 0.9:
                self._cache[key] = numbers.where(given).astype(float)
            else:  # ranks of the folded texts
                folded = column.astype(object).where(given, None).map(lambda v: None if v is None else
                                                                      str(v).casefold())
                codes = pd.factorize(folded, sort=True, use_na_sentinel=True)[0]
                self._cache[key] = pd.Series(np.where(codes < 0, np.nan, codes), index=column.index)
        return self._cache[key]

    def _bad(self) -> pd.Series:
        col = self.error_column
        if not col or col not in self.frame.columns:
            return pd.Series(False, index=self.frame.index)
        return self.frame[col].notna() & (self.frame[col].astype(str) != "")

    # ------------------------------------------------------------------------------------------ what is shown

    def view(self) -> pd.DataFrame:
        """The rows shown, all pages, in the order shown, with the grid's columns."""
        return self.frame.iloc[self.positions][self.columns]

    def bad_rows(self) -> pd.DataFrame:
        """Every row with an error, whatever the filters, with the grid's columns."""
        return self.frame[self._bad()][self.columns]

    def view_csv(self) -> bytes:
        return frame_csv(self.view())

    def bad_csv(self) -> bytes:
        return frame_csv(self.bad_rows())

    def search_for(self, text: str) -> None:
        """Search as the grid's search box does."""
        self.search = text
        self.refresh()

    def sort_by(self, *keys: tuple[str, bool]) -> None:
        """Sort as a click on the grid's headers does: (column, ascending) pairs, the first the main key."""
        self.order = [(c, a) for c, a in keys if c in self.columns]
        self.refresh()

    def page(self, start: int = 0, length: int | None = None) -> list[dict[str, Any]]:
        """One page of rows as the browser gets them: cell HTML by column index, and the row's attributes."""
        length = self.table.page_length if length is None or length < 0 else length
        chosen = self.positions[start:start + length]
        bad = self._bad().to_numpy()
        rows = []
        for pos in chosen.tolist():
            record = self.frame.iloc[pos]
            row: dict[str, Any] = {str(i): self._cell(c, record[c]) for i, c in enumerate(self.columns)}
            row["DT_RowAttr"] = {"data-pos": str(pos)}
            if bad[pos]:
                row["DT_RowClass"] = "cr-bad"
            rows.append(row)
        return rows

    def _cell(self, col: str, value: Any) -> str:
        if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
            return ""
        text = str(value)
        tip = self.hover.get(col, {}).get(text, text if len(text) > 40 else "")
        shown = text if len(text) <= MAX_CELL else text[:MAX_CELL] + "…"
        title = f" title='{html.escape(tip, quote=True)}'" if tip else ""
        return f"<span class='cr-cell'{title}>{html.escape(shown)}</span>"

    # ------------------------------------------------------------------------------------------ the browser

    def _answer(self, change: dict[str, Any]) -> None:
        ask = change["new"] or {}
        search = str(ask.get("search") or "")
        order = [(self.columns[int(i)], d != "desc") for i, d in ask.get("order") or []
                 if 0 <= int(i) < len(self.columns)]
        if search != self.search or order != self.order:
            self.search, self.order = search, order
            self._apply()  # this answer is the new page: no version bump, no second request
        rows = self.page(int(ask.get("start") or 0), int(ask.get("length") or self.table.page_length))
        self.table.response = {"draw": ask.get("draw", 0), "total": len(self.frame), "filtered": len(self.positions),
                               "rows": rows}

    def _message(self, _: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        if content.get("type") == "open":
            self.open_row(int(content["pos"]))

    def on_open(self, callback: Callable[[int], None]) -> None:
        """Call back with a row's position in the frame when it is clicked (or Enter pressed on it)."""
        self._open_callbacks.append(callback)

    def open_row(self, pos: int) -> None:
        """Open a row as a click on it does: the on_open callbacks get its position."""
        if 0 <= pos < len(self.frame):
            self.opened = pos
            for callback in self._open_callbacks:
                callback(pos)

    def _push(self, what: str) -> None:
        data = self.view_csv() if what == "shown" else self.bad_csv()
        suffix = "" if what == "shown" else "-without-decision"
        self.last_download = (f"{self.name}{suffix}.csv", data)
        self.table.send({"type": "download", "filename": f"{self.name}{suffix}.csv"}, buffers=[data])


__all__ = ["DataTable", "ResultsGrid"]
