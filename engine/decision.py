"""Decide one order: ask the engine which rules match, then explain the winner and its rivals."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from .compiler import CompiledPolicy
from .errors import EngineError, OrderError
from .facts import normalize, unknown_field_warnings
from .model import PolicySpec, Rule
from .operators import ConditionResult, check
from .template import render


@dataclass(frozen=True)
class WhyNot:
    rule_id: str
    action: str
    condition: ConditionResult


Explanation = tuple[tuple[ConditionResult, ...], tuple[WhyNot, ...]]  # (conditions, why_not)


class _Explained:
    """A Decision field of its explanation (conditions, why_not). A decision made from the cell table leaves both
    pending and builds them on first read, so a caller wanting only the action never pays for them."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, decision: Decision | None, owner: type | None = None) -> Any:
        if decision is None:
            return ()  # the field's default
        state = decision.__dict__
        if self.slot not in state:
            # Both at once, idempotent: two threads reading at once build the same values.
            state["_conditions"], state["_why_not"] = state["_explain"]()
        return state[self.slot]

    def __set__(self, decision: Decision, value: Any) -> None:
        decision.__dict__[self.slot] = value  # a frozen dataclass's __init__ sets fields through here


def _as_fields(value: Any) -> Any:
    """json.dumps' hook: a dataclass (the decision, its conditions) as its fields, anything else as text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return str(value)


def _explained() -> Any:
    """The descriptor of an explanation field, typed as the field's value (dataclasses take the default from it)."""
    return _Explained()


@dataclass(frozen=True)
class Decision:
    order_id: str | None
    action: str | None
    rule_id: str | None
    message: str
    conditions: tuple[ConditionResult, ...] = _explained()
    also_matched: tuple[str, ...] = ()
    why_not: tuple[WhyNot, ...] = _explained()
    warnings: tuple[str, ...] = ()
    policy: str = ""
    policy_version: str = ""
    as_of: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def pending(cls, explain: Callable[[], Explanation], **fields: Any) -> Decision:
        """A decision whose conditions and why_not are `explain()`, called when either is first read; `fields`
        are all its other fields (as `answer` gives them)."""
        decision = object.__new__(cls)  # its fields set at once: the frozen __init__ sets one at a time
        decision.__dict__.update(fields, _explain=explain)
        return decision

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with its explanation built (the function building it stays behind)."""
        self.conditions  # noqa: B018  (reading it builds it)
        return {k: v for k, v in self.__dict__.items() if k != "_explain"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """json.dumps of to_dict(), without its deep copy: each dataclass is written as its fields when met."""
        return json.dumps(self, indent=indent, ensure_ascii=False, default=_as_fields)

    def _repr_html_(self) -> str:
        from .html import decision_html  # notebooks only: one decision's start-up skips it

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
    ranked = spec.ranked_rules()
    winner, error = outcome(spec, matched)
    conditions, why_not = explanation(compiled, ranked, facts, matched, winner)
    return Decision(conditions=conditions, why_not=why_not, **answer(spec, facts, as_of, matched, winner, error,
                                                                     unknown))


def answer(spec: PolicySpec, facts: dict[str, Any], as_of: datetime, matched: tuple[str, ...],
           winner: Rule | None, error: str | None, unknown: tuple[str, ...]) -> dict[str, Any]:
    """The fields of a Decision but its explanation."""
    base: dict[str, Any] = dict(order_id=facts.get("order_id"), policy=spec.name, policy_version=spec.version,
                                as_of=_iso(as_of), facts=facts)
    if winner is None:
        return dict(action=None, rule_id=None, message="", error=error, also_matched=matched, warnings=unknown,
                    **base)
    return dict(action=winner.action, rule_id=winner.id, message=render(spec, winner.message, facts), error=None,
                also_matched=matched[1:], warnings=unknown + winner.warnings, **base)


def explanation(compiled: CompiledPolicy, ranked: Sequence[Rule], facts: Mapping[str, Any],
                matched: tuple[str, ...], winner: Rule | None, shown_only: bool = False) -> Explanation:
    """(the winner's conditions, the first failing condition of each rule ranked above it), every condition
    checked in Python; EngineError when they do not say what the engine matched (the explanation must describe
    what the engine did, never guess). With shown_only, only the rules it shows are checked (the winner and those
    above it): the caller has checked the others against the engine."""
    spec = compiled.spec
    above = len(ranked) if winner is None else next(i for i, r in enumerate(ranked) if r.id == winner.id)
    rules = ranked[: above + 1] if shown_only else ranked
    results = {rule.id: _checked(spec, rule, facts) for rule in rules}
    explained = tuple(r.id for r in rules if all(c.passed for c in results[r.id]))
    if explained != (matched if len(rules) == len(ranked) else tuple(m for m in matched if m in results)):
        raise EngineError(compiled.ruleset, "explanation", f"engine matched {matched}, conditions say {explained}")
    if winner is None:
        return (), _why_not(ranked, results)
    return results[winner.id], _why_not(ranked[:above], results)


def _iso(as_of: datetime) -> str:
    if type(as_of) is not datetime:  # a subclass (pandas' Timestamp) may print an equal time otherwise
        return as_of.isoformat()
    return _isoformat(as_of, as_of.utcoffset())  # equal datetimes at other offsets print differently


@lru_cache(maxsize=64)  # the as-of times in use: usually one, or one per request
def _isoformat(as_of: datetime, offset: timedelta | None) -> str:
    return as_of.isoformat()


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


def _checked(spec: PolicySpec, rule: Rule, facts: Mapping[str, Any]) -> tuple[ConditionResult, ...]:
    """A rule's conditions checked in order up to the first that fails: all of them when it matches (what the
    explanation shows of a winner), else through the one that says why not (what it shows of a rival)."""
    results = []
    for cond in rule.conditions:
        results.append(check(spec, cond, facts))
        if not results[-1].passed:
            break
    return tuple(results)


def _why_not(rules: Sequence[Rule], results: Mapping[str, tuple[ConditionResult, ...]]) -> tuple[WhyNot, ...]:
    return tuple(WhyNot(r.id, r.action, next(c for c in results[r.id] if not c.passed))
                 for r in rules if not all(c.passed for c in results[r.id]))
