"""Synthetic policies and orders for tests and benchmarks; pure: text and frames out, nothing evaluated.

- `synthetic_orders`: realistic orders as a CSV export holds them (mixed labels, timestamps, ~0.1 % bad rows).
- `growth_yaml(t)`: the bundled policy with t more thresholds on each numeric fact, through refinements that
  keep its action and message on every order (see `growth_yaml`).
- `marketplace_yaml(seed, countries)`: a marketplace policy of about 1,000 rules (50 countries, 20 categories)
  on top of the bundled one, and `marketplace_orders` with matching country and category columns.
- `probe_yaml(shape, n)`: policies built only to find durable_rules' size limits (not sensible policies).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .loader import DEFAULT_POLICY, load_spec
from .model import PolicySpec
from .space import build_axes

AS_OF = "2026-11-26T12:00:00+00:00"
STATUSES = {  # spelling as exports show them -> weight
    "Awaiting payment": 4, "awaiting_payment": 1, "Placed": 1, "Payment being verified": 2,
    "Awaiting shipment": 10, "Pending shipping": 3, "Processing": 2, "awaiting_shipment": 3,
    "Awaiting cancellation": 3, "Sent": 12, "In Transit": 8, "shipped": 4, "Awaiting delivery": 3,
    "Delivered": 6, "Completed": 3, "Dispute": 2, "In issue": 1, "Closed": 8, "cancelled": 3, "Canceled": 1,
}
REPLIES = {"": 20, "not_contacted": 5, "No reply": 15, "no_reply": 10, "Full refund": 8, "partial_refund": 5,
           "Continue order": 5, "Refused": 6, "Declined": 2}
METHODS = {"Credit card": 30, "card": 10, "PayPal": 12, "AliExpress balance": 8, "wallet": 4,
           "Bank transfer": 3, "Boleto": 3, "WebMoney": 2, "COD": 2, "": 6}
BAD = {"status": ["Shipped?", "lost", ""], "hours_since_contact": ["-5", "soon", "NaN"],
       "contacted_at": ["yesterday", "2026-13-01T00:00:00"], "seller_rating": ["120", "great"]}


def _pick(rng: np.random.Generator, table: dict[str, int], n: int) -> np.ndarray:
    keys = np.array(list(table), dtype=object)
    weights = np.array(list(table.values()), dtype=float)
    return keys[rng.choice(len(keys), n, p=weights / weights.sum())]


def _stamps(rng: np.random.Generator, as_of: datetime, hours: np.ndarray, present: np.ndarray) -> np.ndarray:
    base = np.datetime64(as_of.replace(tzinfo=None), "s")
    stamps = (base - (hours * 3600).astype("timedelta64[s]")).astype(str)
    out = np.char.add(stamps.astype("U19"), "Z").astype(object)
    out[~present] = ""
    return out


def synthetic_orders(n: int, as_of: str = AS_OF, seed: int = 0, bad_rate: float = 0.001) -> pd.DataFrame:
    """n orders as text columns, the way a CSV export holds them."""
    rng = np.random.default_rng(seed)
    when = datetime.fromisoformat(as_of).astimezone(UTC)
    contact_hours = rng.gamma(2.0, 20.0, n)
    contacted = rng.random(n) < 0.55
    direct_hours = rng.random(n) < 0.15  # some exports carry the hours instead of the timestamp
    df = pd.DataFrame({
        "order_id": np.char.add("AE", np.arange(10_000_000, 10_000_000 + n).astype(str)).astype(object),
        "status": _pick(rng, STATUSES, n),
        "seller_reply": _pick(rng, REPLIES, n),
        "contacted_at": _stamps(rng, when, contact_hours, contacted & ~direct_hours),
        "hours_since_contact": np.where(contacted & direct_hours, np.round(contact_hours, 1).astype(str), ""),
        "paid_at": _stamps(rng, when, rng.gamma(1.5, 30.0, n), rng.random(n) < 0.9),
        "refund_started_at": _stamps(rng, when, rng.gamma(2.0, 200.0, n), rng.random(n) < 0.25),
        "payment_method": _pick(rng, METHODS, n),
        "seller_rating": np.where(rng.random(n) < 0.7, np.round(rng.beta(20, 1.5, n) * 100, 1).astype(str), ""),
    })
    bad_rows = np.flatnonzero(rng.random(n) < bad_rate)
    for i in bad_rows:
        column = list(BAD)[i % len(BAD)]
        df.at[i, column] = BAD[column][i % len(BAD[column])]
        if column == "contacted_at":
            df.at[i, "hours_since_contact"] = ""
    return df


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


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # libyaml's emitter: 1,000 rules in a second
    def ignore_aliases(self, data: Any) -> bool:  # a shared dict is written out each time, never as &id001
        return True


def dump_yaml(data: Mapping[str, Any], header: str = "") -> str:
    """A policy's data as YAML text, keys in the order given, with `header` as leading comment lines."""
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def _plain_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


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
        low = spec.facts[fact].min if spec.facts[fact].min is not None else -np.inf
        high = spec.facts[fact].max if spec.facts[fact].max is not None else np.inf
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
        when[lane.fact] = {**bounds, lane.op: _plain_number(value)}
        if lane.op == "lt":  # wins [previous constant, value): the previous one, or the base rule's start
            example = max([lower, *(c for c in constants if c < value)])
        else:  # wins [value, next constant)
            example = value
        rule_id = f"{lane.rule}.{lane.fact}.{lane.op}{_plain_number(value)}"
        out.append({
            "id": rule_id,
            "priority": base["priority"],
            "when": when,
            "then": copy.deepcopy(base["then"]),
            "source": f"synthetic growth: {lane.rule} where {lane.fact} {lane.op} {_plain_number(value)} "
                      f"(same action and message as {lane.rule})",
            "examples": [{"order": {"order_id": f"G-{rule_id}", **lane.template,
                                    lane.fact: _plain_number(example)},
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
            example["rule"] = f"{lane.rule}.{lane.fact}.{lane.op}{_plain_number(winner)}"


# --- the marketplace policy ------------------------------------------------------------------------------

COUNTRIES = (  # code -> label; the order is also the order of popularity in marketplace_orders
    ("us", "United States"), ("br", "Brazil"), ("fr", "France"), ("es", "Spain"), ("de", "Germany"),
    ("pl", "Poland"), ("gb", "United Kingdom"), ("it", "Italy"), ("nl", "Netherlands"), ("kr", "South Korea"),
    ("il", "Israel"), ("ua", "Ukraine"), ("cl", "Chile"), ("mx", "Mexico"), ("au", "Australia"),
    ("ca", "Canada"), ("jp", "Japan"), ("be", "Belgium"), ("se", "Sweden"), ("cz", "Czechia"),
    ("pt", "Portugal"), ("sa", "Saudi Arabia"), ("ae", "United Arab Emirates"), ("tr", "Turkey"),
    ("kz", "Kazakhstan"), ("co", "Colombia"), ("pe", "Peru"), ("ar", "Argentina"), ("in", "India"),
    ("za", "South Africa"), ("ch", "Switzerland"), ("at", "Austria"), ("no", "Norway"), ("dk", "Denmark"),
    ("fi", "Finland"), ("ie", "Ireland"), ("nz", "New Zealand"), ("ro", "Romania"), ("hu", "Hungary"),
    ("gr", "Greece"), ("sk", "Slovakia"), ("bg", "Bulgaria"), ("hr", "Croatia"), ("si", "Slovenia"),
    ("lt", "Lithuania"), ("lv", "Latvia"), ("ee", "Estonia"), ("ng", "Nigeria"), ("eg", "Egypt"),
    ("ma", "Morocco"),
)
CATEGORIES = (
    ("electronics", "Consumer electronics"), ("phones", "Phones and telecommunications"),
    ("computers", "Computers and office"), ("clothing", "Clothing"), ("shoes", "Shoes"),
    ("jewelry", "Jewelry and watches"), ("beauty", "Beauty"), ("health", "Health and personal care"),
    ("home", "Home and kitchen"), ("furniture", "Furniture"), ("garden", "Garden"), ("toys", "Toys and hobbies"),
    ("sports", "Sports and outdoors"), ("books", "Books and media"), ("auto_parts", "Automotive parts"),
    ("pet_supplies", "Pet supplies"), ("groceries", "Groceries"), ("digital_goods", "Digital goods"),
    ("gift_cards", "Gift cards"), ("custom_made", "Custom-made items"),
)
# Categories whose sellers get longer to answer a cancellation request (hours added to the country's window).
REPLY_EXTENSION_HOURS = {"custom_made": 48, "furniture": 24, "garden": 24}
REPLY_WINDOWS = (24, 36, 48, 48, 48, 60, 72, 96)  # hours; drawn per country (48 is the base default)
VERIFICATION_WINDOWS = (12, 24, 24, 36, 48, 72)  # hours a payment may stay in verification, per country
REFUND_FACTORS = (0.5, 0.75, 1.0, 1.0, 1.25, 1.5, 2.0)  # country's refund time over the base method's
OPTIONAL_METHODS = {"bank_transfer": 0.8, "cash_on_delivery": 0.5, "webmoney": 0.3, "boleto": 0.2}
NOT_REFUNDED = ["full_refund", "partial_refund"]


@dataclass(frozen=True)
class CountryTerms:
    """What the marketplace grants in one country: reply and verification windows, refund days by method."""

    code: str
    label: str
    reply_hours: int
    verification_hours: int
    refund_days: Mapping[str, int]


def marketplace_terms(seed: int = 0, countries: int = 50) -> tuple[CountryTerms, ...]:
    """Each country's terms, drawn from a generator seeded by `seed` (the same seed gives the same terms)."""
    if not 1 <= countries <= len(COUNTRIES):
        raise ValueError(f"countries must be 1..{len(COUNTRIES)}, got {countries}")
    base = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))["parameters"]["refund_days"]["values"]
    rng = random.Random(seed)
    out = []
    for code, label in COUNTRIES[:countries]:
        methods = ["card", "paypal", "wallet"] + [m for m, p in OPTIONAL_METHODS.items() if rng.random() < p]
        if code == "br" and "boleto" not in methods:  # boleto is a Brazilian payment method
            methods.append("boleto")
        reply, verification = rng.choice(REPLY_WINDOWS), rng.choice(VERIFICATION_WINDOWS)
        refund = {m: min(60, max(3, round(base[m] * rng.choice(REFUND_FACTORS)))) for m in methods}
        out.append(CountryTerms(code, label, reply, verification, refund))
    return tuple(out)


def _rule(rule_id: str, priority: int, when: dict, action: str, message: str, source: str,
          example: dict, warnings: list[str] | None = None) -> dict[str, Any]:
    then: dict[str, Any] = {"action": action, "message": message}
    if warnings:
        then["warnings"] = warnings
    return {"id": rule_id, "priority": priority, "when": when, "then": then, "source": source,
            "examples": [{"order": {"order_id": f"M-{rule_id}", **example}, "expect": action, "rule": rule_id}]}


def _category_rules(source: str) -> list[dict[str, Any]]:
    """Exceptions by category (no country): items that cannot be cancelled, and custom-made items."""
    final = "Delivered digital goods (codes, downloads) cannot be cancelled: only a faulty item can be disputed."
    return [
        _rule("category.digital_goods.delivered", 66,
              {"category": "digital_goods", "status": "delivered", "seller_reply": {"not_in": NOT_REFUNDED}},
              "cannot_cancel", final, f"{source}: digital goods cannot be cancelled once delivered",
              {"status": "Delivered", "category": "Digital goods", "seller_reply": "no_reply",
               "hours_since_contact": 100}),
        _rule("category.gift_cards.sent", 66,
              {"category": "gift_cards", "status": {"in": ["shipped", "delivered"]},
               "seller_reply": {"not_in": NOT_REFUNDED}},
              "cannot_cancel", "A gift card whose code was sent ({status}) cannot be cancelled.",
              f"{source}: gift cards cannot be cancelled once the code is sent", {"status": "Sent",
                                                                                  "category": "gift_cards"}),
        _rule("category.groceries.shipped", 66,
              {"category": "groceries", "status": {"in": ["shipped", "delivered"]},
               "seller_reply": {"not_in": NOT_REFUNDED}},
              "cannot_cancel", "Perishable groceries cannot be cancelled once shipped ({status}).",
              f"{source}: perishable goods cannot be cancelled once shipped",
              {"status": "delivered", "category": "groceries", "seller_reply": "refused"}),
        _rule("category.hygiene.delivered", 66,
              {"category": {"in": ["beauty", "health"]}, "status": "delivered",
               "seller_reply": {"not_in": NOT_REFUNDED}},
              "cannot_cancel", "{category} products cannot be cancelled once delivered (hygiene): dispute only "
                               "an item that is not as described.",
              f"{source}: sealed hygiene products cannot be cancelled once delivered",
              {"status": "Completed", "category": "beauty"}),
        _rule("category.custom_made.seller_decides", 45,
              {"category": "custom_made", "status": {"in": ["awaiting_shipment", "awaiting_cancellation"]},
               "seller_reply": "not_contacted"},
              "contact_seller", "A custom-made item may already be in production: only the seller can cancel "
                                "it, so contact the seller now.",
              f"{source}: custom-made items go to the seller", {"status": "Processing", "category": "custom_made",
                                                                "seller_rating": 50}),
        _rule("category.custom_made.refused", 61,
              {"category": "custom_made", "seller_reply": "refused",
               "status": {"in": ["awaiting_shipment", "awaiting_cancellation", "shipped", "delivered"]}},
              "contact_support", "The seller refused to cancel a custom-made item: a dispute does not cover a "
                                 "change of mind on made-to-order goods; ask support whether it can still stop.",
              f"{source}: custom-made items go to the seller; disputes cover faults, not a change of mind",
              {"status": "shipped", "category": "custom_made", "seller_reply": "Refused"}),
        _rule("category.electronics.low_rated_seller", 42,
              {"category": {"in": ["electronics", "phones", "computers"]},
               "status": {"in": ["awaiting_shipment", "awaiting_cancellation"]},
               "seller_reply": "not_contacted", "seller_rating": {"lt": 95}},
              "contact_seller", "The seller's rating is {seller_rating} %, below the 95 % expected for "
                                "{category}: contact the seller now and ask to cancel.",
              f"{source}: electronics sellers are held to a higher rating",
              {"status": "awaiting_shipment", "category": "phones", "seller_rating": 92}),
    ]


def _country_rules(terms: CountryTerms, source: str) -> list[dict[str, Any]]:
    c, h, v = terms.code, terms.reply_hours, terms.verification_hours
    where = f"{source}: {terms.label}"
    dispute_warning = ["Buyers who abuse disputes can be limited or suspended; open one only with evidence."]
    rules = [
        _rule(f"verification.{c}.stuck", 101,
              {"country": c, "status": "payment_verifying", "hours_since_payment": {"gte": v}}, "contact_support",
              f"The payment has been in verification for {{hours_since_payment}} h, past the {v} h usual in "
              "{country}: contact support about the order.", f"{where}: payment verification takes up to {v} h",
              {"status": "payment_verifying", "country": c, "hours_since_payment": v}),
        _rule(f"verification.{c}.pending", 101,
              {"country": c, "status": "payment_verifying", "hours_since_payment": {"lt": v}}, "cancel_directly",
              f"The payment is still being verified ({{hours_since_payment}} of up to {v} h in {{country}}): the "
              "order is not processed yet, cancel it from the order page.",
              f"{where}: payment verification takes up to {v} h",
              {"status": "payment_verifying", "country": c, "hours_since_payment": v - 1}),
        _rule(f"reply.{c}.past_window", 55,
              {"country": c, "seller_reply": "no_reply", "hours_since_contact": {"gte": h}}, "open_dispute",
              f"The seller has not replied in {{hours_since_contact}} h, at or past the {h} h reply window in "
              "{country}: open a dispute from the order page.", f"{where}: sellers must reply within {h} h",
              {"status": "shipped", "seller_reply": "no_reply", "country": c, "hours_since_contact": h},
              dispute_warning),
        _rule(f"reply.{c}.in_window", 55,
              {"country": c, "seller_reply": "no_reply", "hours_since_contact": {"lt": h}}, "wait_for_seller",
              f"The seller has had {{hours_since_contact}} h of the {h} h reply window in {{country}}: wait for "
              "the answer before opening a dispute.", f"{where}: sellers must reply within {h} h",
              {"status": "shipped", "seller_reply": "no_reply", "country": c, "hours_since_contact": h - 1}),
    ]
    for category, extra in REPLY_EXTENSION_HOURS.items():
        window = h + extra
        rules += [
            _rule(f"reply.{c}.{category}.past_window", 56,
                  {"country": c, "category": category, "seller_reply": "no_reply",
                   "hours_since_contact": {"gte": window}}, "open_dispute",
                  f"The seller has not replied in {{hours_since_contact}} h, at or past the {window} h window for "
                  "{category} in {country}: open a dispute from the order page.",
                  f"{where}: sellers of {category} get {extra} h more to reply",
                  {"status": "shipped", "seller_reply": "no_reply", "country": c, "category": category,
                   "hours_since_contact": window}, dispute_warning),
            _rule(f"reply.{c}.{category}.in_window", 56,
                  {"country": c, "category": category, "seller_reply": "no_reply",
                   "hours_since_contact": {"lt": window}}, "wait_for_seller",
                  f"The seller has had {{hours_since_contact}} h of the {window} h window for {{category}} in "
                  "{country}: wait for the answer.", f"{where}: sellers of {category} get {extra} h more to reply",
                  {"status": "shipped", "seller_reply": "no_reply", "country": c, "category": category,
                   "hours_since_contact": window - 1}),
        ]
    for method, days in terms.refund_days.items():
        rules += [
            _rule(f"refund.{c}.{method}.overdue", 81,
                  {"country": c, "payment_method": method, "status": "cancelled", "days_since_refund": {"gte": days}},
                  "contact_support", f"The refund started {{days_since_refund}} days ago, past the {days} days "
                                     "usual for {payment_method} in {country}: contact support.",
                  f"{where}: refunds by {method} take up to {days} days",
                  {"status": "cancelled", "country": c, "payment_method": method, "days_since_refund": days}),
            _rule(f"refund.{c}.{method}.in_progress", 81,
                  {"country": c, "payment_method": method, "status": "cancelled", "days_since_refund": {"lt": days}},
                  "wait_for_refund", f"The refund started {{days_since_refund}} days ago; by {{payment_method}} in "
                                     f"{{country}} it usually arrives within {days} days.",
                  f"{where}: refunds by {method} take up to {days} days",
                  {"status": "cancelled", "country": c, "payment_method": method, "days_since_refund": days - 1}),
        ]
    return rules


def marketplace_yaml(seed: int = 0, countries: int = 50) -> str:
    """A marketplace policy: the bundled policy plus facts `country` and `category`, per-country reply,
    verification and refund windows (by payment method), and category exceptions; about 1,000 rules at 50
    countries. The bundled rules stay as the fallback (they decide orders with no country or category, so
    there are no gaps), and every added rule carries an example proving it wins."""
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    terms = marketplace_terms(seed, countries)
    source = f"synthetic marketplace (seed {seed})"
    data["policy"] = "marketplace"
    data["version"] = f"synthetic-{seed}-{countries}"
    data["description"] = (f"A synthetic marketplace policy over {countries} countries and {len(CATEGORIES)} "
                           "categories, on top of the bundled cancellation policy.")
    facts = dict(data["facts"])
    facts["country"] = {"type": "enum", "description": "Country the order ships to.",
                        "values": {code: {"label": label} for code, label in COUNTRIES[:countries]}}
    facts["category"] = {"type": "enum", "description": "Category of the item ordered.",
                         "values": {code: {"label": label} for code, label in CATEGORIES}}
    data["facts"] = facts
    data["actions"] = {**data["actions"], "cannot_cancel": "The item cannot be cancelled at this stage."}
    added = _category_rules(source)
    for country in terms:
        added += _country_rules(country, source)
    data["rules"] = added + data["rules"]
    header = (f"Generated by engine.synthetic.marketplace_yaml(seed={seed}, countries={countries}): do not edit.\n"
              "Synthetic: the windows are drawn at random, not taken from any real marketplace.")
    return dump_yaml(data, header)


def marketplace_orders(n: int, as_of: str = AS_OF, seed: int = 0, countries: int = 50,
                       bad_rate: float = 0.001) -> pd.DataFrame:
    """synthetic_orders with `country` and `category` columns (codes, upper-case codes and labels, some blank,
    a few unknown), for the policy of marketplace_yaml(countries=countries)."""
    df = synthetic_orders(n, as_of, seed, bad_rate)
    rng = np.random.default_rng([seed, 1])
    codes = np.array([c for c, _ in COUNTRIES[:countries]], dtype=object)
    spellings = np.stack([codes, np.char.upper(codes.astype(str)).astype(object),
                          np.array([label for _, label in COUNTRIES[:countries]], dtype=object)])
    weights = 1 / np.arange(1, countries + 1) ** 0.8  # a few big markets, a long tail
    pick = rng.choice(countries, n, p=weights / weights.sum())
    country = spellings[rng.choice(3, n, p=[0.4, 0.4, 0.2]), pick]
    category_spellings = np.array([[c for c, _ in CATEGORIES], [label for _, label in CATEGORIES]], dtype=object)
    cat_weights = np.linspace(2.0, 0.5, len(CATEGORIES))
    category = category_spellings[rng.choice(2, n, p=[0.7, 0.3]),
                                  rng.choice(len(CATEGORIES), n, p=cat_weights / cat_weights.sum())]
    country[rng.random(n) < 0.03] = ""
    category[rng.random(n) < 0.03] = ""
    country[rng.random(n) < bad_rate / 2] = "Atlantis"
    df["country"] = country
    df["category"] = category
    return df


# --- durable_rules limit probes --------------------------------------------------------------------------

PROBE_SHAPES = {
    "identical": "n rules with the same conditions (status delivered, seller not contacted)",
    "siblings": "n rules: status delivered and seller_rating equal to 0, 1, ..., n-1",
}


def probe_yaml(shape: str, n: int) -> str:
    """The bundled policy with n extra rules of one shape (PROBE_SHAPES), placed first. Only the first of
    'identical' can win anything: these policies exist to be compiled, never to decide real orders."""
    if shape not in PROBE_SHAPES:
        raise ValueError(f"unknown probe shape {shape!r} (shapes: {', '.join(PROBE_SHAPES)})")
    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    extra = []
    for k in range(n):
        when: dict[str, Any] = {"status": "delivered", "seller_reply": "not_contacted"}
        if shape == "siblings":
            when = {"status": "delivered", "seller_rating": k}
        example = {"order": {"order_id": f"P{k}", "status": "delivered"}, "expect": "contact_seller"}
        extra.append({"id": f"probe_{k}", "priority": 40, "when": when, "then": {"action": "contact_seller"},
                      "source": "durable_rules limit probe", "examples": [example]})
    data["rules"] = extra + data["rules"]
    data["policy"] = f"probe-{shape}-{n}"
    return dump_yaml(data, f"Generated by engine.synthetic.probe_yaml({shape!r}, {n}): {PROBE_SHAPES[shape]}.")
