"""JUnit XML of a test-scenario run: one testcase per case, failures carrying expected, got, rule and why."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import atomic_file, remove_stale
from .errors import InputError
from .tabular import write_reason

# XML 1.0 has no way to write these characters (control characters, lone surrogates, U+FFFE/FFFF), not even
# escaped: a case name or an order value holding one would make the whole file unreadable, so it is replaced.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str:
    """A value as text that XML 1.0 can hold (characters it cannot are replaced by U+FFFD)."""
    return _NOT_XML.sub("\ufffd", "" if value is None else str(value))


def _text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def junit_tree(results: pd.DataFrame, suite: str, file: str | None = None,
               lines: tuple[int, ...] | None = None) -> ET.ElementTree:
    """The JUnit document of Policy.test's results: a case whose order is invalid is an <error>, a case that
    gets another action (or rule) a <failure>; both say what was expected, what came, by which rule and why."""
    failures = int((~results["passed"] & results["error"].isna()).sum())
    errors = int(results["error"].notna().sum())
    counts = {"tests": str(len(results)), "failures": str(failures), "errors": str(errors), "skipped": "0"}
    root = ET.Element("testsuites", {"name": "cancel-rules test", **counts})
    suite_el = ET.SubElement(root, "testsuite", {"name": xml_text(suite), **counts})
    for k, row in enumerate(results.itertuples(index=False)):
        attrs = {"classname": xml_text(suite), "name": xml_text(row.case)}
        if file:
            attrs["file"] = xml_text(file)
        if lines:
            attrs["line"] = str(lines[k])
        case_el = ET.SubElement(suite_el, "testcase", attrs)
        if row.passed:
            continue
        expected = _text(row.expected_action) + (f" (rule {row.expected_rule})" if _text(row.expected_rule) else "")
        got = _text(row.action) or "no action"
        tag = "failure" if _text(row.error) == "" else "error"
        outcome = ET.SubElement(case_el, tag, {
            "message": xml_text(f"expected {expected}, got {got}" + (f" (rule {row.rule_id})" if _text(row.rule_id)
                                                                     else "")),
            "type": "InvalidOrder" if tag == "error" else "WrongDecision"})
        outcome.text = xml_text(f"expected: {expected}\ngot: {got}\nrule: {_text(row.rule_id) or '-'}\n"
                                f"why: {_text(row.why)}\n")
    ET.indent(root, space="  ")
    return ET.ElementTree(root)


def write_junit(results: pd.DataFrame, target: str | Path, suite: str, file: str | None = None,
                lines: tuple[int, ...] | None = None) -> None:
    """Write the JUnit XML of results to target; the file appears only complete (engine.atomic)."""
    target = Path(target)
    if not target.parent.is_dir():
        raise InputError(str(target), f"output folder does not exist: {target.parent}")
    tree = junit_tree(results, suite, file, lines)
    remove_stale(target)
    try:
        with atomic_file(target) as sink:
            tree.write(sink, encoding="utf-8", xml_declaration=True)
            sink.write(b"\n")
    except OSError as exc:
        raise InputError(str(target), write_reason(exc)) from None
