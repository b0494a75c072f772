"""Pack a policy's durable_rules rules into shards that each stay inside the engine's fixed sizes.

durable_rules 2.0.28 compiles a ruleset into a tree of tests (rete.c): a rule's tests in order, rules whose first
tests are the same sharing those nodes, and every 'or' joining its branches in a fresh node. Its sizes are fixed
arrays (rules.h, rete.h, state.h, events.c); past one it fails, writes past the array, or loops forever:

- a node's rule list (BETA_LIST_LENGTH 256, zero-terminated): 255 rules ending on the same tests (error 108);
- a node's branch list (NEXT_LIST_LENGTH 128): 127 'given: false' tests and 'or' joins after it (error 107);
- a node's test table (NEXT_BUCKET_LENGTH 512, open addressing): 511 other distinct tests after it (one more
  and its compiler, and its evaluation, never return);
- the evaluation stack (MAX_STACK_SIZE 64): each test that holds pushes its node until it is visited (303);
- a rule's expression sequence (MAX_SEQUENCE_EXPRESSIONS 32): 14 and/or groups besides the wrapper's (113);
- a ruleset's rules (MAX_ACTIONS 4096, error 106) and a message's properties (MAX_OBJECT_PROPERTIES 255, 302).

Every size is per ruleset, so a policy is spread over as many rulesets (shards) as it needs, each filled well
inside every limit (SHARD_*: two probes of the edges disagreed by one), and the matches of all shards are merged
in firing order. The stack is bounded before the engine runs: a visited node pushes the tests that hold after
it, so it holds at most k(n) = the joins after n plus, per fact, the most tests on that fact one value passes;
the deepest stack from n is then at most k(n) - 1 + max(1, the deepest from any child). A rule that does not fit
an empty shard by itself (too many groups, a huge 'in' list) is split at an 'or' into two engine rules with
the same action, each taking half of its branches; only a rule past MAX_PIECES pieces is refused, located.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RuleError, RuleProblem
from .model import PolicySpec

if TYPE_CHECKING:  # numpy is imported when a policy is compiled, not by `import engine` (nor `cancel-rules --help`)
    import numpy as np

Json = dict[str, Any]

# durable_rules' own sizes (the largest count that works), named in errors and by the tests.
MAX_RULES_PER_NODE = 255
MAX_BRANCHES_PER_NODE = 127
MAX_TESTS_PER_NODE = 511
MAX_STACK = 64
MAX_RULES_PER_RULESET = 4096
MAX_FACTS_PER_MESSAGE = 253  # 255 properties, 'sid' and 'id' among them
MAX_GROUPS_PER_RULE = 14  # besides the wrapper's own 'and'; exact: counted from the rule's JSON as rete.c does
# What one shard may use: well inside each of them.
SHARD_RULES_PER_NODE = 200
SHARD_BRANCHES_PER_NODE = 100
SHARD_TESTS_PER_NODE = 400
SHARD_STACK = 48
SHARD_RULES = 2000
SHARD_FACTS = 200
MAX_PIECES = 256  # engine rules one policy rule may be split into

_TEST_WORDS = ("$lt", "$lte", "$gt", "$gte", "$neq", "$ex", "$nex")


@dataclass(frozen=True)
class EngineRule:
    """One durable_rules rule: a whole policy rule, or one piece of a rule split to fit (`piece` set)."""

    rule_id: str  # the policy rule it fires for: its action name
    rank: int  # the policy rule's place in firing order
    terms: tuple[Json, ...]  # its conditions, all of which must hold
    piece: int | None = None

    @property
    def key(self) -> str:
        """Its name in the ruleset ('#' is in no rule id)."""
        return self.rule_id if self.piece is None else f"{self.rule_id}#{self.piece}"


def flatten(terms: Sequence[Json]) -> list[Json]:
    """The terms with every nested 'and' spliced in: the same tests in the same order (rete.c chains an 'and'
    from where it stands), and fewer groups."""
    out: list[Json] = []
    for term in terms:
        out += flatten(term["$and"]) if "$and" in term else [term]
    return out


def groups(term: Json) -> int:
    """and/or groups of a term, as rete.c counts them into a rule's expression sequence."""
    (key, value), = term.items()
    return 1 + sum(groups(item) for item in value) if key in ("$and", "$or") else 0


def _test(term: Json) -> tuple[str, str, Any]:
    """(fact, operator, constant) of a single test; '$eq' for an equality."""
    (key, value), = term.items()
    if key in _TEST_WORDS:
        (fact, constant), = value.items()
        return fact, key, constant
    return key, "$eq", value


def _leaves(term: Json) -> Iterator[tuple[str, str, Any]]:
    (key, value), = term.items()
    if key in ("$and", "$or"):
        for item in value:
            yield from _leaves(item)
    else:
        yield _test(term)


