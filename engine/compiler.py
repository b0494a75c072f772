"""Compile a PolicySpec into durable_rules rulesets and ask them which rules an order's facts match.

This is the only module that imports durable_rules. A policy is packed into as many rulesets (shards, see
engine.shards) as durable_rules' fixed sizes need, and their matches are merged in firing order. The library keeps
process-global state and its stock Host runs background threads that steal actions, so one quiet Host serves the
whole process and every engine call holds one lock (scale with processes, not threads). At most MAX_RULESETS
rulesets and MAX_REGISTERED_RULES rules stay registered (least recently used deleted first); a policy whose
ruleset was deleted registers it again on use.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from .errors import EngineError
from .model import Condition, PolicySpec
from .operators import OPERATORS, all_of, any_of
from .shards import (
    MAX_BRANCHES_PER_NODE,
    MAX_GROUPS_PER_RULE,
    MAX_RULES_PER_NODE,
    MAX_RULES_PER_RULESET,
    MAX_STACK,
    EngineRule,
    flatten,
    pack,
)

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
_CAP = 65535  # an action takes up to this many matches of its rule at once (unsigned 16-bit): match_many's, per rule
_SID = "0"
_NOT_STATE = {"$nex": {"$s": 1}}  # without it a rule can match the session's state fact and loop forever

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
# Rulesets (shards) registered in durable_rules, least recently used first, with their engine rules. A ruleset
# costs about 22 kB per rule (14 kB compiled, 8 kB for its session, kept between evaluations); beyond
# MAX_RULESETS rulesets or MAX_REGISTERED_RULES rules the least recently used are deleted (the C module's
# delete_ruleset frees them), never one of the policy being used, however big it is.
MAX_RULESETS = 32
MAX_REGISTERED_RULES = 5000
_registered: OrderedDict[str, int] = OrderedDict()


def engine_names(spec: PolicySpec) -> dict[str, str]:
    """The name each fact has inside durable_rules. The engine reserves 'sid' and 'id' and finds a property by a
    32-bit hash of its name, so facts named freely by users could clash; 'f0', 'f1', ... have distinct hashes
    (and neither 'sid''s nor 'id''s) up to 'f264601', far past the 255 properties a message can hold."""
    return {name: f"f{index}" for index, name in enumerate(spec.facts)}


def condition_json(spec: PolicySpec, cond: Condition) -> dict:
    """One condition in durable_rules' JSON form (facts by engine name); a keyed parameter becomes one branch
    per key."""
    names = engine_names(spec)
    fact = names[cond.fact]
    keyed = spec.keyed_parameter(cond)
    engine_form = OPERATORS[cond.op].engine
    if keyed is None:
        return engine_form(fact, spec.resolve(cond.value, {}))
    by = names[keyed.by]
    branches = []
    for key in spec.facts[keyed.by].values:
        branches.append(all_of([{by: key}, engine_form(fact, spec.resolve(cond.value, {keyed.by: key}))]))
    if keyed.default is not None:
        branches.append(all_of([{"$nex": {by: 1}}, engine_form(fact, spec.resolve(cond.value, {}))]))
    return any_of(branches)


def engine_rules(spec: PolicySpec) -> list[EngineRule]:
    """One engine rule per policy rule, in firing order: the state guard, then its conditions (nested 'and's
    spliced in: the same tests, fewer groups)."""
    return [EngineRule(rule.id, rank, tuple(flatten([_NOT_STATE, *(condition_json(spec, c) for c in rule.conditions)])))
            for rank, rule in enumerate(spec.ranked_rules(), start=1)]


# Every message is handled, so durable_rules never raises "not handled". One in every shard.
_CATCH_ALL = EngineRule(NO_RULE, 0, (_NOT_STATE,))


def _definition(rules: Sequence[EngineRule]) -> dict[str, dict]:
    """A ruleset as durable_rules JSON: the rules with pri by firing order, then the catch-all."""
    out = {rule.key: {"all": [{"m": all_of(list(rule.terms))}], "pri": pri, "cap": _CAP, "run": rule.rule_id}
           for pri, rule in enumerate(rules, start=1)}
    out[NO_RULE] = {"all": [{"m": _NOT_STATE}], "pri": _NO_RULE_PRI, "cap": _CAP, "run": NO_RULE}
    return out


def ruleset_definition(spec: PolicySpec) -> dict[str, dict]:
    """The whole policy as one ruleset: one rule per policy rule, pri by firing order, plus a catch-all (a policy
    that fits one shard is compiled to exactly this)."""
    return _definition(engine_rules(spec))


def ruleset_name(spec: PolicySpec, definition: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(_whole_numbers(definition), sort_keys=True).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', spec.name)}-{digest}"


def _whole_numbers(value: Any) -> Any:
    """The definition with 72.0 written 72: the engine compares numbers, so both are one ruleset (a file says 72,
    with_parameters stores 72.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_whole_numbers(item) for item in value]
    return value


