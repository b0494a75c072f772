"""Read a JDM document's one decision table: its shape, columns, cells, outputs, and the facts they imply."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JdmError, JdmProblem
from ..model import FactType
from ..ruleread import RULE_ID
from ..text import alias_key
from .cells import CellError, Parser, parse
from .truth import literals as cell_literals
from .truth import orders

FIELD = re.compile(r"^[A-Za-z_]\w*$")
PARAMETER_FIELD = re.compile(r"^parameters\.([A-Za-z_]\w*)$")
MESSAGE_FIELDS = ("message_template", "message")


@dataclass
class Column:
    id: str
    label: str  # its name, else its field
    field: str


@dataclass
class Row:
    number: int  # 1-based
    row_id: str | None
    description: str
    nodes: dict[str, list[tuple[Column, Any]]] = field(default_factory=dict)  # fact -> parsed cells
    outputs: dict[str, Any] = field(default_factory=dict)  # action, rule_id, message, warnings
    parameters: dict[str, float] = field(default_factory=dict)
    truths: dict[str, Any] = field(default_factory=dict)  # fact -> (accepted values, accepts null)
    parts: list[dict[str, list[tuple[str, Any]]]] = field(default_factory=list)  # the rules it becomes


@dataclass
class Fact:
    name: str
    type: FactType
    values: list[str] = field(default_factory=list)
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def optional(self) -> bool:
        return not self.required


class Reader:
    """Reads one JDM document, collecting every problem with its location."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[JdmProblem] = []

    def problem(self, message: str, row: Row | None = None, column: str | None = None,
                node: str | None = None) -> None:
        self.problems.append(JdmProblem(self.source, message, row.number if row else None,
                                        row.row_id if row else None, column, node))

    def check(self) -> None:
        if self.problems:
            raise JdmError(self.problems)


# --- the document's shape ----------------------------------------------------------------------------------