class _Values:
    """A few values of each fact, with 'not given' (None), such that every test's truth is the same at some
    one of them as at any other value: each constant, one between each two, one beyond each end, one other text."""

    def __init__(self, rules: Sequence[EngineRule]) -> None:
        constants: dict[str, set] = {}
        for rule in rules:
            for term in rule.terms:
                for fact, op, constant in _leaves(term):
                    if op not in ("$ex", "$nex"):
                        constants.setdefault(fact, set()).add(constant)
        self.values: dict[str, list] = {}
        for fact, found in constants.items():
            numbers = sorted({float(c) for c in found if isinstance(c, int | float) and not isinstance(c, bool)})
            between = [(a + b) / 2 for a, b in zip(numbers, numbers[1:], strict=False)]
            ends = [numbers[0] - 1, numbers[-1] + 1] if numbers else []
            texts = sorted({c for c in found if isinstance(c, str)})
            self.values[fact] = [None, *numbers, *between, *ends, *texts, *(["\0other"] if texts else [])]
        self._truth: dict[tuple, np.ndarray] = {}

    def truth(self, fact: str, op: str, constant: Any) -> np.ndarray:
        """1 where the test holds at each value of the fact (or might: a comparison of unlike types)."""
        key = (fact, op, type(constant), constant)
        if key not in self._truth:
            import numpy as np

            self._truth[key] = np.array([_holds(op, v, constant) for v in self.values.get(fact, [None])], np.int32)
        return self._truth[key]


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: a == b, "$neq": lambda a, b: a != b, "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b, "$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b}


def _holds(op: str, value: Any, constant: Any) -> bool:
    if op in ("$ex", "$nex"):
        return (value is None) == (op == "$nex")
    if value is None:  # the engine tests only the properties a message has
        return False
    if isinstance(value, str) != isinstance(constant, str):
        return op != "$eq"  # not comparable: counted as holding, which only makes the bound safer
    return _COMPARE[op](value, constant)


@dataclass(eq=False)
class _Node:
    """One node of the engine's test tree, as one shard would build it."""

    parents: list[_Node] = field(default_factory=list)
    tests: dict[tuple, _Node] = field(default_factory=dict)  # the test table
    absent: dict[tuple, _Node] = field(default_factory=dict)  # 'given: false' tests: the branch list
    joins: list[_Node] = field(default_factory=list)  # 'or' joins: the branch list too, pushed whenever reached
    rules: int = 0
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # per fact: tests after it holding at each value
    pushed: int = 0  # the most nodes it pushes at once
    below: int = 0  # the deepest stack of any child
    depth: int = 0  # the deepest stack from here


class _Past(Exception):
    """A rule would take a shard past one of its sizes (the text says which)."""


class Shard:
    """Engine rules packed into one ruleset, with the model of its test tree that keeps it inside the limits."""

    def __init__(self, values: _Values) -> None:
        self.rules: list[EngineRule] = []
        self.facts: set[str] = set()
        self._values = values
        self._root = _Node()
        self._undo: list[Callable[[], object]] = []

    @property
    def stack(self) -> int:
        """The deepest evaluation stack any message could need."""
        return self._root.depth

    def add(self, rule: EngineRule) -> str | None:
        """Add the rule if the shard stays inside its sizes, else leave it as it was and say which it would pass."""
        facts = self.facts | {fact for term in rule.terms for fact, _, _ in _leaves(term)} - {"$s"}
        if len(self.rules) + 1 > SHARD_RULES:
            return f"more than {SHARD_RULES} rules in one ruleset"
        if len(facts) > SHARD_FACTS:
            return f"more than {SHARD_FACTS} facts in one message"
        self._undo = []
        try:
            node = self._root
            for term in rule.terms:
                node = self._walk(term, node)
            self._set(node, "rules", node.rules + 1)
            if node.rules > SHARD_RULES_PER_NODE:
                raise _Past(f"more than {SHARD_RULES_PER_NODE} rules end on the same tests")
            if self._root.depth > SHARD_STACK:
                raise _Past(f"more than {SHARD_STACK} tests could wait on the evaluation stack at once")
        except _Past as past:
            for undo in reversed(self._undo):
                undo()
            return str(past)
        self.rules.append(rule)
        self.facts = facts
        return None

    def _walk(self, term: Json, parent: _Node) -> _Node:
        (key, value), = term.items()
        if key == "$and":
            for item in value:
                parent = self._walk(item, parent)
            return parent
        if key == "$or":
            join = _Node()
            for item in value:
                end = self._walk(item, parent)
                self._link(end, join, end.joins)
                self._count(end)
            return join
        fact, op, constant = _test(term)
        table = parent.absent if op == "$nex" else parent.tests
        test = (fact, op, type(constant), constant)
        child = table.get(test)
        if child is None:
            child = _Node()
            self._link(parent, child, table, test)
            before = parent.counts.get(fact)
            truth = self._values.truth(fact, op, constant)
            parent.counts[fact] = truth if before is None else before + truth
            self._undo.append(lambda: _restore(parent.counts, fact, before))
            self._count(parent)
        return child

    def _link(self, parent: _Node, child: _Node, into: dict | list, key: tuple | None = None) -> None:
        if isinstance(into, dict):
            into[key] = child
            self._undo.append(lambda: into.pop(key))
        else:
            into.append(child)
            self._undo.append(into.pop)
        child.parents.append(parent)
        self._undo.append(child.parents.pop)
        if len(parent.tests) > SHARD_TESTS_PER_NODE:
            raise _Past(f"more than {SHARD_TESTS_PER_NODE} different tests follow the same tests")
        if len(parent.absent) + len(parent.joins) > SHARD_BRANCHES_PER_NODE:
            raise _Past(f"more than {SHARD_BRANCHES_PER_NODE} 'given: false' tests and 'in'/keyed branches "
                        "follow the same tests")

    def _count(self, node: _Node) -> None:
        """Recount what the node pushes at most, and carry a deeper stack up to every node above it."""
        self._set(node, "pushed", len(node.joins) + sum(int(c.max()) for c in node.counts.values()))
        self._lift(node)

    def _lift(self, node: _Node) -> None:
        depth = node.pushed - 1 + max(1, node.below) if node.pushed else 0
        if depth <= node.depth:
            return
        self._set(node, "depth", depth)
        for parent in node.parents:
            if depth > parent.below:
                self._set(parent, "below", depth)
                self._lift(parent)

    def _set(self, node: _Node, name: str, value: int) -> None:
        old = getattr(node, name)
        setattr(node, name, value)
        self._undo.append(lambda: setattr(node, name, old))


