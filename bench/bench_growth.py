"""Growth benchmark: policies of growing size on today's engine, every measure in a capped subprocess.

Families (engine.synthetic):
  growth       the bundled policy with t more thresholds on each numeric fact (growth_yaml(t)); every level must
               keep the bundled policy's action and message on every order, and this is checked on the batch.
  marketplace  marketplace_yaml(countries=c): per-country windows and category exceptions on top of the bundled
               policy (1,000 rules at 50 countries). Its base is the bundled policy too, but it changes decisions
               on purpose: the check is that the same orders with country and category removed all get the
               bundled decision (the bundled rules are its fallback); how many differ with them is printed.
  limits       durable_rules' size limits, each bisected: the largest n that compiles (or decides) and how n+1 fails.

Per size: rules, thresholds, cells, canonical cells, load+compile time (parse, compile, example checks), verify time
and peak RSS, batch time on --rows orders held as typed facts (cold: the first call in a fresh process, which asks
the engine for every distinct cell; warm: the same frame again), and the base check (with --exact also over every
cell, through engine.diff, with --measures ...,diff). Each measure runs in its own
process under --timeout and an address-space cap (--mem-gb), so a crash, a hang or a huge allocation prints as
"fails: <reason>" instead of stalling or swapping the machine.

Usage: python bench/bench_growth.py [--family growth,marketplace,limits] [--levels 0-8] [--countries 1,10,50]
       [--rows 1000000] [--mem-gb 10] [--timeout 900] [--max-verify-cells N] [--measures load,verify,batch,diff]
       [--before DIR] [--quick]
Only the marketplace batch at 1,000 rules, side by side with another version:
       python bench/bench_growth.py --family marketplace --countries 50 --measures batch --before DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import engine
from engine.batch import cell_decisions
from engine.compiler import compile_policy
from engine.loader import load_spec
from engine.policy import Policy, check_examples
from engine.space import FactSpace
from engine.synthetic import growth_yaml, marketplace_orders, marketplace_yaml, probe_yaml, synthetic_orders

sys.path.insert(0, str(Path(__file__).parent))
from orders import typed_facts  # noqa: E402

AS_OF = "2026-11-26T12:00:00+00:00"
PROBE_TIMEOUT = 60  # s; a compile of a few hundred rules takes about a second, so a probe this slow hangs


# --- child side: one measure, its results as JSON lines on stdout ------------------------------------------

def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux; this process only


def _reason(exc: BaseException) -> str:
    """One line saying why: durable_rules' own error code when the engine failed, else the exception."""
    context = exc.__context__ if exc.__context__ is not None else exc.__cause__
    code = re.search(r"error code: (\d+)", str(context)) if context is not None else None
    if code:
        return f"{type(exc).__name__}: durable_rules error code {code.group(1)} ({str(exc).split(' (')[0]})"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}"


def _load_compiled(path: str):
    """The policy parsed and compiled, without its example checks (the load measure times those)."""
    spec = load_spec(path)
    return Policy(spec, compile_policy(spec))


