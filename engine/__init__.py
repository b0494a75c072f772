"""Order-cancellation decision service: declarative rules evaluated by durable_rules, explained."""

from .compare import PolicyDiff
from .csvio import read_orders
from .decision import Decision, WhyNot
from .errors import EngineError, FieldProblem, InputError, OrderError, PolicyError, RuleError, RuleProblem
from .loader import DEFAULT_POLICY, RULES_DIR
from .operators import ConditionResult
from .policy import Policy, diff, load
from .tabular import OUTPUT_COLUMNS
from .verify import Finding, VerifyReport

__all__ = [
    "ConditionResult", "Decision", "WhyNot", "EngineError", "FieldProblem", "InputError", "OrderError",
    "PolicyError", "RuleError", "RuleProblem", "DEFAULT_POLICY", "RULES_DIR", "Policy", "load", "diff",
    "OUTPUT_COLUMNS", "read_orders", "PolicyDiff", "Finding", "VerifyReport",
]
