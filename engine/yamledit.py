"""Edit YAML text where it is written: replace, insert or delete one value and keep every other byte (comments,
key order, quoting, indentation, line ends), with new values written by PyYAML's emitter in the dialect the
rule reader reads (engine.yamlwrite)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import yaml

from .errors import EditError, RuleError
from .yamlread import Reader, compose
from .yamlwrite import INDENT, WIDTH, block, block_scalar, data, fits_line, inline

Key = str | int


@dataclass(frozen=True, slots=True)
class Node:
    """A value of a YAML document: where it is written and what it holds (a scalar's value, a mapping's
    (key, key node, value node) entries, a sequence's items)."""

    kind: Literal["scalar", "mapping", "sequence"]
    start: int
    end: int  # after its last character of content (a block value's trailing blank lines and comments excluded)
    column: int
    flow: bool  # a flow collection ({...}, [...]); for a scalar, False when it is a block scalar (| or >)
    style: str | None
    value: Any

    def entries(self) -> tuple[tuple[str, Node, Node], ...]:
        return self.value if self.kind == "mapping" else ()

    def items(self) -> tuple[Node, ...]:
        return self.value if self.kind == "sequence" else ()

    def plain(self) -> Any:
        if self.kind == "mapping":
            return {key: v.plain() for key, _, v in self.entries()}
        if self.kind == "sequence":
            return [item.plain() for item in self.items()]
        return self.value


@lru_cache(maxsize=16)
def tree(text: str, source: str = "<string>") -> Node:
    """The document's nodes with their places (kept for the last 16 texts: one what-if session edits one
    text again and again). Raises RuleError where the text is not YAML the rule reader accepts."""
    reader = Reader(source)
    root = compose(text, reader)
    if root is None:
        raise RuleError(reader.problems)
    return _node(root, text, reader)


def _node(node: yaml.Node, text: str, reader: Reader) -> Node:
    start, column = node.start_mark.index, node.start_mark.column
    if isinstance(node, yaml.ScalarNode):
        block = node.style in ("|", ">")
        end = start + len(text[start:node.end_mark.index].rstrip()) if block else node.end_mark.index
        return Node("scalar", start, end, column, not block, node.style, reader.scalar(node))
    flow = isinstance(node, yaml.CollectionNode) and bool(node.flow_style)
    if isinstance(node, yaml.MappingNode):
        entries = tuple((str(reader.scalar(k)), _node(k, text, reader), _node(v, text, reader))
                        for k, v in node.value)
        last = max((max(k.end, v.end) for _, k, v in entries), default=start)
        return Node("mapping", start, node.end_mark.index if flow else last, column, flow, None, entries)
    items = tuple(_node(item, text, reader) for item in node.value)
    last = items[-1].end if items else start
    return Node("sequence", start, node.end_mark.index if flow else last, column, flow, None, items)


# ---------------------------------------------------------------------------------------------- editing

Splice = tuple[int, int, str]  # text[start:end] becomes the string


class _Awkward(Exception):
    """A place the minimal edit cannot handle (a key sharing its line with another): the value is written anew."""


@dataclass(frozen=True)
class _Slot:
    """Where a node sits: under a mapping key, as an item of a block sequence (dashes at `dash`), or the root."""

    key: Node | None = None
    dash: int | None = None


def replace(text: str, path: tuple[Key, ...], value: Any, source: str = "<string>", check: bool = True) -> str:
    """text with the value at path made `value`, changing only what differs. A missing mapping key on the way
    is added. With check, the result is read back: it must hold value at path and be unchanged elsewhere."""
    value = data(value)
    root = tree(text, source)
    for depth in range(len(path)):
        child, _ = _find(root, path[: depth + 1], missing_ok=True)
        if child is None:  # add the key to its mapping, with the rest of the path as nested mappings
            parent, _ = _find(root, path[:depth])
            for key in reversed(path[depth + 1:]):
                value = {key: value}
            return replace(text, path[:depth], {**parent.plain(), path[depth]: value}, source, check)
    node, slot = _find(root, path)
    out = _apply(text, _patch(text, node, value, slot))
    if check:
        _check(text, out, path, value, source)
    return out


def delete(text: str, path: tuple[Key, ...], source: str = "<string>") -> str:
    """text without the mapping key or sequence item at path (with the comment lines just above it)."""
    root = tree(text, source)
    node, _ = _find(root, path)
    parent, _ = _find(root, path[:-1])
    key = path[-1]
    try:
        if parent.kind == "mapping" and not parent.flow and len(parent.entries()) > 1:
            knode = next(k for name, k, _ in parent.entries() if name == key)
            return _apply(text, [_delete_pair(text, parent, knode, node)])
        if parent.kind == "sequence" and not parent.flow and len(parent.items()) > 1:
            return _apply(text, [_delete_item(text, parent, int(key))])
    except _Awkward:
        pass
    rest = parent.plain()
    rest = {k: v for k, v in rest.items() if k != key} if isinstance(rest, dict) else \
        [v for i, v in enumerate(rest) if i != int(key) % len(rest)]
    return replace(text, path[:-1], rest, source)


def append(text: str, path: tuple[Key, ...], value: Any, source: str = "<string>") -> str:
    """text with value added as the last item of the sequence at path."""
    node, _ = _find(tree(text, source), path)
    if node.kind != "sequence":
        raise EditError(_show(path), f"{_show(path)} is not a list")
    return replace(text, path, [*node.plain(), value], source)


def _show(path: tuple[Key, ...]) -> str:
    return ".".join(str(k) for k in path) or "the document"


def _find(root: Node, path: tuple[Key, ...], missing_ok: bool = False) -> tuple[Any, _Slot]:
    node, slot = root, _Slot()
    for depth, key in enumerate(path):
        if node.kind == "mapping" and isinstance(key, str):
            hit = next(((k, v) for name, k, v in node.entries() if name == key), None)
            if hit is not None:
                node, slot = hit[1], _Slot(key=hit[0])
                continue
        elif node.kind == "sequence" and isinstance(key, int) and -len(node.items()) <= key < len(node.items()):
            node, slot = node.items()[key], _Slot(dash=node.column)
            continue
        if missing_ok and depth == len(path) - 1 and node.kind == "mapping":
            return None, slot
        raise EditError(_show(path), f"the document has no {_show(path[:depth + 1])}")
    return node, slot


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML data: true is not 1, and a mapping's key order does not matter."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _patch(text: str, node: Node, value: Any, slot: _Slot) -> list[Splice]:
    if _same(node.plain(), value):
        return []
    try:
        if node.kind == "mapping" and not node.flow and isinstance(value, dict) and value:
            return _patch_mapping(text, node, value)
        if node.kind == "sequence" and not node.flow and isinstance(value, list) and value:
            return _patch_sequence(text, node, value)
    except _Awkward:
        pass
    return [_whole(text, node, value, slot)]


def _patch_mapping(text: str, node: Node, value: dict) -> list[Splice]:
    old = {name: (k, v) for name, k, v in node.entries()}
    if not old.keys() & value.keys():
        raise _Awkward
    splices: list[Splice] = []
    for name, (k, v) in old.items():
        splices += _patch(text, v, value[name], _Slot(key=k)) if name in value else [_delete_pair(text, node, k, v)]
    anchor: tuple[Node, Node] | None = None
    pending: list[str] = []
    for name in [*value, None]:  # each run of new keys goes after the kept key before it
        if name is not None and name not in old:
            pending.append(name)
            continue
        if pending:
            splices.append(_insert_pairs(text, node, anchor, {k: value[k] for k in pending}))
            pending = []
        anchor = old[name] if name is not None else anchor
    return splices


def _patch_sequence(text: str, node: Node, value: list) -> list[Splice]:
    items = node.items()
    kept = min(len(items), len(value))
    splices = [s for i in range(kept) for s in _patch(text, items[i], value[i], _Slot(dash=node.column))]
    if len(value) > len(items):
        splices.append(_append_items(text, node, value[len(items):]))
    elif len(value) < len(items):
        splices.append((_line_end(text, items[kept - 1].end), _line_end(text, items[-1].end), ""))
    return splices


def _whole(text: str, node: Node, value: Any, slot: _Slot) -> Splice:
    """The node written anew in its place."""
    if node.kind == "scalar" and not node.flow and isinstance(value, str):  # a block scalar stays one
        written = block_scalar(value, node.style, _content_indent(text, node, slot))
        if written is not None:
            return node.start, node.end, written
    keep_flow = node.flow and node.kind != "scalar" and isinstance(value, dict | list)
    one_line = fits_line(value) or (keep_flow and len(inline(value)) <= WIDTH - node.column)
    if slot.key is None and slot.dash is None:
        return node.start, node.end, inline(value) if one_line else block(value)
    if one_line:
        if node.kind == "scalar" or node.flow:  # quoted text stays quoted the same way
            quote = node.style if node.kind == "scalar" and node.style in ("'", '"') else None
            return node.start, node.end, (" " if node.start == node.end else "") + inline(value, quote)
        if slot.key is not None:
            return slot.key.end, node.end, ": " + inline(value)
        return node.start, node.end, inline(value)
    if slot.key is not None:
        pad = " " * (node.column if node.kind != "scalar" and not node.flow else slot.key.column + INDENT)
        return slot.key.end, node.end, ":\n" + textwrap.indent(block(value), pad)
    lines = block(value).split("\n")
    assert slot.dash is not None
    return node.start, node.end, "\n".join([lines[0], *(" " * (slot.dash + INDENT) + line for line in lines[1:])])


def _content_indent(text: str, node: Node, slot: _Slot) -> int:
    for line in text[node.start:node.end].split("\n")[1:]:
        if line.strip():
            return len(line) - len(line.lstrip(" "))
    return (slot.key.column if slot.key is not None else slot.dash or 0) + INDENT


def _pair(name: str, value: Any, column: int) -> str:
    if fits_line(value):
        return f"{inline(name)}: {inline(value)}"
    return f"{inline(name)}:\n" + textwrap.indent(block(value), " " * (column + INDENT))


def _insert_pairs(text: str, node: Node, anchor: tuple[Node, Node] | None, pairs: dict) -> Splice:
    pad = " " * node.column
    if anchor is not None:
        at = _line_end(text, max(anchor[0].end, anchor[1].end))
        return at, at, "".join(f"\n{pad}{_pair(k, v, node.column)}" for k, v in pairs.items())
    first = node.entries()[0][1]
    if not _starts_line(text, first.start):
        raise _Awkward
    at = _line_start(text, first.start)
    return at, at, "".join(f"{pad}{_pair(k, v, node.column)}\n" for k, v in pairs.items())


def _append_items(text: str, node: Node, values: list) -> Splice:
    items = node.items()
    at = _line_end(text, items[-1].end)
    blank = 0
    if len(items) > 1:  # the blank lines between the last two items separate the new ones too
        gap = text[_line_end(text, items[-2].end):_line_start(text, items[-1].start)].split("\n")[1:-1]
        blank = sum(1 for line in gap if not line.strip())
    pad = " " * node.column
    out = ""
    for value in values:
        lines = block(value).split("\n")
        item = "\n".join([lines[0], *(pad + " " * INDENT + line for line in lines[1:])])
        out += "\n" * (1 + blank) + f"{pad}- {item}"
    return at, at, out


def _delete_pair(text: str, node: Node, key: Node, value: Node) -> Splice:
    if not _starts_line(text, key.start):
        raise _Awkward
    start = _comments_above(text, _line_start(text, key.start), node.column)
    return start, _next_line(text, max(key.end, value.end)), ""


def _delete_item(text: str, node: Node, index: int) -> Splice:
    items = node.items()
    item = items[index]
    start = _line_start(text, item.start)
    if text[start:item.start].strip() != "-":
        raise _Awkward
    if item is items[-1]:  # from the end of the item before: the separator goes with it
        return _line_end(text, items[index - 1].end), _line_end(text, item.end), ""
    following = _comments_above(text, _line_start(text, items[index + 1].start), node.column)
    return _comments_above(text, start, node.column), following, ""


def _starts_line(text: str, index: int) -> bool:
    return not text[_line_start(text, index):index].strip()


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Where the line holding text[index] ends, before its line break (so after any comment on it)."""
    found = text.find("\n", index)
    end = len(text) if found < 0 else found
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _next_line(text: str, index: int) -> int:
    """Where the line after the one holding text[index] starts."""
    found = text.find("\n", index)
    return len(text) if found < 0 else found + 1


def _comments_above(text: str, start: int, column: int) -> int:
    """start moved up over the comment lines written just above it at the same indentation."""
    while start > 0:
        above = _line_start(text, start - 1)
        line = text[above:start].rstrip("\r\n")
        if not line.lstrip().startswith("#") or len(line) - len(line.lstrip(" ")) != column:
            break
        start = above
    return start


def _apply(text: str, splices: list[Splice]) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    out = text
    last = len(text) + 1
    for start, end, new in sorted(splices, key=lambda s: (s[0], s[1]), reverse=True):
        if end > last:
            raise AssertionError(f"overlapping edits at {start}..{end}")  # a bug of this module, not of the input
        out = out[:start] + (new.replace("\n", newline) if newline != "\n" else new) + out[end:]
        last = start
    return out


def _check(before: str, after: str, path: tuple[Key, ...], value: Any, source: str) -> None:
    expected = tree(before, source).plain()
    holder = expected
    for key in path[:-1]:
        holder = holder[key]
    if path:
        holder[path[-1]] = value
    else:
        expected = value
    try:
        got = tree(after, source).plain()
    except RuleError as exc:
        raise AssertionError(f"an edit of {_show(path)} made text that does not read: {exc}") from None
    if not _same(got, expected):
        raise AssertionError(f"an edit of {_show(path)} does not read back as written")