def _restore(counts: dict[str, np.ndarray], fact: str, before: np.ndarray | None) -> None:
    if before is None:
        del counts[fact]
    else:
        counts[fact] = before


def split(terms: tuple[Json, ...]) -> tuple[tuple[Json, ...], tuple[Json, ...]] | None:
    """The terms as two engine rules, each with half the branches of its biggest 'or' (None: no 'or' to split).
    A half of one branch is spliced in as plain terms."""
    ors = [k for k, term in enumerate(terms) if "$or" in term]
    if not ors:
        return None
    k = max(ors, key=lambda i: (groups(terms[i]), len(terms[i]["$or"])))
    branches = terms[k]["$or"]
    halves = branches[: len(branches) // 2], branches[len(branches) // 2:]
    return tuple((*terms[:k], *flatten([{"$or": half} if len(half) > 1 else half[0]]), *terms[k + 1:])
                 for half in halves)  # type: ignore[return-value]


def pack(spec: PolicySpec, rules: Sequence[EngineRule], always: EngineRule) -> list[Shard]:
    """The rules in shards, each into the first shard it fits in firing order; `always` (the catch-all) goes into
    every shard. A rule that fits no empty shard is split (RuleError, located at it, when that cannot help)."""
    values = _Values([*rules, always])
    shards: list[Shard] = []
    problems = [problem for rule in rules if (problem := _place(spec, rule, shards, values, always)) is not None]
    if problems:
        raise RuleError(problems)
    return shards


def _place(spec: PolicySpec, rule: EngineRule, shards: list[Shard], values: _Values, always: EngineRule
           ) -> RuleProblem | None:
    """Put the rule into a shard whole, or else split, piece by piece; the problem when it cannot be placed."""
    pieces = [rule.terms]
    done = 0
    while pieces:
        terms = pieces.pop()
        piece = rule if terms is rule.terms else EngineRule(rule.rule_id, rule.rank, terms, done)
        past = _groups_past(terms) or _fit(piece, shards, values, always)
        if past is None:
            done += 1
            continue
        halves = split(terms)
        if halves is None or done + len(pieces) + 2 > MAX_PIECES:
            how = "and it has no 'in', 'not_between' or keyed parameter left to split it at" if halves is None \
                else f"even split into {MAX_PIECES} engine rules"
            found = spec.rule(rule.rule_id)
            return RuleProblem(spec.path, found.line, found.col,
                               f"beyond what durable_rules can take: {past}, {how}", rule.rule_id)
        pieces += reversed(halves)
    return None


def _fit(rule: EngineRule, shards: list[Shard], values: _Values, always: EngineRule) -> str | None:
    """Add the rule to the first shard it fits, or to a new one; why not when it does not fit even alone."""
    if any(shard.add(rule) is None for shard in shards):
        return None
    shard = Shard(values)
    if shard.add(always) is not None:
        raise AssertionError("the catch-all alone does not fit a shard")
    past = shard.add(rule)
    if past is None:
        shards.append(shard)
    return past


def _groups_past(terms: tuple[Json, ...]) -> str | None:
    count = sum(groups(term) for term in terms)
    if count > MAX_GROUPS_PER_RULE:
        return (f"its conditions make {count} and/or groups ('in' and 'not_between' make one each, a keyed "
                f"parameter one per key and one more) and durable_rules allows at most {MAX_GROUPS_PER_RULE} per "
                "rule (error 113)")
    return None
