"""Widget views without a browser: set values as a user would and read the rendered HTML."""

from __future__ import annotations

import re
from datetime import timedelta

import pandas as pd
import pytest

pytest.importorskip("ipywidgets")

import engine  # noqa: E402
from conftest import AS_OF, AS_OF_DT, SAMPLE_ORDERS, rule_rows, text, upload  # noqa: E402
from engine.widgets import NOT_GIVEN_OPTION as NOT_GIVEN  # noqa: E402
from engine.widgets import BatchView, Explorer, WhatIf, variants  # noqa: E402

SAMPLE = SAMPLE_ORDERS


# ---------------------------------------------------------------------------------------------- Explorer


def test_explorer_has_one_control_per_fact_with_labels_and_not_given(policy):
    ex = Explorer(policy, as_of=AS_OF)
    spec = policy.spec
    assert set(ex.inputs) == set(spec.facts)
    status = ex.inputs["status"]
    status_fact = spec.facts["status"]
    assert [label for label, _ in status.options] == [status_fact.labels[v] for v in status_fact.values]
    assert ("Sent", "shipped") in status.options
    method = ex.inputs["payment_method"]  # optional enum: "not given" comes first and is the start value
    assert method.options[0] == ("not given", NOT_GIVEN) and method.value == NOT_GIVEN
    # seller_reply has a default, so it is always given
    assert "not given" not in [label for label, _ in ex.inputs["seller_reply"].options]
    numbers = {n for n, f in spec.facts.items() if f.type == "number"}
    assert set(ex.not_given) == numbers
    assert set(ex.stamps) == {n for n in numbers if spec.facts[n].from_timestamp}
    assert ex.as_of.value == AS_OF_DT


def test_explorer_sent_no_reply_50h_then_10h(policy):
    ex = Explorer(policy, order={"status": "Awaiting shipment"}, as_of=AS_OF)
    assert ex.decision.action == "contact_seller"
    ex.inputs["status"].value = "shipped"
    ex.inputs["seller_reply"].value = "no_reply"
    ex.inputs["hours_since_contact"].value = 50
    assert ex.not_given["hours_since_contact"].value is False  # typing a number makes the fact given
    assert "data-action='open_dispute'" in ex.result.value
    rows = rule_rows(ex.rules.value)
    fired = [r for r, row in rows.items() if row["state"] == "fired"]
    assert fired == ["seller_silent_past_window"]
    assert rows["seller_silent_past_window"]["passed"] == [True, True]
    assert rows["wait_for_seller_reply"]["passed"] == [True, False]
    assert "(actual: 50 h)" in text(rows["wait_for_seller_reply"]["html"])
    assert "⚠" in ex.result.value  # the rule's warning is on the card

    ex.inputs["hours_since_contact"].value = 10
    assert "data-action='wait_for_seller'" in ex.result.value
    assert [r for r, row in rule_rows(ex.rules.value).items() if row["state"] == "fired"] == ["wait_for_seller_reply"]
    assert "wait up to 38 more hours" in text(ex.result.value)


def test_explorer_marks_rules_that_also_matched(policy):
    ex = Explorer(policy, order={"status": "payment_verifying", "hours_since_payment": 30}, as_of=AS_OF)
    rows = rule_rows(ex.rules.value)
    assert rows["payment_stuck_in_verification"]["state"] == "fired"
    assert rows["cancel_before_processing"]["state"] == "also"
    assert "also matched" in rows["cancel_before_processing"]["html"]
    assert {r for r, row in rows.items() if row["state"] == "none"} == \
        {r.id for r in policy.spec.rules} - {"payment_stuck_in_verification", "cancel_before_processing"}


def test_explorer_hint_comes_from_the_policy_thresholds(policy, legacy):
    order = {"status": "Sent", "seller_reply": "No reply", "hours_since_contact": 35}
    ex = Explorer(policy, order=order, as_of=AS_OF)
    hint = text(ex.hint.value)
    assert "In 13 h (at 2026-11-27 01:00 UTC): open_dispute" in hint
    # the same order under the 72 h variant: the probe reads the variant's parameters, nothing is hard-coded
    legacy_hint = text(Explorer(legacy, order=order, as_of=AS_OF).hint.value)
    assert "In 37 h (at 2026-11-28 01:00 UTC): open_dispute" in legacy_hint
    ex.inputs["hours_since_contact"].value = 47.5
    assert "In 0.5 h" in text(ex.hint.value)


def test_explorer_hint_for_refund_days_follows_the_payment_method(policy):
    ex = Explorer(policy, order={"status": "Closed", "payment_method": "Credit card", "days_since_refund": 3},
                  as_of=AS_OF)
    assert ex.decision.action == "wait_for_refund"
    assert "In 25 days" in text(ex.hint.value) and "contact_support" in ex.hint.value
    ex.inputs["payment_method"].value = "wallet"  # 14 days for the wallet
    assert "In 11 days" in text(ex.hint.value)


