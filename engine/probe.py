"""What would change a decision: the policy probed as time passes and with other values of each fact."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from .decision import Decision
from .errors import OrderError
from .model import TIME_UNITS, ChangeKind, PolicySpec
from .operators import OPERATORS
from .text import format_value

_EPSILON = 1e-6  # a probe just past a threshold, so strict and non-strict comparisons both show


class Decides(Protocol):
    """What probing needs of a policy: its spec and its decide (engine.Policy is one)."""

    @property
    def spec(self) -> PolicySpec: ...

    def decide(self, order: Mapping[str, Any], as_of: str | datetime | None = None, strict: bool = False
               ) -> Decision: ...


@dataclass(frozen=True)
class Change:
    """One way the decision changes: as time passes (`after_hours`) or with another value of one fact."""

    kind: ChangeKind
    fact: str | None
    when: str  # "in 13 h", "seller_rating < 90 %", "seller_reply = Refused to cancel"
    action: str
    rule_id: str
    after_hours: float | None = None


def _outcome(policy: Decides, order: Mapping[str, Any], as_of: datetime) -> tuple[str, str] | None:
    try:
        decision = policy.decide(order, as_of=as_of)
    except OrderError:
        return None
    return (decision.action, decision.rule_id) if decision.action and decision.rule_id else None


def _action(outcome: tuple[str, str] | None) -> str | None:
    # a hint is about what the buyer should do: another rule giving the same action is no change
    return outcome[0] if outcome else None


def compared_constants(spec: PolicySpec, fact: str, facts: Mapping[str, Any]) -> list[float]:
    """Every constant a rule compares `fact` with, parameters resolved for these facts (keyed ones too)."""
    found: set[float] = set()
    for rule in spec.rules:
        for cond in rule.conditions:
            if cond.fact != fact or not OPERATORS[cond.op].cuts:
                continue
            value = spec.resolve(cond.value, facts)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    found.add(float(v))
    return sorted(found)


def _duration(hours: float) -> str:
    if hours < 48:
        return f"{format_value(round(hours, 1))} h"
    return f"{format_value(round(hours / 24, 1))} days"


def _time_changes(policy: Decides, facts: Mapping[str, Any], as_of: datetime, current: tuple[str, str] | None,
                  limit: int) -> list[Change]:
    """Move the as-of time forward to each threshold of a given time-derived fact, all such facts together."""
    spec = policy.spec
    clocks = {n: f for n, f in spec.facts.items()
              if f.from_timestamp and f.type == "number" and facts.get(n) is not None}
    steps: set[float] = set()
    for name, fact in clocks.items():
        per_hour = TIME_UNITS[fact.per] / 3600.0
        for t in compared_constants(spec, name, facts):
            if t > facts[name]:
                hours = (t - facts[name]) * per_hour
                steps.update((hours, hours + _EPSILON))
    changes: list[Change] = []
    before = current
    for hours in sorted(steps):
        probe = dict(facts)
        for name, fact in clocks.items():
            probe[name] = facts[name] + hours * 3600.0 / TIME_UNITS[fact.per]
        after = _outcome(policy, probe, as_of + timedelta(hours=hours))
        if after is not None and _action(after) != _action(before):
            at = (as_of + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M UTC")
            changes.append(Change("time", None, f"in {_duration(hours)} (at {at})", after[0], after[1], hours))
            if len(changes) >= limit:
                break
        before = after
    return changes


def _interval_text(fact: str, lo: float | None, lo_in: bool, hi: float | None, hi_in: bool, unit: str) -> str:
    f = format_value
    if lo is not None and hi is not None and lo == hi:
        return f"{fact} = {f(lo)}{unit}"
    if lo is None:
        return f"{fact} {'≤' if hi_in else '<'} {f(hi)}{unit}"
    if hi is None:
        return f"{fact} {'≥' if lo_in else '>'} {f(lo)}{unit}"
    return f"{fact} {'≥' if lo_in else '>'} {f(lo)} and {'≤' if hi_in else '<'} {f(hi)}{unit}"


def _number_changes(policy: Decides, name: str, facts: Mapping[str, Any], as_of: datetime,
                    current: tuple[str, str] | None) -> list[Change]:
    """Cut the fact at every threshold (each threshold a point, open intervals between) and report the
    pieces whose decision differs from the current one."""
    spec = policy.spec
    fact = spec.facts[name]
    cuts = compared_constants(spec, name, facts)
    lo_bound = fact.min if fact.min is not None else -math.inf
    hi_bound = fact.max if fact.max is not None else math.inf
    cuts = [c for c in cuts if lo_bound <= c <= hi_bound]
    # pieces: (representative value, lo, lo included, hi, hi included); None is an open end
    pieces: list[tuple[float, float | None, bool, float | None, bool]] = []
    for i, cut in enumerate(cuts):
        left = cuts[i - 1] if i else lo_bound
        if left < cut:
            if math.isinf(left):
                pieces.append((cut - 1, None, False, cut, False))
            else:  # only the fact's own minimum is included; a previous cut is a piece of its own
                pieces.append(((left + cut) / 2, left, i == 0, cut, False))
        pieces.append((cut, cut, True, cut, True))
    if cuts and cuts[-1] < hi_bound:
        if math.isinf(hi_bound):
            pieces.append((cuts[-1] + 1, cuts[-1], False, None, False))
        else:
            pieces.append(((cuts[-1] + hi_bound) / 2, cuts[-1], False, hi_bound, True))
    merged: list[list[Any]] = []  # adjacent pieces with the same action read as one range
    for rep, lo, lo_in, hi, hi_in in pieces:
        outcome = _outcome(policy, {**facts, name: rep}, as_of)
        if merged and _action(merged[-1][4]) == _action(outcome):
            merged[-1][2], merged[-1][3] = hi, hi_in
        else:
            merged.append([lo, lo_in, hi, hi_in, outcome])
    unit = fact.unit_suffix
    changes = []
    for lo, lo_in, hi, hi_in, outcome in merged:
        if outcome is None or _action(outcome) == _action(current):
            continue
        if lo is not None and lo == fact.min and lo_in:
            lo = None  # "≥ 0 and < 90" says no more than "< 90"
        changes.append(Change("value", name, _interval_text(name, lo, lo_in, hi, hi_in, unit), *outcome))
    if fact.optional and facts.get(name) is not None:
        probe = {k: v for k, v in facts.items() if k != name}
        outcome = _outcome(policy, probe, as_of)
        if outcome is not None and _action(outcome) != _action(current):
            changes.append(Change("value", name, f"{name} not given", *outcome))
    return changes


def _enum_changes(policy: Decides, name: str, facts: Mapping[str, Any], as_of: datetime,
                  current: tuple[str, str] | None) -> list[Change]:
    fact = policy.spec.facts[name]
    options: list[str | None] = [v for v in fact.values if v != facts.get(name)]
    if fact.optional and facts.get(name) is not None:
        options.append(None)
    changes = []
    for value in options:
        probe = {k: v for k, v in facts.items() if k != name}
        if value is not None:
            probe[name] = value
        outcome = _outcome(policy, probe, as_of)
        if outcome is not None and _action(outcome) != _action(current):
            shown = fact.label(value) if value is not None else "not given"
            changes.append(Change("value", name, f"{name} = {shown}", *outcome))
    return changes


def what_would_change(policy: Decides, facts: Mapping[str, Any], as_of: datetime,
                      time_limit: int = 3) -> list[Change]:
    """The ways this order's decision would change, found by probing the policy (never by rule knowledge):
    first as time passes (each time-derived fact moved to the next thresholds of the rules' conditions),
    then for each other value of every fact the rules look at."""
    spec = policy.spec
    current = _outcome(policy, facts, as_of)
    changes = _time_changes(policy, facts, as_of, current, time_limit)
    used = spec.read_facts()
    for name, fact in spec.facts.items():
        if name not in used:
            continue
        if fact.type == "enum":
            changes += _enum_changes(policy, name, facts, as_of, current)
        elif fact.type == "number":
            changes += _number_changes(policy, name, facts, as_of, current)
    return changes


