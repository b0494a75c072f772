"""HTML views of policies, decisions, tables and what would change a decision: renderers of data, nothing more."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .errors import OrderError
from .model import Condition, KeyedParameter, ParamRef, PolicySpec, Rule
from .operators import OPERATORS, ConditionResult, check
from .text import format_value, humanize

if TYPE_CHECKING:  # types only: this module renders data, and decision.py and probe.py import it
    from .decision import Decision
    from .probe import Change

# Inline styles, not a <style> block: notebook viewers (and GitHub) drop style elements but keep attributes.
_FONT = "font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px;line-height:1.4"
_TABLE = "border-collapse:collapse;width:100%;" + _FONT
_TH = "text-align:left;padding:4px 8px;border-bottom:2px solid #999;background:#f4f4f4"
_TD = "padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top;text-align:left"
_ROW_STYLES = {
    "fired": "background:#d7f5dd;box-shadow:inset 4px 0 0 #1e8e3e;font-weight:600",
    "also": "background:#fff4ce",
    "none": "",
}
_BADGES = {
    "fired": ("fired", "#1e8e3e"),
    "also": ("also matched", "#b06000"),
}
_OK = "<span style='color:#1e8e3e;font-weight:700'>✓</span>"
_NO = "<span style='color:#c5221f;font-weight:700'>✗</span>"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(text: str, color: str) -> str:
    return (f"<span style='display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;"
            f"font-weight:600;color:#fff;background:{color}'>{esc(text)}</span>")


def table_html(rows: Iterable[Sequence[Any]], columns: Sequence[str], *, raw: bool = False,
               row_attrs: Iterable[str] | None = None, caption: str = "") -> str:
    """A plain styled table; cells are escaped unless `raw` (then they are trusted HTML)."""
    attrs = list(row_attrs) if row_attrs is not None else None
    head = "".join(f"<th style=\"{_TH}\">{esc(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f"<td style=\"{_TD}\">{cell if raw else esc(_cell(cell))}</td>" for cell in row)
        body.append(f"<tr {attrs[i] if attrs else ''}>{cells}</tr>")
    cap = f"<caption style='text-align:left;font-weight:600;padding:4px 0'>{esc(caption)}</caption>" if caption else ""
    return f"<table style=\"{_TABLE}\">{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if type(value).__name__ in ("NAType", "NaTType"):
        return ""
    return format_value(value) if isinstance(value, float) else str(value)


def frame_html(frame: Any, max_rows: int = 50, caption: str = "") -> str:
    """A pandas DataFrame as a styled table, cut at `max_rows` with a note of how many rows were left out."""
    shown = frame.head(max_rows)
    rows = [[_cell(v) for v in rec] for rec in shown.itertuples(index=False, name=None)]
    out = table_html(rows, [str(c) for c in frame.columns], caption=caption)
    if len(frame) > max_rows:
        out += f"<div style='{_FONT};color:#666'>… {len(frame) - max_rows:,} more rows not shown</div>"
    return out


def chart_html(png: bytes, alt: str, max_width: str = "100%", kind: str = "png") -> str:
    """A chart (PNG, or SVG with kind="svg+xml") as an <img> with its alt text (what it shows, in words); no image
    at all without data, so a page never shows a broken-image icon."""
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f"<img class='cr-chart' src='data:image/{kind};base64,{data}' alt='{esc(alt)}' "
            f"style='max-width:{max_width};height:auto'>")


def bars_svg(labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[int]]], title: str) -> bytes:
    """Grouped horizontal bars as SVG ((name, color, values) per series, a bar each per label, its value beside
    it): drawn in microseconds, where matplotlib takes a few tenths of a second per redraw."""
    bar, gap, left, width, top = 12, 8, 170, 300, 40
    group = bar * len(series) + gap
    high = max([v for _, _, values in series for v in values] + [1])
    height = top + group * len(labels) + 10
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + width + 60}' height='{height}' "
           f"font-family='sans-serif' font-size='11'><text x='4' y='14' font-size='13'>{esc(title)}</text>"]
    for k, (name, color, _) in enumerate(series):  # the legend
        out.append(f"<rect x='{4 + 90 * k}' y='22' width='10' height='10' fill='{color}'/>"
                   f"<text x='{18 + 90 * k}' y='31'>{esc(name)}</text>")
    for i, label in enumerate(labels):
        y = top + i * group
        out.append(f"<text x='{left - 6}' y='{y + bar * len(series) / 2 + 4}' text-anchor='end'>{esc(label)}</text>")
        for k, (_, color, values) in enumerate(series):
            length = width * values[i] / high
            out.append(f"<rect x='{left}' y='{y + k * bar}' width='{length:.1f}' height='{bar - 1}' fill='{color}'/>"
                       f"<text x='{left + length + 3:.1f}' y='{y + k * bar + bar - 3}'>{values[i]:,}</text>")
    return ("".join(out) + "</svg>").encode("utf-8")


def coverage_html(coverage: Any, actions: Mapping[str, str] | None = None) -> str:
    """Rule coverage (Policy.coverage's frame) as a table: every rule in firing order with its orders; a rule no
    order reaches is highlighted, so that it is the first thing seen."""
    actions = actions or {}
    rows, attrs = [], []
    for rank, rec in enumerate(coverage.itertuples(index=False), start=1):
        zero = rec.orders == 0
        badge = " " + _badge("no order", "#b06000") if zero else ""
        rows.append([str(rank), f"<code>{esc(rec.rule_id)}</code>{badge}", _action_html(rec.action, actions),
                     f"{rec.orders:,}", f"{rec.share:.1f} %"])
        attrs.append(f"class='cr-coverage-row' data-rule='{esc(rec.rule_id)}' data-orders='{rec.orders}'"
                     + (f" style=\"{_ROW_STYLES['also']}\"" if zero else ""))
    return table_html(rows, ["#", "rule", "action", "orders", "share"], raw=True, row_attrs=attrs,
                      caption="Coverage: orders decided by each rule, in firing order")


def _action_html(action: str | None, actions: Mapping[str, str]) -> str:
    """An action as its description with its code (the code alone when the policy does not describe it)."""
    if not action:
        return ""
    meaning = actions.get(action, "")
    return (f"<code>{esc(action)}</code>" + (f" <span style='color:#555'>{esc(meaning)}</span>" if meaning else ""))


# ---------------------------------------------------------------------------------------------- conditions


def _unit(spec: PolicySpec, fact: str) -> str:
    return spec.facts[fact].unit_suffix if fact in spec.facts else ""


def _with_unit(spec: PolicySpec, fact: str, value: Any) -> str:
    text = format_value(value)
    return text + _unit(spec, fact) if isinstance(value, (int, float)) and not isinstance(value, bool) else text


def condition_text(spec: PolicySpec, cond: Condition, facts: Mapping[str, Any] | None = None, *,
                   labels: bool = False) -> str:
    """One condition as readable text; parameters show their name and, when known, their value. With `labels`,
    in the controls' words: facts and parameters by their human names, enum values by their labels."""
    row = OPERATORS[cond.op]
    fact = humanize(cond.fact) if labels else cond.fact
    if row.operand == "flag":
        return f"{fact} {'' if cond.value else 'not '}{row.symbol}"
    refs = cond.value if isinstance(cond.value, tuple) else (cond.value,)
    param = next((r.name for r in refs if isinstance(r, ParamRef)), None)
    keyed = spec.parameters[param] if param is not None else None
    shown = humanize(param) if labels and param is not None else param
    if facts is None and isinstance(keyed, KeyedParameter):  # no single value without the order's facts
        expected = f"{shown} (by {humanize(keyed.by) if labels else keyed.by})"
    else:
        value = spec.resolve(cond.value, facts or {})
        expected = value_text(spec, cond.fact, value) if labels else format_value(value)
        expected = f"{shown} = {expected}" if param else expected
    unit = _unit(spec, cond.fact) if row.shows_unit else ""
    return f"{fact} {row.symbol} {expected}{unit}"


def value_text(spec: PolicySpec, fact: str, value: Any) -> str:
    """A value of a fact as the controls show it: an enum code by its label (a list of codes, each)."""
    known = spec.facts.get(fact)
    if known is None or known.type != "enum" or value is None:
        return format_value(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(known.label(v) for v in value) + "]"
    return known.label(str(value))


def _hover(shown: str, code: str) -> str:
    """Label text with its code on hover (the code only when it differs)."""
    return f"<span title='{esc(code)}'>{esc(shown)}</span>" if code != shown else esc(shown)


def action_html(action: str, actions: Mapping[str, str]) -> str:
    """An action as the explanation shows it: its code, then its description."""
    meaning = actions.get(action, "")
    described = f"<div class='cr-action-meaning' style='color:#555;font-weight:400'>{esc(meaning)}</div>" \
        if meaning else ""
    return f"<code class='cr-action-code' title='{esc(meaning)}'>{esc(action)}</code>{described}"


def _conditions_html(spec: PolicySpec, rule: Rule, facts: Mapping[str, Any] | None) -> str:
    if not rule.conditions:
        return "<div>(always)</div>"
    out = []
    for cond in rule.conditions:
        if facts is None:
            out.append(f"<div>{_hover(condition_text(spec, cond, labels=True), condition_text(spec, cond))}</div>")
            continue
        result = check(spec, cond, facts)
        text = _hover(condition_text(spec, cond, facts, labels=True), condition_text(spec, cond, facts))
        mark = _OK if result.passed else _NO
        code = _with_unit(spec, cond.fact, result.actual)
        actual = _hover(value_text(spec, cond.fact, result.actual) if isinstance(result.actual, str) else code, code)
        out.append(f"<div data-passed='{str(result.passed).lower()}'>{mark} {text} "
                   f"<span style='color:#555;font-weight:400'>(actual: {actual})</span></div>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------- rules table


def rules_table_html(spec: PolicySpec, facts: Mapping[str, Any] | None = None, fired: str | None = None,
                     also: Iterable[str] = ()) -> str:
    """Every rule in firing order; with facts each condition is ticked or crossed against the actual value,
    the fired rule is highlighted and the rules that also matched are marked."""
    also = set(also)
    rows, attrs = [], []
    for rank, rule in enumerate(spec.ranked_rules(), start=1):
        state = "fired" if rule.id == fired else "also" if rule.id in also else "none"
        badge = _badge(*_BADGES[state]) if state in _BADGES else ""
        rule_cell = f"<span title='{esc(rule.source)}'><code>{esc(rule.id)}</code></span> {badge}"
        action = action_html(rule.action, spec.actions)
        rows.append([str(rank), str(rule.priority), rule_cell, _conditions_html(spec, rule, facts), action])
        attrs.append(f"class='cr-rule cr-{state}' data-rule='{esc(rule.id)}' data-state='{state}' "
                     f"style=\"{_ROW_STYLES[state]}\"")
    return table_html(rows, ["#", "priority", "rule", "when", "then"], raw=True, row_attrs=attrs)


class Described(Protocol):
    """Anything with a policy spec (engine.Policy is one): what policy_html reads."""

    @property
    def spec(self) -> PolicySpec: ...


def policy_html(policy: Described, decision: Decision | None = None) -> str:
    """A policy as HTML (Policy._repr_html_): header, parameters and the rules table; with a decision, the
    fired rule highlighted and every condition ticked against that order's facts."""
    spec = policy.spec
    facts = dict(decision.facts) if decision is not None else None
    head = (f"<div style='{_FONT}'><b>{esc(spec.name)}</b> {esc(spec.version)} · hit policy "
            f"<code>{esc(spec.hit_policy)}</code> · {len(spec.rules)} rules"
            f"<div style='color:#555'>{esc(spec.description)}</div></div>")
    params = []
    for name, value in spec.parameters.items():
        if isinstance(value, KeyedParameter):
            shown = ", ".join(f"{k} {format_value(v)}" for k, v in value.values.items())
            shown += f" (default {format_value(value.default)})" if value.default is not None else ""
            params.append([name, f"by {value.by}: {shown}"])
        else:
            params.append([name, format_value(value)])
    table = rules_table_html(spec, facts, decision.rule_id if decision else None,
                             decision.also_matched if decision else ())
    return (f"<div class='cr-policy'>{head}{table_html(params, ['parameter', 'value'], caption='Parameters')}"
            f"<div style='height:8px'></div>{table}</div>")


# ---------------------------------------------------------------------------------------------- decisions


def result_card_html(decision: Decision | None, error: OrderError | None = None,
                     actions: Mapping[str, str] | None = None) -> str:
    """The result card: action, rule, message and warnings, or why there is no decision."""
    box = f"border:1px solid #ccc;border-radius:6px;padding:10px 12px;{_FONT}"
    if error is not None:
        items = "".join(f"<li><code>{esc(p.field)}</code>: {esc(p.message)}</li>" for p in error.problems)
        return (f"<div class='cr-card cr-invalid' style='{box};border-color:#c5221f'>"
                f"<div style='font-size:16px;font-weight:700;color:#c5221f'>invalid order</div><ul>{items}</ul></div>")
    assert decision is not None
    if decision.error:
        return (f"<div class='cr-card cr-error' style='{box};border-color:#c5221f'>"
                f"<div style='font-size:16px;font-weight:700;color:#c5221f'>no decision</div>"
                f"<div>{esc(decision.error)}</div></div>")
    meaning = (actions or {}).get(decision.action or "", "")
    warnings = "".join(f"<div class='cr-warning' style='color:#8a5300;margin-top:4px'>⚠ {esc(w)}</div>"
                       for w in decision.warnings)
    also = (f"<div style='color:#555;margin-top:4px'>also matched: {esc(', '.join(decision.also_matched))}</div>"
            if decision.also_matched else "")
    return (f"<div class='cr-card' data-action='{esc(decision.action)}' style='{box};border-color:#1e8e3e'>"
            f"<div class='cr-action' style='font-size:18px;font-weight:700;color:#1e8e3e'>{esc(decision.action)}</div>"
            f"<div style='color:#555'>{esc(meaning)}</div>"
            f"<div style='margin-top:6px'>{esc(decision.message)}</div>{warnings}"
            f"<div style='color:#555;margin-top:6px'>rule <code class='cr-rule-id'>{esc(decision.rule_id)}</code>"
            f" · policy {esc(decision.policy)} {esc(decision.policy_version)}</div>{also}</div>")


def decision_html(decision: Decision, spec: PolicySpec | None = None) -> str:
    """A decision as HTML (Decision._repr_html_): the result card, then the rules in firing order down to
    the one that fired (each rule above it with the condition that failed), the fired rule highlighted
    with its conditions ticked, and the rules that also matched marked. With the policy's spec, in the
    controls' words (labels, codes on hover) and each action with its description, as the explorer shows it."""
    card = result_card_html(decision, actions=spec.actions if spec else None)
    rows, attrs = [], []

    def cond(c: ConditionResult) -> str:
        symbol = OPERATORS[c.op].symbol
        expected = f"{c.parameter} = {format_value(c.expected)}" if c.parameter else format_value(c.expected)
        coded = f"{c.fact} {symbol} {expected}"
        actual = format_value(c.actual)
        if spec is not None and OPERATORS[c.op].operand == "flag":  # "given: false" reads "not given"
            flag = f"{'' if c.expected else 'not '}{symbol}"
            text, actual = _hover(f"{humanize(c.fact)} {flag}", f"{c.fact} {flag}"), esc(actual)
        elif spec is not None:
            unit = _unit(spec, c.fact) if OPERATORS[c.op].shows_unit and c.expected is not None else ""
            shown = value_text(spec, c.fact, c.expected) + unit
            label = f"{humanize(c.fact)} {symbol} " + (f"{humanize(c.parameter)} = {shown}" if c.parameter else shown)
            labelled = value_text(spec, c.fact, c.actual) if isinstance(c.actual, str) else \
                _with_unit(spec, c.fact, c.actual)
            text, actual = _hover(label, coded), _hover(labelled, actual)
        else:
            text, actual = esc(coded), esc(actual)
        return (f"<div>{_OK if c.passed else _NO} {text} "
                f"<span style='color:#555;font-weight:400'>(actual: {actual})</span></div>")

    def then(action: str) -> str:
        return action_html(action, spec.actions) if spec is not None else f"<code>{esc(action)}</code>"

    for w in decision.why_not:
        rows.append([f"<code>{esc(w.rule_id)}</code>", cond(w.condition), then(w.action)])
        attrs.append(f"class='cr-rule cr-none' data-rule='{esc(w.rule_id)}' data-state='none'")
    if decision.rule_id:
        rows.append([f"<code>{esc(decision.rule_id)}</code> {_badge(*_BADGES['fired'])}",
                     "".join(cond(c) for c in decision.conditions) or "(always)",
                     then(decision.action or "")])
        attrs.append(f"class='cr-rule cr-fired' data-rule='{esc(decision.rule_id)}' data-state='fired' "
                     f"style=\"{_ROW_STYLES['fired']}\"")
    for rule_id in decision.also_matched:
        rows.append([f"<code>{esc(rule_id)}</code> {_badge(*_BADGES['also'])}", "all conditions hold", ""])
        attrs.append(f"class='cr-rule cr-also' data-rule='{esc(rule_id)}' data-state='also' "
                     f"style=\"{_ROW_STYLES['also']}\"")
    table = table_html(rows, ["rule", "conditions", "then"], raw=True, row_attrs=attrs) if rows else ""
    return f"<div class='cr-decision'>{card}<div style='height:6px'></div>{table}</div>"


def changes_html(changes: Sequence[Change], actions: Mapping[str, str] | None = None) -> str:
    """The hint: time changes as sentences, then the other values that would change the decision."""
    actions = actions or {}
    if not changes:
        return (f"<div class='cr-hint' style='{_FONT};color:#555'>"
                "No single change of one fact alters this decision.</div>")
    timed = [c for c in changes if c.kind == "time"]
    other = [c for c in changes if c.kind == "value"]
    out = [f"<div class='cr-hint' style='{_FONT}'>"]
    for c in timed:
        meaning = actions.get(c.action, "")
        when = c.when[:1].upper() + c.when[1:]
        out.append(f"<div class='cr-hint-time' style='margin-bottom:4px'><b>{esc(when)}</b>: "
                   f"<code>{esc(c.action)}</code> (rule <code>{esc(c.rule_id)}</code>)"
                   f"{' — ' + esc(meaning) if meaning else ''}</div>")
    if not timed:
        out.append("<div style='color:#555;margin-bottom:4px'>Time passing alone does not change this decision.</div>")
    if other:
        by_fact: dict[str, list[Change]] = {}
        for c in other:
            by_fact.setdefault(c.fact or "", []).append(c)
        items = []
        for fact, group in by_fact.items():
            by_action: dict[str, list[str]] = {}
            for c in group:
                by_action.setdefault(c.action, []).append(c.when.removeprefix(fact + " ").removeprefix("= "))
            parts = "; ".join(f"{esc(' or '.join(whens))} → <code title='{esc(actions.get(action, ''))}'>"
                              f"{esc(action)}</code>" for action, whens in by_action.items())
            items.append(f"<li data-fact='{esc(fact)}'><b>{_hover(humanize(fact), fact)}</b>: {parts}</li>")
        out.append(f"<div>Other values that would change it:</div><ul style='margin:2px 0'>{''.join(items)}</ul>")
    out.append("</div>")
    return "".join(out)
