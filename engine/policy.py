"""The public Policy: a loaded, compiled policy with decide / evaluate / verify, and `load`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .compiler import CompiledPolicy, compile_policy
from .decision import Decision, decide, match, outcome
from .errors import InputError, OrderError, ParameterError, RuleError, RuleProblem, UsageError
from .facts import normalize, parse_as_of
from .loader import load_spec, load_spec_text
from .lookup import decide_cells
from .model import Example, KeyedParameter, Method, PolicySpec
from .text import format_value

# What works on frames (pandas, pyarrow), edits text, writes files or HTML is imported by the methods using it:
# loading a policy and deciding one order need none of it, and `cancel-rules decide` starts in half the time.
if TYPE_CHECKING:
    import pandas as pd

    from .compare import PolicyDiff
    from .jdm import JdmImport
    from .scenarios import Cases, ScenarioReport
    from .verify import VerifyReport

Engine = Literal["cells", "direct"]  # how Policy.decide asks durable_rules: per cell, memoized; or per order


@dataclass(frozen=True)
class Policy:
    """A policy ready to decide orders; cheap to load again (the engine ruleset is shared by content)."""

    spec: PolicySpec
    compiled: CompiledPolicy

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    def decide(self, order: Mapping[str, Any], as_of: str | datetime | None = None, strict: bool = False,
               engine: Engine = "cells") -> Decision:
        """Decide one order; raises OrderError naming every bad field. A field the policy does not read is a
        warning of the decision (with did-you-mean), or with strict one of the errors.

        engine="cells" looks up the engine's answer for the order's cell (asked once per canonical cell) and
        builds conditions and why_not when first read; engine="direct" asks durable_rules for this order and
        explains at once (the reference). Both give the same Decision."""
        if engine == "direct":
            return decide(self.compiled, order, parse_as_of(as_of), strict)
        if engine != "cells":
            raise UsageError(f"engine must be 'cells' or 'direct', got {engine!r}", "engine")
        return decide_cells(self.compiled, order, parse_as_of(as_of), strict)

    def normalize(self, order: Mapping[str, Any], as_of: str | datetime | None = None, strict: bool = False
                  ) -> dict[str, Any]:
        """The order's canonical facts, as decide reads them (codes, elapsed time since as_of, defaults; facts not
        given are absent): what to feed the policy's JDM export on ZEN. Raises OrderError like decide."""
        return normalize(self.spec, order, parse_as_of(as_of), strict)

    def to_jdm(self) -> dict[str, Any]:
        """The policy as a GoRules JDM decision table over normalized facts (engine.jdm.to_jdm)."""
        from .jdm import to_jdm  # interop: imported on use

        return to_jdm(self.spec)

    def evaluate(self, df: pd.DataFrame, as_of: str | datetime | None = None, method: Method = "cells",
                 strict: bool = False, mapping: Mapping[str, str] | None = None) -> pd.DataFrame:
        """The rows of df, in order, with action, rule_id, message, error and policy_version added.

        method="cells" asks the engine once per distinct cell; method="rows" once per row (the reference).
        Columns the policy does not read are kept; with strict, one that looks like a misspelt field raises.
        mapping renames columns to fields first ({"Order Status": "status"}; the output has the new names).
        A dask DataFrame gives a lazy dask DataFrame (engine.cluster: the policy travels as its YAML source)."""
        from .batch import evaluate_frame
        from .intake import check_fields, map_frame

        if mapping:
            check_fields(self.spec, mapping)
            df = df.rename(columns=dict(mapping)) if _is_dask(df) else map_frame(df, mapping)
        if _is_dask(df):
            from .cluster import evaluate_dask  # dask is an optional extra: imported only when given its frame

            return evaluate_dask(self.compiled, df, as_of, method, strict=strict)
        return evaluate_frame(self.compiled, df, parse_as_of(as_of), method, strict=strict)

    def coverage(self, df: pd.DataFrame, as_of: str | datetime | None = None) -> pd.DataFrame:
        """Every rule in firing order with the orders of df it decides (rule_id, action, priority, orders, share
        in %); rules no order reaches have 0. df is orders (evaluated at as_of) or this policy's decisions."""
        from .coverage import rule_coverage

        decided = df if {"action", "rule_id"} <= set(df.columns) else self.evaluate(df, as_of)
        return rule_coverage(self.spec, decided["rule_id"])

    def verify(self) -> VerifyReport:
        """Gaps, unreachable rules and overlaps over the whole fact space, asked of durable_rules."""
        from .verify import verify

        return verify(self.compiled)

    def with_parameters(self, **overrides: float | Mapping[str, float]) -> Policy:
        """The same rules with some parameter values replaced (a keyed one takes a mapping key -> value)."""
        params = dict(self.spec.parameters)
        for name, value in overrides.items():
            if name not in params:
                raise ParameterError(name, f"unknown parameter {name!r} (parameters: {', '.join(params)})")
            current = params[name]
            if isinstance(current, KeyedParameter):
                if not isinstance(value, Mapping):
                    raise ParameterError(name, f"parameter {name!r} is keyed by {current.by}: give a mapping")
                unknown = set(value) - set(current.values)
                if unknown:
                    raise ParameterError(name, f"parameter {name!r} has no key {sorted(unknown)[0]!r}")
                params[name] = replace(current, values={**current.values, **{k: float(v) for k, v in value.items()}})
            elif isinstance(value, Mapping):
                raise ParameterError(name, f"parameter {name!r} takes a number, not a mapping")
            else:
                params[name] = float(value)
        spec = replace(self.spec, parameters=params)
        return Policy(spec, compile_policy(spec))

    def _repr_html_(self) -> str:
        from .html import policy_html

        return policy_html(self)

    def to_yaml(self) -> str:
        """The policy's own file as text (a variant's, for a variant): the text it was read from, with only the
        values changed since (parameters, rules) written anew, so comments, order and layout stay."""
        from .edits import spec_text

        return spec_text(self.spec)

    def save(self, path: str | Path) -> Path:
        """Write to_yaml() to path, atomically (a reader sees the old file or the new one, never a part)."""
        from .atomic import atomic_file
        from .tabular import write_reason

        target = Path(path)
        text = self.to_yaml()
        try:
            with atomic_file(target) as sink:
                sink.write(text.encode("utf-8"))
        except OSError as exc:
            raise InputError(str(target), write_reason(exc)) from None
        return target

    def with_rule(self, rule: Mapping[str, Any]) -> Policy:
        """The policy with this rule (a mapping as written in YAML: id, priority, when, then, ...) added, or in
        place of the rule of its id; raises RuleError located in the edited text if it is not valid."""
        from .edits import with_rule_text

        return self._edited(with_rule_text(self.spec, rule))

    def without_rule(self, rule_id: str) -> Policy:
        """The policy without the rule of this id (UnknownRuleError if it has none)."""
        from .edits import without_rule_text

        return self._edited(without_rule_text(self.spec, rule_id))

    def with_priority(self, rule_id: str, priority: int) -> Policy:
        """The policy with the rule of this id given this priority."""
        from .edits import with_priority_text

        return self._edited(with_priority_text(self.spec, rule_id, priority))

    def _edited(self, text: str) -> Policy:
        return loads(text, source=self.spec.path)

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "policy": spec.name, "version": spec.version, "description": spec.description,
            "hit_policy": spec.hit_policy, "path": spec.path, "ruleset": self.compiled.ruleset,
            "facts": {n: {"type": f.type, "required": f.required, "default": f.default, "values": list(f.values),
                          "labels": dict(f.labels), "unit": f.unit, "min": f.min, "max": f.max,
                          "from_timestamp": f.from_timestamp, "description": f.description}
                      for n, f in spec.facts.items()},
            "parameters": spec.parameter_values(),
            "actions": dict(spec.actions),
            "rules": [{"id": r.id, "priority": r.priority, "action": r.action, "message": r.message,
                       "warnings": list(r.warnings), "source": r.source,
                       "when": [{"fact": c.fact, "op": c.op, "value": _plain(c.value)} for c in r.conditions]}
                      for r in spec.ranked_rules()],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def rules_table(self) -> list[dict[str, str]]:
        """One row per rule in firing order: id, priority, conditions as text, action."""
        return [{"id": r.id, "priority": str(r.priority),
                 "when": ", ".join(f"{c.fact} {c.op} {format_value(_plain(c.value))}" for c in r.conditions)
                 or "(always)", "action": r.action}
                for r in self.spec.ranked_rules()]

    def test(self, cases: pd.DataFrame | str | Path, as_of: str | datetime | None = None) -> pd.DataFrame:
        """Run test cases (a frame, or a CSV path): order columns plus expected_action, optionally expected_rule,
        case (a name) and as_of (else as_of here; default now). One row per case, in input order: case, passed,
        expected_action, expected_rule, action, rule_id, why, error; an invalid order is a failing case with its
        error. Bad cases (no expected_action, an unknown action or rule) raise a located InputError."""
        return self.test_report(cases, as_of).results

    def test_report(self, cases: pd.DataFrame | str | Path | Cases, as_of: str | datetime | None = None
                    ) -> ScenarioReport:
        """Policy.test's results with the per-rule coverage of the cases and the rule examples (what
        `cancel-rules test` prints)."""
        import pandas as pd

        from .scenarios import Cases, read_cases, run_scenarios

        if isinstance(cases, (str, Path)):
            cases = read_cases(cases)
        elif isinstance(cases, pd.DataFrame):
            cases = Cases(cases.set_axis([str(c) for c in cases.columns], axis=1))
        return run_scenarios(self.compiled, cases, parse_as_of(as_of), parse_as_of(EXAMPLES_AS_OF))


