"""Test scenarios: orders with the action (and rule) each must get, run against a policy, with the coverage of
the policy's rules by the cases and by the rule examples."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .batch import check_strict_columns, evaluate_frame, unknown_columns
from .compiler import CompiledPolicy
from .csvio import check_repeated, check_width, max_columns_from_env
from .decision import decide
from .errors import CaseError, InputError, OrderError
from .facts import input_fields, parse_timestamp
from .junit import write_junit
from .model import PolicySpec
from .tabular import read_reason
from .text import alias_key, did_you_mean, echo

# The columns that say what a case expects (and when it is judged); every other column is the case's order.
CASE_COLUMNS = ("case", "expected_action", "expected_rule", "as_of")
_ROLE = {"case": "name", "expected_action": "expected action", "expected_rule": "expected rule",
         "as_of": "as-of time"}
RESULT_COLUMNS = ("case", "passed", "expected_action", "expected_rule", "action", "rule_id", "why", "error")
COVERAGE_COLUMNS = ("rule", "priority", "action", "cases", "examples", "hits")
MAX_SHOWN_FAILURES = 100  # the text report's failures table; the JUnit file and the frame hold them all


@dataclass(frozen=True)
class Cases:
    """Test cases as read: a frame of text columns, its source, and the file line each row starts on."""

    frame: pd.DataFrame
    source: str = "cases"
    lines: tuple[int, ...] | None = None  # None: the rows of a frame, located by their place (row N)


def read_cases(source: str | Path | bytes, name: str | None = None, max_columns: int | None = None) -> Cases:
    """A CSV of cases (UTF-8, with or without BOM), every cell as text ('' is not given), each row with the
    line it starts on; a row with more cells than the header is refused at its line."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "cases")
    limit = max_columns_from_env() if max_columns is None else max_columns
    try:
        raw = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(name, read_reason(exc)) from None
    records = _records(text, name)
    header = next(records, None)
    if header is None:
        raise InputError(name, "the file is empty (no header row)")
    check_width(header[1], name, limit)
    width = len(header[1])
    rows: list[list[str]] = []
    lines: list[int] = []
    for line, cells in records:
        if len(cells) > width:
            raise CaseError(name, f"{len(cells)} cells, the header has {width}", line=line, row=len(rows) + 1)
        rows.append(cells + [""] * (width - len(cells)))  # a short row: its last cells are not given
        lines.append(line)
    frame = pd.DataFrame(rows, columns=header[1], dtype=object) if rows else \
        pd.DataFrame({c: pd.Series(dtype=object) for c in header[1]})
    return Cases(frame, name, tuple(lines))


def _records(text: str, name: str) -> Iterator[tuple[int, list[str]]]:
    """(the line a record starts on, its cells) for each non-blank record of a CSV text."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # an unclosed quote is an error, not a cell
    end = 0
    try:
        for cells in reader:
            start, end = end + 1, reader.line_num
            if len(cells) > 1 or any(c.strip() for c in cells):
                yield start, cells
    except csv.Error as exc:
        raise InputError(f"{name}:{reader.line_num}", f"malformed CSV: {exc}") from None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or \
        (not isinstance(value, str) and bool(pd.isna(value)))


def _text(value: Any) -> str:
    return "" if _blank(value) else str(value).strip()


@dataclass(frozen=True)
class _Columns:
    """Where a frame of cases holds each case column (None: absent), and its order columns."""

    names: dict[str, str | None]
    orders: list[str]


def _columns(spec: PolicySpec, frame: pd.DataFrame, source: str) -> _Columns:
    """The case columns (matched as headers are: case and spaces aside) and the order columns; a missing
    expected_action column, a case column given twice, or a column that looks like a misspelt field or case
    column is the input's error."""
    read = input_fields(spec)
    clash = [name for name in CASE_COLUMNS if name in read]
    if clash:
        raise InputError(source, f"the policy reads a field named {clash[0]!r}, the column of a case's "
                                 f"{_ROLE[clash[0]]}: it cannot be tested with cases", clash)
    check_repeated([str(c) for c in frame.columns], read, source)
    found: dict[str, str | None] = dict.fromkeys(CASE_COLUMNS)
    orders = []
    for col in map(str, frame.columns):
        key = alias_key(col).replace(" ", "_")
        if key in found:
            if found[key] is not None:
                raise InputError(source, f"column {key!r} appears more than once ({found[key]!r}, {col!r})", [col])
            found[key] = col
        else:
            orders.append(col)
    for col in unknown_columns(spec, orders):
        hint = did_you_mean(col, CASE_COLUMNS, 0.8, fold=True)
        if hint:
            raise InputError(source, f"unknown column {col!r} (did you mean {hint!r}?)", [col])
    if found["expected_action"] is None:
        raise InputError(source, "no 'expected_action' column: each case names the action it expects "
                                 f"(columns found: {', '.join(map(str, frame.columns[:20]))})", ["expected_action"])
    check_strict_columns(spec, orders, source)  # a misspelt order field would silently test something else
    return _Columns(found, orders)


