"""Compile a PolicySpec into a durable_rules ruleset and ask it which rules an order's facts match.

This is the only module that imports durable_rules. The library keeps process-global state and its stock
Host runs background threads that steal actions, so one quiet Host serves the whole process and every
engine call holds one lock (scale with processes, not threads). At most MAX_RULESETS rulesets stay
registered (least recently used deleted first); a policy whose ruleset was deleted registers it again on use.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from .errors import EngineError, RuleError, RuleProblem
from .model import Condition, PolicySpec
from .operators import OPERATORS, all_of, any_of

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
# Rulesets registered in durable_rules, least recently used first. Each costs about 0.3 MB of the C library's
# memory; beyond MAX_RULESETS the oldest is deleted (the C module's delete_ruleset frees it all).
MAX_RULESETS = 32
_registered: OrderedDict[str, None] = OrderedDict()


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


def ruleset_definition(spec: PolicySpec) -> dict[str, dict]:
    """The ruleset as durable_rules JSON: one rule per policy rule, pri by firing order, plus a catch-all."""
    rules: dict[str, dict] = {}
    for rank, rule in enumerate(spec.ranked_rules(), start=1):
        terms = [_NOT_STATE, *(condition_json(spec, c) for c in rule.conditions)]
        rules[rule.id] = {"all": [{"m": all_of(terms)}], "pri": rank, "run": rule.id}
    # Every message is handled, so durable_rules never raises "not handled" (and delete_state stays safe).
    rules[NO_RULE] = {"all": [{"m": _NOT_STATE}], "pri": _NO_RULE_PRI, "run": NO_RULE}
    return rules


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


# durable_rules' fixed sizes (rules.h, rete.c and events.c of 2.0.28). Conditions become a tree of tests: a
# rule's tests in order, and rules with the same first tests share those nodes. Beyond these sizes it fails,
# writes past its arrays or, for the tests after one node, loops forever, so they are checked before it runs.
MAX_RULES_PER_NODE = 256  # rules whose tests are all the same, in the same order (error 108)
MAX_BRANCHES_PER_NODE = 128  # 'given: false' tests and ends of 'in'/keyed branches after one node (error 107)
MAX_TESTS_PER_NODE = 512  # other distinct tests after one node (one more: its compiler never returns)
MAX_GROUPS_PER_RULE = 14  # and/or groups in one rule's conditions, the wrapper's own 'and' not counted (113)
MAX_MATCHING_TESTS = 64  # tests that one order satisfies at once, pending in its evaluation stack (error 303)

_LIMITS = {
    106: f"more than {MAX_TESTS_PER_NODE} different tests follow one condition",
    107: f"more than {MAX_BRANCHES_PER_NODE} 'given: false' tests or 'in'/keyed branches follow one condition",
    108: f"more than {MAX_RULES_PER_NODE} rules have the same conditions",
    113: f"a rule has more than {MAX_GROUPS_PER_RULE} and/or groups in its conditions",
    303: f"more than {MAX_MATCHING_TESTS} of the policy's tests hold at once",
}
_TEST_WORDS = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">=", "$neq": "!=", "$ex": "given", "$nex": "not given"}


def _engine_error(ruleset: str, operation: str, exc: Exception) -> EngineError:
    """The EngineError for a durable_rules failure: a known limit by name and number, else its type only."""
    found = re.fullmatch(r"Could not [\w ]+, error code: (\d+)", str(exc)) \
        if isinstance(exc, _durable.durable_rules_engine.error) else None
    code = int(found.group(1)) if found else None
    if code in _LIMITS:
        return EngineError(ruleset, operation, f"{_LIMITS[code]}: durable_rules' limit (error {code})", code)
    return EngineError(ruleset, operation, type(exc).__name__)


@dataclass
class _Node:
    """One test node of durable_rules' tree, shared as its compiler shares them (see MAX_* above)."""

    path: tuple[str, ...]  # the tests leading here, as text
    tests: dict[tuple, _Node] = field(default_factory=dict)
    absent: dict[tuple, _Node] = field(default_factory=dict)  # '$nex' tests go to the branch list
    joins: int = 0  # 'or' branches ending here: each links its own join node into the branch list
    rules: int = 0

    @property
    def shown(self) -> str:
        return ", ".join(self.path) if self.path else "no conditions"

    @property
    def branches(self) -> int:
        return len(self.absent) + self.joins


