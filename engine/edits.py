"""A policy's text after an edit: its parameters as the spec holds them, a rule added, replaced, removed or
re-prioritised, each made where the text is written so that every other byte (comments, order, layout) stays."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .errors import EditError, UnknownRuleError
from .loader import spec_from_sources
from .model import KeyedParameter, PolicySpec
from .yamledit import Key, append, delete, replace, tree
from .yamlwrite import data


def spec_text(spec: PolicySpec) -> str:
    """The text of the policy's own file (a variant's, for a variant) with its parameters as spec holds them."""
    if not spec.sources:
        raise EditError("the policy", "the policy was not read from YAML text, so it has none to write")
    source, text = spec.sources[-1]
    written = _written_parameters(spec.sources)
    for path, value in _parameter_changes(spec.parameters, written):
        text = replace(text, path, value, source)
    return text


@lru_cache(maxsize=16)
def _written_parameters(sources: tuple[tuple[str, str], ...]) -> Mapping[str, float | KeyedParameter]:
    """The parameters the source texts give (kept for the last 16 policies: an editor writes one again and again)."""
    return spec_from_sources(sources).parameters


def _parameter_changes(params: Mapping[str, float | KeyedParameter], written: Mapping[str, float | KeyedParameter]
                       ) -> list[tuple[tuple[Key, ...], float]]:
    """(place in the document, value) for each parameter value that differs from what the text gives."""
    changes: list[tuple[tuple[Key, ...], float]] = []
    for name, value in params.items():
        old = written.get(name)
        if isinstance(value, KeyedParameter):
            old_values = old.values if isinstance(old, KeyedParameter) else {}
            changes += [(("parameters", name, "values", key), v) for key, v in value.values.items()
                        if old_values.get(key) != v]
            if value.default is not None and (not isinstance(old, KeyedParameter) or old.default != value.default):
                changes.append((("parameters", name, "default"), value.default))
        elif old != value:
            changes.append((("parameters", name), value))
    return changes


def _rule_ids(text: str, source: str) -> list[Any]:
    rules = tree(text, source).plain().get("rules")
    if not isinstance(rules, list):
        raise EditError("rules", "the policy has no list of rules to edit")
    return [rule.get("id") if isinstance(rule, dict) else None for rule in rules]


def _base_only(spec: PolicySpec, edit: str) -> None:
    if len(spec.sources) > 1:
        raise EditError(edit, f"{spec.path} is a variant: a variant only overrides parameters; edit the rules of "
                              f"its base, {spec.sources[0][0]}")


def with_rule_text(spec: PolicySpec, rule: Mapping[str, Any]) -> str:
    """The policy's text with rule added, or in place of the rule of its id."""
    rule_id = rule.get("id") if isinstance(rule, Mapping) else None
    if not isinstance(rule_id, str) or not rule_id:
        raise EditError("rule", f"a rule is a mapping with a text 'id'; got {rule!r}")
    _base_only(spec, rule_id)
    value = data(rule, f"rule '{rule_id}'")
    text = spec_text(spec)
    ids = _rule_ids(text, spec.path)
    if rule_id in ids:
        return replace(text, ("rules", ids.index(rule_id)), value, spec.path)
    return append(text, ("rules",), value, spec.path)


def without_rule_text(spec: PolicySpec, rule_id: str) -> str:
    """The policy's text without the rule of this id (and the comment lines just above it)."""
    _base_only(spec, rule_id)
    text = spec_text(spec)
    ids = _rule_ids(text, spec.path)
    if rule_id not in ids:
        raise UnknownRuleError(rule_id)
    return delete(text, ("rules", ids.index(rule_id)), spec.path)


def with_priority_text(spec: PolicySpec, rule_id: str, priority: Any) -> str:
    """The policy's text with the rule of this id given this priority."""
    _base_only(spec, rule_id)
    text = spec_text(spec)
    ids = _rule_ids(text, spec.path)
    if rule_id not in ids:
        raise UnknownRuleError(rule_id)
    return replace(text, ("rules", ids.index(rule_id), "priority"), priority, spec.path)
