"""Hostile rule files: each gets its exact located message, in bounded memory, with nothing executed.

The files are in rules/ (small ones) or generated here (big ones). All are loaded with engine.load in one child
process capped by `prlimit --as` (a regression then fails with MemoryError instead of swapping the machine);
its timeout only stops a hang. Times and peak memory are printed by bench/bench_rulefiles.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
RULES = HERE / "rules"
MINI = HERE.parent / "fixtures" / "valid" / "mini.yaml"
ADDRESS_SPACE = 1_000_000_000  # bytes: about 400 MB for Python, pandas and the engine, the rest to spare
ALLOWED = "allowed: !!str, !!int, !!float, !!bool, !!null, !!seq, !!map"
LIMIT = "past the limit of 10000 values repeated by aliases in one file"

# Loads each file given, prints one JSON line per file: its problems, or what else happened.
RUNNER = """
import json, sys
import engine
for path in sys.argv[1:]:
    try:
        engine.load(path)
        outcome = ["loaded"]
    except engine.RuleError as exc:
        outcome = [str(p) for p in exc.problems]
    except BaseException as exc:  # MemoryError, RecursionError, ...: what a regression looks like
        outcome = [f"{type(exc).__name__}: {exc}"[:300]]
    print(json.dumps([path, outcome]), flush=True)
"""


def mini(old: str, new: str) -> str:
    text = MINI.read_text()
    assert text.count(old) == 1
    return text.replace(old, new)


def generated() -> dict[str, str]:
    """Files too big to keep in the repository, by name."""
    chain = "".join(f"  - &d{i} [{f'*d{i - 1}' if i else 'x'}]\n" for i in range(1000))
    wide = "  - &w [" + ", ".join(["lol"] * 2000) + "]\n" + "  - [*w, *w, *w, *w, *w, *w]\n"
    return {
        "flow_nesting_600": mini('version: "1"', "version: " + "[" * 600 + "]" * 600),
        "flow_nesting_100000": mini('version: "1"', "version: " + "{a: " * 100_000 + "}" * 100_000),
        "block_nesting_600": mini('version: "1"\n', 'version: "1"\ndescription:\n'
                                  + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 600)) + f"{'  ' * 600}end\n"),
        "alias_chain_1000": mini('version: "1"\n', 'version: "1"\ndescription:\n' + chain),
        "alias_wide": mini('version: "1"\n', 'version: "1"\ndescription:\n' + wide),
        "integer_5000_digits": mini("reply_hours: 48", "reply_hours: " + "7" * 5000),
    }


def expected(path: Path) -> list[str]:
    """The exact problems of each hostile file, by its name (the path is prepended)."""
    return [f"{path}:{entry}" for entry in EXPECTED[path.stem]]


EXPECTED: dict[str, list[str]] = {
    # committed files
    "alias_bomb": [f"8:45: alias '*a2' repeats 1111 values, {LIMIT}"],
    "alias_bomb_merge_keys": ["6:10: merge key '<<' is not supported (write the keys out, or quote '<<' for the text)"],
    "python_object_apply": [f"3:10: tag '!!python/object/apply:os.system' is not allowed ({ALLOWED})"],
    "tag_directive": [f"4:9: tag 'tag:evil.example,2026:str' is not allowed ({ALLOWED})"],
    "verbatim_tag": [f"27:16: tag 'tag:evil.example,2026:number' is not allowed ({ALLOWED})"],
    "nul_byte": ["33:13: control character U+0000 is not allowed in YAML"],
    "escape_character": ["66:22: control character U+001B is not allowed in YAML"],
    "huge_numbers": [
        "28:12: parameter 'forever' must be a finite number, got inf",
        "29:8: parameter 'far' must be a finite number, got inf",
        "30:8: parameter 'big' must be between -1e+09 and 1e+09, got a 400-digit number",
        "43:37: rule 'overdue': fact 'days_since_refund' takes finite numbers; got -inf",
        "55:34: rule 'silent': fact 'hours_since_contact' takes numbers between -1e+09 and 1e+09; got 1e+308",
    ],
    # generated files
    "flow_nesting_600": ["3:73: values nest deeper than 64 levels"],
    "flow_nesting_100000": ["3:259: values nest deeper than 64 levels"],
    "block_nesting_600": ["67:127: values nest deeper than 64 levels"],
    "alias_chain_1000": ["66:11: alias '*d60' nests values deeper than 64 levels"],
    "alias_wide": [f"6:22: alias '*w' repeats 2001 values, {LIMIT}"],
    "integer_5000_digits": [f"27:16: '{'7' * 56}... is not a valid integer"],  # the text, cut short
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, list[str]]:
    """Every hostile file loaded once, in one capped child process started in an empty folder."""
    folder = tmp_path_factory.mktemp("hostile-rules")
    paths = sorted(RULES.glob("*.yaml"))
    for name, text in generated().items():
        paths.append(folder / f"{name}.yaml")
        paths[-1].write_text(text)
    done = subprocess.run(["prlimit", f"--as={ADDRESS_SPACE}", sys.executable, "-c", RUNNER, *map(str, paths)],
                          capture_output=True, text=True, timeout=300, cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (folder / "pwned").exists()  # the Python tag ran nothing
    return {Path(path).stem: (Path(path), outcome) for path, outcome in map(json.loads, done.stdout.splitlines())}


def test_every_hostile_file_has_an_expectation():
    assert {p.stem for p in RULES.glob("*.yaml")} | set(generated()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_rule_file_gets_its_located_message(outcomes, name):
    path, problems = outcomes[name]
    assert problems == expected(path)


def test_cli_refuses_the_alias_bomb_with_exit_2_and_no_traceback(tmp_path):
    bomb = RULES / "alias_bomb.yaml"
    cli = Path(sys.executable).with_name("cancel-rules")
    done = subprocess.run(["prlimit", f"--as={ADDRESS_SPACE}", str(cli), "rules", "--policy", str(bomb)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"cancel-rules rules: 1 problem in {bomb}:", *expected(bomb)]
