"""Read one ZEN decision-table cell (a unary test, or an expression on `$`) and what it accepts, exactly.

Only comparisons of the column's value with constants are read: =, !=, <, <=, >, >=, lists, ranges, null checks,
joined by and / or / not (and ZEN's commas). Anything else (a function, another field, arithmetic, a template
string) is refused with a CellError naming it. What the read cell accepts is engine.jdm.truth's.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from .operators import ZEN_DECIMAL_PLACES
from .truth import literals

COMPARE = ("==", "!=", "<", "<=", ">", ">=")
FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
TOKEN = re.compile(r"""\s*(?:
    (?P<string>'[^']*'|"[^"]*"|`[^`]*`)
  | (?P<number>\d[\d_]*(?:\.\d[\d_]*)?(?:e[+-]?\d+)?)
  | (?P<range>\.\.)
  | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|%|\^|,|\(|\)|\[|\]|\$|\?\?|\?|:|\.|!)
  | (?P<word>[A-Za-z_]\w*)
  | (?P<other>\S))""", re.X)
MAX_CELL = 10_000  # characters in one cell
MAX_CONSTANTS = 500  # distinct constants in one cell


class CellError(ValueError):
    """A cell this rule language cannot express; the message says what in it."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None or match.end() == pos:  # only trailing spaces are left
            break
        kind = match.lastgroup or ""  # every alternative of TOKEN is a named group
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise CellError("the cell ends too early")
        self.pos += 1
        return token

    def at(self, *values: str) -> bool:
        token = self.peek()
        return token is not None and token[0] in ("op", "word", "range") and token[1] in values

    def expect(self, value: str) -> None:
        token = self.peek()
        if token is None or token[1] != value:
            raise CellError(f"expected '{value}' {self.where()}")
        self.pos += 1

    def where(self) -> str:
        token = self.peek()
        return f"at '{token[1]}'" if token else "at the end"

    def done(self) -> None:
        if self.peek() is not None:
            raise CellError(f"cannot read the cell {self.where()}")

    # --- literals -------------------------------------------------------------------------------------------

    def literal(self) -> Any:
        kind, value = self.peek() or ("", "")
        if kind == "op" and value == "(":
            self.take()
            inner = self.literal()
            self.expect(")")
            return inner
        if kind == "op" and value == "-":
            self.take()
            number = self.literal()
            if not isinstance(number, float):
                raise CellError(f"'-' applies to numbers only {self.where()}")
            return -number
        if kind == "number":
            self.take()
            return _number(value)
        if kind == "string":
            text = self.string()
            while self.at("+"):
                self.take()
                if (self.peek() or ("",))[0] != "string":
                    raise CellError(f"'+' joins text only {self.where()}: arithmetic is not a comparison")
                text += self.string()
            return text
        if kind == "word" and value == "null":
            self.take()
            return None
        if kind == "word" and value in ("true", "false"):
            raise CellError(f"'{value}': this rule language has no true/false facts")
        raise self.refusal()

    def string(self) -> str:
        _, value = self.take()
        if value.startswith("`") and "${" in value:
            raise CellError(f"the template string {value} computes its text: only constants can be compared")
        return value[1:-1]

    def refusal(self) -> CellError:
        """Why the token here cannot be read as a comparison with a constant."""
        token = self.peek()
        if token is None:
            return CellError("the cell ends where a value was expected")
        kind, value = token
        following = self.peek(1)
        if kind == "word" and following is not None and following[1] == "(":
            return CellError(f"'{value}(...)' is a function: only comparisons with constants can be read")
        if kind == "word":
            return CellError(f"'{value}' names a field or variable: only constants can be compared")
        if kind == "op" and value == "$":
            return CellError("'$' on the right of a comparison: compare '$' with a constant")
        return CellError(f"'{value}' is not a constant")

    def interval(self) -> tuple:
        opener = self.take()[1]
        low = self.literal()
        self.expect("..")
        high = self.literal()
        closer = self.take()[1]
        if opener == "]" or closer == "[":  # ZEN reads ']1..5[' as the numbers outside (1..5)
            raise CellError(f"the range {opener}..{closer} with outward brackets is ambiguous: write (a..b) or "
                            "a test on '$'")
        if closer not in ("]", ")"):
            raise CellError(f"a range ends with ']' or ')', not '{closer}'")
        if not isinstance(low, float) or not isinstance(high, float):
            raise CellError("a range's bounds must be numbers")
        return ("range", low, opener == "[", high, closer == "]")

    def is_interval(self) -> bool:
        """A range starts here: an opening mark, a number (maybe negative), then '..'."""
        if not self.at("[", "(", "]"):
            return False
        i = 1 + ((self.peek(1) or ("", ""))[1] == "-")
        number, dots = self.peek(i), self.peek(i + 1)
        return number is not None and number[0] == "number" and dots is not None and dots[0] == "range"

    # --- unary tests: `'a', 'b'`, `>= 5`, `[1..5]`, `> 0 and < 10` --------------------------------------

    def unary(self) -> tuple:
        return self.chain(self.unary_atom, (",", "or", "and"))

    def chain(self, item, joiners: tuple[str, ...]) -> tuple:
        """Items joined by 'and' or by 'or' (a ',' is an 'or'), not both: ZEN 2.1 gives them one precedence, left to
        right ('1, 2 and 3' is (1 or 2) and 3) and cannot parse 'and' / 'or' inside parentheses, so a mix has no
        reading both sides share."""
        items, kinds = [item()], set()
        while self.at(*joiners):
            kinds.add("and" if self.take()[1] == "and" else "or")
            items.append(item())
        if len(kinds) > 1:
            raise CellError("the cell mixes 'and' with 'or' (or ','): ZEN reads them left to right with one "
                            "precedence; split the row in two")
        return items[0] if len(items) == 1 else (kinds.pop(), items)

    def unary_atom(self) -> tuple:
        if self.is_interval():
            return self.interval()
        if self.at(*COMPARE):
            op = self.take()[1]
            return ("cmp", op, self.literal())
        if self.at("not"):
            raise CellError("'not(...)' is not read in a unary test: write it on '$', e.g. not ($ in [...])")
        return ("cmp", "==", self.literal())

    # --- expressions on `$`: `$ != null and $ >= 24`, `$ not in ['a']`, `not ($ in [1..5])` -------------

    def expression(self) -> tuple:
        return self.chain(self.negation, ("and", "or"))

    def negation(self) -> tuple:
        if self.at("not"):
            self.take()
            if not self.at("("):  # `not $ == 1` is (not $) == 1 to ZEN, an error for a number or a text
                raise CellError("'not' must be followed by a parenthesized test: not (...)")
            return ("not", self.negation())
        if self.at("(") and not self._literal_in_parens():
            self.take()
            inner = self.expression()
            self.expect(")")
            if inner[0] in ("and", "or"):
                raise CellError(f"'{inner[0]}' inside parentheses: ZEN 2.1 cannot parse it in a cell")
            return inner
        return self.comparison()

    def _literal_in_parens(self) -> bool:
        """'(' opens a constant (e.g. ('it' + "'s")) rather than a sub-expression: no '$' before its ')'."""
        depth = 0
        for _, value in self.tokens[self.pos:]:
            if value == "$":
                return False
            depth += value == "("
            depth -= value == ")"
            if depth == 0:
                return True
        return True

    def comparison(self) -> tuple:
        if self.at("$"):
            self.take()
            if self.at(*COMPARE):
                op = self.take()[1]
                value = self.literal()
                self._no_arithmetic_after()
                return ("cmp", op, value)
            negate = False
            if self.at("not"):
                self.take()
                negate = True
            if self.at("in"):
                self.take()
                node = self.interval() if self.is_interval() else self.list()
                return ("not", node) if negate else node
            raise self._after_dollar()
        value = self.literal()
        if self.at(*COMPARE):
            op = self.take()[1]
            if not self.at("$"):
                raise CellError(f"a comparison of two constants {self.where()}: compare '$' with a constant")
            self.take()
            return ("cmp", FLIP[op], value)
        raise CellError(f"a constant alone {self.where()}: in an expression cell, compare '$' with it")

    def _no_arithmetic_after(self) -> None:
        if self.at("+", "-", "*", "/", "%", "^", "??", "?"):
            raise CellError(f"'{self.take()[1]}' computes a value: only comparisons with constants can be read")

    def _after_dollar(self) -> CellError:
        token = self.peek()
        if token is None:
            return CellError("'$' alone is not a test: compare it with a constant")
        if token[1] in ("+", "-", "*", "/", "%", "^"):
            return CellError(f"'$ {token[1]} ...' computes a value: only comparisons with constants can be read")
        if token[1] == ".":
            return CellError("'$.' reads a member of the value: only the value itself can be compared")
        return CellError(f"cannot read '$' followed by '{token[1]}'")

    def list(self) -> tuple:
        self.expect("[")
        items = []
        while not self.at("]"):
            items.append(self.literal())
            if not self.at("]"):
                self.expect(",")
        self.take()
        return ("in", items)


