"""A marketplace policy of about 1,000 rules (countries, categories) on top of the bundled one, and its orders."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..loader import DEFAULT_POLICY
from .orders import AS_OF, synthetic_orders
from .yamltext import dump_yaml

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
    return rules + _extension_rules(terms, where, dispute_warning) + _refund_rules(terms, where)


def _extension_rules(terms: CountryTerms, where: str, dispute_warning: list[str]) -> list[dict[str, Any]]:
    """The longer reply windows of some categories in one country."""
    c, h = terms.code, terms.reply_hours
    rules: list[dict[str, Any]] = []
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
    return rules


def _refund_rules(terms: CountryTerms, where: str) -> list[dict[str, Any]]:
    """The refund windows of each payment method offered in one country."""
    c = terms.code
    rules: list[dict[str, Any]] = []
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
