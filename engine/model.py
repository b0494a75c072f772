"""Plain frozen data describing a policy: facts schema, parameters, actions and rules (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from .errors import UnknownRuleError

if TYPE_CHECKING:  # the operators are rows of operators.py, a layer above this plain data
    from .operators import OperatorName

# The kinds of things, each a Literal (the operators' names are operators.OperatorName, next to their rows).
FactType = Literal["enum", "number", "string"]
HitPolicy = Literal["first", "unique"]  # first: the highest priority wins; unique: two matches are an error
FindingKind = Literal["gap", "overlap"]  # of a verify report
ChangeKind = Literal["time", "value"]  # of what would change a decision: time passing, or another fact value
Method = Literal["cells", "rows"]  # batch evaluation: once per distinct cell, or once per row (the reference)
OutputFormat = Literal["csv", "csv-folder", "parquet"]  # what a Dask run writes
FACT_TYPES: tuple[FactType, ...] = get_args(FactType)
HIT_POLICIES: tuple[HitPolicy, ...] = get_args(HitPolicy)
TIME_UNITS = {"hours": 3600.0, "days": 86400.0}
MAX_NUMBER = 1e9  # largest number fact accepted
# Enum facts as arrays of codes (engine.frames, engine.space): a value's position in FactSpec.values, or one of these.
NOT_GIVEN = -1  # enum code of a fact that is not given
INVALID = -2  # enum code of a value that is not valid


@dataclass(frozen=True)
class FactSpec:
    name: str
    type: FactType
    required: bool = False
    default: Any = None
    values: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    from_timestamp: str | None = None
    per: str = "hours"
    description: str = ""

    @property
    def optional(self) -> bool:
        """True when the fact may be 'not given' (no value and no default)."""
        return not self.required and self.default is None

    def label(self, value: str) -> str:
        return self.labels.get(value, value)

    @property
    def unit_suffix(self) -> str:
        """The unit as shown after a value (' h', ' %'), or '' for a fact without one."""
        return f" {self.unit}" if self.unit else ""


@dataclass(frozen=True)
class KeyedParameter:
    """A parameter whose value depends on another fact (refund days by payment method)."""

    name: str
    by: str
    values: Mapping[str, float]
    default: float | None = None

    def lookup(self, key: str | None) -> float | None:
        if key is None:
            return self.default
        return self.values.get(key, self.default)


@dataclass(frozen=True)
class ParamRef:
    name: str

    def __str__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True)
class Condition:
    fact: str
    op: OperatorName
    value: Any  # constant, ParamRef, or a tuple of them for in / not_in / between
    line: int = 0
    col: int = 0


@dataclass(frozen=True)
class Example:
    order: Mapping[str, Any]
    expect: str
    rule: str | None = None
    line: int = 0
    col: int = 0


@dataclass(frozen=True)
class Rule:
    id: str
    priority: int
    index: int
    conditions: tuple[Condition, ...]
    action: str
    message: str = ""
    warnings: tuple[str, ...] = ()
    source: str = ""
    examples: tuple[Example, ...] = ()
    line: int = 0
    col: int = 0


@dataclass(frozen=True)
class PolicySpec:
    name: str
    version: str
    hit_policy: HitPolicy
    facts: Mapping[str, FactSpec]
    parameters: Mapping[str, float | KeyedParameter]
    actions: Mapping[str, str]
    rules: tuple[Rule, ...]
    description: str = ""
    path: str = "<memory>"
    examples: tuple[Example, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()

    def ranked_rules(self) -> tuple[Rule, ...]:
        """Rules in firing order: highest priority first, then file order."""
        return tuple(sorted(self.rules, key=lambda r: (-r.priority, r.index)))

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise UnknownRuleError(rule_id)

    def keyed_parameter(self, cond: Condition) -> KeyedParameter | None:
        """The keyed parameter a condition compares with, if any (it makes the condition read two facts)."""
        for item in cond.value if isinstance(cond.value, tuple) else (cond.value,):
            param = self.parameters[item.name] if isinstance(item, ParamRef) else None
            if isinstance(param, KeyedParameter):
                return param
        return None

    def read_facts(self) -> set[str]:
        """Facts the rules read: those a condition tests, and those a keyed parameter is keyed by."""
        used = {c.fact for r in self.rules for c in r.conditions}
        return used | {p.by for p in self.parameters.values() if isinstance(p, KeyedParameter)}

    def resolve(self, value: Any, facts: Mapping[str, Any]) -> Any:
        """A condition constant with parameters replaced by their values for these facts."""
        if isinstance(value, tuple):
            return tuple(self.resolve(v, facts) for v in value)
        if isinstance(value, ParamRef):
            param = self.parameters[value.name]
            if isinstance(param, KeyedParameter):
                return param.lookup(facts.get(param.by))
            return param
        return value

    def parameter_values(self) -> dict[str, Any]:
        """Parameters as plain JSON-ready values."""
        out: dict[str, Any] = {}
        for name, param in self.parameters.items():
            if isinstance(param, KeyedParameter):
                out[name] = {"by": param.by, "values": dict(param.values), "default": param.default}
            else:
                out[name] = param
        return out
