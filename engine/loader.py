"""Read a YAML policy file (or a variant extending one) into a PolicySpec, collecting every problem."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import RuleError, RuleProblem
from .model import (
    FACT_TYPES,
    HIT_POLICIES,
    OPERATORS,
    TIME_UNITS,
    Condition,
    Example,
    FactSpec,
    KeyedParameter,
    ParamRef,
    PolicySpec,
    Rule,
    alias_key,
)

# Installed wheels carry the rules inside the package; a source checkout keeps them at the top level.
_PACKAGED_RULES = Path(__file__).parent / "rules"
RULES_DIR = _PACKAGED_RULES if _PACKAGED_RULES.is_dir() else Path(__file__).parent.parent / "rules"
DEFAULT_POLICY = RULES_DIR / "cancellation.yaml"
TOP_KEYS = ("policy", "version", "description", "hit_policy", "facts", "parameters", "actions", "rules",
            "examples")
VARIANT_KEYS = ("extends", "policy", "version", "description", "parameters", "examples")
FACT_KEYS = ("type", "required", "default", "values", "unit", "min", "max", "from_timestamp", "per",
             "description")
RULE_KEYS = ("id", "priority", "when", "then", "source", "examples", "description")
THEN_KEYS = ("action", "message", "warnings")
EXAMPLE_KEYS = ("order", "expect", "rule")
ENUM_OPS = ("eq", "ne", "in", "not_in", "given")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDER_BODY = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:-\s*([A-Za-z_]\w*)\s*)?$")
RULE_ID = re.compile(r"^[A-Za-z][\w.\-]*$")

_constructor = yaml.SafeLoader("")


def did_you_mean(word: object, choices: Any) -> str | None:
    text, options = str(word), [str(c) for c in choices]
    # A ratio of 0.6 needs the text within 7/3 of a choice's length: a longer one matches nothing, and difflib
    # would index each of its characters first (a 9 MB value took 2 s and 360 MB).
    if not options or len(text) > 3 * max(map(len, options)):
        return None
    found = difflib.get_close_matches(text, options, n=1, cutoff=0.6)
    return found[0] if found else None


class _Reader:
    """Walks the YAML node tree of one file, recording problems with their positions."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[RuleProblem] = []
        self.rule_id: str | None = None

    def problem(self, node: yaml.Node | None, message: str, hint: str | None = None) -> None:
        mark = node.start_mark if node is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        self.problems.append(RuleProblem(self.path, line, col, message, self.rule_id, hint))

    def scalar(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return _constructor.construct_object(node, deep=True)
        return self.plain(node)

    def plain(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return {str(self.scalar(k)): self.plain(v) for k, v in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(v) for v in node.value]
        return self.scalar(node)

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...] | None = None
                ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key -> (key node, value node); reports a non-mapping, duplicate keys and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            key = str(self.scalar(knode))
            if key in out:
                self.problem(knode, f"duplicate key '{key}' in {what} "
                                    f"(first at line {out[key][0].start_mark.line + 1})")
                continue
            if allowed is not None and key not in allowed:
                self.problem(knode, f"unknown key '{key}' in {what}", did_you_mean(key, allowed))
                continue
            out[key] = (knode, vnode)
        return out

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{what} must be a list")
            return []
        return list(node.value)

    def number(self, node: yaml.Node, what: str) -> float | None:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            self.problem(node, f"{what} must be a number, got {value!r}")
            return None
        return value

    def text(self, node: yaml.Node, what: str) -> str | None:
        value = self.scalar(node)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.problem(node, f"{what} must be text, got {value!r}")
            return None
        return str(value)


def _compose(path: Path, reader: _Reader) -> yaml.Node | None:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        reader.problems.append(RuleProblem(str(path), 1, 1, f"cannot read file: {exc.strerror}"))
        return None
    except UnicodeDecodeError:
        reader.problems.append(RuleProblem(str(path), 1, 1, "file is not UTF-8 text"))
        return None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reader.problems.append(RuleProblem(str(path), line, col, f"YAML syntax error: {exc.problem}"))
        return None
    if root is None:
        reader.problems.append(RuleProblem(str(path), 1, 1, "file is empty"))
    return root


def load_spec(path: str | Path | None = None) -> PolicySpec:
    """Load a policy file; a file with `extends:` is a variant overriding its base's parameters."""
    path = Path(path) if path is not None else DEFAULT_POLICY
    return _load(path, seen=())


def _load(path: Path, seen: tuple[Path, ...]) -> PolicySpec:
    reader = _Reader(str(path))
    root = _compose(path, reader)
    if root is None:
        raise RuleError(reader.problems)
    top = reader.mapping(root, "the policy file")
    if "extends" in top:
        spec = _load_variant(path, top, reader, seen)
    else:
        spec = _load_base(path, top, reader)
    if reader.problems or spec is None:
        raise RuleError(reader.problems)
    return spec


def _header(top: dict, reader: _Reader, root_node: yaml.Node | None) -> tuple[str, str, str]:
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


def _load_base(path: Path, top: dict, reader: _Reader) -> PolicySpec | None:
    for key, (knode, _) in top.items():
        if key not in TOP_KEYS:
            reader.problem(knode, f"unknown key '{key}' at the top of the policy", did_you_mean(key, TOP_KEYS))
    first = next(iter(top.values()), (None, None))[0]
    name, version, description = _header(top, reader, first)
    hit_policy = "first"
    if "hit_policy" in top:
        node = top["hit_policy"][1]
        hit_policy = str(reader.scalar(node))
        if hit_policy not in HIT_POLICIES:
            reader.problem(node, f"unknown hit_policy '{hit_policy}' (use one of: {', '.join(HIT_POLICIES)})",
                           did_you_mean(hit_policy, HIT_POLICIES))
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
            rule = _rule(node, index, reader, facts, params, actions)
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
    examples = _examples(top["examples"][1], reader, actions) if "examples" in top else ()
    text = path.read_text(encoding="utf-8-sig")
    return PolicySpec(name=name, version=version, hit_policy=hit_policy, facts=facts, parameters=params,
                      actions=actions, rules=tuple(rules), description=description, path=str(path),
                      examples=examples, sources=((str(path), text),))


def _load_variant(path: Path, top: dict, reader: _Reader, seen: tuple[Path, ...]) -> PolicySpec | None:
    for key, (knode, _) in top.items():
        if key not in VARIANT_KEYS:
            hint = "a variant may only override parameters" if key in TOP_KEYS else None
            reader.problem(knode, f"unknown key '{key}' in a variant" + (f" ({hint})" if hint else ""),
                           None if hint else did_you_mean(key, VARIANT_KEYS))
    knode, vnode = top["extends"]
    target = reader.text(vnode, "extends")
    if target is None:
        return None
    base_path = (path.parent / target).resolve()
    if base_path in seen or base_path == path.resolve():
        reader.problem(vnode, f"extends '{target}' makes a cycle")
        return None
    if not base_path.is_file():
        reader.problem(vnode, f"extends '{target}': no such file ({base_path})")
        return None
    base = _load(base_path, seen + (path.resolve(),))
    name, version, description = _header(top, reader, knode)
    params = dict(base.parameters)
    if "parameters" in top:
        for key, (pknode, pvnode) in reader.mapping(top["parameters"][1], "parameters").items():
            if key not in params:
                reader.problem(pknode, f"unknown parameter '{key}' (a variant can only override the base's)",
                               did_you_mean(key, params))
                continue
            params[key] = _override(params[key], pvnode, reader, key)
    examples = _examples(top["examples"][1], reader, base.actions) if "examples" in top else ()
    text = path.read_text(encoding="utf-8-sig")
    return PolicySpec(name=name or base.name, version=version or base.version, hit_policy=base.hit_policy,
                      facts=base.facts, parameters=params, actions=base.actions, rules=base.rules,
                      description=description or base.description, path=str(path), examples=examples,
                      sources=base.sources + ((str(path), text),))


def _override(current: float | KeyedParameter, node: yaml.Node, reader: _Reader, name: str):
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


def _facts(node: yaml.Node, reader: _Reader) -> dict[str, FactSpec]:
    facts: dict[str, FactSpec] = {}
    for name, (knode, vnode) in reader.mapping(node, "facts").items():
        spec = reader.mapping(vnode, f"fact '{name}'", FACT_KEYS)
        get = {k: reader.scalar(v[1]) for k, v in spec.items() if k != "values"}
        ftype = get.get("type")
        if ftype not in FACT_TYPES:
            reader.problem(spec.get("type", (knode, vnode))[1],
                           f"fact '{name}' needs a type (one of: {', '.join(FACT_TYPES)})",
                           did_you_mean(ftype, FACT_TYPES) if ftype else None)
            continue
        values, labels, aliases = _enum_values(name, spec, reader) if ftype == "enum" else ((), {}, {})
        default = get.get("default")
        if ftype == "enum" and default is not None:
            default = aliases.get(alias_key(str(default)))
            if default is None:
                reader.problem(spec["default"][1], f"default of fact '{name}' is not one of its values",
                               did_you_mean(get["default"], values))
        per = get.get("per", "hours")
        if per not in TIME_UNITS:
            reader.problem(spec["per"][1], f"'per' must be one of: {', '.join(TIME_UNITS)}",
                           did_you_mean(per, TIME_UNITS))
        facts[name] = FactSpec(
            name=name, type=ftype, required=bool(get.get("required", False)), default=default,
            values=values, labels=labels, aliases=aliases, unit=get.get("unit"), min=get.get("min"),
            max=get.get("max"), from_timestamp=get.get("from_timestamp"), per=per,
            description=str(get.get("description") or ""))
    return facts


def _enum_values(name: str, spec: dict, reader: _Reader):
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


def _parameters(node: yaml.Node, reader: _Reader, facts: dict[str, FactSpec]) -> dict:
    params: dict[str, float | KeyedParameter] = {}
    for name, (knode, vnode) in reader.mapping(node, "parameters").items():
        if not isinstance(vnode, yaml.MappingNode):
            value = reader.number(vnode, f"parameter '{name}'")
            if value is not None:
                params[name] = value
            continue
        spec = reader.mapping(vnode, f"parameter '{name}'", ("by", "values", "default", "description"))
        by = str(reader.scalar(spec["by"][1])) if "by" in spec else None
        fact = facts.get(by) if by else None
        if fact is None or fact.type != "enum":
            reader.problem(spec.get("by", (knode, vnode))[1],
                           f"keyed parameter '{name}' needs 'by:' naming an enum fact",
                           did_you_mean(by, [f for f, s in facts.items() if s.type == "enum"]) if by else None)
            continue
        values: dict[str, float] = {}
        for key, (kn, vn) in reader.mapping(spec.get("values", (knode, vnode))[1],
                                             f"parameter '{name}' values").items():
            if key not in fact.values:
                reader.problem(kn, f"'{key}' is not a value of fact '{by}'", did_you_mean(key, fact.values))
            elif (number := reader.number(vn, f"parameter '{name}.{key}'")) is not None:
                values[key] = number
        missing = [v for v in fact.values if v not in values]
        default = reader.number(spec["default"][1], f"parameter '{name}' default") if "default" in spec else None
        if missing and default is None:
            reader.problem(knode, f"parameter '{name}' has no value for: {', '.join(missing)} (or give a default)")
        params[name] = KeyedParameter(name, by, values, default)
    return params


def _rule(node: yaml.Node, index: int, reader: _Reader, facts: dict, params: dict, actions: dict
          ) -> Rule | None:
    # Name the rule in problems found while reading its keys (duplicate or unknown keys) too.
    reader.rule_id = _peek_id(node)
    spec = reader.mapping(node, f"rule #{index + 1}", RULE_KEYS)
    reader.rule_id = None
    rule_id = reader.text(spec["id"][1], "rule id") if "id" in spec else None
    if rule_id is None:
        if "id" not in spec:
            reader.problem(node, f"rule #{index + 1} has no 'id'")
        return None
    if not RULE_ID.match(rule_id):
        reader.problem(spec["id"][1], f"rule id '{rule_id}' must start with a letter and use only letters, "
                                      "digits, '_', '.', '-'")
    reader.rule_id = rule_id
    before = len(reader.problems)
    priority = 0
    if "priority" in spec:
        value = reader.scalar(spec["priority"][1])
        if isinstance(value, bool) or not isinstance(value, int):
            reader.problem(spec["priority"][1], f"priority must be a whole number, got {value!r}")
        else:
            priority = value
    conditions: list[Condition] = []
    if "when" in spec:
        for fact_name, (kn, vn) in reader.mapping(spec["when"][1], "when").items():
            conditions.extend(_conditions(fact_name, kn, vn, reader, facts, params))
    action, message, warnings = "", "", ()
    if "then" not in spec:
        reader.problem(node, "missing 'then' (with then.action)")
    else:
        then = reader.mapping(spec["then"][1], "then", THEN_KEYS)
        if "action" not in then:
            reader.problem(spec["then"][1], "missing then.action")
        else:
            action = str(reader.scalar(then["action"][1]))
            if action not in actions:
                reader.problem(then["action"][1], f"unknown action '{action}'", did_you_mean(action, actions))
        if "message" in then:
            message = str(reader.scalar(then["message"][1]))
            _check_template(message, then["message"][1], reader, facts, params)
        if "warnings" in then:
            warnings = tuple(str(reader.scalar(w)) for w in reader.sequence(then["warnings"][1], "warnings"))
    source = str(reader.scalar(spec["source"][1])) if "source" in spec else ""
    if not source:
        reader.problem(node, "missing 'source' (the guide step or fact the rule encodes)")
    examples = _examples(spec["examples"][1], reader, actions) if "examples" in spec else ()
    if not examples and "examples" not in spec:
        reader.problem(node, "missing 'examples' (at least one order with its expected action)")
    reader.rule_id = None
    if len(reader.problems) > before:
        return None
    mark = node.start_mark
    return Rule(id=rule_id, priority=priority, index=index, conditions=tuple(conditions), action=action,
                message=message, warnings=warnings, source=source, examples=examples,
                line=mark.line + 1, col=mark.column + 1)


def _peek_id(node: yaml.Node) -> str | None:
    """The rule's id as written, if it is a plain scalar (read before the rule's keys are checked)."""
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            if isinstance(knode, yaml.ScalarNode) and knode.value == "id" and isinstance(vnode, yaml.ScalarNode):
                return vnode.value or None
    return None


def _conditions(fact_name: str, knode, vnode, reader: _Reader, facts: dict, params: dict) -> list[Condition]:
    fact = facts.get(fact_name)
    if fact is None:
        reader.problem(knode, f"unknown fact '{fact_name}'", did_you_mean(fact_name, facts))
        return []
    if fact.type == "string":
        reader.problem(knode, f"fact '{fact_name}' is free text and cannot be used in a condition")
        return []
    ops = reader.mapping(vnode, f"condition on '{fact_name}'") if isinstance(vnode, yaml.MappingNode) \
        else {"eq": (vnode, vnode)}
    out = []
    for op, (opnode, argnode) in ops.items():
        if op not in OPERATORS:
            reader.problem(opnode, f"unknown operator '{op}'", did_you_mean(op, OPERATORS))
            continue
        if fact.type == "enum" and op not in ENUM_OPS:
            reader.problem(opnode, f"operator '{op}' does not apply to enum fact '{fact_name}' "
                                   f"(use one of: {', '.join(ENUM_OPS)})")
            continue
        value = _operand(op, argnode, fact, reader, params)
        if value is not None:
            mark = opnode.start_mark
            out.append(Condition(fact_name, op, value, mark.line + 1, mark.column + 1))
    return out


def _operand(op: str, node: yaml.Node, fact: FactSpec, reader: _Reader, params: dict):
    if op == "given":
        value = reader.scalar(node)
        if not isinstance(value, bool):
            reader.problem(node, f"'given' takes true or false, got {value!r}")
            return None
        return value
    if op in ("in", "not_in", "between"):
        items = reader.sequence(node, f"operand of '{op}'")
        if op == "between" and len(items) != 2:
            reader.problem(node, "'between' takes a list of two bounds [low, high]")
            return None
        if not items:
            reader.problem(node, f"'{op}' needs at least one value")
            return None
        values = tuple(_constant(item, fact, reader, params) for item in items)
        if any(v is None for v in values):
            return None
        low, high = values if op == "between" else (0, 0)
        if op == "between" and not isinstance(low, ParamRef) and not isinstance(high, ParamRef) and low > high:
            reader.problem(node, f"'between' bounds are reversed: {low} > {high}")
            return None
        return values
    return _constant(node, fact, reader, params)


def _constant(node: yaml.Node, fact: FactSpec, reader: _Reader, params: dict):
    value = reader.scalar(node)
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        param = params.get(name)
        if param is None:
            reader.problem(node, f"unknown parameter '{name}'", did_you_mean(name, params))
            return None
        if fact.type == "enum":
            reader.problem(node, f"parameter '{name}' is a number; enum fact '{fact.name}' needs one of its values")
            return None
        return ParamRef(name)
    if fact.type == "enum":
        code = fact.aliases.get(alias_key(value)) if isinstance(value, str) else None
        if code is None:
            reader.problem(node, f"'{value}' is not a value of fact '{fact.name}'",
                           did_you_mean(value, fact.values))
        return code
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        reader.problem(node, f"fact '{fact.name}' is a number; got {value!r}")
        return None
    return value


def _check_template(message: str, node: yaml.Node, reader: _Reader, facts: dict, params: dict) -> None:
    names = set(facts) | set(params)
    for body in PLACEHOLDER.findall(message):
        match = PLACEHOLDER_BODY.match(body)
        if not match:
            reader.problem(node, f"message placeholder '{{{body}}}' must be '{{name}}' or '{{name - name}}'")
            continue
        for name in filter(None, match.groups()):
            if name not in names:
                reader.problem(node, f"message names unknown fact or parameter '{name}'",
                               did_you_mean(name, names))


def _examples(node: yaml.Node, reader: _Reader, actions: dict) -> tuple[Example, ...]:
    out = []
    for item in reader.sequence(node, "examples"):
        spec = reader.mapping(item, "example", EXAMPLE_KEYS)
        if "order" not in spec or "expect" not in spec:
            reader.problem(item, "an example needs 'order' and 'expect'")
            continue
        order = reader.plain(spec["order"][1])
        if not isinstance(order, dict):
            reader.problem(spec["order"][1], "example 'order' must be a mapping of facts")
            continue
        expect = str(reader.scalar(spec["expect"][1]))
        if expect not in actions:
            reader.problem(spec["expect"][1], f"example expects unknown action '{expect}'",
                           did_you_mean(expect, actions))
            continue
        rule = str(reader.scalar(spec["rule"][1])) if "rule" in spec else None
        mark = item.start_mark
        out.append(Example(order, expect, rule, mark.line + 1, mark.column + 1))
    return tuple(out)
