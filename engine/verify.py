"""Verify a policy over its whole fact space: gaps, unreachable rules and overlaps, each with an example."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import regions
from .batch import cell_decisions
from .compiler import CompiledPolicy
from .decision import match
from .errors import EngineError
from .model import FindingKind, HitPolicy

MAX_CHECKED_REGIONS = 20_000  # up to this many regions durable_rules is asked about every one (seconds)
SAMPLE_CELLS = 10_000  # past it, random cells: half uniform over cells, half a uniform cell of a uniform region

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
    canonical_cells: int  # regions the space was cut into (engine.regions); the name is kept for callers
    engine_calls: int
    wins: dict[str, int]
    gaps: list[Finding] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    overlaps: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    engine_check: str = "every region"  # which cells durable_rules was asked about

    @property
    def ok(self) -> bool:
        """No gaps, no unreachable rules, and no overlaps where the hit policy is 'unique'."""
        return not self.gaps and not self.unreachable and not (self.hit_policy == "unique" and self.overlaps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def __str__(self) -> str:
        lines = [f"policy {self.policy} {self.version}: {self.cells} cells in {self.canonical_cells} regions "
                 f"({self.engine_calls} engine calls on {self.engine_check}, {self.seconds:.2f} s), "
                 f"hit policy {self.hit_policy}"]
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
    """Cut the fact space into regions of one outcome (engine.regions), classify them by their weights, and
    check that durable_rules tells the same story."""
    started = time.perf_counter()
    spec = compiled.spec
    cells = cell_decisions(compiled)
    space = cells.space
    found = regions.of_space(space)
    ranked = [rule.id for rule in spec.ranked_rules()]
    weight = np.zeros(len(found.outcomes), dtype=np.int64)
    np.add.at(weight, found.outcome, found.weights)
    _, first = np.unique(found.outcome, return_index=True)  # every outcome is some region's: first[o] is one
    reps = found.representatives()
    rep_ids = found.cell_ids(reps)

    def finding(kind: FindingKind, rules: tuple[str, ...], winner: str | None, count: int, region: int) -> Finding:
        return Finding(kind, rules, winner, count, space.example(int(rep_ids[region])), found.describe(region))

    wins = {rule: 0 for rule in ranked}
    gaps: list[Finding] = []
    overlaps: list[tuple[tuple[int, ...], Finding]] = []
    shown: list[int] = []
    for o, matched_rules in enumerate(found.outcomes):
        m = tuple(ranked[r] for r in matched_rules)
        if not m:
            for i in np.flatnonzero(found.outcome == o):
                gaps.append(finding("gap", (), None, int(found.weights[i]), int(i)))
                shown.append(int(i))
            continue
        winner = m[0] if spec.hit_policy == "first" or len(m) == 1 else None
        if winner:
            wins[winner] += int(weight[o])
        if len(m) > 1:
            overlaps.append((matched_rules, finding("overlap", m, winner, int(weight[o]), int(first[o]))))
            shown.append(int(first[o]))
    engine_calls, checked = _cross_check(compiled, found, ranked, reps, rep_ids, np.array(shown, dtype=np.int64))
    return VerifyReport(
        policy=spec.name, version=spec.version, hit_policy=spec.hit_policy, cells=found.cells,
        canonical_cells=len(found), engine_calls=engine_calls, wins=wins,
        gaps=gaps, unreachable=[rule for rule, count in wins.items() if count == 0],
        overlaps=[f for _, f in sorted(overlaps, key=lambda pair: (-pair[1].cells, pair[0]))],
        seconds=time.perf_counter() - started, engine_check=checked)


def _cross_check(compiled: CompiledPolicy, found: regions.Regions, ranked: list[str], reps: np.ndarray,
                 rep_ids: np.ndarray, shown: np.ndarray) -> tuple[int, str]:
    """Ask durable_rules about every region (through the batch's table of canonical cells), or, past
    MAX_CHECKED_REGIONS, about SAMPLE_CELLS random cells and the example of every finding (`shown`: their
    regions); raise EngineError where it tells another story than the region. Returns (engine calls, what was
    checked)."""
    cells = cell_decisions(compiled)
    space = cells.space
    if len(found) <= MAX_CHECKED_REGIONS:
        canonical, inverse = np.unique(space.canonical(rep_ids), return_inverse=True)
        asked_before = len(cells.matched)
        asked = cells.ask(canonical)
        _compare(compiled, found, ranked, np.arange(len(found)), canonical[inverse.reshape(-1)],
                 [asked[k] for k in inverse.reshape(-1)])
        return len(cells.matched) - asked_before, "every region"
    rng = np.random.default_rng(0)  # the same cells on every run: a report does not change by chance
    by_cells, cell_bins = found.sample(SAMPLE_CELLS // 2, rng, by="cells")
    by_regions, region_bins = found.sample(SAMPLE_CELLS - SAMPLE_CELLS // 2, rng, by="regions")
    region = np.concatenate([by_cells, by_regions])
    ids = found.cell_ids(np.vstack([cell_bins, region_bins]))
    answers: list[tuple[str, ...] | EngineError] = []
    for cell in ids.tolist():
        try:
            answers.append(match(compiled, space.facts_of(cell) or {}))
        except EngineError as exc:
            if exc.code is None:
                raise
            answers.append(exc)
    _compare(compiled, found, ranked, region, ids, answers)
    return len(ids), f"{SAMPLE_CELLS:,} random cells of {len(found):,} regions"


def _compare(compiled: CompiledPolicy, found: regions.Regions, ranked: list[str], region: np.ndarray, ids: np.ndarray,
             answers: list[tuple[str, ...] | EngineError]) -> None:
    for i, cell, m in zip(region.tolist(), ids.tolist(), answers, strict=True):
        if isinstance(m, EngineError):  # a cell past one of durable_rules' limits: nothing to classify
            raise EngineError(m.ruleset, "verification", m.kind, m.code)
        expected = tuple(ranked[r] for r in found.outcomes[int(found.outcome[i])])
        if m != expected:  # the engine and the condition tables must tell the same story
            raise EngineError(compiled.ruleset, "verification", f"cell {cell}: engine {m}, tables {expected}")
