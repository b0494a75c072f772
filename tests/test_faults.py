"""Issue 9 item 11: `cancel-rules evaluate` killed, interrupted or unable to write leaves nothing behind.

Real subprocesses of the console script on a CSV big enough to be stopped midway: the test waits until the
temp part file has grown, sends the signal, and lists the output folder."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import AS_OF, ROOT, SCRIPT
from engine.synthetic import synthetic_orders

ROWS = 150_000
CHUNK = "2000"  # small chunks: the part file grows from the first second, the run lasts a few seconds


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "orders.csv"
    synthetic_orders(ROWS, "2026-11-26T12:00:00+00:00", seed=11).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "orders.csv"
    synthetic_orders(50, "2026-11-26T12:00:00+00:00", seed=12).to_csv(path, index=False)
    return path


def start(source: Path, target: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([str(SCRIPT), "evaluate", str(source), "-o", str(target), "--as-of", AS_OF,
                             "--chunksize", CHUNK], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, **popen)


def grown_part(proc: subprocess.Popen, folder: Path) -> Path:
    """The run's temp part once it holds some rows (the run still going)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for part in folder.glob(".out.csv.*.part"):
            try:
                if part.stat().st_size > 100_000:
                    return part
            except FileNotFoundError:
                pass
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the part file never grew")


def stop(proc: subprocess.Popen, folder: Path, signum: int) -> tuple[int, str, int]:
    """Send signum midway; the exit status, stderr, and the size the part had reached."""
    part = grown_part(proc, folder)
    size = part.stat().st_size
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, size


def test_sigterm_removes_the_part(big_csv, tmp_path):
    code, err, size = stop(start(big_csv, tmp_path / "out.csv"), tmp_path, signal.SIGTERM)
    assert size > 100_000
    assert list(tmp_path.iterdir()) == []  # neither an output nor its part
    assert code == 128 + signal.SIGTERM
    assert err.splitlines() == ["cancel-rules evaluate: terminated (SIGTERM)"]


def test_sigint_exits_130_with_one_line(big_csv, tmp_path):
    code, err, _ = stop(start(big_csv, tmp_path / "out.csv"), tmp_path, signal.SIGINT)
    assert list(tmp_path.iterdir()) == []
    assert code == 130
    assert err.splitlines() == ["cancel-rules evaluate: interrupted (SIGINT)"]


def test_sigkill_part_is_removed_by_the_next_run(big_csv, small_csv, tmp_path):
    """A killed run cannot clean up: the next run to the same output removes the part of a process that is
    gone, and keeps those of a live process and of another machine (a shared folder)."""
    proc = start(big_csv, tmp_path / "out.csv")
    code, _, _ = stop(proc, tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    [left] = list(tmp_path.iterdir())
    assert left.name.startswith(".out.csv.") and left.stat().st_size > 100_000
    host = socket.gethostname()
    live = tmp_path / f".out.csv.{os.getpid()}@{host}.part"  # this test process: alive
    other = tmp_path / f".out.csv.{proc.pid}@elsewhere.example.part"  # same pid, another machine
    unrelated = tmp_path / f".other.csv.{proc.pid}@{host}.part"  # another output's part
    for path in (live, other, unrelated):
        path.write_bytes(b"x")
    after = subprocess.run([str(SCRIPT), "evaluate", str(small_csv), "-o", str(tmp_path / "out.csv"), "--as-of",
                            AS_OF], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert after.returncode == 0, after.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.csv", live.name, other.name,
                                                                 unrelated.name])


def _limit_file_size() -> None:  # in the child: files it writes may not grow past 200 kB (EFBIG, like a full disk)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_a_write_failure_names_the_output(big_csv, tmp_path):
    proc = start(big_csv, tmp_path / "out.csv", preexec_fn=_limit_file_size)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.splitlines() == [f"cancel-rules evaluate: {tmp_path / 'out.csv'}: cannot write: File too large"]
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_names_the_output(small_csv):
    target = Path("/sys/out.csv")  # a read-only file system, even for root
    result = subprocess.run([str(SCRIPT), "evaluate", str(small_csv), "-o", str(target), "--as-of", AS_OF],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"cancel-rules evaluate: {target}: cannot write: Permission denied"]


def test_a_zombie_is_gone(tmp_path):
    """A killed child its parent has not waited for yet still has its pid: its part is removed all the same."""
    from engine.atomic import remove_stale

    child = subprocess.Popen(["sleep", "60"])
    try:
        child.send_signal(signal.SIGKILL)
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            time.sleep(0.01)
        part = tmp_path / f".out.csv.{child.pid}@{socket.gethostname()}.part"
        part.write_bytes(b"x")
        assert remove_stale(tmp_path / "out.csv") == [part]
        assert list(tmp_path.iterdir()) == []
    finally:
        child.wait()
