"""Compile a PolicySpec into a durable_rules ruleset and ask it which rules an order's facts match.

This is the only module that imports durable_rules. The library keeps process-global state and its stock
Host runs background threads that steal actions, so one quiet Host serves the whole process and every
engine call holds one lock (scale with processes, not threads).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from .errors import EngineError
from .model import Condition, PolicySpec

try:
    from durable import engine as _durable
except ImportError as exc:  # on 3.13+ PyPI's build calls PyEval_CallObject (removed), and pip skips it there
    from .install_durable_rules import import_hint

    raise ImportError(import_hint(exc)) from None


def _unix_now() -> float:
    """durable_rules' action clock, the same value without datetime.utcfromtimestamp: deprecated since 3.12, it
    warned on every action, and a warnings filter set here is undone by pytest's or a caller's catch_warnings."""
    return (datetime.now() - datetime(1970, 1, 1)).total_seconds()


_durable._unix_now = _unix_now

# A JSON string, or a number written with an exponent and no fraction ('1e-05', as json.dumps writes some floats).
_STRING_OR_BARE_EXPONENT = re.compile(r'"(?:[^"\\]|\\.)*"|(?<![\w.])(-?\d+)(e[-+]\d+)')
_EXPONENT = re.compile(r"\de[-+]")  # json.dumps writes every exponent with a sign


def _exact_dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps for durable_rules. Its parser reads a number as digits[.digits[e±digits]], so it fails on
    '1e-05'; '1.0e-05' parses (with strtod, correctly rounded) to the same double. Strings are left alone."""
    text = json.dumps(obj, **kwargs)
    if not _EXPONENT.search(text):  # the usual message: no exponent anywhere, nothing to rewrite
        return text
    return _STRING_OR_BARE_EXPONENT.sub(lambda m: f"{m[1]}.0{m[2]}" if m[1] else m[0], text)


class _ExactJson:
    """The json module as durable_rules uses it (rulesets and facts go through dumps), with exact numbers."""

    dumps = staticmethod(_exact_dumps)
    loads = staticmethod(json.loads)


_durable.json = _ExactJson

NO_RULE = "__no_rule__"
_NO_RULE_PRI = 65000  # pri is unsigned 16-bit; lower fires first
_SID = "0"
_NOT_STATE = {"$nex": {"$s": 1}}  # without it a rule can match the session's state fact and loop forever
_COMPARISONS = {"ne": "$neq", "lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}

_lock = threading.RLock()
_fired: list[str] = []


class _QuietHost(_durable.Host):
    """A Host without its dispatch/timer threads; each rule's action records the rule's name."""

    def _run(self) -> None:
        pass

    def get_action(self, action_name: str):
        def record(_closure) -> None:  # exactly one parameter: a second one makes it asynchronous
            _fired.append(action_name)

        return record


_host: _QuietHost | None = None
_registered: set[str] = set()


def engine_names(spec: PolicySpec) -> dict[str, str]:
    """The name each fact has inside durable_rules. The engine reserves 'sid' and 'id' and finds a property by a
    32-bit hash of its name, so facts named freely by users could clash; 'f0', 'f1', ... have distinct hashes
    (and neither 'sid''s nor 'id''s) up to 'f264601', far past the 255 properties a message can hold."""
    return {name: f"f{index}" for index, name in enumerate(spec.facts)}


def _term(fact: str, op: str, value: Any) -> dict:
    if op == "eq":
        return {fact: value}
    if op in _COMPARISONS:
        return {_COMPARISONS[op]: {fact: value}}
    if op == "in":
        return _any([{fact: v} for v in value])
    if op == "not_in":
        return _all([{"$neq": {fact: v}} for v in value])
    if op == "between":
        return _all([{"$gte": {fact: value[0]}}, {"$lte": {fact: value[1]}}])
    if op == "given":
        return {"$ex" if value else "$nex": {fact: 1}}
    raise ValueError(f"unknown operator {op!r}")


def _any(terms: list[dict]) -> dict:
    return terms[0] if len(terms) == 1 else {"$or": terms}


def _all(terms: list[dict]) -> dict:
    return terms[0] if len(terms) == 1 else {"$and": terms}


def condition_json(spec: PolicySpec, cond: Condition) -> dict:
    """One condition in durable_rules' JSON form (facts by engine name); a keyed parameter becomes one branch
    per key."""
    names = engine_names(spec)
    fact = names[cond.fact]
    keyed = spec.keyed_parameter(cond)
    if keyed is None:
        return _term(fact, cond.op, spec.resolve(cond.value, {}))
    by = names[keyed.by]
    branches = []
    for key in spec.facts[keyed.by].values:
        branches.append(_all([{by: key}, _term(fact, cond.op, spec.resolve(cond.value, {keyed.by: key}))]))
    if keyed.default is not None:
        branches.append(_all([{"$nex": {by: 1}}, _term(fact, cond.op, spec.resolve(cond.value, {}))]))
    return _any(branches)


def ruleset_definition(spec: PolicySpec) -> dict[str, dict]:
    """The ruleset as durable_rules JSON: one rule per policy rule, pri by firing order, plus a catch-all."""
    rules: dict[str, dict] = {}
    for rank, rule in enumerate(spec.ranked_rules(), start=1):
        terms = [_NOT_STATE, *(condition_json(spec, c) for c in rule.conditions)]
        rules[rule.id] = {"all": [{"m": _all(terms)}], "pri": rank, "run": rule.id}
    # Every message is handled, so durable_rules never raises "not handled" (and delete_state stays safe).
    rules[NO_RULE] = {"all": [{"m": _NOT_STATE}], "pri": _NO_RULE_PRI, "run": NO_RULE}
    return rules


def ruleset_name(spec: PolicySpec, definition: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', spec.name)}-{digest}"


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy registered in durable_rules; `match` is the only way facts reach the engine."""

    spec: PolicySpec
    ruleset: str
    engine_facts: tuple[str, ...]

    @cached_property
    def _message_keys(self) -> tuple[tuple[str, str], ...]:
        """(fact, its engine name) for each fact that reaches the engine."""
        names = engine_names(self.spec)
        return tuple((name, names[name]) for name in self.engine_facts)

    def match(self, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Ids of every rule the facts satisfy, in the engine's firing order (empty: no rule)."""
        message = {key: facts[name] for name, key in self._message_keys if facts.get(name) is not None}
        message["sid"] = _SID
        with _lock:
            _fired.clear()
            try:
                _host.assert_fact(self.ruleset, message)
                _host.delete_state(self.ruleset, _SID)  # no fact outlives its evaluation
            except Exception as exc:  # raw durable_rules texts embed whole messages: never show them
                raise EngineError(self.ruleset, "evaluation", type(exc).__name__) from None
            fired = tuple(_fired)
        return tuple(rule for rule in fired if rule != NO_RULE)


def compile_policy(spec: PolicySpec) -> CompiledPolicy:
    """Register the policy's ruleset once per process, named by its content hash, and return a handle."""
    global _host
    definition = ruleset_definition(spec)
    name = ruleset_name(spec, definition)
    used = spec.read_facts()
    with _lock:
        if _host is None:
            _host = _QuietHost()
        if name not in _registered:
            try:
                _host.set_rulesets({name: copy.deepcopy(definition)})  # it mutates what it is given
            except Exception as exc:
                raise EngineError(name, "compilation", type(exc).__name__) from None
            _registered.add(name)
    return CompiledPolicy(spec, name, tuple(sorted(used)))
