"""Read YAML rule files safely: a composer that refuses costly or unsafe YAML where it is written, and a reader
that walks the node tree recording every problem at its path:line:col."""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from .errors import RuleProblem
from .model import MAX_NUMBER
from .text import did_you_mean

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


class _Checks(yaml.composer.Composer):
    """A composer that refuses, each before it costs time or memory and located where it is written: tags other
    than the core ones, nesting deeper than MAX_DEPTH, aliases repeating more than MAX_ALIAS_VALUES values or
    nesting deeper once expanded, recursive aliases, and scalars no Python value can be built from."""

    if TYPE_CHECKING:  # from the parser and constructor each composer is combined with
        constructed_objects: dict[yaml.Node, Any]

        def peek_event(self) -> Any: ...

        def construct_object(self, node: Any, deep: bool = False) -> Any: ...

    def __init__(self) -> None:
        self.depth = 0
        self.repeated = 0
        self.shapes: dict[int, tuple[int, int]] = {}  # id of a finished node -> (values in it, levels in it)

    def refuse(self, message: str, mark: Any) -> NoReturn:  # a yaml.Mark, PyYAML's or libyaml's
        raise _Refused(problem=message, problem_mark=mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
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
        assert node is not None  # PyYAML composes a node for every node event
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


class _Composer(_Checks, yaml.SafeLoader):
    """The checks over PyYAML's pure-Python parser: its problems and marks are the ones reported."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        _Checks.__init__(self)


class _StepAside(yaml.YAMLError):
    """The fast composer leaves this file to PyYAML's."""


class _FastComposer(_Checks, yaml._yaml.CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """The same checks over libyaml's parser, about 5 times faster (a 1,000-rule policy parsed in 6 s with the
    pure-Python one). Only for files it reads without any problem: the pure-Python parser then reads the rest,
    so that every message and position stays PyYAML's."""

    def __init__(self, stream: str) -> None:
        yaml._yaml.CParser.__init__(self, stream)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Checks.__init__(self)
        self.text = stream

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.ScalarNode) and node.value == "" and not node.style:
            raise _StepAside  # an empty value: libyaml places it one column off PyYAML, where problems are shown
        if node is not None:  # libyaml's marks carry no text (source_of reads it from them): PyYAML's do
            node.start_mark, node.end_mark = self._mark(node.start_mark), self._mark(node.end_mark)
        return node

    def _mark(self, mark: Any) -> yaml.Mark:
        return yaml.Mark(mark.name, mark.index, mark.line, mark.column, self.text, mark.index)


class Reader:
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


def read_source(path: Path, reader: Reader) -> str | None:
    """The text of a rule file as written (line ends kept, so saving it again gives the same bytes; a UTF-8 BOM
    is dropped), or None with the problem recorded. A lone CR ends a line for YAML but not for line counts: such a
    file's line ends are made LF."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        reader.problems.append(RuleProblem(str(path), 1, 1, f"cannot read file: {exc.strerror}"))
        return None
    except UnicodeDecodeError:
        reader.problems.append(RuleProblem(str(path), 1, 1, "file is not UTF-8 text"))
        return None
    if "\r" in text.replace("\r\n", ""):
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def compose(text: str, reader: Reader) -> yaml.Node | None:
    """The node tree of a rule file's text, or None with the problem recorded at reader.path."""
    path = reader.path
    try:
        root = _compose(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, found before any parsing
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - text.rfind("\n", 0, exc.position)
        kind = "control character" if unicodedata.category(chr(exc.character)) == "Cc" else "character"
        reader.problems.append(RuleProblem(path, line, col, f"{kind} U+{exc.character:04X} is not allowed in YAML"))
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = str(exc.problem) if isinstance(exc, _Refused) else f"YAML syntax error: {exc.problem}"
        reader.problems.append(RuleProblem(path, line, col, message))
        return None
    if root is None:
        reader.problems.append(RuleProblem(path, 1, 1, "file is empty"))
    return root


def _compose(text: str) -> yaml.Node | None:
    """The node tree of the text: libyaml's parse when it finds no problem, else PyYAML's (whose errors are raised).
    Characters PyYAML's reader refuses go to PyYAML at once: libyaml may take some of them."""
    if not yaml.reader.Reader.NON_PRINTABLE.search(text):
        fast = _FastComposer(text)
        try:
            return fast.get_single_node()
        except yaml.YAMLError:
            pass
        finally:
            fast.dispose()
    return yaml.compose(text, Loader=_Composer)


def source_of(node: yaml.Node) -> tuple[str, int, int]:
    """The text the composer read (marks of a parsed string carry it) and where the node starts and ends in it."""
    buffer = node.start_mark.buffer
    return (buffer, node.start_mark.index, node.end_mark.index) if isinstance(buffer, str) else ("", 0, 0)


def position(node: yaml.Node, source: str, index: int) -> tuple[int, int]:
    """1-based line and column of source[index] (lines counted from the node's start mark)."""
    mark = node.start_mark
    return mark.line + 1 + source.count("\n", mark.index, index), index - source.rfind("\n", 0, index)
