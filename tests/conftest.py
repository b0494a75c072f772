"""Shared test fixtures and constants: one as-of time, the bundled policy, its legacy variant and the fixture
policies (each loaded once), and the paths tests read."""

from __future__ import annotations

import functools
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.policy import EXAMPLES_AS_OF as _EXAMPLES_AS_OF

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
