"""Shared test fixtures and constants: one as-of time, the bundled policy, its legacy variant and the fixture
policies (each loaded once), and the paths tests read."""

from __future__ import annotations

import functools
import json
import math
import re
import subprocess
import sys
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st

import engine
from engine.model import PolicySpec
from engine.policy import EXAMPLES_AS_OF as _EXAMPLES_AS_OF
from engine.space import FactSpace

HERE = Path(__file__).parent
ROOT = HERE.parent
POLICIES = HERE / "fixtures" / "policies"
LEGACY = engine.RULES_DIR / "variants" / "legacy-72h.yaml"
SAMPLE_ORDERS = ROOT / "notebooks" / "data" / "orders.csv"
SCRIPT = Path(sys.executable).parent / "cancel-rules"  # the venv's command

# The time elapsed hours and days are counted to: the README quickstart's, so a test reads like the docs.
AS_OF = "2026-11-26T12:00:00Z"
AS_OF_DT = datetime(2026, 11, 26, 12, tzinfo=UTC)
# The time the policy's own examples are judged at (engine.policy.EXAMPLES_AS_OF): tests that replay the
# examples, or orders written alongside them, decide at it.
EXAMPLES_AS_OF = _EXAMPLES_AS_OF
EXAMPLES_AS_OF_DT = datetime(2026, 1, 1, tzinfo=UTC)


@functools.cache
def _load(name: str, overrides: str) -> engine.Policy:
    base = engine.load() if name == "default" else engine.load(LEGACY) if name == "legacy" else \
        engine.load(POLICIES / f"{name}.yaml")
    edits: dict[str, Any] = json.loads(overrides)
    return base.with_parameters(**edits) if edits else base


def load_policy(name: str, **overrides: Any) -> engine.Policy:
    """'default' (the bundled policy), 'legacy' (its 72 h variant) or tests/fixtures/policies/<name>.yaml, with
    parameters overridden as Policy.with_parameters takes them; each distinct call is loaded once."""
    return _load(name, json.dumps(overrides, sort_keys=True))


@pytest.fixture(scope="session")
def policy() -> engine.Policy:
    """The bundled policy."""
    return load_policy("default")


@pytest.fixture(scope="session")
def legacy() -> engine.Policy:
    """The bundled policy's legacy variant (72 h for the seller to answer)."""
    return load_policy("legacy")


@st.composite
def threshold_orders(draw: st.DrawFn, spec: PolicySpec) -> dict[str, Any]:
    """An order with every fact a rule reads: each enum value (or absent when optional), numbers on and beside
    every threshold of the policy's fact space."""
    order: dict[str, Any] = {"order_id": "h"}
    for axis in FactSpace.of(spec).axes:
        fact = spec.facts[axis.fact]
        if fact.type == "enum":
            value = draw(st.sampled_from([*fact.values, *([None] if not fact.required else [])]))
        else:
            low = fact.min if fact.min is not None else 0.0
            high = fact.max if fact.max is not None else 1000.0
            near = sorted({v for p in axis.points for v in (p, math.nextafter(p, -math.inf), p + 0.5, p - 0.5)
                           if low <= v <= high})
            value = draw(st.one_of(st.none(), st.sampled_from(near or [low]), st.floats(low, high)))
        if value is not None:
            order[axis.fact] = value
    return order


def header_variants(name: str) -> st.SearchStrategy:
    """Spellings of a column name as exports write it: case, padding, spaces for underscores."""
    return st.sampled_from([name, name, name.upper(), f" {name} ", name.replace("_", " ").title(),
                            f"{name.title()}  "])


def rule_rows(html: str) -> dict[str, dict]:
    """rule id -> {'state': fired|also|none, 'passed': [bool per ticked condition], 'html': row html}."""
    out = {}
    for row in re.findall(r"<tr class='cr-rule.*?</tr>", html, flags=re.S):
        rule = re.search(r"data-rule='([^']+)'", row).group(1)
        state = re.search(r"data-state='(\w+)'", row).group(1)
        passed = [p == "true" for p in re.findall(r"data-passed='(\w+)'", row)]
        out[rule] = {"state": state, "passed": passed, "html": row}
    return out


def text(html: str) -> str:
    """Visible text: block elements separated by a space, inline ones joined, entities decoded."""
    blocks = re.sub(r"</?(?:div|td|th|tr|li|ul|table|caption|br)\b[^>]*>", " ", html)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", blocks)))


def upload(view: Any, name: str, content: bytes) -> None:
    """A file uploaded to a BatchView, as the browser's file picker hands it over."""
    view.upload.value = ({"name": name, "type": "text/csv", "size": len(content), "content": memoryview(content),
                          "last_modified": AS_OF_DT},)


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """A server process stopped: asked with SIGTERM, killed after timeout seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
