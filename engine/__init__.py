"""Order-cancellation decision service: declarative rules evaluated by durable_rules, explained."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# durable_rules is checked on import (a broken build is named at once, with the command installing a working one);
# the compiler needs neither pandas nor pyarrow.
from . import compiler  # noqa: F401

if TYPE_CHECKING:
    from .compare import PolicyDiff
    from .csvio import read_orders
    from .decision import Decision, WhyNot
    from .errors import (
        AsOfError,
        CancelRulesError,
        ComparisonError,
        DefinitionError,
        EditError,
        EngineError,
        FieldProblem,
        InputError,
        JdmError,
        MappingError,
        OrderError,
        ParameterError,
        PolicyError,
        RuleError,
        RuleProblem,
        UnknownRuleError,
        UsageError,
    )
    from .intake import suggest_mapping
    from .loader import DEFAULT_POLICY, RULES_DIR
    from .operators import ConditionResult
    from .policy import Policy, diff, from_jdm, import_jdm, load, loads
    from .tabular import OUTPUT_COLUMNS
    from .verify import Finding, VerifyReport

# Each public name is imported from its module on first use (PEP 562), so that `cancel-rules --help`, or a program
# reading only engine.errors, does not pay for pandas, pyarrow and durable_rules.
_HOMES = {
    "PolicyDiff": "compare", "read_orders": "csvio", "Decision": "decision", "WhyNot": "decision",
    "suggest_mapping": "intake", "DEFAULT_POLICY": "loader", "RULES_DIR": "loader", "ConditionResult": "operators",
    "Policy": "policy", "diff": "policy", "from_jdm": "policy", "import_jdm": "policy", "load": "policy",
    "loads": "policy", "OUTPUT_COLUMNS": "tabular", "Finding": "verify", "VerifyReport": "verify",
    **dict.fromkeys(["AsOfError", "CancelRulesError", "ComparisonError", "DefinitionError", "EditError",
                     "EngineError", "FieldProblem", "InputError", "JdmError", "MappingError", "OrderError",
                     "ParameterError", "PolicyError", "RuleError", "RuleProblem", "UnknownRuleError", "UsageError"],
                    "errors"),
}

__all__ = [  # sorted
    "AsOfError", "CancelRulesError", "ComparisonError", "ConditionResult", "DEFAULT_POLICY", "Decision",
    "DefinitionError", "EditError", "EngineError", "FieldProblem", "Finding", "InputError", "JdmError",
    "MappingError", "OUTPUT_COLUMNS", "OrderError", "ParameterError", "Policy", "PolicyDiff", "PolicyError",
    "RULES_DIR", "RuleError", "RuleProblem", "UnknownRuleError", "UsageError", "VerifyReport", "WhyNot", "diff",
    "from_jdm", "import_jdm", "load", "loads", "read_orders", "suggest_mapping",
]


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (engine.batch), imported when first asked for."""
    if name in _HOMES:
        value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    elif not name.startswith("__"):
        try:
            value = import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
