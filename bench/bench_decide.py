"""Single-decision latency of Policy.decide over random valid orders (median, p99, orders/s).

    .venv/bin/python bench/bench_decide.py [--orders 20000] [--policy PATH] [--seed 1]

Each order is timed on its own (perf_counter_ns around one decide call), one after another in one process,
as a notebook, the CLI or one service worker would call it. Also timed: the two stages inside decide,
normalization of the order and the durable_rules match, to show where the time goes, and a fixed pure-Python
loop of about the same length, timed the same way, to show how much of the tail is the machine (other
processes preempting this one) rather than the engine. No assertions.
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
    decide_ns, normalize_ns, match_ns = [], [], []
    actions: dict[str, int] = {}
    wall = time.perf_counter()
    for order in orders:
        t0 = clock()
        decision = policy.decide(order, as_of=AS_OF)
        decide_ns.append(clock() - t0)
        actions[decision.action or "(none)"] = actions.get(decision.action or "(none)", 0) + 1
    wall = time.perf_counter() - wall

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
    print(summary("Policy.decide", decide_ns))
    print(summary("  normalize", normalize_ns))
    print(summary("  engine match", match_ns))
    print(summary("reference Python loop", reference_ns))
    print(f"throughput: {len(orders) / wall:,.0f} orders/s through Policy.decide")
    print("actions: " + ", ".join(f"{a} {n}" for a, n in sorted(actions.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
