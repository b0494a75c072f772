"""Errors the engine raises on purpose, in families: rule files, order data, input files, usage, the engine.

Each carries structured fields, a full str() and the exit status the command line ends with (`exit_code`).
Anything else that escapes a command is a bug: the CLI says so and exits 70."""

from __future__ import annotations

from dataclasses import dataclass, field


class CancelRulesError(Exception):
    """Base of every error the engine raises on purpose: something about the input, reported in one line."""

    exit_code = 2  # the CLI's exit status: bad input


PolicyError = CancelRulesError  # the base's public name since 0.1


# ---------------------------------------------------------------------------------------------- rule files


class DefinitionError(CancelRulesError):
    """Family: a policy's definition is not valid (its rule files, an edit of it, two that cannot be compared)."""


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


class RuleError(DefinitionError):
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


class ParameterError(DefinitionError):
    """An edit of a policy's parameters names no parameter (or key) of it, or gives a value of the wrong shape."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return self.message


class UnknownRuleError(DefinitionError, KeyError):
    """A policy has no rule of this id (a KeyError too, as a missing key of the rules)."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        super().__init__(rule_id)

    def __str__(self) -> str:
        return f"no rule {self.rule_id!r}"


class ComparisonError(DefinitionError):
    """Two policies declare one fact with different types, so their decisions cannot be compared cell by cell."""

    def __init__(self, fact: str, types: tuple[str, str]) -> None:
        self.fact = fact
        self.types = types
        super().__init__(str(self))

    def __str__(self) -> str:
        first, second = self.types
        return (f"fact '{self.fact}' is {_article(first)} {first} in one policy and {_article(second)} {second} in "
                f"the other; they cannot be compared")


class SpaceTooLargeError(DefinitionError):
    """A policy's fact space has more cells than a 64-bit count holds, so its regions cannot be weighed."""

    def __init__(self, cells: int) -> None:
        self.cells = cells
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"the fact space has {self.cells:,} cells, more than verify and diff can count (2^63)"


@dataclass(frozen=True)
class JdmProblem:
    """One thing in a GoRules JDM document the rule language cannot express (or that is not a valid table),
    located by node, rule (row, 1-based in the table's order) and column."""

    source: str
    message: str
    row: int | None = None
    row_id: str | None = None  # the row's `_id`
    column: str | None = None  # the column's name (or field)
    node: str | None = None

    def __str__(self) -> str:
        where = [self.source]
        if self.node:
            where.append(f"node '{self.node}'")
        if self.row is not None:
            where.append(f"rule #{self.row}" + (f" (row id {self.row_id})" if self.row_id else ""))
        if self.column:
            where.append(f"column '{self.column}'")
        return ": ".join([where[0], ", ".join(where[1:])] if len(where) > 1 else where) + f": {self.message}"


class JdmError(DefinitionError):
    """A JDM document cannot be imported; every problem found is reported together (one: in one line)."""

    def __init__(self, problems: list[JdmProblem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    @property
    def source(self) -> str:
        return self.problems[0].source

    def __str__(self) -> str:
        if len(self.problems) == 1:  # one line: the problem names the document itself
            return str(self.problems[0])
        return "\n".join([f"{len(self.problems)} problems in {self.source}:", *(str(p) for p in self.problems)])


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


# ---------------------------------------------------------------------------------------------- order data


@dataclass(frozen=True)
class FieldProblem:
    """One bad field of an order."""

    field: str
    value: object
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class OrderError(CancelRulesError):
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


# ---------------------------------------------------------------------------------------------- input files


@dataclass
class InputError(CancelRulesError):
    """A batch input cannot be read at all (missing required column, unreadable file)."""

    source: str
    message: str
    columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass
class CaseError(InputError):
    """A test case cannot be run: its expectation is missing or names no action or rule of the policy, its as-of
    is not a time, or its name repeats another's. Located by the file line the case starts on (or its row)."""

    line: int = 0  # the line of the cases file the case starts on; 0 when the cases are a frame
    row: int = 0  # the case's place among the cases, from 1
    case: str | None = None  # its name, when it has one

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else f"{self.source}: row {self.row}"
        name = f" case {self.case!r}:" if self.case else ""
        return f"{where}:{name} {self.message}"


# ---------------------------------------------------------------------------------------------- usage


class UsageError(CancelRulesError, ValueError):
    """A command-line option, argument or environment variable has a value the engine cannot use (a ValueError
    too, as the wrong value it is)."""

    def __init__(self, message: str, option: str | None = None) -> None:
        self.message = message
        self.option = option  # the flag, argument or variable at fault, when one is
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class AsOfError(UsageError):
    """The as-of time is not an ISO 8601 timestamp."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"as-of time is not an ISO 8601 timestamp: {value!r}", "as_of")


# ---------------------------------------------------------------------------------------------- the engine


class EngineError(CancelRulesError):
    """durable_rules failed in a way the wrapper could not absorb; its raw text is never shown.

    Not the user's fault (exit 70), except past one of durable_rules' documented limits (`code` set): that is
    the policy or the order asking too much (exit 2)."""

    exit_code = 70

    def __init__(self, ruleset: str, operation: str, kind: str, code: int | None = None) -> None:
        self.ruleset = ruleset
        self.operation = operation
        self.kind = kind
        self.code = code  # durable_rules' error code of a limit it hit (303: one order matches too much)
        if code is not None:
            self.exit_code = 2
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"rules engine failed during {self.operation} on ruleset '{self.ruleset}' ({self.kind})"