def child_load(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    spec = load_spec(args.policy)
    parse_s = time.perf_counter() - started
    space = FactSpace.of(spec)
    _emit(rules=len(spec.rules), thresholds=sum(len(a.points) for a in space.axes if a.kind == "number"),
          cells=space.n_cells, parse_s=parse_s)
    started = time.perf_counter()
    compiled = compile_policy(spec)
    compile_s = time.perf_counter() - started
    _emit(compile_s=compile_s, shards=len(compiled.shards))
    started = time.perf_counter()
    problems = check_examples(Policy(spec, compiled))
    examples_s = time.perf_counter() - started
    if problems:
        raise RuntimeError(f"{len(problems)} rule examples fail, e.g. {problems[0]}")
    _emit(examples_s=examples_s, load_s=parse_s + compile_s + examples_s,
          examples=sum(len(r.examples) for r in spec.rules))


def child_verify(args: argparse.Namespace) -> None:
    policy = _load_compiled(args.policy)
    started = time.perf_counter()
    report = policy.verify()
    _emit(verify_s=time.perf_counter() - started, nonempty_cells=report.cells, canonical=report.canonical_cells,
          gaps=len(report.gaps), unreachable=len(report.unreachable), overlaps=len(report.overlaps),
          unreachable_rules=report.unreachable[:5], verify_rss_mb=_peak_rss_mb())


def child_batch(args: argparse.Namespace) -> None:
    policy, base = _load_compiled(args.policy), engine.load()
    if args.countries:
        text = marketplace_orders(args.rows, AS_OF, seed=1, countries=args.countries)
    else:
        text = synthetic_orders(args.rows, AS_OF, seed=1)
    frame = typed_facts(text)
    started = time.perf_counter()
    out = policy.evaluate(frame, as_of=AS_OF)
    cold_s = time.perf_counter() - started
    cells = cell_decisions(policy.compiled)  # the engine is asked per set of matched rules (per canonical cell before)
    _emit(rows=len(frame), cold_s=cold_s, engine_cells=len(cells.classes))
    started = time.perf_counter()
    policy.evaluate(frame, as_of=AS_OF)
    warm_s = time.perf_counter() - started
    ref = base.evaluate(frame, as_of=AS_OF)
    base_ids = {r.id for r in base.spec.rules}
    added = out["rule_id"].notna().to_numpy() & ~out["rule_id"].isin(base_ids).to_numpy()
    differ_by_design = None
    if args.countries:  # the marketplace changes decisions on purpose; without country and category it must not
        differ_by_design = int((~_same(out, ref)).sum())
        out = policy.evaluate(frame.drop(columns=["country", "category"]), as_of=AS_OF)
    same = _same(out, ref)
    _emit(warm_s=warm_s, checked=len(frame), differ=int((~same).sum()), differ_by_design=differ_by_design,
          added_rule_rows=int(added.sum()), error_rows=int(ref["error"].notna().sum()), batch_rss_mb=_peak_rss_mb())


def _same(a: pd.DataFrame, b: pd.DataFrame) -> np.ndarray:
    """Rows where two outputs agree on action, message and error."""
    return np.logical_and.reduce([a[c].fillna("").astype(str).to_numpy() == b[c].fillna("").astype(str).to_numpy()
                                  for c in ("action", "message", "error")])


def child_diff(args: argparse.Namespace) -> None:
    """Exact check over every cell of the joint fact space: no cell changes its action (rules may change)."""
    policy = _load_compiled(args.policy)
    started = time.perf_counter()
    report = engine.diff(engine.load(), policy)
    actions = report.transitions
    moved = actions[actions["old_action"].fillna("") != actions["new_action"].fillna("")]
    _emit(diff_s=time.perf_counter() - started, diff_cells=report.cells, rule_changed_cells=report.changed_cells,
          action_changed_cells=int(moved["cells"].sum()), diff_rss_mb=_peak_rss_mb())


def child_probe(args: argparse.Namespace) -> None:
    path = Path(args.policy)
    path.write_text(probe_yaml(args.shape, args.n) if args.shape != "lane" else growth_yaml(args.n, lanes=[args.lane]))
    spec = load_spec(path)
    compiled = compile_policy(spec)
    order = {"order_id": "P", "status": "delivered", "seller_reply": "not_contacted", "seller_rating": 99.5}
    if args.lane == "seller_silent_past_window":  # the order every refinement of that rule matches
        order = {"order_id": "P", "status": "shipped", "seller_reply": "no_reply", "hours_since_contact": 48.0}
    _emit(rules=len(spec.rules), matched=len(compiled.match(order)))


CHILDREN: dict[str, Callable[[argparse.Namespace], None]] = {
    "load": child_load, "verify": child_verify, "batch": child_batch, "diff": child_diff, "probe": child_probe}


def run_child(args: argparse.Namespace) -> int:
    try:
        CHILDREN[args.child](args)
    except BaseException as exc:  # MemoryError and engine errors alike: say why, in one line
        _emit(ok=False, reason=_reason(exc), peak_rss_mb=_peak_rss_mb())
        return 1
    _emit(ok=True, peak_rss_mb=_peak_rss_mb())
    return 0


# --- parent side: run each measure capped, collect, print ---------------------------------------------------

def measure(child: str, extra: list[str], timeout: float, mem_gb: float, before: str | None = None) -> dict[str, Any]:
    """Run one measure in a fresh process under a time limit and an address-space cap; never raises. With before,
    the engine/ package in that folder is measured instead of this one.

    Peak RSS is polled from outside too, so a run killed for its time still shows how big it had grown."""
    import psutil

    cap = int(mem_gb * 2**30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    cmd = [sys.executable, __file__, "--child", child, *extra]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        env = {**os.environ, "PYTHONPATH": before} if before else None
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, preexec_fn=limit, env=env)
        polled, killed = 0, False
        while proc.poll() is None:
            try:
                polled = max(polled, psutil.Process(proc.pid).memory_info().rss)
            except psutil.NoSuchProcess:
                pass
            if time.perf_counter() - started > timeout:
                proc.kill()
                killed = True
                proc.wait()
                break
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        stdout, stderr, code = out.read(), err.read(), proc.returncode
    result: dict[str, Any] = {"wall_s": time.perf_counter() - started}
    for line in stdout.splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    result["peak_rss_mb"] = max(result.get("peak_rss_mb", 0.0), polled / 2**20)
    if killed:
        result.update(ok=False, reason=f"no answer within {timeout:g} s (killed)")
    elif code < 0:
        result.update(ok=False, reason=f"crashed with {signal.Signals(-code).name}")
    elif "ok" not in result:
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {code}"]
        result.update(ok=False, reason=tail[0][:200])
    return result


def parse_levels(text: str) -> list[int]:
    """'0-8,16' -> [0, 1, ..., 8, 16]."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        out += range(int(low), int(high or low) + 1)
    return out


def _f(value: Any, fmt: str = ",.0f") -> str:
    return "—" if value is None else format(value, fmt)


def _fails(result: dict[str, Any]) -> str:
    return f"fails: {result['reason']}"


def run_size(label: str, policy: Path, args: argparse.Namespace, countries: int = 0) -> dict[str, Any]:
    """All measures of one policy; prints a line per measure as it ends."""
    common = ["--policy", str(policy)]
    row: dict[str, Any] = {"size": label}
    load = measure("load", common, args.timeout, args.mem_gb)
    row.update(rules=load.get("rules"), thresholds=load.get("thresholds"), cells=load.get("cells"))
    if load["ok"]:
        row["load"] = (f"{load['load_s']:.2f} s (parse {load['parse_s']:.2f}, compile {load['compile_s']:.2f} into "
                       f"{load['shards']} ruleset{'s' if load['shards'] > 1 else ''}, "
                       f"{load['examples']} examples {load['examples_s']:.2f})")
    else:
        row["load"] = _fails(load)
    print(f"{label}: {_f(row['rules'])} rules, {_f(row['thresholds'])} thresholds, {_f(row['cells'])} cells; "
          f"load+compile {row['load']}", flush=True)
    if not load["ok"]:
        row["verify"] = row["batch"] = row["check"] = "not run: the policy does not load"
        row["canonical"] = None
        return row
    if "verify" not in args.measures:
        verify = {"ok": False, "skipped": True, "reason": "not asked"}
    elif args.max_verify_cells and (row["cells"] or 0) > args.max_verify_cells:
        verify = {"ok": False, "skipped": True, "reason": f"skipped: more than {args.max_verify_cells:,} cells"}
    else:
        verify = measure("verify", common, args.timeout, args.mem_gb)
    row["canonical"] = verify.get("canonical")
    if verify["ok"]:
        findings = f"{verify['gaps']} gaps, {verify['unreachable']} unreachable"
        if verify["unreachable"]:
            findings += f" ({', '.join(verify['unreachable_rules'])}...)"
        row["verify"] = f"{verify['verify_s']:.2f} s, {verify['verify_rss_mb']:,.0f} MB; {findings}"
    elif verify.get("skipped"):
        row["verify"] = verify["reason"]
    else:
        row["verify"] = f"{_fails(verify)} (after {verify['wall_s']:.0f} s, peak {verify['peak_rss_mb']:,.0f} MB)"
    print(f"{label}: verify {row['verify']}; {_f(row['canonical'])} canonical cells", flush=True)
    extra = ["--rows", str(args.rows)] + (["--countries", str(countries)] if countries else [])
    batch = measure("batch", common + extra, args.timeout, args.mem_gb) if "batch" in args.measures else \
        {"ok": False, "skipped": True, "reason": "not asked"}
    if batch["ok"]:
        row["batch"] = (f"{batch['cold_s']:.2f} s cold ({batch['rows'] / batch['cold_s']:,.0f}/s, "
                        f"{batch['engine_cells']:,} engine calls), {batch['warm_s']:.2f} s warm "
                        f"({batch['rows'] / batch['warm_s']:,.0f}/s), {batch['batch_rss_mb']:,.0f} MB")
        if countries:
            row["check"] = (f"without country and category: {batch['checked'] - batch['differ']:,}/"
                            f"{batch['checked']:,} orders keep the bundled action+message; with them "
                            f"{batch['differ_by_design']:,} differ by design ({batch['added_rule_rows']:,} decided "
                            "by added rules)")
        else:
            row["check"] = (f"{batch['checked'] - batch['differ']:,}/{batch['checked']:,} orders keep the bundled "
                            f"action+message ({batch['added_rule_rows']:,} decided by added rules)")
        row["batch_ok"] = batch["differ"] == 0
    elif batch.get("skipped"):
        row["batch"], row["check"] = batch["reason"], ""
    else:
        row["batch"] = f"{_fails(batch)} (after {batch['wall_s']:.0f} s, peak {batch['peak_rss_mb']:,.0f} MB)"
        row["check"] = "not run"
    print(f"{label}: batch {row['batch']}; {row['check']}", flush=True)
    if args.before and "batch" in args.measures:
        old = measure("batch", common + extra, args.timeout, args.mem_gb, before=args.before)
        shown = (f"{old['cold_s']:.2f} s cold ({old['rows'] / old['cold_s']:,.0f}/s), {old['warm_s']:.2f} s warm "
                 f"({old['rows'] / old['warm_s']:,.0f}/s), {old['batch_rss_mb']:,.0f} MB") if old["ok"] else _fails(old)
        print(f"{label}: batch before ({args.before}), same orders, right after: {shown}", flush=True)
    if "diff" in args.measures and not countries:
        diff = measure("diff", common, args.timeout, args.mem_gb)
        sep = "; " if row["check"] else ""
        if diff["ok"]:
            row["check"] += (f"{sep}every cell: {diff['action_changed_cells']:,} of {diff['diff_cells']:,} change "
                             f"action ({diff['rule_changed_cells']:,} change rule; engine.diff "
                             f"{diff['diff_s']:.1f} s, {diff['diff_rss_mb']:,.0f} MB)")
            row["batch_ok"] = row.get("batch_ok", True) and diff["action_changed_cells"] == 0
        else:
            row["check"] += f"{sep}every cell: {_fails(diff)} (after {diff['wall_s']:.0f} s)"
        print(f"{label}: {row['check']}", flush=True)
    return row


LIMIT_PROBES = (  # (what, shape, lane, highest n tried)
    ("rules with identical conditions (status delivered, not contacted)", "identical", "", 512),
    ("rules testing one fact against distinct constants (seller_rating = 0, 1, ...)", "siblings", "", 1024),
    ("refinements of a rule with an 'in' condition (contact_seller_to_cancel)", "lane", "contact_seller_to_cancel",
     512),
    ("refinements of a rule with a keyed parameter (refund_overdue)", "lane", "refund_overdue", 512),
    ("refinements matched together: one order matches n + 1 rules (seller_silent_past_window at 48 h)", "lane",
     "seller_silent_past_window", 512),
)


def run_limits(tmp: Path, args: argparse.Namespace) -> list[str]:
    """Bisect each probe for the largest n that compiles and decides; report how the next n fails."""
    lines = []
    for what, shape, lane, high in LIMIT_PROBES:
        def attempt(n: int, shape: str = shape, lane: str = lane) -> dict[str, Any]:
            extra = ["--shape", shape, "--n", str(n), "--policy", str(tmp / f"probe-{shape}-{lane}-{n}.yaml")]
            return measure("probe", extra + (["--lane", lane] if lane else []), PROBE_TIMEOUT, args.mem_gb)

        tried = {1: attempt(1), high: attempt(high)}
        if not tried[1]["ok"]:
            lines.append(f"{what}: even n=1 fails: {tried[1]['reason']}")
            continue
        if tried[high]["ok"]:
            lines.append(f"{what}: n={high} still works ({tried[high]['matched']} matched)")
            continue
        low, up = 1, high
        while up - low > 1:
            mid = (low + up) // 2
            tried[mid] = attempt(mid)
            low, up = (mid, up) if tried[mid]["ok"] else (low, mid)
        ok = tried[low]
        failures = "; ".join(f"n={n}: {tried[n]['reason']}" for n in sorted(tried) if not tried[n]["ok"])
        line = (f"{what}: n={low} works ({ok['rules']} rules, the order matched {ok['matched']}); "
                f"fails at {failures}")
        print(line, flush=True)
        lines.append(line)
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    head = ["size", "rules", "thresholds", "cells", "canonical", "load+compile", "verify (time, peak RSS)",
            "batch (typed facts)", "same action as base"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["size"], _f(r.get("rules")), _f(r.get("thresholds")), _f(r.get("cells")), _f(r.get("canonical")),
                 r["load"], r["verify"], r["batch"], r["check"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="growth,marketplace,limits",
                        help="comma-separated: growth, marketplace, limits")
    parser.add_argument("--levels", default="0-8", help="growth levels, e.g. 0-8 or 0,5,8,16")
    parser.add_argument("--countries", default="1,10,50", help="marketplace sizes in countries (1..50)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders per batch measure")
    parser.add_argument("--mem-gb", type=float, default=10.0, help="address-space cap of each measure")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per measure")
    parser.add_argument("--max-verify-cells", type=int, default=0, help="skip verify above this many cells (0: never)")
    parser.add_argument("--measures", default="load,verify,batch",
                        help="comma-separated: load (always), verify, batch, diff (every cell of a growth level "
                             "against the bundled policy, through engine.diff)")
    parser.add_argument("--before", metavar="DIR",
                        help="also time the batch with the engine/ (and rules/) in DIR, e.g. from `git archive 181be42 "
                             "engine rules | tar -x -C DIR`, right after this version's: a side-by-side figure")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: levels 0,1; 1 country; 20,000 rows; no verify above 5 M cells")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--lane", default="", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.countries = int(args.countries) if args.countries.isdigit() else 0
        return run_child(args)
    if args.quick:
        args.levels, args.countries, args.rows, args.timeout = "0,1", "1", 20_000, min(args.timeout, 300)
        args.max_verify_cells = args.max_verify_cells or 5_000_000
        if args.family == parser.get_default("family"):
            args.family = "growth,marketplace"
    families = [f.strip() for f in args.family.split(",")]
    args.measures = {m.strip() for m in args.measures.split(",")}
    if args.measures - {"load", "verify", "batch", "diff"}:
        parser.error(f"unknown measure {', '.join(sorted(args.measures - {'load', 'verify', 'batch', 'diff'}))}")
    unknown = set(families) - {"growth", "marketplace", "limits"}
    if unknown:
        parser.error(f"unknown family {', '.join(sorted(unknown))} (growth, marketplace, limits)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (shared: figures are "
          f"noisy); each measure capped at {args.mem_gb:g} GiB address space and {args.timeout:g} s", flush=True)
    rows: list[dict[str, Any]] = []
    limits: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "growth" in families:
            for t in parse_levels(args.levels):
                path = tmp / f"growth{t}.yaml"
                path.write_text(growth_yaml(t), encoding="utf-8")
                rows.append(run_size(f"growth t={t}", path, args))
        if "marketplace" in families:
            for c in parse_levels(args.countries):
                path = tmp / f"marketplace{c}.yaml"
                path.write_text(marketplace_yaml(seed=0, countries=c), encoding="utf-8")
                rows.append(run_size(f"marketplace, {c} countr{'y' if c == 1 else 'ies'}", path, args, countries=c))
        if "limits" in families:
            limits = run_limits(tmp, args)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}; batch on {args.rows:,} orders held as typed facts")
    if rows:
        print(table(rows))
    for line in limits:
        print(f"- {line}")
    return 0 if all(r.get("batch_ok", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
