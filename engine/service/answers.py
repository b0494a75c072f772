"""Batch answers: the refused rows marked, long errors clipped, rows written as JSON or CSV, warnings as a header."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..tabular import OUTPUT_COLUMNS, frame_csv
from ..text import alias_key
from .encoding import dumps
from .orders import ID

DECISION_COLUMNS = OUTPUT_COLUMNS  # the columns every answer row carries
WARNINGS_HEADER = "Cancel-Rules-Warnings"  # batch answers: a JSON array of texts, when there is any
MAX_HEADER_WARNINGS = 20


def warnings_header(warnings: list[str]) -> dict[str, str]:
    """The batch's warnings as a header (ASCII JSON), at most MAX_HEADER_WARNINGS of them."""
    if not warnings:
        return {}
    shown = warnings[:MAX_HEADER_WARNINGS]
    if len(warnings) > MAX_HEADER_WARNINGS:
        shown.append(f"... and {len(warnings) - MAX_HEADER_WARNINGS} more")
    return {WARNINGS_HEADER: json.dumps([w[:300] for w in shown])}


def with_errors(result: pd.DataFrame, errors: Mapping[int, str]) -> pd.DataFrame:
    """The engine's result with the rows the service refused itself marked: an error and no action."""
    if not errors:
        return result
    result = result.copy()
    rows = list(errors)
    for name in ("action", "rule_id", "message"):
        result.iloc[rows, result.columns.get_loc(name)] = None
    result.iloc[rows, result.columns.get_loc("error")] = list(errors.values())
    return result


def batch_json(result: pd.DataFrame, ids: list[Any] | None = None) -> bytes:
    """JSON rows in input order: the order's id (as given: `ids` of a JSON batch) and the decision columns.

    The caller holds its orders already: echoing each back would double what is sent and parsed."""
    if ids is None:
        id_label = next((c for c in result.columns if alias_key(str(c)) == alias_key(ID)), None)
        ids = result[id_label] if id_label is not None else None
    slim = pd.DataFrame({ID: pd.Series(ids, index=result.index, dtype=object)})
    for name in DECISION_COLUMNS:
        slim[name] = result[name]
    # pandas' C encoder: several times faster than json.dumps over 10,000 rows; NaN becomes null. It writes
    # floats to 10 digits and cannot write a lone surrogate: ids like that take the standard encoder, exact.
    if not any(type(i) is float for i in slim[ID]):
        try:
            return slim.to_json(orient="records", force_ascii=False, default_handler=str).encode()
        except UnicodeEncodeError:
            pass
    return dumps(slim.astype(object).where(slim.notna(), None).to_dict("records"))


def batch_csv(result: pd.DataFrame, raw: bool = False) -> bytes:
    """The rows as CSV by the CLI's writer: text a spreadsheet would run as a formula gets a leading ' unless raw."""
    return frame_csv(result, raw)
