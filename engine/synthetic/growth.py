"""Growth levels: the bundled policy with t more thresholds per numeric fact, every action kept."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from ..loader import DEFAULT_POLICY, load_spec
from ..model import PolicySpec
from ..space import build_axes
from .yamltext import dump_yaml, plain_number

# --- growth levels ---------------------------------------------------------------------------------------


def _radical_inverse(k: int) -> float:
    """k-th term (k >= 1) of the base-2 van der Corput sequence: 1/2, 1/4, 3/4, 1/8, ... all distinct in (0, 1)."""
    out, scale = 0.0, 0.5
    while k:
        k, bit = divmod(k, 2)
        out += bit * scale
        scale /= 2
    return out


@dataclass(frozen=True, eq=False)  # hashed by identity: one lane, one key
class _Lane:
    """Refinements of one base rule on one numeric fact: each adds the bound `fact op constant(k)`.

    With op "lt" the constants lie above the rule's lower bound on the fact and are stacked ascending; with
    "gte" they lie below its upper bound and are stacked descending, so the k-th refinement wins the slice
    between its constant and its neighbour's. `template` is an order the base rule wins, without the fact."""

    rule: str
    fact: str
    op: str
    constant: Callable[[int], float]
    template: Mapping[str, Any]


# Two lanes per numeric fact, taken in turn. The constants are chosen where synthetic_orders puts orders.
_LANES: dict[str, tuple[_Lane, ...]] = {
    "hours_since_contact": (
        _Lane("seller_silent_past_window", "hours_since_contact", "lt", lambda k: 48 + 12 * k,
              {"status": "shipped", "seller_reply": "no_reply"}),
        _Lane("wait_for_seller_reply", "hours_since_contact", "gte", lambda k: 48 * _radical_inverse(k),
              {"status": "shipped", "seller_reply": "no_reply"})),
    "hours_since_payment": (
        _Lane("payment_stuck_in_verification", "hours_since_payment", "lt", lambda k: 24 + 12 * k,
              {"status": "payment_verifying"}),
        _Lane("cancel_before_processing", "hours_since_payment", "lt", lambda k: 24 * _radical_inverse(k),
              {"status": "awaiting_payment"})),
    "days_since_refund": (
        _Lane("refund_overdue", "days_since_refund", "lt", lambda k: 30 + 7 * k,
              {"status": "cancelled", "payment_method": "paypal"}),
        _Lane("refund_in_progress", "days_since_refund", "gte", lambda k: 28 * _radical_inverse(k),
              {"status": "cancelled", "payment_method": "paypal"})),
    "seller_rating": (
        _Lane("contact_low_rated_seller_now", "seller_rating", "gte", lambda k: 80 * _radical_inverse(k),
              {"status": "awaiting_shipment"}),
        _Lane("contact_seller_to_cancel", "seller_rating", "gte", lambda k: 90 + 10 * _radical_inverse(k),
              {"status": "shipped"})),
}
GROWTH_FACTS = tuple(_LANES)
GROWTH_LANES = tuple(lane.rule for lanes in _LANES.values() for lane in lanes)




def growth_thresholds(t: int, lanes: Collection[str] | None = None) -> dict[_Lane, list[float]]:
    """The constants each lane adds at level t: t new ones per numeric fact, lanes taken in turn.

    `lanes` names the base rules to refine (default: all of GROWTH_LANES); a fact none of them reads gets none."""
    if t < 0:
        raise ValueError(f"growth level must be >= 0, got {t}")
    unknown = set(lanes or ()) - set(GROWTH_LANES)
    if unknown:
        raise ValueError(f"no growth lane refines {', '.join(sorted(unknown))} (lanes: {', '.join(GROWTH_LANES)})")
    spec = load_spec(DEFAULT_POLICY)
    existing = {a.fact: set(a.points) for a in build_axes(spec) if a.kind == "number"}
    out: dict[_Lane, list[float]] = {}
    for fact, all_lanes in _LANES.items():
        lanes_here = [lane for lane in all_lanes if lanes is None or lane.rule in lanes]
        if not lanes_here:
            continue
        taken = set(existing[fact])
        declared = spec.facts[fact]
        low = -np.inf if declared.min is None else float(declared.min)
        high = np.inf if declared.max is None else float(declared.max)
        counters = dict.fromkeys(lanes_here, 0)
        for i in range(t):
            lane = lanes_here[i % len(lanes_here)]
            while True:  # skip constants that are thresholds already: each refinement must add one
                counters[lane] += 1
                value = float(lane.constant(counters[lane]))
                if value not in taken and low < value < high:
                    break
            taken.add(value)
            out.setdefault(lane, []).append(value)
    return out


