"""What the widgets share: headings, the as-of picker, reading orders from a frame, path or upload, and charts."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd

from ..csvio import read_orders
from ..facts import parse_as_of
from ..html import esc

DESC = {"description_width": "175px"}
FONT = "font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px"


def heading(text: str, level: int = 3) -> w.HTML:
    return w.HTML(f"<h{level} style='margin:6px 0 4px 0;{FONT};font-size:{18 - 2 * level + 6}px'>"
                  f"{esc(text)}</h{level}>")


def as_of_picker(as_of: str | datetime | None) -> w.DatetimePicker:
    return w.DatetimePicker(value=parse_as_of(as_of), description="As of", style=DESC)


def read_orders_from(orders: pd.DataFrame | str | Path | bytes) -> pd.DataFrame:
    if isinstance(orders, pd.DataFrame):
        return orders
    if isinstance(orders, (bytes, bytearray, memoryview)):
        return read_orders(io.BytesIO(bytes(orders)))
    return read_orders(orders)


def png(draw: Callable[[Any], None], width: float = 7.0, height: float = 3.2) -> bytes:
    """Draw on a fresh Agg figure (no pyplot: no global state, no GUI backend) and return PNG bytes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    draw(fig)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