def _is_dask(df: Any) -> bool:
    return type(df).__module__.split(".")[0] in ("dask", "dask_expr")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return str(value) if hasattr(value, "name") and not isinstance(value, str) else value


# Examples are judged at a fixed time so that a timestamp in an example never depends on today.
EXAMPLES_AS_OF = "2026-01-01T00:00:00+00:00"


def check_examples(policy: Policy) -> list[RuleProblem]:
    """Problems for every example whose expected action (or rule) does not happen.

    A variant changes parameters on purpose, so it is judged by its own examples, not its base's."""
    problems = []
    is_variant = len(policy.spec.sources) > 1
    for rule in () if is_variant else policy.spec.rules:
        problems += [_example_problem(policy, ex, rule.id) for ex in rule.examples]
    problems += [_example_problem(policy, ex, None) for ex in policy.spec.examples]
    return [p for p in problems if p is not None]


def _example_problem(policy: Policy, example: Example, rule_id: str | None) -> RuleProblem | None:
    path = policy.spec.path
    try:
        facts = normalize(policy.spec, example.order, parse_as_of(EXAMPLES_AS_OF))
    except OrderError as exc:
        return RuleProblem(path, example.line, example.col, f"example order is invalid: {exc}", rule_id)
    # The winner only, not decide's explanation (every rule's conditions): with it, the 1,004 examples of the
    # 1,000-rule marketplace policy took 30 of its 37 s of loading.
    winner, error = outcome(policy.spec, match(policy.compiled, facts))
    got = f"{winner.action} (rule {winner.id})" if winner else f"no action ({error})"
    if (winner.action if winner else None) != example.expect:
        return RuleProblem(path, example.line, example.col,
                           f"example expects {example.expect} but the policy gives {got}", rule_id)
    if example.rule and (winner.id if winner else None) != example.rule:
        return RuleProblem(path, example.line, example.col,
                           f"example expects rule {example.rule} but the policy gives {got}", rule_id)
    return None