@dataclass(frozen=True)
class _Expectation:
    name: str
    action: str
    rule: str | None
    as_of: datetime | None


def _expectations(spec: PolicySpec, cases: Cases, columns: _Columns) -> list[_Expectation]:
    """Each case's name, expected action and rule, and as-of; the first bad one is a located CaseError."""
    frame = cases.frame
    out: list[_Expectation] = []
    seen: dict[str, str] = {}
    ids = [r.id for r in spec.rules]

    def cell(column: str, i: int) -> str:
        col = columns.names[column]
        return "" if col is None else _text(frame[col].iat[i])

    for i in range(len(frame)):
        line = cases.lines[i] if cases.lines else 0
        name = cell("case", i) or (f"line {line}" if line else f"row {i + 1}")

        def fail(message: str, i: int = i, line: int = line, name: str = name) -> CaseError:
            return CaseError(cases.source, message, line=line, row=i + 1, case=name if cell("case", i) else None)

        if name in seen:
            raise fail(f"the name repeats the case of {seen[name]}")
        seen[name] = f"line {line}" if line else f"row {i + 1}"
        action, rule, stamp = cell("expected_action", i), cell("expected_rule", i), cell("as_of", i)
        if not action:
            raise fail("expected_action is empty")
        if action not in spec.actions:
            raise fail(f"unknown action {echo(action)} in expected_action{_hint(action, spec.actions)}")
        if rule and rule not in ids:
            raise fail(f"unknown rule {echo(rule)} in expected_rule{_hint(rule, ids)}")
        if rule and spec.rule(rule).action != action:
            raise fail(f"expected_rule {rule!r} gives {spec.rule(rule).action}, not the expected_action {action}")
        at = parse_timestamp(stamp) if stamp else None
        if stamp and at is None:
            raise fail(f"as_of is not an ISO 8601 timestamp: {echo(stamp)}")
        out.append(_Expectation(name, action, rule or None, at))
    return out


def _hint(word: str, choices: Any) -> str:
    hint = did_you_mean(word, choices, fold=True)
    return f" (did you mean {hint!r}?)" if hint else ""


def run_cases(compiled: CompiledPolicy, cases: Cases, as_of: datetime) -> pd.DataFrame:
    """One row per case, in input order (the cases' index): its name, whether it passed, what it expected, the
    action and rule it got, and why (the decision's message, or the order's error: such a case fails).

    Cases without an as_of of their own are judged at as_of. Bad cases (no expectation, an unknown action or
    rule, no cases at all) raise a located CaseError or InputError before anything is decided."""
    spec = compiled.spec
    columns = _columns(spec, cases.frame, cases.source)
    if not len(cases.frame):
        raise InputError(cases.source, "no cases (a header and no rows)")
    expected = _expectations(spec, cases, columns)
    orders = cases.frame[columns.orders]
    n = len(orders)
    got = {name: np.full(n, None, dtype=object) for name in ("action", "rule_id", "message", "error")}
    groups: dict[datetime, list[int]] = {}
    for i, e in enumerate(expected):
        groups.setdefault(e.as_of or as_of, []).append(i)
    for at, rows in groups.items():  # one batch per as-of time
        part = evaluate_frame(compiled, orders.iloc[rows], at, source=cases.source)
        for name, values in got.items():
            values[rows] = part[name].to_numpy(dtype=object)
    passed = [e.action == a and (e.rule is None or e.rule == r) and err is None
              for e, a, r, err in zip(expected, got["action"], got["rule_id"], got["error"], strict=True)]
    data = {
        "case": [e.name for e in expected], "passed": passed,
        "expected_action": [e.action for e in expected], "expected_rule": [e.rule for e in expected],
        "action": got["action"], "rule_id": got["rule_id"],
        "why": [err if err is not None else msg for err, msg in zip(got["error"], got["message"], strict=True)],
        "error": got["error"]}
    index = cases.frame.index
    # object columns, as evaluate's: no string inference (a missing value stays None, not NaN)
    return pd.DataFrame({name: pd.Series(values, index=index, dtype=bool if name == "passed" else object)
                         for name, values in data.items()}, index=index, columns=list(RESULT_COLUMNS))


