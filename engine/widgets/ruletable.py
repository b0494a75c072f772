"""The rules of a policy's text as an editable decision table: one row per rule, one column per fact the rules
test, then other conditions, action and priority; each cell edit is a (place in the document, value) edit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w
import yaml

from ..html import esc
from ..yamledit import Key
from ..yamlwrite import inline
from .common import FONT

Edit = tuple[tuple[Key, ...], Any]  # the value at a place of the document; None removes what is there
OTHER = "other conditions"
WIDTHS = {"id": "190px", OTHER: "170px", "action": "150px", "priority": "60px"}  # facts: 130px


class CellError(ValueError):
    """A cell's text is not one YAML value (shown next to the row; the document is not changed)."""


def cell_text(value: Any) -> str:
    """A value as a cell shows it: YAML on one line; nothing for a missing value."""
    return "" if value is None else inline(value)


def cell_value(text: str) -> Any:
    """The YAML value a cell's text means; None for an empty cell."""
    if not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CellError(f"'{text}' is not a YAML value: {getattr(exc, 'problem', exc)}") from None


def fact_columns(doc: Mapping[str, Any]) -> list[str]:
    """The declared facts some rule tests, in declaration order."""
    facts = doc.get("facts") if isinstance(doc.get("facts"), dict) else {}
    used = {name for rule in rules_of(doc) for name in _when(rule)}
    return [name for name in facts or {} if name in used]


def rules_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    rules = doc.get("rules")
    return [r if isinstance(r, dict) else {} for r in rules] if isinstance(rules, list) else []


def _when(rule: Mapping[str, Any]) -> dict[str, Any]:
    when = rule.get("when")
    return when if isinstance(when, dict) else {}


def _then(rule: Mapping[str, Any]) -> dict[str, Any]:
    then = rule.get("then")
    return then if isinstance(then, dict) else {}


def row_cells(rule: Mapping[str, Any], columns: list[str]) -> dict[str, str]:
    """The texts of one rule's row, by column."""
    when = _when(rule)
    others = {k: v for k, v in when.items() if k not in columns}
    return {"id": cell_text(rule.get("id")), **{c: cell_text(when.get(c)) for c in columns},
            OTHER: cell_text(others) if others else "", "action": cell_text(_then(rule).get("action")),
            "priority": cell_text(rule.get("priority"))}


def when_of(cells: Mapping[str, str], columns: list[str], old: Mapping[str, Any]) -> dict[str, Any]:
    """The `when` mapping a row's cells give, in the old mapping's key order, new keys after."""
    others = cell_value(cells.get(OTHER, ""))
    if others is not None and not isinstance(others, dict):
        raise CellError(f"{OTHER} must be a mapping of fact: condition, like {{seller_reply: refused}}")
    given = {c: cell_value(cells.get(c, "")) for c in columns}
    merged = {**{k: v for k, v in given.items() if v is not None}, **(others or {})}
    return {**{k: merged[k] for k in old if k in merged}, **{k: v for k, v in merged.items() if k not in old}}


def cell_edit(index: int, column: str, cells: Mapping[str, str], columns: list[str], rule: Mapping[str, Any]
              ) -> Edit:
    """The document edit for a change of one cell of row index (whose cells are now `cells`)."""
    if column == "id":
        return ("rules", index, "id"), cell_value(cells["id"])
    if column == "priority":
        return ("rules", index, "priority"), cell_value(cells["priority"])
    if column == "action":
        return ("rules", index, "then", "action"), cell_value(cells["action"])
    return ("rules", index, "when"), when_of(cells, columns, _when(rule))


def new_rule(cells: Mapping[str, str], columns: list[str]) -> dict[str, Any]:
    """A rule from the new-rule row: no examples yet, a source saying where it was written."""
    priority = cell_value(cells.get("priority", ""))
    return {"id": cell_value(cells.get("id", "")), "priority": 0 if priority is None else priority,
            "when": when_of(cells, columns, {}), "then": {"action": cell_value(cells.get("action", ""))},
            "source": "written in the policy editor", "examples": []}


class RuleTable(w.VBox):
    """The decision table: a grid of text cells (committed on Enter or leaving the cell), a status cell per rule,
    and a last row to write a new rule. on_edit(index, column) and on_add() are called with the cells read."""

    def __init__(self, on_edit: Callable[[int, str], None], on_add: Callable[[], None]) -> None:
        self.on_edit = on_edit
        self.on_add = on_add
        self.columns: list[str] = []
        self.rows: list[dict[str, w.Text]] = []
        self.status: list[w.HTML] = []
        self.new: dict[str, w.Text] = {}
        self.add = w.Button(description="Add rule", layout=w.Layout(width="auto"))
        self.add.on_click(lambda _: self.on_add())
        self.disabled = False
        self._quiet = False
        self._shape: tuple[Any, ...] = ()
        super().__init__()
        self.add_class("cr-rule-table")

    def names(self) -> list[str]:
        return ["id", *self.columns, OTHER, "action", "priority"]

    def cells(self, index: int) -> dict[str, str]:
        return {name: cell.value for name, cell in self.rows[index].items()}

    def new_cells(self) -> dict[str, str]:
        return {name: cell.value for name, cell in self.new.items()}

    def show(self, doc: Mapping[str, Any], disabled: bool = False) -> None:
        """Fill the table from the document; widgets are made anew only when rules or columns change."""
        rules, columns = rules_of(doc), fact_columns(doc)
        shape = (len(rules), tuple(columns), disabled)
        if shape != self._shape:
            self._build(len(rules), columns, disabled)
            self._shape = shape
        self._quiet = True
        try:
            for row, rule in zip(self.rows, rules, strict=True):
                for name, text in row_cells(rule, columns).items():
                    row[name].value = text
        finally:
            self._quiet = False

    def _cell(self, name: str, index: int | None, disabled: bool) -> w.Text:
        cell = w.Text(layout=w.Layout(width="auto"), continuous_update=False, disabled=disabled,
                      placeholder="" if index is not None else name)
        cell.add_class(f"cr-{'cell' if index is not None else 'new'}-{name.replace(' ', '-')}")
        if index is not None:
            cell.observe(lambda _, i=index, n=name: None if self._quiet else self.on_edit(i, n), "value")
        return cell

    def _build(self, count: int, columns: list[str], disabled: bool) -> None:
        """One grid, so that headers and cells line up: a header row, a row per rule, the new-rule row."""
        self.columns = columns
        names = self.names()
        self.rows = [{n: self._cell(n, i, disabled) for n in names} for i in range(count)]
        self.status = [w.HTML() for _ in range(count)]
        self.new = {n: self._cell(n, None, disabled) for n in names}
        self.add.disabled = disabled
        header = [w.HTML(f"<b style='{FONT};overflow-wrap:anywhere;line-height:1.2'>{esc(n)}</b>")
                  for n in [*names, "checks"]]
        cells: list[w.Widget] = [*header]
        for row, status in zip(self.rows, self.status, strict=True):
            cells += [*row.values(), status]
        cells += [*self.new.values(), self.add]
        widths = [WIDTHS.get(n, "130px") for n in names] + ["minmax(260px, 1fr)"]
        grid = w.GridBox(cells, layout=w.Layout(grid_template_columns=" ".join(widths), grid_gap="2px 4px",
                                                align_items="center", overflow="auto"))
        self.children = [grid]

    def mark(self, index: int, rule_id: str, html: str) -> None:
        """Show a rule's checks (problems, examples) in its status cell."""
        self.status[index].value = f"<div class='cr-rule-status' data-rule='{esc(rule_id)}' style='{FONT}'>{html}</div>"
