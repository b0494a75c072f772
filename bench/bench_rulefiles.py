"""Rule files under repetition and attack: memory kept by repeated loads, time and memory of hostile files.

    .venv/bin/python bench/bench_rulefiles.py [--loads 300] [--levels 8 9] [--timeout 120] [--cap-gb 4]

Each measurement runs in a fresh process of this Python. Repeated loads: RSS after one `engine.load()` and
after N more (gc collected), and the YAML nodes still alive. Hostile files (alias bombs of fanout 10 and the
given levels, lists nested 10^5 deep, a NUL byte): wall time and peak RSS of one `engine.load()` under
`prlimit --as` (so a regression ends in MemoryError instead of swapping) and a timeout. To measure other code,
put it first on PYTHONPATH. Figures vary with the machine's load. No assertions.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

MINI = Path(__file__).parent.parent / "tests" / "fixtures" / "valid" / "mini.yaml"

LOADS = textwrap.dedent("""
    import gc, sys, time, psutil, yaml, engine
    engine.load()
    gc.collect()
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    for _ in range({n}):
        engine.load()
    seconds = time.perf_counter() - start
    gc.collect()
    kept = psutil.Process().memory_info().rss - before
    nodes = sum(isinstance(o, yaml.Node) for o in gc.get_objects())
    print(f"{n} x engine.load(): {{kept / 1e6:+.1f}} MB RSS kept, {{nodes}} YAML nodes alive, {{seconds:.1f}} s")
""")

ONE_LOAD = textwrap.dedent("""
    import resource, sys, time, engine
    start = time.perf_counter()
    try:
        engine.load(sys.argv[1])
        outcome = "loaded"
    except BaseException as exc:  # MemoryError and RecursionError too: this is what is measured
        outcome = f"{type(exc).__name__}: {str(exc).splitlines()[-1][:110]}"
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(f"{seconds:.2f} s, peak {peak:.0f} MB: {outcome}")
""")


def alias_bomb(levels: int, fanout: int = 10) -> str:
    """mini.yaml with a description of anchors each repeating the previous one `fanout` times."""
    items = [f"&a0 [{', '.join(['lol'] * fanout)}]"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels + 1)]
    return MINI.read_text().replace('version: "1"\n', 'version: "1"\ndescription:\n'
                                    + "".join(f"  - {item}\n" for item in items))


def hostile_files() -> dict[str, str]:
    mini = MINI.read_text()
    return {
        "deep nesting (10^5 levels)": mini.replace('version: "1"', "version: " + "[" * 100_000 + "]" * 100_000),
        "NUL byte": mini.replace("Wait.", "Wait\x00."),
    }


def run(code: str, args: list[str], timeout: float, cap_gb: float) -> str:
    command = ["prlimit", f"--as={int(cap_gb * 1e9)}", sys.executable, "-c", code, *args]
    try:  # from another folder: `python -c` puts the working folder first on sys.path, before PYTHONPATH
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return f"still running after {timeout:.0f} s (killed)"
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=300)
    parser.add_argument("--levels", type=int, nargs="*", default=[8, 9])
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--cap-gb", type=float, default=4.0)
    args = parser.parse_args()
    print(run(LOADS.format(n=args.loads), [], args.timeout * 5, args.cap_gb))
    with tempfile.TemporaryDirectory() as tmp:
        cases = {f"alias bomb, {n} levels": alias_bomb(n) for n in args.levels} | hostile_files()
        for name, text in cases.items():
            path = Path(tmp) / "hostile.yaml"
            path.write_text(text)
            outcome = run(ONE_LOAD, [str(path)], args.timeout, args.cap_gb)
            print(f"{name} ({len(text.encode()) / 1e3:.1f} KB): {outcome}")


if __name__ == "__main__":
    main()