def _number(text: str) -> float:
    """A number literal read as the double our engine compares, refused unless ZEN's decimal is that double."""
    clean = text.replace("_", "")
    try:
        exact = Decimal(clean)
    except InvalidOperation:
        raise CellError(f"'{text}' is not a number") from None
    value = float(exact)
    if not math.isfinite(value) or Decimal(repr(value)) != exact:
        raise CellError(f"the number {text} is not exactly a double (our engine would compare another number)")
    if exact != 0 and int(exact.as_tuple().exponent) < -ZEN_DECIMAL_PLACES:  # an int: the number is finite
        raise CellError(f"the number {text} has more than {ZEN_DECIMAL_PLACES} decimal places")
    return value


def parse(text: str) -> tuple | None:
    """The test a cell makes (None for an empty cell: any value, given or not)."""
    if not text.strip():
        return None
    if len(text) > MAX_CELL:
        raise CellError(f"the cell is longer than {MAX_CELL:,} characters")
    try:
        return _parse(text)
    except RecursionError:
        raise CellError("the cell nests too deeply") from None


def _parse(text: str) -> tuple:
    parser = Parser(text)
    other = next((v for k, v in parser.tokens if k == "other"), None)
    if other is not None:
        raise CellError(f"'{other}' is not part of a comparison")
    has_dollar = any(k == "op" and v == "$" for k, v in parser.tokens)
    node = parser.expression() if has_dollar else parser.unary()
    parser.done()
    if len(set(map(repr, literals(node)))) > MAX_CONSTANTS:  # reading it costs constants x tests
        raise CellError(f"the cell compares with more than {MAX_CONSTANTS} constants")
    return node