def growth_yaml(t: int, lanes: Collection[str] | None = None) -> str:
    """Level t of the growth family: the bundled policy with t more thresholds on each numeric fact.

    Each threshold comes with one refinement R of a base rule B: R has B's conditions plus one bound on a
    numeric fact, B's priority, action, message and warnings, and sits just before B in the file. So R ranks
    right above B and below every rule that outranks B: where R matches, B would have won, and the order
    gets B's action and message (only the rule id differs). Stacked refinements cut B's interval into
    slices, one won by each, so every added rule is reachable; each carries an example proving it wins.
    `lanes` restricts the refined rules (see growth_thresholds): the limit probes use one lane at a time."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    spec = load_spec(DEFAULT_POLICY)
    chosen = growth_thresholds(t, lanes)
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for lane, constants in chosen.items():
        by_rule.setdefault(lane.rule, []).extend(_refinements(spec, data, lane, constants))
        _retarget_examples(data, lane, constants)
    rules = []
    for rule in data["rules"]:
        rules += by_rule.get(rule["id"], [])
        rules.append(rule)
    data["rules"] = rules
    name = f"growth{t}" if lanes is None else f"growth{t}-{'-'.join(sorted(lanes))}"
    data["policy"] = f"{data['policy']}-{name}"
    data["version"] = f"{data['version']}+{name}"
    data["description"] = (f"{data['description']} Growth level {t}: {t} more thresholds on each of "
                           f"{', '.join(GROWTH_FACTS)}, through refinements that keep every decision's action.")
    call = f"{t}" if lanes is None else f"{t}, lanes={sorted(lanes)}"
    header = (f"Generated by engine.synthetic.growth_yaml({call}) from {DEFAULT_POLICY.name}: do not edit.\n"
              "Every added rule refines a base rule on one numeric fact and keeps its action and message.")
    return dump_yaml(data, header)


def _refinements(spec: PolicySpec, data: Mapping[str, Any], lane: _Lane, constants: list[float]
                 ) -> list[dict[str, Any]]:
    """One lane's refinement rules in stacking order, each with an example order it wins."""
    base = next(r for r in data["rules"] if r["id"] == lane.rule)
    fact = spec.facts[lane.fact]
    conds = [c for c in spec.rule(lane.rule).conditions if c.fact == lane.fact]
    # Where the base rule starts on this fact for the template order (the parameter's value there).
    lower = max([spec.resolve(c.value, lane.template) for c in conds if c.op in ("gte", "gt")],
                default=fact.min if fact.min is not None else 0.0)
    ordered = sorted(constants, reverse=lane.op == "gte")
    out = []
    for value in ordered:
        when = copy.deepcopy(base["when"])
        bounds = when.get(lane.fact, {})
        if not isinstance(bounds, dict) or lane.op in bounds:
            raise ValueError(f"rule {lane.rule}: cannot add '{lane.op}' to its condition on {lane.fact}")
        when[lane.fact] = {**bounds, lane.op: plain_number(value)}
        if lane.op == "lt":  # wins [previous constant, value): the previous one, or the base rule's start
            example = max([lower, *(c for c in constants if c < value)])
        else:  # wins [value, next constant)
            example = value
        rule_id = f"{lane.rule}.{lane.fact}.{lane.op}{plain_number(value)}"
        out.append({
            "id": rule_id,
            "priority": base["priority"],
            "when": when,
            "then": copy.deepcopy(base["then"]),
            "source": f"synthetic growth: {lane.rule} where {lane.fact} {lane.op} {plain_number(value)} "
                      f"(same action and message as {lane.rule})",
            "examples": [{"order": {"order_id": f"G-{rule_id}", **lane.template,
                                    lane.fact: plain_number(example)},
                          "expect": base["then"]["action"], "rule": rule_id}],
        })
    return out


def _retarget_examples(data: Mapping[str, Any], lane: _Lane, constants: list[float]) -> None:
    """A base example that names its rule and falls in a refinement's slice now names the refinement."""
    base = next(r for r in data["rules"] if r["id"] == lane.rule)
    for example in base.get("examples", []):
        value = example["order"].get(lane.fact)
        if example.get("rule") != lane.rule or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if lane.op == "lt":
            above = [c for c in constants if value < c]
            winner = min(above) if above else None
        else:
            below = [c for c in constants if value >= c]
            winner = max(below) if below else None
        if winner is not None:
            example["rule"] = f"{lane.rule}.{lane.fact}.{lane.op}{plain_number(winner)}"