def policy_digest(spec: PolicySpec) -> str:
    """A hash of everything that shapes the policy's answers, in order: name, version, hit policy, facts (value
    order, labels, aliases, defaults, ranges, timestamps), parameters, actions, rules (priority, file order,
    conditions, messages, warnings). Left out: where it came from (path, file texts, lines) and its examples.

    Caches of answers are keyed by it, never by a name: cell ids count enum values by position, so two
    same-named policies with their values in another order must not share one."""
    # No sorting anywhere: the order of facts, values and rules is part of the answer.
    return hashlib.sha256(json.dumps(_canonical(spec), default=repr).encode()).hexdigest()


_PROVENANCE = {"path", "sources", "examples", "line", "col"}


def _canonical(value: Any) -> Any:
    """Plain JSON data of a spec, field by field (so a field added later is in it), provenance left out."""
    if is_dataclass(value):
        return [type(value).__name__, *(_canonical(getattr(value, f.name)) for f in fields(value)
                                        if f.name not in _PROVENANCE)]
    if isinstance(value, Mapping):
        return [[key, _canonical(item)] for key, item in value.items()]
    if isinstance(value, tuple | list):
        return [_canonical(item) for item in value]
    return value


_LIMITS = {
    106: f"more than {MAX_RULES_PER_RULESET} rules in one ruleset",
    107: f"more than {MAX_BRANCHES_PER_NODE} 'given: false' tests or 'in'/keyed branches follow one condition",
    108: f"more than {MAX_RULES_PER_NODE} rules have the same conditions",
    113: f"a rule has more than {MAX_GROUPS_PER_RULE} and/or groups in its conditions",
    303: f"more than {MAX_STACK} of the policy's tests hold at once",
}


def _engine_error(ruleset: str, operation: str, exc: Exception) -> EngineError:
    """The EngineError for a durable_rules failure: a known limit by name and number, else its type only. The
    compiler keeps every shard inside these limits: one of them here means its model of the engine is wrong."""
    found = re.fullmatch(r"Could not [\w ]+, error code: (\d+)", str(exc)) \
        if isinstance(exc, _durable.durable_rules_engine.error) else None
    code = int(found.group(1)) if found else None
    if code in _LIMITS:
        return EngineError(ruleset, operation, f"{_LIMITS[code]}: durable_rules' limit (error {code})", code)
    return EngineError(ruleset, operation, type(exc).__name__)