def test_explorer_not_given_and_invalid_values(policy):
    ex = Explorer(policy, order={"status": "Sent", "seller_reply": "No reply", "hours_since_contact": 20},
                  as_of=AS_OF)
    ex.not_given["hours_since_contact"].value = True
    assert ex.decision.rule_id == "reply_window_unknown"
    assert rule_rows(ex.rules.value)["reply_window_unknown"]["state"] == "fired"
    ex.inputs["hours_since_contact"].value = -5
    assert ex.decision is None and ex.error is not None
    assert "invalid order" in ex.result.value and "hours_since_contact" in ex.result.value
    assert "must be >= 0" in text(ex.result.value)
    assert "fired" not in {row["state"] for row in rule_rows(ex.rules.value).values()}


def test_explorer_timestamp_and_as_of_picker(policy):
    ex = Explorer(policy, order={"status": "Sent", "seller_reply": "No reply"}, as_of=AS_OF)
    ex.stamps["hours_since_contact"].value = "2026-11-25T12:00:00Z"
    assert ex.decision.facts["hours_since_contact"] == 24
    assert ex.inputs["hours_since_contact"].disabled  # the timestamp wins, the number box says so
    assert ex.decision.action == "wait_for_seller"
    ex.as_of.value = AS_OF_DT + timedelta(hours=30)  # the as-of picker moves every elapsed time
    assert ex.decision.facts["hours_since_contact"] == 54
    assert ex.decision.action == "open_dispute"
    ex.stamps["hours_since_contact"].value = "yesterday"
    assert "contacted_at" in ex.result.value and "invalid order" in ex.result.value


def test_explorer_redraws_once_per_change(policy):
    ex = Explorer(policy, order={"status": "Sent", "seller_reply": "No reply"}, as_of=AS_OF)
    ex.update_seconds.clear()
    for i in range(1, 101):  # 0 is the start value: setting it again would not be a change
        ex.inputs["hours_since_contact"].value = float(i)
    assert len(ex.update_seconds) == 100  # one redraw per change, not two (timings: bench/bench_widgets.py)
    assert ex.decision.facts["hours_since_contact"] == 100 and ex.decision.action == "open_dispute"


# ---------------------------------------------------------------------------------------------- BatchView


@pytest.fixture(scope="module")
def batch(policy) -> BatchView:
    return BatchView(policy, SAMPLE, as_of=AS_OF, chunk_rows=100)


def test_batch_summary_matches_the_engine(policy, batch):
    expected = policy.evaluate(pd.read_csv(SAMPLE, dtype=str, keep_default_na=False), as_of=AS_OF)
    n = len(expected)
    bad = int(expected["error"].notna().sum())
    assert 200 <= n <= 1000 and 3 <= bad <= 20
    assert f"{n:,} orders, {n - bad:,} decided, {bad:,} without a decision" in text(batch.status.value)
    summary = text(batch.summary.value)
    for action, count in expected["action"].value_counts().items():
        assert re.search(rf" {action} [^0-9]*{count} ", summary)
    coverage = text(batch.coverage.value)
    for rule, count in expected["rule_id"].value_counts().items():
        assert f" {rule} " in coverage and re.search(rf" {rule} .*? {count} ", coverage)
    assert batch.chart.value.startswith("<img class='cr-chart' src='data:image/png;base64,iVBOR")
    assert batch.progress.value == batch.progress.max == n  # four chunks of 100, all done


def test_batch_grid_filters_by_one_action_or_rule(policy, batch):
    res = batch.result
    batch.grid.filters["action"].value = ("open_dispute",)
    assert set(batch.grid.view()["order_id"]) == set(res.loc[res["action"] == "open_dispute", "order_id"])
    batch.grid.filters["action"].value = ()
    batch.grid.filters["rule_id"].value = ("seller_refused",)
    assert set(batch.grid.view()["order_id"]) == set(res.loc[res["rule_id"] == "seller_refused", "order_id"])
    batch.grid.filters["rule_id"].value = ()
    assert len(batch.grid.view()) == len(res)


def test_batch_lists_error_rows_with_reasons(batch):
    errors = text(batch.errors.value)
    assert "status: unknown value 'Shipping soon'" in errors
    assert "hours_since_contact: must be >= 0, got -5" in errors
    assert "not an ISO 8601 timestamp" in errors
    assert "Shipping soon" in " ".join(batch.grid.bad_rows()["error"])


