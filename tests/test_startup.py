"""Start-up stays light: one decision (CLI or Python API) imports neither pandas, pyarrow nor dask, and
`cancel-rules --help` not even numpy; each checked in a fresh process, on the modules it really imported."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import AS_OF, ROOT, SCRIPT

# A timestamp to parse, an enum alias, a misspelt field (a warning with did-you-mean): decide's whole path.
ORDER = {"order_id": "A-1", "status": "In transit", "seller_reply": "no_reply", "contacted_at": "2026-11-24T09:30:00Z",
         "paid_at": "2026-11-20", "seller_ratng": 97}
FRAME_LIBRARIES = {"pandas", "pyarrow", "dask", "distributed"}
# PYTHONPROFILEIMPORTTIME=1 (python -X importtime) writes a line to stderr for each module imported.
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.M)


def _imported(stderr: str) -> set[str]:
    """The top-level packages of the modules an importtime trace lists."""
    return {name.split(".")[0] for name in IMPORT_LINE.findall(stderr)}


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **env})


@pytest.mark.parametrize(("args", "heavy"), [
    (["decide", "--json", json.dumps(ORDER), "--as-of", AS_OF], FRAME_LIBRARIES),
    (["decide", "--json", json.dumps(ORDER), "--as-of", AS_OF, "--text"], FRAME_LIBRARIES),
    (["--help"], FRAME_LIBRARIES | {"numpy"}),
], ids=["decide", "decide-text", "help"])
def test_cli_start_up_imports_no_frame_library(policy, args, heavy) -> None:
    done = _run([str(SCRIPT), *args], PYTHONPROFILEIMPORTTIME="1")
    assert done.returncode in (0, 1), done.stderr[-2000:]
    imported = _imported(done.stderr)
    assert {"engine", "argparse"} <= imported, done.stderr[-2000:]  # the trace was read: it lists what ran
    if args[0] == "decide":
        assert {"durable", "yaml"} <= imported
        expected = policy.decide(ORDER, as_of=AS_OF, engine="direct")
        if "--text" in args:
            assert done.stdout.rstrip("\n") == expected.explain()
        else:
            assert json.loads(done.stdout) == json.loads(expected.to_json())
    assert not imported & heavy, sorted(imported & heavy)


API = """
import json, sys
import engine
decision = engine.load().decide(json.loads(sys.argv[1]), as_of=sys.argv[2])
print(json.dumps({"decision": json.loads(decision.to_json()), "explained": decision.explain(),
                  "modules": sorted(sys.modules)}))
"""


def test_one_decision_in_python_imports_no_frame_library(policy) -> None:
    done = _run([sys.executable, "-c", API, json.dumps(ORDER), AS_OF])
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    expected = policy.decide(ORDER, as_of=AS_OF, engine="direct")
    assert out["decision"] == json.loads(expected.to_json())  # the explanation was built, lazily
    assert out["explained"] == expected.explain()
    imported = {name.split(".")[0] for name in out["modules"]}
    assert {"engine", "durable", "numpy"} <= imported
    assert not imported & FRAME_LIBRARIES, sorted(imported & FRAME_LIBRARIES)