def limit_problems(spec: PolicySpec, definition: Mapping[str, dict]) -> list[RuleProblem]:
    """Every durable_rules size the ruleset would exceed, located at the first rule that goes past it."""
    problems: dict[tuple[int, int], RuleProblem] = {}  # one per node and limit
    user_name = {engine: name for name, engine in engine_names(spec).items()}  # messages name facts as written

    def report(node: object, code: int, rule_id: str, message: str) -> None:
        rule = spec.rule(rule_id) if rule_id != NO_RULE else spec.ranked_rules()[-1]
        problems.setdefault((id(node), code), RuleProblem(spec.path, rule.line, rule.col, message, rule.id))

    def branched(node: _Node, rule_id: str) -> None:
        if node.branches > MAX_BRANCHES_PER_NODE:
            report(node, 107, rule_id, f"{node.branches} 'in'/keyed-parameter branches and 'given: false' tests "
                   f"hang on the same conditions ({node.shown}); durable_rules allows at most "
                   f"{MAX_BRANCHES_PER_NODE} (error 107)")

    def walk(term: dict, parent: _Node, rule_id: str, groups: list[int]) -> _Node:
        (key, value), = term.items()
        if key == "$and":
            groups[0] += 1
            node = parent
            for item in value:
                node = walk(item, node, rule_id, groups)
            return node
        if key == "$or":
            groups[0] += 1
            for item in value:
                end = walk(item, parent, rule_id, groups)
                end.joins += 1
                branched(end, rule_id)
            return _Node(parent.path + (f"one of {len(value)} alternatives",))  # a fresh join node per 'or'
        fact, constant = next(iter(value.items())) if key in _TEST_WORDS else (key, value)
        table = parent.absent if key == "$nex" else parent.tests
        test = (fact, key, json.dumps(constant))
        if test not in table:
            text = f"{user_name.get(fact, fact)} {_TEST_WORDS.get(key, '=')}" \
                + ("" if key in ("$ex", "$nex") else f" {constant!r}")
            # The state test every rule starts with is the wrapper's, not the user's: not shown.
            table[test] = _Node(parent.path if term == _NOT_STATE else parent.path + (text,))
            if key == "$nex":
                branched(parent, rule_id)
            elif len(table) > MAX_TESTS_PER_NODE:
                where = f"follow the same conditions ({parent.shown})" if parent.path else "come first in rules"
                report(parent, 0, rule_id, f"{len(table)} different tests {where}; durable_rules allows at most "
                       f"{MAX_TESTS_PER_NODE} (its compiler never returns with more)")
        return table[test]

    root = _Node(())
    for rule_id, rule in definition.items():
        groups = [0]
        end = walk(rule["all"][0]["m"], root, rule_id, groups)
        end.rules += 1
        if end.rules > MAX_RULES_PER_NODE:
            report(end, 108, rule_id, f"{end.rules} rules have the same conditions ({end.shown}) in the same "
                   f"order; durable_rules allows at most {MAX_RULES_PER_NODE} (error 108)")
        groups[0] -= 1  # every rule's conditions are one 'and' with the state test: not the user's
        if groups[0] > MAX_GROUPS_PER_RULE:
            report(rule, 113, rule_id, f"its conditions make {groups[0]} and/or groups ('in', 'not_in' and "
                   f"'between' make one each, a keyed parameter one per key and one more); durable_rules allows at "
                   f"most {MAX_GROUPS_PER_RULE} (error 113)")
    return list(problems.values())


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

    @cached_property
    def content_key(self) -> str:
        """policy_digest of the spec: what caches of this policy's answers are keyed by."""
        return policy_digest(self.spec)

    def match(self, facts: Mapping[str, Any]) -> tuple[str, ...]:
        """Ids of every rule the facts satisfy, in the engine's firing order (empty: no rule)."""
        message = {key: facts[name] for name, key in self._message_keys if facts.get(name) is not None}
        message["sid"] = _SID
        with _lock:
            _fired.clear()
            host = _register(self.spec, self.ruleset, "evaluation")
            try:
                host.assert_fact(self.ruleset, message)
                # No fact outlives its evaluation. Never after a failed assert: durable_rules would free a
                # half-built state and abort the process; the next evaluation that succeeds clears it.
                host.delete_state(self.ruleset, _SID)
            except Exception as exc:  # raw durable_rules texts embed whole messages: never show them
                raise _engine_error(self.ruleset, "evaluation", exc) from None
            fired = tuple(_fired)
        return tuple(rule for rule in fired if rule != NO_RULE)


def compile_policy(spec: PolicySpec) -> CompiledPolicy:
    """Register the policy's ruleset, named by its content hash, and return a handle; RuleError (located at a
    rule) when the ruleset is beyond what durable_rules can build."""
    definition = ruleset_definition(spec)
    problems = limit_problems(spec, definition)
    if problems:
        raise RuleError(problems)
    name = ruleset_name(spec, definition)
    used = spec.read_facts()
    with _lock:
        _register(spec, name, "compilation", definition)
    return CompiledPolicy(spec, name, tuple(sorted(used)))


def _register(spec: PolicySpec, name: str, operation: str, definition: dict | None = None) -> _QuietHost:
    """Make `name` the most recently used registered ruleset, registering it (again) if needed and deleting
    the least recently used beyond MAX_RULESETS; the Host that holds it. The caller holds _lock."""
    global _host
    if _host is None:
        _host = _QuietHost()
    host = _host
    if name in _registered:
        _registered.move_to_end(name)
        return host
    if definition is None:  # deleted since it was compiled: the same content again, under the same name
        definition = ruleset_definition(spec)
        if ruleset_name(spec, definition) != name:
            raise EngineError(name, operation, "UnknownRuleset") from None
    try:
        host.set_rulesets({name: copy.deepcopy(definition)})  # it mutates what it is given
    except Exception as exc:
        raise _engine_error(name, "compilation", exc) from None
    _registered[name] = None
    while len(_registered) > MAX_RULESETS:
        _delete(host, _registered.popitem(last=False)[0])
    return host


def _delete(host: _QuietHost, name: str) -> None:
    """Delete a registered ruleset: the Host's Python side keeps no other reference, so its C handle can go."""
    ruleset = host._ruleset_directory.pop(name)
    host._ruleset_list.remove(ruleset)
    _durable.durable_rules_engine.delete_ruleset(ruleset._handle)
