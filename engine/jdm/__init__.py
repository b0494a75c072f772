"""Interop with GoRules JDM (JSON Decision Model): export a policy as one decision table that the ZEN engine runs
with our answers, import such a table as a policy, and run ZEN on normalized facts (the [interop] extra)."""

from .build import JdmImport, import_jdm
from .export import input_schema, to_jdm
from .operators import JDM_OPERATORS, JdmOperator, cell_text
from .problems import JdmError, JdmProblem
from .zen import ZenAnswer, ZenTable


def from_jdm(doc, source: str = "<jdm>"):
    """The policy of a JDM document holding one decision table (a dict or its JSON text); raises JdmError."""
    return import_jdm(doc, source).policy


__all__ = ["JDM_OPERATORS", "JdmError", "JdmImport", "JdmOperator", "JdmProblem", "ZenAnswer", "ZenTable",
           "cell_text", "from_jdm", "import_jdm", "input_schema", "to_jdm"]
