"""Read a YAML policy file (or a variant extending one) into a PolicySpec, collecting every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import RuleError
from .model import (
    FACT_TYPES,
    HIT_POLICIES,
    TIME_UNITS,
    FactSpec,
    HitPolicy,
    KeyedParameter,
    PolicySpec,
    Rule,
)
from .ruleread import read_examples, read_rule
from .text import alias_key, did_you_mean
from .yamlread import Reader, compose, read_source, show_number

# Installed wheels carry the rules inside the package; a source checkout keeps them at the top level.
_PACKAGED_RULES = Path(__file__).parent / "rules"
RULES_DIR = _PACKAGED_RULES if _PACKAGED_RULES.is_dir() else Path(__file__).parent.parent / "rules"
DEFAULT_POLICY = RULES_DIR / "cancellation.yaml"
TOP_KEYS = ("policy", "version", "description", "hit_policy", "facts", "parameters", "actions", "rules",
            "examples")
VARIANT_KEYS = ("extends", "policy", "version", "description", "parameters", "examples")
FACT_KEYS = ("type", "required", "default", "values", "unit", "min", "max", "from_timestamp", "per",
             "description")


def load_spec(path: str | Path | None = None) -> PolicySpec:
    """Load a policy file; a file with `extends:` is a variant overriding its base's parameters."""
    path = Path(path) if path is not None else DEFAULT_POLICY
    return _load(path, seen=())


def load_spec_text(text: str, source: str = "<string>", base: PolicySpec | None = None) -> PolicySpec:
    """A policy from its text, problems located at `source`:line:col. With base, the text is a variant of it (its
    `extends:`, if any, is not followed); else an `extends:` names a file relative to source's folder."""
    return _load_text(text, source, seen=(), base=base)


def spec_from_sources(sources: tuple[tuple[str, str], ...]) -> PolicySpec:
    """A policy again from its source texts (a base, then each variant of it), without reading any file."""
    spec = None
    for source, text in sources:
        spec = load_spec_text(text, source, base=spec)
    if spec is None:
        raise ValueError("no sources")  # a caller's bug: every loaded policy has at least one source
    return spec


def _load(path: Path, seen: tuple[Path, ...]) -> PolicySpec:
    reader = Reader(str(path))
    text = read_source(path, reader)
    if text is None:
        raise RuleError(reader.problems)
    return _load_text(text, str(path), seen, None, reader)


def _load_text(text: str, source: str, seen: tuple[Path, ...], base: PolicySpec | None,
               reader: Reader | None = None) -> PolicySpec:
    reader = reader or Reader(source)
    root = compose(text, reader)
    if root is None:
        raise RuleError(reader.problems)
    top = reader.mapping(root, "the policy file")
    if "extends" in top or base is not None:
        spec = _load_variant((source, text), top, reader, seen, base, root)
    else:
        spec = _load_base((source, text), top, reader)
    if reader.problems or spec is None:
        raise RuleError(reader.problems)
    return spec


def _header(top: dict, reader: Reader, root_node: yaml.Node | None) -> tuple[str, str, str]:
    name = version = ""
    if "policy" in top:
        name = reader.text(top["policy"][1], "policy") or ""
    else:
        reader.problem(root_node, "missing 'policy' (the policy's name)")
    if "version" in top:
        version = reader.text(top["version"][1], "version") or ""
    else:
        reader.problem(root_node, "missing 'version'")
    description = reader.text(top["description"][1], "description") or "" if "description" in top else ""
    return name, version, description


def _load_base(source: tuple[str, str], top: dict, reader: Reader) -> PolicySpec | None:
    for key, (knode, _) in top.items():
        if key not in TOP_KEYS:
            reader.problem(knode, f"unknown key '{key}' at the top of the policy", did_you_mean(key, TOP_KEYS))
    first = next(iter(top.values()), (None, None))[0]
    name, version, description = _header(top, reader, first)
    hit_policy: HitPolicy = "first"
    if "hit_policy" in top:
        node = top["hit_policy"][1]
        given = str(reader.scalar(node))
        known = next((h for h in HIT_POLICIES if h == given), None)
        if known is None:
            reader.problem(node, f"unknown hit_policy '{given}' (use one of: {', '.join(HIT_POLICIES)})",
                           did_you_mean(given, HIT_POLICIES))
        else:
            hit_policy = known
    facts = _facts(top["facts"][1], reader) if "facts" in top else {}
    if "facts" not in top:
        reader.problem(first, "missing 'facts'")
    params = _parameters(top["parameters"][1], reader, facts) if "parameters" in top else {}
    actions: dict[str, str] = {}
    if "actions" in top:
        for key, (_, vnode) in reader.mapping(top["actions"][1], "actions").items():
            actions[key] = str(reader.scalar(vnode) or "")
    else:
        reader.problem(first, "missing 'actions'")
    rules: list[Rule] = []
    if "rules" in top:
        seen_ids: dict[str, int] = {}
        for index, node in enumerate(reader.sequence(top["rules"][1], "rules")):
            rule = read_rule(node, index, reader, facts, params, actions)
            if rule is None:
                continue
            if rule.id in seen_ids:
                reader.rule_id = rule.id
                reader.problem(node, f"duplicate rule id (first defined at line {seen_ids[rule.id]})")
                reader.rule_id = None
                continue
            seen_ids[rule.id] = rule.line
            rules.append(rule)
    else:
        reader.problem(first, "missing 'rules'")
    examples = read_examples(top["examples"][1], reader, actions) if "examples" in top else ()
    return PolicySpec(name=name, version=version, hit_policy=hit_policy, facts=facts, parameters=params,
                      actions=actions, rules=tuple(rules), description=description, path=source[0],
                      examples=examples, sources=(source,))


