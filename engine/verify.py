"""Verify a policy over its whole fact space: gaps, unreachable rules and overlaps, each with an example."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .batch import cell_decisions
from .compiler import CompiledPolicy
from .errors import EngineError
from .model import FindingKind, HitPolicy


@dataclass(frozen=True)
class Finding:
    """A set of cells sharing one outcome: `rules` matched there (empty for a gap)."""

    kind: FindingKind
    rules: tuple[str, ...]
    winner: str | None
    cells: int
    example: dict[str, Any]
    region: dict[str, str]


@dataclass(frozen=True)
class VerifyReport:
    policy: str
    version: str
    hit_policy: HitPolicy
    cells: int
    canonical_cells: int
    engine_calls: int
    wins: dict[str, int]
    gaps: list[Finding] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    overlaps: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No gaps, no unreachable rules, and no overlaps where the hit policy is 'unique'."""
        return not self.gaps and not self.unreachable and not (self.hit_policy == "unique" and self.overlaps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def __str__(self) -> str:
        lines = [f"policy {self.policy} {self.version}: {self.cells} cells ({self.canonical_cells} distinct, "
                 f"{self.engine_calls} engine calls, {self.seconds:.2f} s), hit policy {self.hit_policy}"]
        lines.append(f"gaps: {len(self.gaps)}")
        lines += [f"  {g.cells} cells decided by no rule, e.g. {g.example}" for g in self.gaps]
        lines.append(f"unreachable rules: {len(self.unreachable)}" +
                     (f" ({', '.join(self.unreachable)})" if self.unreachable else ""))
        severity = "errors" if self.hit_policy == "unique" else "resolved by priority"
        lines.append(f"overlaps: {len(self.overlaps)} ({severity})")
        lines += [f"  {o.cells} cells match {', '.join(o.rules)}; {o.winner or 'no rule'} wins, e.g. {o.example}"
                  for o in self.overlaps]
        lines.append("wins: " + ", ".join(f"{rule} {count}" for rule, count in self.wins.items()))
        lines.append("OK" if self.ok else "NOT OK")
        return "\n".join(lines)


def verify(compiled: CompiledPolicy) -> VerifyReport:
    """Ask durable_rules about every distinct cell and classify the outcomes."""
    started = time.perf_counter()
    spec = compiled.spec
    cells = cell_decisions(compiled)
    space = cells.space
    ids = np.arange(space.n_cells, dtype=np.int64)
    ids = ids[space.nonempty(ids)]
    canonical, inverse = np.unique(space.canonical(ids), return_inverse=True)
    asked_before = len(cells.matched)
    matched: list[tuple[str, ...]] = []
    for m in cells.ask(canonical):
        if isinstance(m, EngineError):  # a cell past one of durable_rules' limits: nothing to classify
            raise EngineError(m.ruleset, "verification", m.kind, m.code)
        matched.append(m)
    python_view = space.matches(canonical)
    ranked = [r.id for r in spec.ranked_rules()]
    for k, m in enumerate(matched):  # the engine and the condition tables must tell the same story
        expected = tuple(r for r in ranked if python_view[r][k])
        if expected != m:
            raise EngineError(compiled.ruleset, "verification",
                              f"cell {int(canonical[k])}: engine {m}, tables {expected}")
    weight = np.bincount(inverse, minlength=len(canonical))
    wins = {rule: 0 for rule in ranked}
    gaps: list[Finding] = []
    overlaps: dict[tuple[str, ...], Finding] = {}
    for k, m in enumerate(matched):
        count = int(weight[k])
        example = space.example(int(canonical[k]))
        if not m:
            gaps.append(Finding("gap", (), None, count, example, space.describe(int(canonical[k]))))
            continue
        winner = m[0] if spec.hit_policy == "first" or len(m) == 1 else None
        if winner:
            wins[winner] += count
        if len(m) > 1:
            if m in overlaps:
                old = overlaps[m]
                overlaps[m] = Finding("overlap", m, winner, old.cells + count, old.example, old.region)
            else:
                overlaps[m] = Finding("overlap", m, winner, count, example, space.describe(int(canonical[k])))
    return VerifyReport(
        policy=spec.name, version=spec.version, hit_policy=spec.hit_policy, cells=len(ids),
        canonical_cells=len(canonical), engine_calls=len(cells.matched) - asked_before, wins=wins,
        gaps=gaps, unreachable=[rule for rule, count in wins.items() if count == 0],
        overlaps=sorted(overlaps.values(), key=lambda f: -f.cells), seconds=time.perf_counter() - started)

