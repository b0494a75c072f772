"""durable-rules across Pythons: the build each Python runs, the one-line hint when it does not import, no warnings."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine import install_durable_rules as durable_build

PATCHED = sys.version_info >= durable_build.FIRST_PATCHED
BROKEN = {  # what `import durable` raised on 3.13 with PyPI's build, and with none installed
    "pypi_build": 'raise ImportError("/venv/lib/python3.13/site-packages/durable_rules_engine.cpython-313-x86_64-linux-'
                  'gnu.so: undefined symbol: PyEval_CallObject")',
    "not_installed": 'raise ModuleNotFoundError("No module named \'durable_rules_engine\'", '
                     'name="durable_rules_engine")',
}


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_actions_fire_without_deprecation_warnings():
    # durable_rules' clock called datetime.utcfromtimestamp on every action, deprecated since 3.12; a warnings
    # filter set at import does not survive pytest (or any catch_warnings), so nothing may warn at all.
    policy = engine.load()
    assert policy.compiled.match({"status": "awaiting_payment"}) == ("cancel_before_processing",)
    assert policy.decide({"order_id": "W1", "status": "Sent", "seller_reply": "no_reply", "hours_since_contact": 50},
                         as_of="2026-11-26T12:00:00Z").action == "open_dispute"


@pytest.mark.parametrize("failure", sorted(BROKEN))
def test_import_engine_without_a_working_durable_names_the_command_in_one_line(tmp_path, failure):
    fake = tmp_path / "durable"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "engine.py").write_text(BROKEN[failure] + "\n")
    run = subprocess.run([sys.executable, "-c", "import engine"], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    reason = {"pypi_build": "its PyPI build calls PyEval_CallObject, which Python 3.13 removed",
              "not_installed": "it is not installed"}[failure]
    python = ".".join(map(str, sys.version_info[:3]))
    assert last == (f"ImportError: durable-rules does not import on Python {python} ({reason}); "
                    f"install a working build with: {durable_build.command()}")
    assert "undefined symbol" not in run.stderr and "During handling" not in run.stderr
    assert shlex.split(durable_build.command()) == [sys.executable, str(Path(durable_build.__file__).resolve())]


def test_hint_stays_one_line_for_any_import_error():
    hint = durable_build.import_hint(ImportError("libfoo.so:\n  cannot open shared object file"))
    assert "\n" not in hint and "(libfoo.so: cannot open shared object file)" in hint


def test_each_python_runs_its_build_of_durable_rules():
    import durable_rules_engine

    binary = Path(durable_rules_engine.__file__).read_bytes()
    # below 3.13 PyPI's build (it calls PyEval_CallObject); on 3.13+ the patched one, which calls only the new name
    assert (b"PyEval_CallObject" in binary) is not PATCHED
    assert (b"PyObject_CallObject" in binary) is PATCHED