def example_rules(compiled: CompiledPolicy, as_of: datetime) -> list[str]:
    """The rule each of the policy's examples (of its rules, then its own) fires, at as_of; an example that is
    not a valid order, or gets no rule, counts for none."""
    spec = compiled.spec
    fired = []
    for example in [ex for rule in spec.rules for ex in rule.examples] + list(spec.examples):
        try:
            rule_id = decide(compiled, example.order, as_of).rule_id
        except OrderError:
            continue
        if rule_id:
            fired.append(rule_id)
    return fired


def coverage(spec: PolicySpec, results: pd.DataFrame, examples: list[str]) -> pd.DataFrame:
    """Per rule, in firing order: how many cases and how many rule examples it decided, and the sum."""
    by_case, by_example = Counter(results["rule_id"].dropna()), Counter(examples)
    rows = [(r.id, r.priority, r.action, by_case[r.id], by_example[r.id], by_case[r.id] + by_example[r.id])
            for r in spec.ranked_rules()]
    return pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))


@dataclass(frozen=True)
class ScenarioReport:
    """A run of test cases: the per-case results, the coverage of the rules, and where the cases came from."""

    results: pd.DataFrame
    coverage: pd.DataFrame
    cases: Cases
    policy: str  # name and version
    unread_columns: tuple[str, ...] = ()

    @property
    def failures(self) -> pd.DataFrame:
        return self.results[~self.results["passed"]]

    @property
    def ok(self) -> bool:
        return bool(self.results["passed"].all())

    @property
    def exit_code(self) -> int:
        """0 when every case passes, 1 when one fails (bad input never makes a report: it raises, exit 2)."""
        return 0 if self.ok else 1

    @property
    def zero_hit_rules(self) -> list[str]:
        return self.coverage.loc[self.coverage["hits"] == 0, "rule"].tolist()

    def write_junit(self, target: str | Path) -> None:
        """The JUnit XML of the run, one testcase per case (named by the case, else its line), written whole."""
        source = self.cases.source
        write_junit(self.results, target, Path(source).stem or source, source if self.cases.lines else None,
                    self.cases.lines)

    def __str__(self) -> str:
        failed = self.failures
        lines = [f"{self.cases.source}: {len(self.results)} cases, {len(self.results) - len(failed)} passed, "
                 f"{len(failed)} failed (policy {self.policy})"]
        if self.unread_columns:
            lines.append("columns not read by the policy: " + ", ".join(map(_printable, self.unread_columns)))
        if len(failed):
            rows = [[c, _expected(e, r), a if isinstance(a, str) else "no action", _text(rule), _text(why)]
                    for c, e, r, a, rule, why in zip(failed["case"], failed["expected_action"],
                                                     failed["expected_rule"], failed["action"], failed["rule_id"],
                                                     failed["why"], strict=True)]
            lines += ["failures:", *_table(["case", "expected", "got", "rule", "why"], rows[:MAX_SHOWN_FAILURES])]
            if len(rows) > MAX_SHOWN_FAILURES:
                lines.append(f"  ... and {len(rows) - MAX_SHOWN_FAILURES} more (all of them in --junit)")
        cov = self.coverage
        lines.append(f"coverage of the rules by the cases and the rule examples ({int(cov['examples'].sum())} "
                     "examples), in firing order:")
        lines += _table(["rule", "cases", "examples"], [[r, str(c), str(x)] for r, c, x in
                                                        zip(cov["rule"], cov["cases"], cov["examples"], strict=True)])
        zero = self.zero_hit_rules
        lines.append(f"rules no case or example hits: {', '.join(zero) if zero else 'none'}")
        return "\n".join(lines)


def _expected(action: str, rule: Any) -> str:
    return f"{action} (rule {rule})" if isinstance(rule, str) and rule else action


def _printable(text: Any) -> str:
    """One line a terminal shows as it is: whitespace runs as one space, other control characters escaped."""
    flat = " ".join(str(text).split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in flat)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    cells = [[_printable(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers) - 1)]
    return ["  " + "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
            for r in cells]


def run_scenarios(compiled: CompiledPolicy, cases: Cases, as_of: datetime, examples_as_of: datetime
                  ) -> ScenarioReport:
    """Run the cases (see run_cases) and count the rules they and the policy's examples hit."""
    results = run_cases(compiled, cases, as_of)
    spec = compiled.spec
    order_columns = _columns(spec, cases.frame, cases.source).orders
    unread = tuple(unknown_columns(spec, order_columns))
    return ScenarioReport(results, coverage(spec, results, example_rules(compiled, examples_as_of)), cases,
                          f"{spec.name} {spec.version}", unread)
