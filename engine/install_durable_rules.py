"""Make durable-rules 2.0.28 import in this Python: PyPI's build below 3.13, on 3.13+ a cached build with one fix.

durable-rules 2.0.28 (2020, its last release) ships only as an sdist whose C extension calls PyEval_CallObject,
which Python 3.13 removed: PyPI's build then fails to import ("undefined symbol"), or fails to compile with
GCC 14. On Python 3.13+ this script downloads that sdist from PyPI (pip checks its sha256), replaces
PyEval_CallObject with PyObject_CallObject in its C source (the upstream fix of July 2025, never released) and
changes nothing else, builds a wheel, caches it (CACHE below) and installs it into the running Python.

Run it as a file with the Python to fix; it imports nothing from `engine`, so it runs where `import engine` fails:

    .venv/bin/python engine/install_durable_rules.py
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.0.28"
SDIST_SHA256 = "053b26f5e48d312d4fa27995243f954671be6eece477f150c059c364eb4d7d61"  # as PyPI publishes it
PATCHED_FILE = "src/rulespy/rules.c"  # the only file that calls it (5 calls)
OLD, NEW = "PyEval_CallObject", "PyObject_CallObject"
FIRST_PATCHED = (3, 13)
# The wheel cache: one folder per recipe (sdist hash and replacement) and per interpreter ABI and platform.
RECIPE = hashlib.sha256(f"{SDIST_SHA256} {PATCHED_FILE} {OLD} {NEW}".encode()).hexdigest()[:12]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cancel-rules" / "wheels"


def command() -> str:
    """The shell command that runs this script with the running Python."""
    return shlex.join([sys.executable, str(Path(__file__).resolve())])


def import_hint(exc: ImportError) -> str:
    """The one line `import engine` shows when durable_rules does not import: why, and the command that fixes it."""
    if OLD in str(exc):
        reason = f"its PyPI build calls {OLD}, which Python 3.13 removed"
    elif isinstance(exc, ModuleNotFoundError) and exc.name in ("durable", "durable_rules_engine"):
        reason = "it is not installed"
    else:
        reason = " ".join(str(exc).split()) or type(exc).__name__
    python = ".".join(map(str, sys.version_info[:3]))
    return f"durable-rules does not import on Python {python} ({reason}); install a working build with: {command()}"


def wheel_folder() -> Path:
    """Where the patched wheel for this interpreter is cached."""
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}{sys.abiflags}-{sysconfig.get_platform()}"
    return CACHE / f"durable_rules-{VERSION}-{RECIPE}" / tag


def _imports() -> bool:
    """Whether durable_rules imports in a fresh process of this Python (this one may hold a failed import)."""
    return subprocess.run([sys.executable, "-c", "import durable.engine"], capture_output=True).returncode == 0


def _pip(*args: str | Path) -> None:
    """Run pip in this Python; its output (setuptools' warnings about this 2020 sdist) only if it fails."""
    run = subprocess.run([sys.executable, "-m", "pip", *map(str, args)], capture_output=True, text=True)
    if run.returncode:
        sys.stderr.write(run.stdout + run.stderr)
        raise SystemExit(f"install_durable_rules: pip {args[0]} failed (its output is above)")


def build_wheel(folder: Path) -> Path:
    """Build the patched wheel from the PyPI sdist and store it in `folder`; the wheel's path."""
    print(f"install_durable_rules: building durable-rules {VERSION} with {NEW} from its PyPI sdist", flush=True)
    with tempfile.TemporaryDirectory(prefix="durable-rules-") as tmp:
        work = Path(tmp)
        requirement = work / "requirement.txt"
        requirement.write_text(f"durable-rules=={VERSION} --hash=sha256:{SDIST_SHA256}\n")
        # hash-checking mode: pip verifies the download before it runs any of the sdist's code
        _pip("download", "--no-deps", "--no-binary", ":all:", "--require-hashes", "-r", requirement,
             "-d", work / "sdist")
        with tarfile.open(work / "sdist" / f"durable_rules-{VERSION}.tar.gz") as tar:
            tar.extractall(work / "src", filter="data")
        source = work / "src" / f"durable_rules-{VERSION}"
        patched = source / PATCHED_FILE
        text = patched.read_text()
        if OLD not in text:
            raise SystemExit(f"install_durable_rules: {PATCHED_FILE} does not call {OLD}: not building it")
        patched.write_text(text.replace(OLD, NEW))
        _pip("wheel", "--no-deps", "-w", work / "wheel", source)
        (built,) = (work / "wheel").glob("*.whl")
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{built.name}.{os.getpid()}"
        shutil.copyfile(built, partial)
        wheel = folder / built.name
        os.replace(partial, wheel)  # the cache holds whole wheels only, also with two setups at once
        return wheel


def main() -> int:
    python = ".".join(map(str, sys.version_info[:3]))
    if _imports():
        print(f"install_durable_rules: durable-rules already imports on Python {python}")
        return 0
    if sys.version_info < FIRST_PATCHED:
        _pip("install", f"durable-rules=={VERSION}")  # PyPI's build works below 3.13
        source = "PyPI"
    else:
        folder = wheel_folder()
        cached = sorted(folder.glob("durable_rules-*.whl"))
        wheel = cached[0] if cached else build_wheel(folder)
        _pip("install", "--no-deps", "--force-reinstall", wheel)
        source = f"{wheel} ({OLD} -> {NEW}, {'cached' if cached else 'built now'})"
    if not _imports():
        raise SystemExit(f"install_durable_rules: durable-rules still does not import on Python {python}")
    print(f"install_durable_rules: durable-rules {VERSION} on Python {python} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
