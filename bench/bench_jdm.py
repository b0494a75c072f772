"""JDM interop benchmark: ZEN on the exported decision table against Policy.decide, order by order.

For each policy (the bundled one; the marketplace policy of engine.synthetic at --countries): export it with
Policy.to_jdm, load it into zen-engine (engine.jdm.ZenTable), generate --rows orders (engine.synthetic), normalize
each with Policy.normalize (a bad row has no facts: Policy.decide raises on it too; counted apart), then decide it
with Policy.decide and with ZEN, and count the orders whose action or rule differ. Also counted on the same facts:
ZEN fed a Python dict instead of JSON text (zen-engine 2.1 reads a dict's floats with about 15 significant
digits), and the round trip (the table imported back with engine.jdm.import_jdm). Times are wall-clock on whatever
machine runs it (shared machines make them indicative only).

Usage: python bench/bench_jdm.py [--rows 100000] [--countries 50] [--policies bundled,marketplace] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import engine
from engine.errors import OrderError
from engine.jdm import ZenTable
from engine.policy import import_jdm
from engine.synthetic import AS_OF, marketplace_orders, marketplace_yaml, synthetic_orders


def _policy(name: str, countries: int, folder: Path) -> engine.Policy:
    if name == "bundled":
        return engine.load()
    path = folder / f"marketplace{countries}.yaml"
    path.write_text(marketplace_yaml(seed=0, countries=countries), encoding="utf-8")
    return engine.load(path)


def run(name: str, rows: int, countries: int, seed: int, folder: Path) -> dict[str, object]:
    started = time.perf_counter()
    policy = _policy(name, countries, folder)
    loaded = time.perf_counter()
    doc = policy.to_jdm()
    exported = time.perf_counter()
    table = ZenTable(doc)
    back = import_jdm(json.dumps(doc), f"{name}.json").policy
    imported = time.perf_counter()
    orders = (synthetic_orders(rows, seed=seed) if name == "bundled"
              else marketplace_orders(rows, seed=seed, countries=countries)).to_dict("records")
    counts = {"orders": len(orders), "bad rows": 0, "zen (JSON text) disagreements": 0,
              "zen (Python dict) disagreements": 0, "round trip disagreements": 0}
    seconds = {"normalize": 0.0, "Policy.decide": 0.0, "ZEN": 0.0, "ZEN (dict)": 0.0, "round trip decide": 0.0}
    rules = set()
    for order in orders:
        t0 = time.perf_counter()
        try:
            facts = policy.normalize(order, as_of=AS_OF)
        except OrderError:
            counts["bad rows"] += 1
            continue
        t1 = time.perf_counter()
        decision = policy.decide(facts, as_of=AS_OF)
        t2 = time.perf_counter()
        answer = table.decide(facts)
        t3 = time.perf_counter()
        from_dict = table.answer(table.decision.evaluate(dict(facts))["result"])
        t4 = time.perf_counter()
        again = back.decide(facts, as_of=AS_OF)
        t5 = time.perf_counter()
        for key, start, end in (("normalize", t0, t1), ("Policy.decide", t1, t2), ("ZEN", t2, t3),
                                ("ZEN (dict)", t3, t4), ("round trip decide", t4, t5)):
            seconds[key] += end - start
        want = (decision.action, decision.rule_id)
        rules.add(decision.rule_id)
        counts["zen (JSON text) disagreements"] += (answer.action, answer.rule_id) != want
        counts["zen (Python dict) disagreements"] += (from_dict.action, from_dict.rule_id) != want
        counts["round trip disagreements"] += (again.action, again.rule_id, again.message) != (*want, decision.message)
    return {"policy": f"{policy.name} {policy.version}", "rules": len(policy.spec.rules),
            "table rows": len(doc["nodes"][1]["content"]["rules"]), "rules reached": len(rules),
            "load s": round(loaded - started, 2), "export s": round(exported - loaded, 3),
            "zen load + import s": round(imported - exported, 2), **counts,
            **{f"{k} us/order": round(1e6 * v / max(1, len(orders) - counts["bad rows"]), 1)
               for k, v in seconds.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--countries", type=int, default=50)
    parser.add_argument("--policies", default="bundled,marketplace")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for name in args.policies.split(","):
            try:
                result = run(name, args.rows, args.countries, args.seed, Path(folder))
            except engine.PolicyError as exc:  # e.g. past a durable_rules limit on this branch
                print(f"{name}: does not load or decide here: {exc}")
                failed = True
                continue
            print(f"\n== {name}")
            for key, value in result.items():
                print(f"  {key}: {value}")
            failed |= bool(result["zen (JSON text) disagreements"]) or bool(result["round trip disagreements"])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
