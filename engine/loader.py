"""Read a YAML policy file (or a variant extending one) into a PolicySpec, collecting every problem."""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from .errors import RuleError, RuleProblem
from .model import (
    FACT_TYPES,
    HIT_POLICIES,
    MAX_NUMBER,
    TIME_UNITS,
    Condition,
    Example,
    FactSpec,
    KeyedParameter,
    ParamRef,
    PolicySpec,
    Rule,
)
from .operators import ENUM_OPERATORS, OPERATORS, Operator
from .template import check as check_template
from .text import alias_key, did_you_mean

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
RULE_ID = re.compile(r"^[A-Za-z][\w.\-]*$")
EXPONENT_TEXT = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?)(\d+)$")  # a float YAML 1.1 reads as text
# A policy nests about 8 levels deep; the limit stops hostile nesting before the recursive walks below.
MAX_DEPTH = 64
# Values that aliases may repeat in one file: shared example orders and conditions fit easily, alias bombs
# (each anchor repeating the previous one) stop here instead of expanding to billions of values.
MAX_ALIAS_VALUES = 10_000
CORE_TAG = "tag:yaml.org,2002:"
ALLOWED_TAGS = tuple(CORE_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))
KINDS = {"int": "integer", "float": "number", "bool": "true or false", "null": "null", "timestamp": "date"}


