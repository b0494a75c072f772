"""Error types: rule-file problems located by path:line:col, and per-field order problems."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RuleProblem:
    """One problem in a rule file, located at path:line:col (1-based)."""

    path: str
    line: int
    col: int
    message: str
    rule_id: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        rule = f" rule '{self.rule_id}':" if self.rule_id else ""
        hint = f" (did you mean '{self.hint}'?)" if self.hint else ""
        return f"{where}:{rule} {self.message}{hint}"


class PolicyError(Exception):
    """Base class of every error the engine raises on purpose."""


class RuleError(PolicyError):
    """A rule file (or a file it extends) has one or more problems; all are reported together."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    @property
    def path(self) -> str:
        return self.problems[0].path

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in {self.path}:"
        return "\n".join([head, *(str(p) for p in self.problems)])


@dataclass(frozen=True)
class FieldProblem:
    """One bad field of an order."""

    field: str
    value: object
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class OrderError(PolicyError):
    """An order cannot be decided: one or more fields are missing or invalid."""

    def __init__(self, problems: list[FieldProblem], order_id: str | None = None) -> None:
        self.problems = list(problems)
        self.order_id = order_id
        super().__init__(str(self))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]

    def __str__(self) -> str:
        return "; ".join(str(p) for p in self.problems)


class EngineError(PolicyError):
    """durable_rules failed in a way the wrapper could not absorb; its raw text is never shown."""

    def __init__(self, ruleset: str, operation: str, kind: str, code: int | None = None) -> None:
        self.ruleset = ruleset
        self.operation = operation
        self.kind = kind
        self.code = code  # durable_rules' error code of a limit it hit (303: one order matches too much)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"rules engine failed during {self.operation} on ruleset '{self.ruleset}' ({self.kind})"


@dataclass
class InputError(PolicyError):
    """A batch input cannot be read at all (missing required column, unreadable file)."""

    source: str
    message: str
    columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"
