"""What the widgets share: headings, the as-of picker, reading orders from a frame, path or upload, and charts."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as w
import pandas as pd
import traitlets

from ..csvio import read_orders
from ..errors import InputError
from ..facts import parse_as_of
from ..html import esc
from ..intake import record_lines, sniff_delimiter

DESC = {"description_width": "175px"}
FONT = "font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px"


def heading(text: str, level: int = 3) -> w.HTML:
    return w.HTML(f"<h{level} style='margin:6px 0 4px 0;{FONT};font-size:{18 - 2 * level + 6}px'>"
                  f"{esc(text)}</h{level}>")


def as_of_picker(as_of: str | datetime | None) -> w.DatetimePicker:
    return w.DatetimePicker(value=parse_as_of(as_of), description="As of", style=DESC)


def read_orders_from(orders: pd.DataFrame | str | Path | bytes) -> pd.DataFrame:
    return read_orders_with_lines(orders)[0]


def read_orders_with_lines(orders: pd.DataFrame | str | Path | bytes) -> tuple[pd.DataFrame, list[int] | None]:
    """Orders from a frame, a CSV path or CSV bytes (delimiter sniffed), with the CSV line each row starts on
    (None for a frame, or if the lines cannot be told apart as pandas reads them)."""
    if isinstance(orders, pd.DataFrame):
        return orders, None
    if isinstance(orders, (str, Path)):
        orders = Path(orders).read_bytes()
    data = bytes(orders)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError("the file", f"not UTF-8 text (byte {exc.start})") from None
    delimiter = sniff_delimiter(text[:65536])
    frame = read_orders(io.BytesIO(data), delimiter=delimiter)
    lines = record_lines(text, delimiter)
    return frame, lines if len(lines) == len(frame) else None


class LiveHTML(anywidget.AnyWidget):
    """HTML in an aria-live region that stays in the page, so a screen reader announces each new value (an
    ipywidgets HTML replaces its element's content and can carry no attributes)."""

    _esm = """
    export default {
      render({ model, el }) {
        const region = document.createElement("div");
        region.setAttribute("role", "status");
        region.setAttribute("aria-live", model.get("politeness"));
        region.setAttribute("aria-atomic", "true");
        const label = model.get("label");
        if (label) region.setAttribute("aria-label", label);
        region.innerHTML = model.get("value");
        model.on("change:value", () => { region.innerHTML = model.get("value"); });
        el.appendChild(region);
      },
    };
    """
    value = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    politeness = traitlets.Unicode("polite").tag(sync=True)


def png(draw: Callable[[Any], None], width: float = 7.0, height: float = 3.2) -> bytes:
    """Draw on a fresh Agg figure (no pyplot: no global state, no GUI backend) and return PNG bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    draw(fig)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