def document(doc: Any, reader: Reader) -> tuple[dict, dict, str]:
    """(input node, decision table node, table name) of a document holding exactly input -> table -> output."""
    if isinstance(doc, bytes):
        try:
            doc = doc.decode("utf-8-sig")
        except UnicodeDecodeError:
            reader.problem("not UTF-8 text")
            reader.check()
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as exc:
            reader.problem(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
            reader.check()
        except RecursionError:
            reader.problem("not JSON: nested too deeply")
            reader.check()
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        reader.problem("a JDM document is a JSON object with 'nodes' and 'edges'")
        reader.check()
    by_type: dict[str, list[dict]] = {}
    for node in doc["nodes"]:
        if not isinstance(node, dict):
            reader.problem("every node must be an object")
            continue
        kind = node.get("type")
        name = str(node.get("name") or node.get("id") or "?")
        if kind not in ("inputNode", "outputNode", "decisionTableNode"):
            reader.problem(f"a node of type {kind!r} cannot be expressed: only one decision table between an "
                           "input node and an output node is read", node=name)
        by_type.setdefault(str(kind), []).append(node)
    for kind, what in (("inputNode", "input node"), ("decisionTableNode", "decision table"),
                       ("outputNode", "output node")):
        count = len(by_type.get(kind, []))
        if count != 1:
            reader.problem(f"the document has {count} {what}s: exactly one is read")
    reader.check()
    entry, table, exit_ = by_type["inputNode"][0], by_type["decisionTableNode"][0], by_type["outputNode"][0]
    edges = doc.get("edges") if isinstance(doc.get("edges"), list) else []
    pairs = {(e.get("sourceId"), e.get("targetId")) for e in edges if isinstance(e, dict)}
    wanted = {(entry.get("id"), table.get("id")), (table.get("id"), exit_.get("id"))}
    if pairs != wanted or len(edges) != 2:
        reader.problem("the edges must join input node -> decision table -> output node, and nothing else")
    if not isinstance(table.get("content"), dict):
        reader.problem("the decision table has no content", node=str(table.get("name") or table.get("id")))
    reader.check()
    return entry, table, str(table.get("name") or "").strip()


def schema_facts(entry: dict, reader: Reader) -> dict[str, Fact]:
    """Facts the input node's JSON Schema declares: type, enum values, bounds, required."""
    text = (entry.get("content") or {}).get("schema") or ""
    if not isinstance(text, str) or not text.strip():
        return {}
    name = str(entry.get("name") or entry.get("id"))
    try:
        schema = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        reader.problem("the input schema is not JSON", node=name)
        return {}
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    facts = {}
    for fact, prop in properties.items():
        if not FIELD.match(str(fact)) or not isinstance(prop, dict):
            continue
        types: list[Any] = prop["type"] if isinstance(prop.get("type"), list) else [prop.get("type")]
        enum = [v for v in prop.get("enum") or [] if isinstance(v, str)]
        choices = [c for c in prop.get("oneOf") or [] if isinstance(c, dict) and isinstance(c.get("const"), str)]
        enum += [c["const"] for c in choices if c["const"] not in enum]
        labels = {c["const"]: c["title"] for c in choices if isinstance(c.get("title"), str) and c["title"].strip()}
        kind: FactType
        if "number" in types or "integer" in types:
            kind = "number"
        elif "string" in types:
            kind = "enum" if enum else "string"
        else:
            continue
        low, high = (prop[k] if isinstance(prop.get(k), (int, float)) and not isinstance(prop.get(k), bool)
                     else None for k in ("minimum", "maximum"))
        facts[fact] = Fact(fact, kind, enum, fact in required, low, high,
                           description=str(prop.get("description") or ""), labels=labels)
    return facts


def columns(content: dict, key: str, reader: Reader) -> list[Column]:
    items = content.get(key)
    if not isinstance(items, list):
        reader.problem(f"the decision table has no '{key}' list")
        return []
    out, seen = [], set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            reader.problem(f"every one of '{key}' must be an object with an 'id'")
            continue
        label = str(item.get("name") or item.get("field") or item["id"])
        if item["id"] in seen:
            reader.problem(f"two columns have the id '{item['id']}'", column=label)
        seen.add(item["id"])
        out.append(Column(item["id"], label, str(item.get("field") or "").strip()))
    return out


# --- reading the table -------------------------------------------------------------------------------------


def read_rows(content: dict, inputs: list[Column], outputs: list[Column], reader: Reader) -> list[Row]:
    rules = content.get("rules")
    if not isinstance(rules, list):
        reader.problem("the decision table has no 'rules' list")
        return []
    rows = []
    for number, item in enumerate(rules, start=1):
        if not isinstance(item, dict):
            reader.problem(f"rule #{number} is not an object")
            continue
        row_id = item.get("_id")
        row = Row(number, str(row_id) if row_id not in (None, "") else None, str(item.get("_description") or ""))
        for column in inputs:
            if not FIELD.match(column.field):
                continue  # the column itself is refused (check_columns)
            text = _cell(item, column, row, reader)
            if text is None:
                continue
            try:
                node = parse(text)
            except CellError as exc:
                reader.problem(str(exc), row, column.label)
                continue
            if node is not None:
                row.nodes.setdefault(column.field, []).append((column, node))
        before = len(reader.problems)
        for column in outputs:
            text = _cell(item, column, row, reader)
            if text:
                _output(row, column, text, reader)
        labels = {c.label for c in outputs if c.field == "action"}
        if "action" not in row.outputs and not any(p.column in labels for p in reader.problems[before:]):
            reader.problem("no action: every row must set the 'action' output", row, "action")
        rows.append(row)
    return rows


def _cell(item: dict, column: Column, row: Row, reader: Reader) -> str | None:
    text = item.get(column.id, "")
    if text is None:
        return ""
    if not isinstance(text, str):
        reader.problem(f"the cell must be text, not {type(text).__name__}", row, column.label)
        return None
    return text.strip()


def _output(row: Row, column: Column, text: str, reader: Reader) -> None:
    """One output cell: a constant of the kind its field takes."""
    name = column.field
    parameter = PARAMETER_FIELD.match(name)
    parser = Parser(text)
    try:
        value = parser.list()[1] if name == "warnings" else parser.literal()
        parser.done()
    except CellError as exc:
        reader.problem(f"an output must be a constant: {exc}", row, column.label)
        return
    if parameter:
        if not isinstance(value, float):
            reader.problem(f"a parameter must be a number, got {text}", row, column.label)
        else:
            row.parameters[parameter.group(1)] = value
    elif name == "warnings":
        if not all(isinstance(v, str) for v in value):
            reader.problem("warnings must be a list of texts", row, column.label)
        else:
            row.outputs["warnings"] = [v for v in value if v]
    elif not isinstance(value, str):
        reader.problem(f"'{name}' must be text, got {text}", row, column.label)
    elif name == "rule_id" and not RULE_ID.match(value):
        reader.problem(f"rule id {value!r} must start with a letter and use only letters, digits, '_', '.', '-'",
                       row, column.label)
    elif value or name != "action":  # an empty action is reported as no action
        row.outputs["message" if name in MESSAGE_FIELDS else name] = value


def check_columns(content: dict, inputs: list[Column], outputs: list[Column], reader: Reader) -> None:
    if content.get("hitPolicy", "first") not in ("first", "collect"):
        reader.problem(f"unknown hit policy {content.get('hitPolicy')!r} (ZEN has first and collect)")
    if str(content.get("inputField") or "").strip():
        reader.problem("the table reads its inputs under 'inputField': only a table over the whole input is read")
    if content.get("executionMode", "single") not in ("single", None):
        reader.problem("the table runs in a loop over a list (executionMode): only one input object is read")
    for column in inputs:
        if not column.field:
            reader.problem("an expression column (no field): its cells are expressions over the whole input; "
                           "give the column the field it tests", column=column.label)
        elif not FIELD.match(column.field):
            reader.problem(f"field '{column.field}' is not a plain name (nested paths are not facts here)",
                           column=column.label)
    seen: dict[str, Column] = {}
    for column in outputs:
        name = column.field
        if name in seen or (name in MESSAGE_FIELDS and any(m in seen for m in MESSAGE_FIELDS)):
            reader.problem(f"two output columns write '{name}'", column=column.label)
        seen[name] = column
        if name not in ("action", "rule_id", "warnings", *MESSAGE_FIELDS) and not PARAMETER_FIELD.match(name):
            reader.problem(f"output '{name}' has no place in a decision here (outputs read: action, rule_id, "
                           "message_template or message, warnings, parameters.<name>)", column=column.label)
    if "action" not in seen:
        reader.problem("no 'action' output column: a decision's action is what a table must give")


# --- facts --------------------------------------------------------------------------------------------------


def infer_facts(rows: list[Row], inputs: list[Column], declared: dict[str, Fact], reader: Reader) -> dict[str, Fact]:
    """Each field's fact: its type from the cells' constants (or the schema), enum values in order seen."""
    facts: dict[str, Fact] = {}
    for name in dict.fromkeys(c.field for c in inputs if c.field and FIELD.match(c.field)):
        fact = declared.get(name)
        kind: FactType | None = fact.type if fact and fact.type != "string" else None
        first: tuple[Row, Column, str] | None = None
        values: list[str] = []
        for value in fact.values if fact else ():  # the schema's, in its order
            _check_value(value, values, reader, None, name)
            values.append(value)
        for row in rows:
            for column, node in row.nodes.get(name, []):
                for value in cell_literals(node):
                    if value is None:
                        continue
                    seen: FactType = "number" if isinstance(value, float) else "enum"
                    if kind is None:
                        kind, first = seen, (row, column, seen)
                    if seen != kind:
                        was = f"rule #{first[0].number}" if first else "the input schema"
                        reader.problem(f"compares with {'numbers' if seen == 'number' else 'text'}, but "
                                       f"{was} makes '{name}' {'a number' if kind == 'number' else 'text'}",
                                       row, column.label)
                    elif kind == "enum" and value not in values:
                        _check_value(value, values, reader, row, column.label)
                        values.append(value)
                if orders(node) and kind == "enum":
                    reader.problem("orders text (<, <=, >, >= or a range): only numbers are ordered here", row,
                                   column.label)
        if kind is None:
            reader.problem(f"no cell compares '{name}' with a value, so its type is unknown (declare it in the "
                           "input node's schema)", column=name)
            continue
        facts[name] = Fact(name, kind, values if kind == "enum" else [], bool(fact and fact.required),
                           fact.minimum if fact else None, fact.maximum if fact else None,
                           fact.description if fact else "", dict(fact.labels) if fact else {})
    for name, fact in declared.items():  # declared but not a column: a message may still name it
        facts.setdefault(name, fact)
    return facts


def _check_value(value: str, values: list[str], reader: Reader, row: Row | None, column: str) -> None:
    """An enum value a policy can hold as it is: not blank, not '$...', not another value but for case."""
    if not value.strip():
        reader.problem("an empty (or blank) text is 'not given' here: test 'null' instead", row, column)
    elif value.startswith("$"):
        reader.problem(f"the value {value!r} starts with '$', which names a parameter in a policy", row, column)
    else:
        clash = next((v for v in values if alias_key(v) == alias_key(value)), None)
        if clash is not None:
            reader.problem(f"the values {clash!r} and {value!r} differ only in case or separators, which a policy "
                           "reads as one value", row, column)


# --- naming ------------------------------------------------------------------------------------------------


def table_hash(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def source_name(source: str) -> str:
    return Path(source).stem if source and not source.startswith("<") else "jdm"
