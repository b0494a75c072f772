"""Interop with GoRules JDM (JSON Decision Model): export a policy as one decision table that the ZEN engine runs
with our answers, import such a table as a policy, and run ZEN on normalized facts (the [interop] extra).

This package sits below the facade: `Policy.to_jdm`, `engine.import_jdm` and `engine.from_jdm` (engine.policy)
are the public ways in."""

from __future__ import annotations

from ..errors import JdmError, JdmProblem
from .build import JdmImport, import_table
from .export import input_schema, to_jdm
from .operators import JDM_OPERATORS, JdmOperator, cell_text
from .zen import ZenAnswer, ZenTable

__all__ = ["JDM_OPERATORS", "JdmError", "JdmImport", "JdmOperator", "JdmProblem", "ZenAnswer", "ZenTable",
           "cell_text", "import_table", "input_schema", "to_jdm"]
