"""JDM interop benchmark: ZEN on the exported decision table against the policy's own answers, order by order.

For each policy (the bundled one; the marketplace policy of engine.synthetic at --countries; also `legacy` and
`growthN`): export it with Policy.to_jdm, load it into zen-engine (engine.jdm.ZenTable), generate --rows orders
(engine.synthetic), normalize each with Policy.normalize (a bad row has no facts: the policy refuses it too;
counted apart) and decide it with ZEN. The policy's answers: Policy.evaluate (method="cells") on every order, and
Policy.decide, the per-order reference, on every order of the bundled policy and every --decide-every'th order
of the others (at 1,000 rules decide takes tens of ms an order here). Counted: the orders whose action or rule
differ between ZEN and each; ZEN fed a Python dict instead of JSON text (zen-engine 2.1 reads a dict's floats
with about 15 significant digits); and the round trip (the table imported back with engine.import_jdm, evaluated
on the normalized facts: action, rule and message). Times are wall-clock on whatever machine runs it (shared
machines make them indicative only).

Usage: python bench/bench_jdm.py [--rows 100000] [--countries 50] [--policies bundled,marketplace] [--seed 0]
                                 [--decide-every 50]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

import engine
from engine.errors import OrderError
from engine.jdm import ZenTable
from engine.policy import import_jdm
from engine.synthetic import AS_OF, growth_yaml, marketplace_orders, marketplace_yaml, synthetic_orders

LEGACY = engine.RULES_DIR / "variants" / "legacy-72h.yaml"


def _policy(name: str, countries: int, folder: Path) -> engine.Policy:
    if name == "bundled":
        return engine.load()
    if name == "legacy":
        return engine.load(LEGACY)
    path = folder / f"{name}.yaml"
    growth = re.fullmatch(r"growth(\d+)", name)
    path.write_text(growth_yaml(int(growth[1])) if growth else marketplace_yaml(seed=0, countries=countries),
                    encoding="utf-8")
    return engine.load(path)


def _answers(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return list(zip(frame["action"], frame["rule_id"], frame["message"], strict=True))


def run(name: str, rows: int, countries: int, seed: int, decide_every: int, folder: Path) -> dict[str, object]:
    started = time.perf_counter()
    policy = _policy(name, countries, folder)
    loaded = time.perf_counter()
    doc = policy.to_jdm()
    exported = time.perf_counter()
    table = ZenTable(doc)
    zen_loaded = time.perf_counter()
    back = import_jdm(json.dumps(doc), f"{name}.json").policy
    imported = time.perf_counter()
    frame = (marketplace_orders(rows, seed=seed, countries=countries) if name == "marketplace"
             else synthetic_orders(rows, seed=seed))
    every = 1 if name == "bundled" else decide_every
    counts = {"orders": len(frame), "bad rows": 0, "bad rows the policy decided anyway": 0,
              "orders decided by Policy.decide": 0,
              "zen vs Policy.evaluate disagreements": 0, "zen vs Policy.decide disagreements": 0,
              "evaluate vs decide disagreements": 0, "zen (Python dict) disagreements": 0,
              "round trip disagreements": 0}
    seconds = {"normalize": 0.0, "ZEN": 0.0, "ZEN (dict)": 0.0, "Policy.decide": 0.0}
    t0 = time.perf_counter()
    evaluated = _answers(policy.evaluate(frame, as_of=AS_OF, method="cells"))
    seconds["Policy.evaluate (cells), whole frame"] = time.perf_counter() - t0
    facts_rows, kept, rules = [], [], set()
    for i, order in enumerate(frame.to_dict("records")):
        t0 = time.perf_counter()
        try:
            facts = policy.normalize(order, as_of=AS_OF)
        except OrderError:  # no facts for ZEN: the policy must refuse the order too
            counts["bad rows"] += 1
            counts["bad rows the policy decided anyway"] += evaluated[i][0] is not None
            continue
        t1 = time.perf_counter()
        answer = table.decide(facts)
        t2 = time.perf_counter()
        from_dict = table.answer(table.decision.evaluate(dict(facts))["result"])
        t3 = time.perf_counter()
        for key, start, end in (("normalize", t0, t1), ("ZEN", t1, t2), ("ZEN (dict)", t2, t3)):
            seconds[key] += end - start
        want = evaluated[i][:2]
        rules.add(want[1])
        counts["zen vs Policy.evaluate disagreements"] += (answer.action, answer.rule_id) != want
        counts["zen (Python dict) disagreements"] += (from_dict.action, from_dict.rule_id) != want
        if i % every == 0:
            t0 = time.perf_counter()
            decision = policy.decide(order, as_of=AS_OF)
            seconds["Policy.decide"] += time.perf_counter() - t0
            counts["orders decided by Policy.decide"] += 1
            counts["zen vs Policy.decide disagreements"] += (answer.action, answer.rule_id) != (
                decision.action, decision.rule_id)
            counts["evaluate vs decide disagreements"] += evaluated[i] != (
                decision.action, decision.rule_id, decision.message or None)
        facts_rows.append(facts)
        kept.append(i)
    t0 = time.perf_counter()
    again = _answers(back.evaluate(pd.DataFrame(facts_rows), as_of=AS_OF, method="cells"))
    seconds["round trip evaluate (cells), whole frame"] = time.perf_counter() - t0
    counts["round trip disagreements"] = sum(again[k] != evaluated[i] for k, i in enumerate(kept))
    per_order = ("normalize", "ZEN", "ZEN (dict)")
    return {"policy": f"{policy.name} {policy.version}", "rules": len(policy.spec.rules),
            "table rows": len(doc["nodes"][1]["content"]["rules"]), "rules reached": len(rules),
            "load s": round(loaded - started, 2), "export s": round(exported - loaded, 3),
            "zen load s": round(zen_loaded - exported, 2), "import s": round(imported - zen_loaded, 2), **counts,
            **{f"{k} us/order": round(1e6 * seconds[k] / max(1, len(kept)), 1) for k in per_order},
            "Policy.decide us/order": round(1e6 * seconds["Policy.decide"]
                                            / max(1, counts["orders decided by Policy.decide"]), 1),
            **{f"{k} s": round(v, 2) for k, v in seconds.items() if k.endswith("whole frame")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--countries", type=int, default=50)
    parser.add_argument("--policies", default="bundled,marketplace")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decide-every", type=int, default=50,
                        help="Policy.decide on every Nth order of the policies other than the bundled one")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for name in args.policies.split(","):
            try:
                result = run(name, args.rows, args.countries, args.seed, args.decide_every, Path(folder))
            except engine.PolicyError as exc:  # e.g. past a durable_rules limit on this branch
                print(f"{name}: does not load or decide here: {exc}")
                failed = True
                continue
            print(f"\n== {name}")
            for key, value in result.items():
                print(f"  {key}: {value}")
            failed |= bool(result["bad rows the policy decided anyway"]) or any(
                bool(v) for k, v in result.items() if k.endswith("disagreements") and "dict" not in k)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
