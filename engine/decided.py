"""A batch's decisions as compact per-row codes, and the decision columns built from them: a pandas frame's object
columns (Policy.evaluate) or an Arrow table's dictionary columns (the CSV run), which the CSV writer writes alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .model import PolicySpec, Rule
from .tabular import OUTPUT_COLUMNS, Summary


@dataclass
class Texts:
    """Distinct texts, each held once however many rows show it; a row holds its text's code (-1: none)."""

    texts: list[str] = field(default_factory=list)
    _codes: dict[str, int] = field(default_factory=dict, repr=False)

    def code(self, text: str | None) -> int:
        if text is None:
            return -1
        found = self._codes.get(text)
        if found is None:
            found = self._codes[text] = len(self.texts)
            self.texts.append(text)
        return found

    def codes(self, texts: np.ndarray) -> np.ndarray:
        """The code of each text of an object array (None: -1)."""
        local, uniques = pd.factorize(texts)
        return self.recode(local, uniques.tolist())

    def recode(self, local: np.ndarray, texts: Sequence[str | None]) -> np.ndarray:
        """Codes into texts (-1: none) as codes into this table."""
        table = np.array([self.code(t) for t in texts] + [-1], dtype=np.int32)
        return table[local]  # local -1 picks the appended -1

    def extend(self, local: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Codes into texts (distinct among themselves) as codes into this table, the texts appended as they are: a
        text met before is held twice (one line of Python per batch of texts, not per text)."""
        base = len(self.texts)
        self.texts.extend(texts)
        return (local + base).astype(np.int32)

    def objects(self, codes: np.ndarray) -> np.ndarray:
        """The texts as an object array (None where the code is -1), each text object shared by its rows."""
        return np.array([*self.texts, None], dtype=object)[codes]

    def arrow(self, codes: np.ndarray) -> pa.DictionaryArray:
        return _dictionary(codes, self.texts)


def _dictionary(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    """Codes into values as an Arrow dictionary array; code -1 is null (written as an empty cell)."""
    indices = pa.array(codes.astype(np.int32, copy=False), mask=codes < 0, type=pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, type=pa.string()))


@dataclass
class Decided:
    """Per row: the winner's rank in rules (spec.ranked_rules()) or -1, and codes of its message and error."""

    rules: tuple[Rule, ...]
    version: str
    winner: np.ndarray  # int64 rank, -1: no winner
    message: np.ndarray  # int32 code into messages
    error: np.ndarray  # int32 code into errors
    messages: Texts = field(default_factory=Texts)
    errors: Texts = field(default_factory=Texts)

    @classmethod
    def empty(cls, spec: PolicySpec, n: int) -> Decided:
        """n rows, none decided yet."""
        return cls(tuple(spec.ranked_rules()), spec.version, np.full(n, -1, dtype=np.int64),
                   np.full(n, -1, dtype=np.int32), np.full(n, -1, dtype=np.int32))

    def set_row(self, i: int, rule_id: str | None, text: str, error: str | None) -> None:
        """Row i as the per-row path decided it (decide_row's rule, message and error; an empty message is none)."""
        self.winner[i] = -1 if rule_id is None else self._rank[rule_id]
        self.message[i] = self.messages.code(text or None)
        self.error[i] = self.errors.code(error)

    @cached_property
    def _rank(self) -> dict[str, int]:
        return {rule.id: k for k, rule in enumerate(self.rules)}

    def frame_columns(self) -> dict[str, Any]:
        """The decision columns of a pandas frame, by name: object columns (no string inference) and the version
        as a categorical (a byte a row, not a pointer)."""
        n = len(self.winner)
        actions = np.array([r.action for r in self.rules] + [None], dtype=object)
        ids = np.array([r.id for r in self.rules] + [None], dtype=object)
        return {"action": actions[self.winner], "rule_id": ids[self.winner],
                "message": self.messages.objects(self.message), "error": self.errors.objects(self.error),
                "policy_version": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[self.version])}

    def arrow_columns(self) -> list[pa.Array]:
        """The decision columns in OUTPUT_COLUMNS order as Arrow dictionary arrays: no Python object per row."""
        made = {"action": _dictionary(self.winner, [r.action for r in self.rules]),
                "rule_id": _dictionary(self.winner, [r.id for r in self.rules]),
                "message": self.messages.arrow(self.message), "error": self.errors.arrow(self.error),
                "policy_version": _dictionary(np.zeros(len(self.winner), dtype=np.int32), [self.version])}
        return [made[name] for name in OUTPUT_COLUMNS]

    def count_into(self, summary: Summary, first_row: int) -> None:
        """Add these rows to summary, counted from the codes (first_row: the 1-based number of row 0)."""
        summary.add_codes(len(self.winner), (self.winner, [r.action for r in self.rules]),
                          (self.winner, [r.id for r in self.rules]), (self.error, self.errors.texts), first_row)
