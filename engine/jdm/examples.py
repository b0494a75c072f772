"""An example order each rule wins (a policy's rules need one), found exactly over the fact space's bins.

Each rule is a box: per axis, the bins where its tests on that fact hold. An order wins rule R when it lies in
R's box and in the box of no rule before R (under hit policy unique: of no other rule). A depth-first search over
the axes keeps the rules still containing the partial order and stops as soon as one of them holds the whole rest
of R's box, so it answers "none" (the rule is never reached) as exactly as it finds an order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model import PolicySpec
from ..operators import check
from ..space import Axis, build_axes

SEARCH_BUDGET = 200_000  # search steps per rule; a table of a thousand rows needs a few hundred


class SearchExhausted(RuntimeError):
    """The search for one rule's example took more steps than SEARCH_BUDGET."""


def _bins(axis: Axis) -> list[tuple[int, Any]]:
    """The bins of an axis that hold a value (None: not given), with that value."""
    out = []
    for b in range(axis.size):
        value = axis.representative(b)
        if value is not None or b == axis.not_given_bin:
            out.append((b, value))
    return out


def winning_orders(spec: PolicySpec) -> dict[str, dict[str, Any] | None]:
    """Per rule id, facts of an order it wins (None when it wins none). Rules read no parameters here."""
    axes = build_axes(spec)
    values = [_bins(axis) for axis in axes]
    ranked = spec.ranked_rules()
    boxes: list[list[frozenset[int] | None]] = []
    for rule in ranked:
        box: list[frozenset[int] | None] = []
        for axis, bins in zip(axes, values, strict=True):
            conditions = [c for c in rule.conditions if c.fact == axis.fact]
            box.append(None if not conditions else frozenset(
                b for b, v in bins if all(check(spec, c, {axis.fact: v}).passed for c in conditions)))
        boxes.append(box)
    out: dict[str, dict[str, Any] | None] = {}
    for i, rule in enumerate(ranked):
        others = boxes[:i] if spec.hit_policy == "first" else boxes[:i] + boxes[i + 1:]
        target = [frozenset(b for b, _ in bins) if box is None else box
                  for box, bins in zip(boxes[i], values, strict=True)]
        found = _search(target, others, [axis.not_given_bin for axis in axes])
        if found is None:
            out[rule.id] = None
            continue
        lookup = [dict(bins) for bins in values]
        out[rule.id] = {axis.fact: lookup[a][b] for a, (axis, b) in enumerate(zip(axes, found, strict=True))
                        if lookup[a][b] is not None}
    return out


def _search(target: list[frozenset[int]], others: list[list[frozenset[int] | None]], blank: list[int | None]
            ) -> list[int] | None:
    """Bins (one per axis) inside target and inside none of others; facts left 'not given' where that is free."""
    n = len(target)

    def pick(k: int) -> int:
        b = blank[k]
        return b if b is not None and b in target[k] else min(target[k])

    if any(not bins for bins in target):
        return None
    steps = 0

    def covers(box: list[frozenset[int] | None], start: int) -> bool:
        return all((bins := box[k]) is None or target[k] <= bins for k in range(start, n))

    def dfs(a: int, alive: list[list[frozenset[int] | None]], chosen: list[int]) -> list[int] | None:
        nonlocal steps
        steps += 1
        if steps > SEARCH_BUDGET:
            raise SearchExhausted(f"no example found within {SEARCH_BUDGET} search steps")
        if not alive:
            return chosen + [pick(k) for k in range(a, n)]
        if a == n or any(covers(box, a) for box in alive):
            return None

        def kills(b: int) -> int:  # rules this bin leaves behind: try the most decisive bins first
            return sum(1 for box in alive if (bins := box[a]) is not None and b not in bins)

        for b in sorted(target[a], key=lambda b: (-kills(b), b != blank[a], b)):
            found = dfs(a + 1, [box for box in alive if (bins := box[a]) is None or b in bins], chosen + [b])
            if found is not None:
                return found
        return None

    return dfs(0, others, [])


def filler(fact: Mapping[str, Any]) -> Any:
    """A value for a required fact no rule reads (an example order must hold it)."""
    if fact["type"] == "enum":
        return next(iter(fact["values"]))
    if fact["type"] == "number":
        low, high = fact.get("min"), fact.get("max")
        return low if low is not None else (min(0, high) if high is not None else 0)
    return "x"
