"""Problems of a JDM document, each located by node, rule (row) and column, and the error collecting them."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PolicyError


@dataclass(frozen=True)
class JdmProblem:
    """One thing in a JDM document this rule language cannot express (or that is not a valid table)."""

    source: str
    message: str
    row: int | None = None  # 1-based, in the table's order
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


class JdmError(PolicyError):
    """A JDM document cannot be imported (or a policy exported); every problem found is reported together."""

    def __init__(self, problems: list[JdmProblem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    @property
    def source(self) -> str:
        return self.problems[0].source

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in {self.source}:"
        return "\n".join([head, *(str(p) for p in self.problems)])
