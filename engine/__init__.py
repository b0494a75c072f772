"""Order-cancellation decision service: declarative rules evaluated by durable_rules, explained."""

from .compare import PolicyDiff
from .csvio import read_orders
from .decision import Decision, WhyNot
from .errors import (
    AsOfError,
    CancelRulesError,
    ComparisonError,
    DefinitionError,
    EngineError,
    FieldProblem,
    InputError,
    JdmError,
    OrderError,
    ParameterError,
    PolicyError,
    RuleError,
    RuleProblem,
    UnknownRuleError,
    UsageError,
)
from .loader import DEFAULT_POLICY, RULES_DIR
from .operators import ConditionResult
from .policy import Policy, diff, from_jdm, import_jdm, load
from .tabular import OUTPUT_COLUMNS
from .verify import Finding, VerifyReport

__all__ = [  # sorted
    "AsOfError", "CancelRulesError", "ComparisonError", "ConditionResult", "DEFAULT_POLICY", "Decision",
    "DefinitionError", "EngineError", "FieldProblem", "Finding", "InputError", "JdmError", "OUTPUT_COLUMNS",
    "OrderError",
    "ParameterError", "Policy", "PolicyDiff", "PolicyError", "RULES_DIR", "RuleError", "RuleProblem",
    "UnknownRuleError", "UsageError", "VerifyReport", "WhyNot", "diff", "from_jdm", "import_jdm", "load",
    "read_orders",
]
