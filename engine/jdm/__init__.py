"""Interop with GoRules JDM (JSON Decision Model): export a policy as one decision table that the ZEN engine runs
with our answers, import such a table as a policy, and run ZEN on normalized facts (the [interop] extra)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .build import JdmImport, import_jdm
from .export import input_schema, to_jdm
from .operators import JDM_OPERATORS, JdmOperator, cell_text
from .problems import JdmError, JdmProblem
from .zen import ZenAnswer, ZenTable

if TYPE_CHECKING:
    from ..policy import Policy


def from_jdm(doc: Mapping[str, Any] | str | bytes, source: str = "<jdm>") -> Policy:
    """The policy of a JDM document holding one decision table (a dict or its JSON text); raises JdmError."""
    return import_jdm(doc, source).policy


__all__ = ["JDM_OPERATORS", "JdmError", "JdmImport", "JdmOperator", "JdmProblem", "ZenAnswer", "ZenTable",
           "cell_text", "from_jdm", "import_jdm", "input_schema", "to_jdm"]
