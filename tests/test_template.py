"""Message templates (engine.template): the placeholder grammar's load-time check, and rendering one order and
many rows to the same text."""

from __future__ import annotations

import numpy as np

from conftest import load_policy
from engine.template import check, render, render_rows


def test_each_placeholder_is_checked_in_order_with_its_problems():
    spec = load_policy("default").spec
    found = check("{status}, {seller_rating - nope}, {a b} and {status - seller_reply_hours}", spec.facts,
                  spec.parameters)
    assert found == [
        ("{status}", []),
        ("{seller_rating - nope}", [("message names unknown fact or parameter 'nope'", None)]),
        ("{a b}", [("message placeholder '{a b}' must be '{name}' or '{name - name}'", None)]),
        ("{status - seller_reply_hours}",
         [("message placeholder '{status - seller_reply_hours}' subtracts what is not a number: status", None)]),
    ]
    assert check("{seller_replyhours}", spec.facts, spec.parameters) == [
        ("{seller_replyhours}", [("message names unknown fact or parameter 'seller_replyhours'",
                                  "seller_reply_hours")])]


def test_render_fills_labels_parameters_and_differences():
    spec = load_policy("default").spec
    template = ("{status}: {hours_since_contact} h, {hours_since_contact - seller_reply_hours} h past  "
                "  {seller_reply_hours}")
    assert render(spec, template, {"status": "shipped", "hours_since_contact": 50.04}) == "Sent: 50 h, 2 h past 48"
    assert render(spec, template, {"status": "shipped"}) == "Sent: not given h, not given h past 48"


def test_render_rows_gives_each_row_what_render_gives_it():
    spec = load_policy("default").spec
    template = "{status} {hours_since_contact - seller_reply_hours} {refund_days}"
    statuses = list(spec.facts["status"].values)
    methods = list(spec.facts["payment_method"].values)
    values = {"status": np.array([0, 1, 1, 2], dtype=np.int64), "payment_method": np.array([0, -1, 1, 0]),
              "hours_since_contact": np.array([50.04, np.nan, 47.95, 48.0])}
    rows = np.arange(4)
    texts = render_rows(spec, template, values, rows)
    for i in rows:
        facts = {"status": statuses[values["status"][i]], "hours_since_contact": values["hours_since_contact"][i]}
        if values["payment_method"][i] >= 0:
            facts["payment_method"] = methods[values["payment_method"][i]]
        facts = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in facts.items()}
        assert texts[i] == render(spec, template, {k: v for k, v in facts.items() if v is not None})