def test_batch_uploaded_csv_replaces_the_sample(policy):
    view = BatchView(policy, SAMPLE, as_of=AS_OF)
    upload(view, "mine.csv", b"order_id,status,seller_reply,hours_since_contact\n"
                             b"A,Sent,No reply,50\nB,Sent,No reply,10\nC,Lost,,\n")
    status = text(view.status.value)
    assert "mine.csv: 3 orders, 2 decided, 1 without a decision" in status
    assert list(view.result["action"].fillna("-")) == ["open_dispute", "wait_for_seller", "-"]
    upload(view, "broken.csv", b"order_id,seller_reply\nA,No reply\n")
    assert "missing required column" in view.status.value and "status" in view.status.value
    assert view.result is None and view.summary.value == ""


def test_batch_progress_moves_chunk_by_chunk(policy):
    seen = []
    view = BatchView(policy, None, as_of=AS_OF, chunk_rows=50)
    view.progress.observe(lambda c: seen.append(c["new"]), "value")
    view.load(SAMPLE, "sample")
    n = len(view.result)
    assert seen == [*range(50, n, 50), n]  # one step per chunk of 50 rows


# ---------------------------------------------------------------------------------------------- WhatIf


@pytest.fixture(scope="module")
def sample_orders() -> pd.DataFrame:
    return engine.read_orders(SAMPLE)


def _changed_ids(old: engine.Policy, new: engine.Policy, orders: pd.DataFrame) -> set[str]:
    a, b = old.evaluate(orders, as_of=AS_OF), new.evaluate(orders, as_of=AS_OF)
    moved = (a["action"].fillna("") != b["action"].fillna("")) | (a["rule_id"].fillna("") != b["rule_id"].fillna(""))
    return set(a.loc[moved, "order_id"].astype(str))


def test_what_if_has_a_slider_per_parameter_and_the_variants(policy):
    view = WhatIf(policy, SAMPLE, as_of=AS_OF)
    keyed = policy.spec.parameters["refund_days"]
    assert {"seller_reply_hours", "payment_verification_hours"} <= set(view.sliders)
    assert {f"refund_days.{k}" for k in keyed.values} <= set(view.sliders)
    assert view.sliders["seller_reply_hours"].value == 48
    assert "legacy-72h" in variants() and "legacy-72h" in [label for label, _ in view.variant.options]
    assert "No order changes" in view.transitions.value  # the current policy against itself


def test_what_if_seller_window_72h_moves_disputes_back_to_waiting(policy, sample_orders):
    view = WhatIf(policy, SAMPLE, as_of=AS_OF)
    view.sliders["seller_reply_hours"].value = 72
    expected = _changed_ids(policy, policy.with_parameters(seller_reply_hours=72), sample_orders)
    assert expected  # the sample has orders silent for 48-72 h
    assert set(view.grid.frame["order_id"]) == expected
    assert f"{len(expected):,} of {len(sample_orders):,} orders change" in text(view.summary.value)
    transitions = text(view.transitions.value)
    assert "open_dispute seller_silent_past_window wait_for_seller wait_for_seller_reply" in transitions
    assert view.chart.value.startswith("<img class='cr-chart' src='data:image/svg+xml;base64,")


def test_what_if_variant_picker_sets_the_sliders(policy, legacy, sample_orders):
    view = WhatIf(policy, SAMPLE, as_of=AS_OF)
    view.variant.value = str(variants()["legacy-72h"])
    assert view.sliders["seller_reply_hours"].value == 72
    assert view.candidate.version == legacy.version
    assert set(view.grid.frame["order_id"]) == _changed_ids(policy, legacy, sample_orders)
    view.reset.click()
    assert view.sliders["seller_reply_hours"].value == 72  # reset goes back to the variant, not to the default
    view.variant.value = ""
    assert view.sliders["seller_reply_hours"].value == 48 and "No order changes" in view.transitions.value


def test_what_if_keyed_refund_window(policy, sample_orders):
    view = WhatIf(policy, SAMPLE, as_of=AS_OF)
    view.sliders["refund_days.card"].value = 5
    assert view.overrides() == {"refund_days": {"card": 5.0}}
    expected = _changed_ids(policy, policy.with_parameters(refund_days={"card": 5}), sample_orders)
    assert expected and set(view.grid.frame["order_id"]) == expected
    assert "wait_for_refund refund_in_progress contact_support refund_overdue" in text(view.transitions.value)


@pytest.mark.slow
def test_what_if_recomputes_each_change_on_100k_orders(policy, sample_orders):
    big = sample_orders.sample(n=100_000, replace=True, random_state=7).reset_index(drop=True)
    view = WhatIf(policy, big, as_of=AS_OF)
    view.recompute_seconds.clear()
    for hours in (60, 72, 36, 48, 24):
        view.sliders["seller_reply_hours"].value = hours
    assert len(view.recompute_seconds) == 5  # one diff per change (timings: bench/bench_widgets.py)
    assert view.candidate.spec.parameters["seller_reply_hours"] == 24
    assert view.diff.orders == 100_000 and len(view.diff.changed) > 0
