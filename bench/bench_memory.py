"""Memory of a long what-if session: RSS kept by 300 x `with_parameters` (alone, then with `verify`).

Each measure runs in its own fresh process; RSS is read after a garbage collection, before and after the moves
(one warm-up move first, so imports and the bundled policy's own tables are not counted).

Usage: python bench/bench_memory.py [--moves 300]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import gc, sys, psutil, engine
moves, verify = int(sys.argv[1]), sys.argv[2] == "verify"
policy = engine.load()
process = psutil.Process()

def rss() -> float:
    gc.collect()
    return process.memory_info().rss / 2**20

def move(k: int) -> None:
    candidate = policy.with_parameters(seller_reply_hours=49 + k * 0.25)
    if verify:
        candidate.verify()

move(-4)
start = rss()
for k in range(moves):
    move(k)
print(f"{rss() - start:+.1f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=300)
    args = parser.parse_args()
    for mode in ("plain", "verify"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.moves), mode], capture_output=True, text=True,
                             check=True).stdout.strip()
        what = "with_parameters" + (" + verify" if mode == "verify" else "")
        print(f"{args.moves} x {what}: RSS {out} MB")


if __name__ == "__main__":
    main()