def _load_variant(source: tuple[str, str], top: dict, reader: Reader, seen: tuple[Path, ...],
                  base: PolicySpec | None, root: yaml.Node) -> PolicySpec | None:
    for key, (knode, _) in top.items():
        if key not in VARIANT_KEYS:
            hint = "a variant may only override parameters" if key in TOP_KEYS else None
            reader.problem(knode, f"unknown key '{key}' in a variant" + (f" ({hint})" if hint else ""),
                           None if hint else did_you_mean(key, VARIANT_KEYS))
    knode, vnode = top.get("extends", (root, root))
    if base is None:
        base = _extended(source[0], vnode, reader, seen)
    elif "extends" in top:
        reader.text(vnode, "extends")
    if base is None:
        return None
    name, version, description = _header(top, reader, knode)
    params = dict(base.parameters)
    if "parameters" in top:
        for key, (pknode, pvnode) in reader.mapping(top["parameters"][1], "parameters").items():
            if key not in params:
                reader.problem(pknode, f"unknown parameter '{key}' (a variant can only override the base's)",
                               did_you_mean(key, params))
                continue
            params[key] = _override(params[key], pvnode, reader, key)
    examples = read_examples(top["examples"][1], reader, base.actions) if "examples" in top else ()
    return PolicySpec(name=name or base.name, version=version or base.version, hit_policy=base.hit_policy,
                      facts=base.facts, parameters=params, actions=base.actions, rules=base.rules,
                      description=description or base.description, path=source[0], examples=examples,
                      sources=base.sources + (source,))


def _extended(source: str, vnode: yaml.Node, reader: Reader, seen: tuple[Path, ...]) -> PolicySpec | None:
    """The base a variant's `extends:` names, relative to the variant's folder (a cycle is a problem)."""
    target = reader.text(vnode, "extends")
    if target is None:
        return None
    path = Path(source)
    base_path = (path.parent / target).resolve()
    if base_path in seen or base_path == path.resolve():
        reader.problem(vnode, f"extends '{target}' makes a cycle")
        return None
    if not base_path.is_file():
        reader.problem(vnode, f"extends '{target}': no such file ({base_path})")
        return None
    return _load(base_path, seen + (path.resolve(),))


def _override(current: float | KeyedParameter, node: yaml.Node, reader: Reader, name: str):
    if not isinstance(current, KeyedParameter):
        value = reader.number(node, f"parameter '{name}'")
        return current if value is None else value
    values = dict(current.values)
    default = current.default
    spec = reader.mapping(node, f"parameter '{name}'", ("values", "default"))
    if "values" in spec:
        for key, (kn, vn) in reader.mapping(spec["values"][1], f"parameter '{name}' values").items():
            if key not in values:
                reader.problem(kn, f"parameter '{name}' has no key '{key}'", did_you_mean(key, values))
            elif (number := reader.number(vn, f"parameter '{name}.{key}'")) is not None:
                values[key] = number
    if "default" in spec:
        default = reader.number(spec["default"][1], f"parameter '{name}' default")
    return KeyedParameter(name, current.by, values, default)


def _facts(node: yaml.Node, reader: Reader) -> dict[str, FactSpec]:
    facts: dict[str, FactSpec] = {}
    for name, (knode, vnode) in reader.mapping(node, "facts").items():
        spec = reader.mapping(vnode, f"fact '{name}'", FACT_KEYS)
        ftype = reader.scalar(spec["type"][1]) if "type" in spec else None
        if ftype not in FACT_TYPES:
            reader.problem(spec.get("type", (knode, vnode))[1],
                           f"fact '{name}' needs a type (one of: {', '.join(FACT_TYPES)})",
                           did_you_mean(ftype, FACT_TYPES) if ftype else None)
            continue
        values, labels, aliases = _enum_values(name, spec, reader) if ftype == "enum" else ((), {}, {})
        of = f"of fact '{name}'"
        low, high = (reader.number(spec[k][1], f"'{k}' {of}", limit=None) if k in spec else None
                     for k in ("min", "max"))
        if low is not None and high is not None and low > high:
            reader.problem(spec["min"][1], f"fact '{name}' has min {show_number(low)} above its max "
                                           f"{show_number(high)}")
        required = reader.flag(spec["required"][1], f"'required' {of}") if "required" in spec else False
        texts = {k: reader.text(spec[k][1], f"'{k}' {of}") for k in ("unit", "from_timestamp", "per", "description")
                 if k in spec}
        default = _fact_default(name, ftype, spec, reader, aliases, values, (low, high))
        per = texts.get("per", "hours")
        if per is not None and per not in TIME_UNITS:
            reader.problem(spec["per"][1], f"'per' must be one of: {', '.join(TIME_UNITS)}",
                           did_you_mean(per, TIME_UNITS))
        facts[name] = FactSpec(
            name=name, type=ftype, required=bool(required), default=default, values=values, labels=labels,
            aliases=aliases, unit=texts.get("unit"), min=low, max=high, from_timestamp=texts.get("from_timestamp"),
            per=per or "hours", description=texts.get("description") or "")
    return facts


