"""Decide one order: ask the engine which rules match, then explain the winner and its rivals."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .compiler import CompiledPolicy
from .errors import EngineError, OrderError
from .facts import normalize, unknown_field_warnings
from .html import decision_html
from .model import PolicySpec, Rule
from .operators import ConditionResult, check
from .template import render


@dataclass(frozen=True)
class WhyNot:
    rule_id: str
    action: str
    condition: ConditionResult


@dataclass(frozen=True)
class Decision:
    order_id: str | None
    action: str | None
    rule_id: str | None
    message: str
    conditions: tuple[ConditionResult, ...] = ()
    also_matched: tuple[str, ...] = ()
    why_not: tuple[WhyNot, ...] = ()
    warnings: tuple[str, ...] = ()
    policy: str = ""
    policy_version: str = ""
    as_of: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    def _repr_html_(self) -> str:
        return decision_html(self)

    def explain(self) -> str:
        """The decision as plain text: action, rule, every condition, and the rules that did not match."""
        if self.error:
            return "\n".join([f"order {self.order_id}: no decision: {self.error}",
                              *(f"  warning: {w}" for w in self.warnings)])
        lines = [f"order {self.order_id}: {self.action} (rule {self.rule_id}, policy {self.policy_version})",
                 f"  {self.message}", *(f"  {c}" for c in self.conditions)]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  not {w.rule_id} ({w.action}): {w.condition}" for w in self.why_not]
        if self.also_matched:
            lines.append(f"  also matched: {', '.join(self.also_matched)}")
        return "\n".join(lines)


def outcome(spec: PolicySpec, matched: tuple[str, ...]) -> tuple[Rule | None, str | None]:
    """The winning rule under the hit policy, or the reason there is none."""
    if not matched:
        return None, "no rule decides this order (policy gap)"
    if spec.hit_policy == "unique" and len(matched) > 1:
        return None, f"several rules match under hit policy 'unique': {', '.join(matched)}"
    return spec.rule(matched[0]), None


def match(compiled: CompiledPolicy, facts: Mapping[str, Any]) -> tuple[str, ...]:
    """compiled.match; when the order is past durable_rules' limit, the EngineError says how many rules match."""
    try:
        return compiled.match(facts)
    except EngineError as exc:
        if exc.code != 303:
            raise
        spec = compiled.spec
        count = sum(all(check(spec, c, facts).passed for c in rule.conditions) for rule in spec.rules)
        raise EngineError(exc.ruleset, exc.operation, f"order matches {count} rules; {exc.kind}", exc.code) from None


def decide(compiled: CompiledPolicy, order: Mapping[str, Any], as_of: datetime, strict: bool = False) -> Decision:
    """The decision for one order; raises OrderError for bad input (with strict, for a field the policy does not
    read too; else each such field is a warning)."""
    spec = compiled.spec
    facts = normalize(spec, order, as_of, strict)
    # The order's own warnings come before the rule's: both are what a reader must see beside the answer.
    unknown = unknown_field_warnings(spec, order)
    matched = match(compiled, facts)
    results = {rule.id: tuple(check(spec, c, facts) for c in rule.conditions) for rule in spec.rules}
    explained = tuple(r.id for r in spec.ranked_rules() if all(c.passed for c in results[r.id]))
    if explained != matched:  # the explanation must describe what the engine did, never guess
        raise EngineError(compiled.ruleset, "explanation", f"engine matched {matched}, conditions say {explained}")
    base: dict[str, Any] = dict(order_id=facts.get("order_id"), policy=spec.name, policy_version=spec.version,
                as_of=as_of.isoformat(), facts=facts)
    winner, error = outcome(spec, matched)
    ranked = spec.ranked_rules()
    if winner is None:
        return Decision(action=None, rule_id=None, message="", error=error, also_matched=matched,
                        why_not=_why_not(spec, ranked, results), warnings=unknown, **base)
    higher = ranked[: ranked.index(winner)]
    return Decision(action=winner.action, rule_id=winner.id, message=render(spec, winner.message, facts),
                    conditions=results[winner.id], also_matched=matched[1:],
                    why_not=_why_not(spec, higher, results), warnings=unknown + winner.warnings, **base)


def decide_row(compiled: CompiledPolicy, order: Mapping[str, Any], as_of: datetime
               ) -> tuple[str | None, str | None, str, str | None]:
    """(action, rule_id, message, error) for one order through the engine: the per-row reference path."""
    try:
        facts = normalize(compiled.spec, order, as_of)
    except OrderError as exc:
        return None, None, "", str(exc)
    try:
        matched = match(compiled, facts)
    except EngineError as exc:
        if exc.code is None:
            raise
        return None, None, "", str(exc)  # past a limit of durable_rules: this row's error, not the batch's
    winner, error = outcome(compiled.spec, matched)
    if winner is None:
        return None, None, "", error
    return winner.action, winner.id, render(compiled.spec, winner.message, facts), None


def _why_not(spec: PolicySpec, rules, results) -> tuple[WhyNot, ...]:
    return tuple(WhyNot(r.id, r.action, next(c for c in results[r.id] if not c.passed))
                 for r in rules if not all(c.passed for c in results[r.id]))
