"""Text every layer shows (engine.text): values in tenths, and the one did-you-mean, exact for rule files and
folded for orders, with its length guard."""

from __future__ import annotations

import pytest

from engine.text import alias_key, did_you_mean, format_value


@pytest.mark.parametrize(("value", "shown"), [(None, "not given"), (True, "true"), (48.0, "48"), (47.95, "48"),
                                              (47.94, "47.9"), (-0.05, "0"), (-0.06, "-0.1"), ((1, 2.5), "[1, 2.5]")])
def test_values_are_shown_in_tenths_rounded_half_up(value, shown):
    assert format_value(value) == shown


def test_rule_files_compare_names_exactly():
    assert did_you_mean("reply_hour", ["reply_hours", "refund_days"]) == "reply_hours"
    assert did_you_mean("REPLY HOURS", ["reply_hours"]) is None  # a rule file spells names as declared
    assert did_you_mean("x", []) is None


def test_orders_compare_names_folded_and_answer_the_first_spelling():
    spellings = ("hours_since_contact", "Hours since contact", "seller_rating")
    assert alias_key("Hours-Since  Contact") == "hours since contact"
    assert did_you_mean("Hours Since Contakt", spellings, 0.8, fold=True) == "hours_since_contact"
    assert did_you_mean("paid", ("paid_at",), 0.8, fold=True) is None  # 0.73: a column of its own


def test_a_text_far_longer_than_every_choice_is_never_compared():
    assert did_you_mean("reply_hours" * 4, ["reply_hours"], 0.1) is None
    assert did_you_mean("reply_hours" * 4, ("reply_hours",), 0.1, fold=True) is None
    assert did_you_mean("reply_hours" * 2, ["reply_hours"], 0.1) == "reply_hours"


def test_a_bad_value_is_echoed_whole_up_to_the_limit_and_cut_past_it():
    from engine.text import ECHO_LIMIT, echo

    assert echo("shiped") == "'shiped'"
    assert echo("x" * ECHO_LIMIT) == repr("x" * ECHO_LIMIT)
    assert echo("y" * 1_000_000) == "'" + "y" * ECHO_LIMIT + "…' (1,000,000 characters)"
    assert echo("it's" * 100) == repr(("it's" * 100)[:ECHO_LIMIT])[:-1] + "…\" (400 characters)"  # quotes kept
    long_list = list(range(100_000))
    assert echo(long_list) == repr(long_list)[:ECHO_LIMIT] + f"… ({len(repr(long_list)):,} characters)"