def _fact_default(name: str, ftype: str, spec: dict, reader: Reader, aliases: dict, values: tuple,
                  bounds: tuple[float | None, float | None]) -> Any:
    """A fact's default, read as a value of its type (an enum code, a number within its range, or text)."""
    if "default" not in spec:
        return None
    node = spec["default"][1]
    what = f"'default' of fact '{name}'"
    if ftype == "enum":
        given = reader.scalar(node)
        default = aliases.get(alias_key(str(given))) if given is not None else None
        if given is not None and default is None:
            reader.problem(node, f"default of fact '{name}' is not one of its values", did_you_mean(given, values))
        return default
    if ftype == "string":
        return reader.text(node, what)
    default = reader.number(node, what)
    low, high = bounds
    if default is not None and low is not None and default < low:
        reader.problem(node, f"{what} is {show_number(default)}, below its min {show_number(low)}")
    elif default is not None and high is not None and default > high:
        reader.problem(node, f"{what} is {show_number(default)}, above its max {show_number(high)}")
    return default


def _enum_values(name: str, spec: dict, reader: Reader):
    values: list[str] = []
    labels: dict[str, str] = {}
    aliases: dict[str, str] = {}
    if "values" not in spec:
        reader.problem(spec.get("type", (None, None))[1], f"enum fact '{name}' needs 'values'")
        return (), {}, {}

    def add_alias(text: str, code: str, node: yaml.Node) -> None:
        key = alias_key(text)
        if aliases.get(key, code) != code:
            reader.problem(node, f"alias '{text}' of fact '{name}' names both '{aliases[key]}' and '{code}'")
        aliases[key] = code

    for code, (knode, vnode) in reader.mapping(spec["values"][1], f"values of fact '{name}'").items():
        values.append(code)
        add_alias(code, code, knode)
        if isinstance(vnode, yaml.ScalarNode) and reader.scalar(vnode) is None:
            continue
        entry = reader.mapping(vnode, f"value '{code}' of fact '{name}'", ("label", "aliases"))
        if "label" in entry:
            labels[code] = str(reader.scalar(entry["label"][1]))
            add_alias(labels[code], code, entry["label"][1])
        if "aliases" in entry:
            for anode in reader.sequence(entry["aliases"][1], f"aliases of '{code}'"):
                add_alias(str(reader.scalar(anode)), code, anode)
    return tuple(values), labels, aliases


def _parameters(node: yaml.Node, reader: Reader, facts: dict[str, FactSpec]) -> dict:
    """Parameters by name; one whose declaration has a problem maps to None (known, so not reported again)."""
    params: dict[str, float | KeyedParameter | None] = {}
    for name, (knode, vnode) in reader.mapping(node, "parameters").items():
        if not isinstance(vnode, yaml.MappingNode):
            params[name] = reader.number(vnode, f"parameter '{name}'")
            continue
        spec = reader.mapping(vnode, f"parameter '{name}'", ("by", "values", "default", "description"))
        by = str(reader.scalar(spec["by"][1])) if "by" in spec else None
        fact = facts.get(by) if by else None
        if fact is None or fact.type != "enum":
            reader.problem(spec.get("by", (knode, vnode))[1],
                           f"keyed parameter '{name}' needs 'by:' naming an enum fact",
                           did_you_mean(by, [f for f, s in facts.items() if s.type == "enum"]) if by else None)
            params[name] = None
            continue
        values: dict[str, float] = {}
        given = reader.mapping(spec.get("values", (knode, vnode))[1], f"parameter '{name}' values")
        for key, (kn, vn) in given.items():
            if key not in fact.values:
                reader.problem(kn, f"'{key}' is not a value of fact '{by}'", did_you_mean(key, fact.values))
            elif (number := reader.number(vn, f"parameter '{name}.{key}'")) is not None:
                values[key] = number
        missing = [v for v in fact.values if v not in given]  # a value given but wrong is reported above
        default = reader.number(spec["default"][1], f"parameter '{name}' default") if "default" in spec else None
        if missing and default is None:
            reader.problem(knode, f"parameter '{name}' has no value for: {', '.join(missing)} (or give a default)")
        params[name] = KeyedParameter(name, fact.name, values, default)
    return params


