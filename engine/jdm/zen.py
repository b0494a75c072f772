"""Run a JDM document on GoRules' ZEN engine (`zen-engine`, the [interop] extra) the way our hit policy reads it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ZenAnswer:
    """What ZEN's table decided: the row's outputs, or why there is no decision (as Decision.error says it)."""

    action: str | None
    rule_id: str | None
    message_template: str = ""
    warnings: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


class ZenTable:
    """A JDM document loaded into zen-engine. Facts go in as JSON text: from a dict, zen-engine 2.1 reads a float
    with about 15 significant digits (23.999999999999996 meets `>= 24`); from JSON text, as its decimal."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        try:
            import zen
        except ImportError as exc:
            raise ImportError(f"running ZEN needs the [interop] extra: pip install 'cancel-rules[interop]' ({exc})"
                              ) from None
        table = next(n for n in doc["nodes"] if n["type"] == "decisionTableNode")
        self.collect = table["content"].get("hitPolicy") == "collect"
        self.decision = zen.ZenEngine().create_decision(json.dumps(doc))

    def evaluate(self, facts: Mapping[str, Any]) -> Any:
        """ZEN's raw result for these facts (an object for hit policy first, a list for collect)."""
        return self.decision.evaluate(json.dumps(dict(facts)))["result"]

    def decide(self, facts: Mapping[str, Any]) -> ZenAnswer:
        """The answer for normalized facts: the first matching row, or under collect the only one."""
        return self.answer(self.evaluate(facts))

    def answer(self, result: Any) -> ZenAnswer:
        """ZEN's raw result read as our hit policy reads it."""
        if self.collect:
            if len(result) > 1:
                ids = ", ".join(str(r.get("rule_id")) for r in result)
                return ZenAnswer(None, None, error=f"several rules match under hit policy 'unique': {ids}")
            result = result[0] if result else {}
        if not result:
            return ZenAnswer(None, None, error="no rule decides this order (policy gap)")
        return ZenAnswer(result.get("action"), result.get("rule_id"), result.get("message_template", ""),
                         tuple(result.get("warnings") or ()), result.get("parameters", {}))
