"""Message templates (engine.template): the placeholder grammar's load-time check, and rendering one order and
many rows to the same text."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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


# What a batch row may hold (normalized): enum codes, -1 for not given; numbers, NaN for not given, with values on
# both sides of a tenth's rounding edge, far apart, and at the facts' limits.
NUMBERS = st.one_of(st.just(np.nan), st.sampled_from([0.0, 0.05, 0.04999999999999999, 0.15, 2.25, 47.95, 48.0, 1e9,
                                                      999999999.95, 3.3000000000000003]),
                    st.floats(0, 1e9, allow_nan=False), st.floats(0, 2, allow_nan=False))
PLACEHOLDERS = ["{status}", "{seller_reply}", "{payment_method}", "{hours_since_contact}", "{seller_rating}",
                "{seller_reply_hours}", "{refund_days}", "{hours_since_contact - seller_reply_hours}",
                "{days_since_refund - refund_days}", "{seller_rating - hours_since_contact}",
                "{seller_reply_hours - refund_days}"]


def _facts_of_row(spec, values: dict[str, np.ndarray], i: int) -> dict:
    """One batch row as the facts render reads (a fact not given is absent)."""
    facts = {}
    for name, column in values.items():
        fact = spec.facts[name]
        if fact.type == "enum":
            if column[i] >= 0:
                facts[name] = fact.values[column[i]]
        elif not np.isnan(column[i]):
            facts[name] = float(column[i])
    return facts


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_render_rows_equals_render_on_every_row_of_any_template(data):
    """render_rows groups rows by what each placeholder shows and renders a group once: every row must still get
    exactly render's text (enum labels, keyed parameters, tenths rounding, differences, not given)."""
    spec = load_policy("default").spec
    chosen = data.draw(st.lists(st.sampled_from(PLACEHOLDERS), min_size=0, max_size=5))
    literals = data.draw(st.lists(st.sampled_from(["", " ", "a %s b", "100%", ": ", "{{", "x  y"]),
                                  min_size=len(chosen) + 1, max_size=len(chosen) + 1))
    template = literals[0] + "".join(p + lit for p, lit in zip(chosen, literals[1:], strict=True))
    n = data.draw(st.integers(1, 30))
    values: dict[str, np.ndarray] = {}
    for name, fact in spec.facts.items():
        if fact.type == "enum":
            codes = st.integers(-1 if not fact.required else 0, len(fact.values) - 1)
            values[name] = np.array(data.draw(st.lists(codes, min_size=n, max_size=n)), dtype=np.int64)
        elif fact.type == "number":
            drawn = data.draw(st.lists(NUMBERS, min_size=n, max_size=n))
            values[name] = np.array([min(v, fact.max) if fact.max is not None else v for v in drawn])
    rows = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2 * n)))
    texts = render_rows(spec, template, values, rows)
    for k, i in enumerate(rows):
        expected = render(spec, template, _facts_of_row(spec, values, i))
        assert (texts if isinstance(texts, str) else texts[k]) == expected


def test_render_rows_keeps_rows_apart_when_the_combinations_pass_64_bits():
    """A status and four numbers of 65,535 distinct tenths each: 2^16 texts per number, so the status's place in the
    combination is worth 2^64 and vanished when it wrapped: rows 0 and 65,535 differ in status only and shared a
    text."""
    spec = load_policy("default").spec
    template = ("{status}: {hours_since_contact} {hours_since_payment} {days_since_refund} "
                "{hours_since_contact - seller_reply_hours}")
    n = 1 << 16
    numbers = np.arange(n) / 10
    numbers[-1] = numbers[0]
    values = {"hours_since_contact": numbers, "hours_since_payment": numbers * 3, "days_since_refund": numbers + 7,
              "status": np.arange(n) % 2}
    values["status"][-1] = 1 - values["status"][0]
    rows = np.arange(n)
    texts = render_rows(spec, template, values, rows)
    for i in rows:
        assert texts[i] == render(spec, template, _facts_of_row(spec, values, i)), i
