"""Single-decision latency of Policy.decide over random valid orders (median, p99, orders/s), both engines.

    .venv/bin/python bench/bench_decide.py [--orders 20000] [--policy PATH] [--seed 1]

Each order is timed on its own (perf_counter_ns around one call), one after another in one process, as a
notebook, the CLI or one service worker would call it. Timed side by side, in turns of CHUNK orders over the
same orders:
- `cells`: Policy.decide (the cell table; the explanation pending), reading action, rule_id and message;
- `cells + JSON`: the same, then the whole decision with its explanation as the service's JSON (compact);
- `cells + to_json`: the same through Decision.to_json() (indented, as the CLI prints it);
- `direct` and `direct + JSON`: Policy.decide(engine="direct"), durable_rules asked for every order (the
  reference path).
Also timed: the stages of the direct path (normalization, the durable_rules match) and a fixed pure-Python loop
of about the same length, timed the same way, to show how much of the tail is the machine (other processes
preempting this one) rather than the engine. Orders not seen in warm-up include cells met for the first time.
No assertions.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from datetime import UTC, datetime

import engine
from engine.facts import normalize
from engine.service.encoding import dumps

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def random_orders(policy: engine.Policy, count: int, seed: int) -> list[dict]:
    """Valid orders over the whole fact space: codes, labels and aliases; facts given or not."""
    spec = policy.spec
    rng = random.Random(seed)
    spellings = {name: [(code, [code, fact.label(code), *(a for a, c in fact.aliases.items() if c == code)])
                        for code in fact.values]
                 for name, fact in spec.facts.items() if fact.type == "enum"}
    numbers = {name: (fact.min or 0.0, fact.max if fact.max is not None else 200.0)
               for name, fact in spec.facts.items() if fact.type == "number"}
    orders = []
    for i in range(count):
        order: dict = {"order_id": f"B{i}"}
        for name, fact in spec.facts.items():
            if name == "order_id":
                continue
            if not fact.required and rng.random() < 0.25:
                continue  # not given
            if name in spellings:
                _, texts = rng.choice(spellings[name])
                order[name] = rng.choice(texts)
            elif name in numbers:
                low, high = numbers[name]
                order[name] = round(rng.uniform(low, high), 1)
        orders.append(order)
    return orders


def percentile(sorted_ns: list[int], q: float) -> float:
    index = min(len(sorted_ns) - 1, max(0, round(q * (len(sorted_ns) - 1))))
    return sorted_ns[index] / 1000.0


def summary(label: str, ns: list[int]) -> str:
    ns = sorted(ns)
    return (f"{label:<22} median {percentile(ns, 0.5):8.1f} µs   p90 {percentile(ns, 0.9):8.1f} µs   "
            f"p99 {percentile(ns, 0.99):8.1f} µs   max {ns[-1] / 1000:8.1f} µs   "
            f"mean {statistics.fmean(ns) / 1000:8.1f} µs")


def _answer(decision: engine.Decision) -> tuple[str | None, str | None, str]:
    return decision.action, decision.rule_id, decision.message


# Orders timed on one path before the next takes its turn: long enough for each to run as it would alone (its code
# and data in the CPU's caches), short enough that a busy moment of the shared machine hits every path.
CHUNK = 200
PATHS = {  # what each timed line does with one order
    "cells": lambda policy, order: _answer(policy.decide(order, as_of=AS_OF)),
    "cells + JSON": lambda policy, order: dumps(policy.decide(order, as_of=AS_OF)),
    "cells + to_json": lambda policy, order: policy.decide(order, as_of=AS_OF).to_json(),
    "direct": lambda policy, order: _answer(policy.decide(order, as_of=AS_OF, engine="direct")),
    "direct + JSON": lambda policy, order: dumps(policy.decide(order, as_of=AS_OF, engine="direct")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000, help="orders to time (default: 20000)")
    parser.add_argument("--policy", help="policy YAML (default: the bundled policy)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    policy = engine.load(args.policy)
    load_s = time.perf_counter() - started
    orders = random_orders(policy, args.orders, args.seed)
    for order in orders[:1000]:  # warm-up
        policy.decide(order, as_of=AS_OF)

    clock = time.perf_counter_ns
    timed: dict[str, list[int]] = {label: [] for label in PATHS}
    actions: dict[str, int] = {}
    for start in range(0, len(orders), CHUNK):
        for label, path in PATHS.items():  # in turns, so that a busy moment of the machine hits them all
            for order in orders[start:start + CHUNK]:
                t0 = clock()
                path(policy, order)
                timed[label].append(clock() - t0)
    for order in orders:
        action = policy.decide(order, as_of=AS_OF).action
        actions[action or "(none)"] = actions.get(action or "(none)", 0) + 1

    normalize_ns, match_ns = [], []
    for order in orders:
        t0 = clock()
        facts = normalize(policy.spec, order, AS_OF)
        t1 = clock()
        policy.compiled.match(facts)
        t2 = clock()
        normalize_ns.append(t1 - t0)
        match_ns.append(t2 - t1)

    reference_ns = []
    for _ in range(len(orders)):
        t0 = clock()
        total = 0
        for j in range(3000):
            total += j
        reference_ns.append(clock() - t0)

    print(f"policy {policy.name} {policy.version}: {len(policy.spec.rules)} rules, ruleset {policy.compiled.ruleset}"
          f" (load + compile + examples: {load_s * 1000:.0f} ms)")
    print(f"python {platform.python_version()} on {platform.machine()}, {len(orders)} random valid orders, "
          f"one at a time")
    for label, ns in timed.items():
        print(summary(label, ns))
    print(summary("  direct: normalize", normalize_ns))
    print(summary("  direct: engine match", match_ns))
    print(summary("reference Python loop", reference_ns))
    for label in ("cells", "direct"):
        print(f"throughput: {1e9 / statistics.fmean(timed[label]):,.0f} orders/s through {label}")
    print("actions: " + ", ".join(f"{a} {n}" for a, n in sorted(actions.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
