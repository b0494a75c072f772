"""MappingStep: choose which column of an uploaded file holds each field the policy reads (engine.intake)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ipywidgets as w
import pandas as pd

from ..batch import resolve_columns
from ..errors import InputError, MappingError
from ..html import esc
from ..intake import apply_mapping, check_fields, suggest_mapping, unmatched_fields
from ..model import PolicySpec
from ..text import humanize
from .common import FONT

UNMAPPED = ""  # dropdown value: no column holds this field


class MappingStep(w.VBox):
    """One dropdown per field no column is named after, pre-filled by engine.intake.suggest_mapping (names and
    values); Apply hands {column: field} to the on_apply callback once it is valid and names every required fact."""

    def __init__(self, spec: PolicySpec, on_apply: Callable[[dict[str, str]], None]) -> None:
        self.spec = spec
        self.on_apply = on_apply
        self.header: list[str] = []
        self.controls: dict[str, w.Dropdown] = {}
        self.note = w.HTML()
        self.problem = w.HTML()
        self.problem.add_class("cr-mapping-problem")
        self.apply = w.Button(description="Read the file with this mapping", button_style="primary",
                              layout=w.Layout(width="auto"))
        self.apply.on_click(lambda _: self.submit())
        self.rows = w.VBox()
        super().__init__([self.note, self.rows, self.apply, self.problem],
                         layout=w.Layout(display="none", border="1px solid #c5221f", padding="6px"))
        self.add_class("cr-mapping")

    def show(self, header: Sequence[str], sample: pd.DataFrame | None, source: str) -> None:
        """Ask for the fields the header lacks, suggestions chosen."""
        self.header = [str(c) for c in header]
        suggested = {name: column for column, name in suggest_mapping(self.spec, self.header, sample).items()}
        self.controls = {}
        for name in unmatched_fields(self.spec, self.header):
            fact = self.spec.facts.get(name)
            required = fact is not None and fact.required
            label = humanize(name) + (" (required)" if required else "")
            self.controls[name] = w.Dropdown(
                description=label, options=[("(not in the file)", UNMAPPED), *[(c, c) for c in self.header]],
                value=suggested.get(name, UNMAPPED), tooltip=name, style={"description_width": "200px"},
                layout=w.Layout(width="480px"))
        self.rows.children = list(self.controls.values())
        missing = [n for n, f in self.spec.facts.items() if f.required and n in self.controls]
        self.note.value = (f"<div style='{FONT}'><b>{esc(source)}</b> has no column named "
                           f"{', '.join(f'<code>{esc(m)}</code>' for m in missing)}. Choose the column that holds "
                           f"each field (suggested from the column names and values), then read the file.</div>")
        self.problem.value = ""
        self.layout.display = "flex"

    def hide(self) -> None:
        self.layout.display = "none"

    def mapping(self) -> dict[str, str]:
        """{column: field} as chosen."""
        return {box.value: name for name, box in self.controls.items() if box.value != UNMAPPED}

    def submit(self, chosen: Mapping[str, str] | None = None) -> None:
        """Check the mapping (the chosen one, or the dropdowns'); on success hand it on."""
        mapping = dict(chosen) if chosen is not None else self.mapping()
        try:
            check_fields(self.spec, mapping)
            resolve_columns(self.spec, apply_mapping(self.header, mapping, "the file"), "the file")
        except (MappingError, InputError) as exc:
            self.problem.value = f"<div style='{FONT};color:#c5221f'>{esc(exc)}</div>"
            return
        self.hide()
        self.on_apply(mapping)
