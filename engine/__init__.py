"""Order-cancellation decision service: declarative rules evaluated by durable_rules, explained."""

from .decision import ConditionResult, Decision, WhyNot
from .errors import EngineError, FieldProblem, InputError, OrderError, PolicyError, RuleError, RuleProblem
from .loader import DEFAULT_POLICY, RULES_DIR
from .policy import Policy, load

__all__ = [
    "ConditionResult", "Decision", "WhyNot", "EngineError", "FieldProblem", "InputError", "OrderError",
    "PolicyError", "RuleError", "RuleProblem", "DEFAULT_POLICY", "RULES_DIR", "Policy", "load",
]