def brief(value: object, limit: int = 60) -> str:
    """repr(value), cut to about `limit` characters so a huge value never floods a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show_number(value: float) -> str:
    try:
        return f"{value:g}"
    except OverflowError:  # an int too large for a float
        return f"a {len(str(abs(value)))}-digit number"


def exponent_hint(value: object) -> str:
    """For text that is a float to Python but not to YAML 1.1 ('1e-05'), how to write it as a number."""
    match = EXPONENT_TEXT.match(value) if isinstance(value, str) else None
    if not match:
        return ""
    mantissa, sign, digits = match.groups()
    mantissa = mantissa if "." in mantissa else mantissa + ".0"
    mantissa = mantissa.replace("-.", "-0.").replace("+.", "+0.")
    mantissa = "0" + mantissa if mantissa.startswith(".") else mantissa
    return f" (YAML reads it as text: write {mantissa}e{sign or '+'}{digits})"


class _Refused(yaml.MarkedYAMLError):
    """YAML the composer refuses to build (it is valid YAML, so not reported as a syntax error)."""


class _Composer(yaml.SafeLoader):
    """A SafeLoader's composer that refuses, each before it costs time or memory and located where it is written:
    tags other than the core ones, nesting deeper than MAX_DEPTH, aliases repeating more than MAX_ALIAS_VALUES
    values or nesting deeper once expanded, recursive aliases, and scalars no Python value can be built from."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.repeated = 0
        self.shapes: dict[int, tuple[int, int]] = {}  # id of a finished node -> (values in it, levels in it)

    def refuse(self, message: str, mark: yaml.Mark) -> None:
        raise _Refused(problem=message, problem_mark=mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.check_alias(event)
            return super().compose_node(parent, index)
        if event.anchor is not None and event.anchor in self.anchors:
            first = self.anchors[event.anchor].start_mark.line + 1
            self.refuse(f"anchor '&{event.anchor}' is defined twice (first at line {first})", event.start_mark)
        if event.tag not in (None, "!") and event.tag not in ALLOWED_TAGS:
            allowed = ", ".join(t.replace(CORE_TAG, "!!") for t in ALLOWED_TAGS)
            self.refuse(f"tag '{event.tag.replace(CORE_TAG, '!!')}' is not allowed (allowed: {allowed})",
                        event.start_mark)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.refuse(f"values nest deeper than {MAX_DEPTH} levels", event.start_mark)
        node = super().compose_node(parent, index)
        self.depth -= 1
        if isinstance(node, yaml.ScalarNode):
            self.check_scalar(node, explicit=event.tag not in (None, "!"))
            self.shapes[id(node)] = (1, 1)
        else:
            children = [self.shapes[id(child)] for item in node.value
                        for child in (item if isinstance(node, yaml.MappingNode) else (item,))]
            self.shapes[id(node)] = (1 + sum(c[0] for c in children), 1 + max((c[1] for c in children), default=0))
        return node

    def check_alias(self, event: yaml.AliasEvent) -> None:
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # the composer reports an undefined alias
        shape = self.shapes.get(id(node))
        if shape is None:
            self.refuse(f"alias '*{event.anchor}' is inside its own anchor (a recursive structure)",
                        event.start_mark)
        values, levels = shape
        if self.depth + levels > MAX_DEPTH:
            self.refuse(f"alias '*{event.anchor}' nests values deeper than {MAX_DEPTH} levels", event.start_mark)
        self.repeated += values
        if self.repeated > MAX_ALIAS_VALUES:
            self.refuse(f"alias '*{event.anchor}' repeats {values} values, past the limit of {MAX_ALIAS_VALUES} "
                        "values repeated by aliases in one file", event.start_mark)

    def check_scalar(self, node: yaml.ScalarNode, explicit: bool) -> None:
        if node.tag == CORE_TAG + "merge":
            self.refuse("merge key '<<' is not supported (write the keys out, or quote '<<' for the text)",
                        node.start_mark)
        try:
            self.construct_object(node)
        except (yaml.YAMLError, ValueError, KeyError):
            kind = node.tag.replace(CORE_TAG, "!!") if explicit else KINDS.get(node.tag.replace(CORE_TAG, ""),
                                                                               node.tag)
            self.refuse(f"{brief(node.value)} is not a valid {kind}", node.start_mark)
        finally:
            self.constructed_objects.pop(node, None)


class _Reader:
    """Walks the YAML node tree of one file, recording problems with their positions."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[RuleProblem] = []
        self.rule_id: str | None = None
        # One per file: a constructor keeps every node it built, so a shared one would keep every file's nodes.
        self.constructor = yaml.constructor.SafeConstructor()

    def problem(self, node: yaml.Node | None, message: str, hint: str | None = None,
                at: tuple[int, int] | None = None) -> None:
        mark = node.start_mark if node is not None else None
        line, col = at or ((mark.line + 1, mark.column + 1) if mark else (1, 1))
        self.problems.append(RuleProblem(self.path, line, col, message, self.rule_id, hint))

    def scalar(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.constructor.construct_object(node, deep=True)
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

    def number(self, node: yaml.Node, what: str, limit: float | None = MAX_NUMBER) -> float | None:
        """A finite number, within ±limit if given (the range of number facts: a parameter or default beyond it
        could never be compared with an order's fact)."""
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            self.problem(node, f"{what} must be a number, got {brief(value)}{exponent_hint(value)}")
            return None
        if isinstance(value, float) and math.isinf(value):
            self.problem(node, f"{what} must be a finite number, got {value}")
            return None
        if limit is not None and abs(value) > limit:
            self.problem(node, f"{what} must be between {-limit:g} and {limit:g}, got {show_number(value)}")
            return None
        return value

    def text(self, node: yaml.Node, what: str) -> str | None:
        value = self.scalar(node)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.problem(node, f"{what} must be text, got {brief(value)}")
            return None
        return str(value)

    def flag(self, node: yaml.Node, what: str) -> bool | None:
        value = self.scalar(node)
        if not isinstance(value, bool):
            self.problem(node, f"{what} takes true or false, got {brief(value)}")
            return None
        return value


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
        root = yaml.compose(text, Loader=_Composer)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, found before any parsing
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - text.rfind("\n", 0, exc.position)
        kind = "control character" if unicodedata.category(chr(exc.character)) == "Cc" else "character"
        reader.problems.append(RuleProblem(str(path), line, col,
                                           f"{kind} U+{exc.character:04X} is not allowed in YAML"))
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = exc.problem if isinstance(exc, _Refused) else f"YAML syntax error: {exc.problem}"
        reader.problems.append(RuleProblem(str(path), line, col, message))
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


def _fact_default(name: str, ftype: str, spec: dict, reader: _Reader, aliases: dict, values: tuple,
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
            reader.problem(spec["priority"][1], f"priority must be a whole number, got {brief(value)}")
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
            _locate_template_problems(message, then["message"][1], reader, facts, params)
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
    for name, (opnode, argnode) in ops.items():
        op = OPERATORS.get(name)
        if op is None:
            reader.problem(opnode, f"unknown operator '{name}'", did_you_mean(name, OPERATORS))
            continue
        if fact.type == "enum" and not op.on_enum:
            reader.problem(opnode, f"operator '{name}' does not apply to enum fact '{fact_name}' "
                                   f"(use one of: {', '.join(ENUM_OPERATORS)})")
            continue
        value = _operand(op, argnode, fact, reader, params)
        if value is not None:
            mark = opnode.start_mark
            out.append(Condition(fact_name, op.name, value, mark.line + 1, mark.column + 1))
    return out


def _operand(op: Operator, node: yaml.Node, fact: FactSpec, reader: _Reader, params: dict):
    """The constant(s) of one condition, read by the operator's operand shape."""
    if op.operand == "flag":
        value = reader.scalar(node)
        if not isinstance(value, bool):
            reader.problem(node, f"'{op.name}' takes true or false, got {brief(value)}")
            return None
        return value
    if op.operand == "scalar":
        return _constant(node, fact, reader, params)
    items = reader.sequence(node, f"operand of '{op.name}'")
    if op.operand == "pair" and len(items) != 2:
        reader.problem(node, f"'{op.name}' takes a list of two bounds [low, high]")
        return None
    if not items:
        reader.problem(node, f"'{op.name}' needs at least one value")
        return None
    values = tuple(_constant(item, fact, reader, params) for item in items)
    if any(v is None for v in values):
        return None
    if op.operand == "pair" and not any(isinstance(v, ParamRef) for v in values) and values[0] > values[1]:
        reader.problem(node, f"'{op.name}' bounds are reversed: {values[0]} > {values[1]}")
        return None
    return values


def _constant(node: yaml.Node, fact: FactSpec, reader: _Reader, params: dict):
    value = reader.scalar(node)
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in params:
            reader.problem(node, f"unknown parameter '{name}'", did_you_mean(name, params))
            return None
        param = params[name]
        if param is None:  # its declaration is wrong, and reported there
            return None
        if fact.type == "enum":
            reader.problem(node, f"parameter '{name}' is a number; enum fact '{fact.name}' needs one of its values")
            return None
        return ParamRef(name)
    if fact.type == "enum":
        code = fact.aliases.get(alias_key(value)) if isinstance(value, str) else None
        if code is None:
            reader.problem(node, f"{brief(value)} is not a value of fact '{fact.name}'",
                           did_you_mean(value, fact.values))
        return code
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        reader.problem(node, f"fact '{fact.name}' is a number; got {brief(value)}{exponent_hint(value)}")
        return None
    if isinstance(value, float) and math.isinf(value):
        reader.problem(node, f"fact '{fact.name}' takes finite numbers; got {value}")
        return None
    if abs(value) > MAX_NUMBER:  # no order's fact can reach it (facts.number_value refuses larger numbers)
        reader.problem(node, f"fact '{fact.name}' takes numbers between {-MAX_NUMBER:g} and {MAX_NUMBER:g}; "
                             f"got {show_number(value)}")
        return None
    return value


def _locate_template_problems(message: str, node: yaml.Node, reader: _Reader, facts: dict, params: dict) -> None:
    source, start, end = _source_of(node)
    for written, problems in check_template(message, facts, params):
        # Locate the placeholder in the file's text (a folded or escaped message may not hold it verbatim).
        found = source.find(written, start, end)
        at = _position(node, source, found) if found >= 0 else None
        start = found + 1 if found >= 0 else start
        for text, hint in problems:
            reader.problem(node, text, hint, at=at)


def _source_of(node: yaml.Node) -> tuple[str, int, int]:
    """The text the composer read (marks of a parsed string carry it) and where the node starts and ends in it."""
    buffer = node.start_mark.buffer
    return (buffer, node.start_mark.index, node.end_mark.index) if isinstance(buffer, str) else ("", 0, 0)


def _position(node: yaml.Node, source: str, index: int) -> tuple[int, int]:
    """1-based line and column of source[index] (lines counted from the node's start mark)."""
    mark = node.start_mark
    return mark.line + 1 + source.count("\n", mark.index, index), index - source.rfind("\n", 0, index)


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