def load(path: str | Path | None = None) -> Policy:
    """Load, validate, compile and self-test a policy; no path means the bundled default policy."""
    return _self_tested(load_spec(path))


def _self_tested(spec: PolicySpec) -> Policy:
    policy = Policy(spec, compile_policy(spec))
    problems = check_examples(policy)
    if problems:
        raise RuleError(problems)
    return policy


def loads(text: str, *, source: str = "<string>", base: Policy | str | Path | None = None) -> Policy:
    """A policy from its YAML text, validated, compiled and self-tested like `load`; every problem is located as
    source:line:col. With base (a Policy or the path of one), the text is a variant of it; otherwise an
    `extends:` names a file relative to source's folder."""
    base_spec = None if base is None else base.spec if isinstance(base, Policy) else load(base).spec
    return _self_tested(load_spec_text(text, source, base_spec))


def diff(old: Policy, new: Policy, orders: pd.DataFrame | None = None, as_of: str | datetime | None = None
         ) -> PolicyDiff:
    """Every change of decision from old to new: by cell of the joint fact space and, given orders, by order."""
    from .compare import policy_diff

    return policy_diff(old.compiled, new.compiled, orders, parse_as_of(as_of))


def import_jdm(doc: Mapping[str, Any] | str | bytes, source: str = "<jdm>") -> JdmImport:
    """A GoRules JDM decision table as a policy: its YAML, the policy loaded from it, and warnings; raises JdmError
    locating every problem by rule (row) and column (engine.jdm.import_table)."""
    from .jdm import import_table  # interop: imported on use

    return import_table(doc, source, load)


def from_jdm(doc: Mapping[str, Any] | str | bytes, source: str = "<jdm>") -> Policy:
    """The policy of a JDM document holding one decision table (a dict or its JSON text); raises JdmError."""
    return import_jdm(doc, source).policy