@dataclass(frozen=True)
class EngineRuleset:
    """One shard of a compiled policy: a durable_rules ruleset, and the facts its messages carry."""

    name: str  # <policy>-<hash of the definition>: registered under it, shared by every policy holding it
    definition: Mapping[str, dict]  # kept to register it again after an eviction
    facts: tuple[tuple[str, str], ...]  # (fact, engine name) of each fact its rules read


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy registered in durable_rules as one or more rulesets; `match` is the only way facts reach them."""

    spec: PolicySpec
    ruleset: str  # the name of its one ruleset, or <policy>-<hash of its shards' names>
    engine_facts: tuple[str, ...]
    shards: tuple[EngineRuleset, ...]

    @cached_property
    def _rank(self) -> dict[str, int]:
        return {rule.id: k for k, rule in enumerate(self.spec.ranked_rules())}

    @cached_property
    def content_key(self) -> str:
        """policy_digest of the spec: what caches of this policy's answers are keyed by."""
        return policy_digest(self.spec)

    def match(self, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Ids of every rule the facts satisfy, in firing order (empty: no rule): each shard fires its own in
        order, and the shards' are merged."""
        with _lock:
            host = _register(self, "evaluation")
            return self._merged([(shard.name, [rule for rule in _evaluate(host, shard.name, _message(shard, facts))
                                               if rule != NO_RULE]) for shard in self.shards])

    def match_many(self, many: Sequence[Mapping[str, Any]]) -> list[tuple[str, ...] | EngineError]:
        """`match` of each facts, or the EngineError it raises for them, asking each shard about MATCH_CHUNK in one
        call; a chunk the engine fails on (an order past one of its limits) is asked again an order at a time."""
        out: list[tuple[str, ...] | EngineError] = []
        for start in range(0, len(many), MATCH_CHUNK):
            chunk = many[start:start + MATCH_CHUNK]
            with _lock:
                host = _register(self, "evaluation")
                fired = [found for shard in self.shards if (found := _evaluate_many(host, shard, chunk)) is not None]
            for k, facts in enumerate(chunk):
                try:
                    out.append(self._merged([(s.name, each[k]) for s, each in zip(self.shards, fired, strict=True)])
                               if len(fired) == len(self.shards) else self.match(facts))
                except EngineError as exc:
                    out.append(exc)
        return out

    def _merged(self, fired: list[tuple[str, list[str]]]) -> tuple[str, ...]:
        """The rules each shard (by name) fired, in order, merged in firing order; EngineError if out of order."""
        rank = self._rank
        matched: set[str] = set()
        for name, rules in fired:
            if any(rank[a] > rank[b] for a, b in zip(rules, rules[1:], strict=False)):
                raise EngineError(name, "evaluation", f"rules fired out of order: {', '.join(rules)}")
            matched.update(rules)  # a rule split into pieces may fire more than once
        return tuple(sorted(matched, key=rank.__getitem__))


def _message(shard: EngineRuleset, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The facts as a message to one shard: the facts its rules read, by engine name, and the session id."""
    message = {key: facts[name] for name, key in shard.facts if facts.get(name) is not None}
    message["sid"] = _SID
    return message


MATCH_CHUNK = 1024  # orders asserted at once (a few kB each in the engine); past a few hundred the gain is flat
_ACTION = re.compile(r'\{"([^"]*)":\[')  # an action's text: {"<rule>":[<a match>, ...]}, each match {"m":<message>}
_MATCHED = re.compile(r'\{"m":\{"id": "c(\d+)"')  # a match's message starts with the id match_many gave it


def _evaluate_many(host: _QuietHost, shard: EngineRuleset, chunk: Sequence[Mapping[str, Any]]
                   ) -> list[list[str]] | None:
    """The rules one ruleset fires for each facts, in order: asserted in one call, each message's id first (its matches'
    texts start with it), then retracted; None if the engine fails (the ruleset is then forgotten)."""
    runs = {key: rule["run"] for key, rule in shard.definition.items()}  # pieces of a split rule: the rule's id
    text = _exact_dumps([{"id": f"c{k}", **_message(shard, one)} for k, one in enumerate(chunk)], ensure_ascii=False)
    engine = _durable.durable_rules_engine
    fired: list[list[str]] = [[] for _ in chunk]
    try:
        handle = host.get_ruleset(shard.name)._handle  # asked directly: the Host would run Python per action
        code, state = engine.assert_facts(handle, text)  # code 1: a message not handled, 2: one seen before
        action = engine.start_action_for_state(handle, state)[1] if code == 0 else ""  # the catch-all fires at least
        while action and (found := _ACTION.match(action)):
            if runs[found[1]] != NO_RULE:
                for k in _MATCHED.findall(action):
                    fired[int(k)].append(runs[found[1]])
            action = engine.complete_and_start_action(handle, state)
        retracted, state = engine.retract_facts(handle, text)
        if action is not None or retracted or engine.start_action_for_state(handle, state) is not None:
            raise EngineError(shard.name, "evaluation", "a message unhandled, unattributed or left behind")
    except Exception:  # asked again an order at a time, which words the error
        _discard(host, shard.name)
        return None
    return fired


def _evaluate(host: _QuietHost, name: str, message: dict[str, Any]) -> list[str]:
    """The actions one ruleset fires for the message, which is then retracted: its session stays, empty (making a
    session costs more than the whole evaluation: memory for every rule)."""
    _fired.clear()
    try:
        host.assert_fact(name, message)
        fired = list(_fired)
        host.retract_fact(name, message)
    except Exception as exc:  # raw durable_rules texts embed whole messages: never show them
        _discard(host, name)
        raise _engine_error(name, "evaluation", exc) from None
    return fired


def compile_policy(spec: PolicySpec) -> CompiledPolicy:
    """Pack the policy's rules into shards (engine.shards), register each as a ruleset named by its content hash,
    and return a handle; RuleError, located at a rule, when one cannot be made to fit durable_rules."""
    user = {engine: name for name, engine in engine_names(spec).items()}
    shards = []
    for shard in pack(spec, engine_rules(spec), _CATCH_ALL):
        definition = _definition([rule for rule in shard.rules if rule.rule_id != NO_RULE])
        facts = tuple(sorted((user[fact], fact) for fact in shard.facts))
        shards.append(EngineRuleset(ruleset_name(spec, definition), definition, facts))
    name = shards[0].name if len(shards) == 1 else ruleset_name(spec, {shard.name: {} for shard in shards})
    compiled = CompiledPolicy(spec, name, tuple(sorted(spec.read_facts())), tuple(shards))
    with _lock:
        _register(compiled, "compilation")
    return compiled


def _register(compiled: CompiledPolicy, operation: str) -> _QuietHost:
    """Make the policy's rulesets the most recently used, registering those that are not (again), and delete
    the least recently used others beyond the limits; the Host that holds them. The caller holds _lock."""
    global _host
    if _host is None:
        _host = _QuietHost()
    host = _host
    for shard in compiled.shards:
        if shard.name in _registered:
            _registered.move_to_end(shard.name)
            continue
        if ruleset_name(compiled.spec, shard.definition) != shard.name:  # a name stands for its content only
            raise EngineError(shard.name, operation, "UnknownRuleset") from None
        try:
            host.set_rulesets({shard.name: copy.deepcopy(dict(shard.definition))})  # it mutates what it is given
        except Exception as exc:
            raise _engine_error(shard.name, "compilation", exc) from None
        _registered[shard.name] = len(shard.definition)
    rules = sum(_registered.values())
    for name in list(_registered)[: -len(compiled.shards) or None]:  # the policy's own are the last
        if len(_registered) <= MAX_RULESETS and rules <= MAX_REGISTERED_RULES:
            break
        rules -= _registered.pop(name)
        _delete(host, name)
    return host


def _delete(host: _QuietHost, name: str) -> None:
    """Delete a registered ruleset: the Host's Python side keeps no other reference, so its C handle can go.
    Its session first: delete_ruleset frees the ruleset but not its sessions' memory."""
    try:
        host.delete_state(name, _SID)
    except _durable.durable_rules_engine.error:  # no session yet (error 309)
        pass
    ruleset = host._ruleset_directory.pop(name)
    host._ruleset_list.remove(ruleset)
    _durable.durable_rules_engine.delete_ruleset(ruleset._handle)


def _discard(host: _QuietHost, name: str) -> None:
    """Forget a ruleset whose evaluation failed, without freeing it (durable_rules may abort the process freeing
    a half-made session); the next use registers it anew."""
    ruleset = host._ruleset_directory.pop(name, None)
    if ruleset is not None:
        host._ruleset_list.remove(ruleset)
    _registered.pop(name, None)
