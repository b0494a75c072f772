"""Outputs that appear only complete: written under a temp name next to the target, then renamed.

The temp name says which process on which machine writes it, so a later run can remove what a killed run
(SIGKILL, power loss) left."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal, get_args

TempKind = Literal["part", "parts", "old"]  # the output file being written, a Dask staging folder, a replaced folder
TEMP_KINDS: tuple[TempKind, ...] = get_args(TempKind)
_TEMP_TAIL = re.compile(r"(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9_.-]+)\.(?:" + "|".join(TEMP_KINDS) + ")")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"


def temp_path(target: Path, kind: TempKind) -> Path:
    """This process's temp name for target: `.NAME.<pid>@<host>.<kind>` in target's folder."""
    return target.with_name(f".{target.name}.{os.getpid()}@{_host()}.{kind}")


def _process_gone(pid: int) -> bool:
    """Whether no process of this pid runs on this machine (a zombie is gone too). Only a sure 'gone' counts:
    a pid reused by another process keeps the dead run's temp until that process ends as well."""
    if pid == os.getpid() or os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # another user's process, or not a pid at all
        return False
    try:  # /proc/<pid>/stat: "pid (name) state ...", the state is Z for a process nobody waited for
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def remove_temp(path: Path) -> None:
    """Remove a temp file or folder, never following a link. A folder is emptied until it is gone: a Dask
    worker still running a killed run's task may create a file in it while it is being removed."""
    for _ in range(20):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if not os.path.lexists(path):
            return
        time.sleep(0.05)


def remove_stale(target: Path) -> list[Path]:
    """Remove the temp files and folders that runs writing target left when they were killed: those named
    for this machine and a process that is gone. Another machine's (a shared folder) are kept: its pids
    cannot be checked from here."""
    prefix, host = f".{target.name}.", _host()
    removed: list[Path] = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_TAIL.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
        if match and match["host"] == host and _process_gone(int(match["pid"])):
            remove_temp(target.parent / name)
            removed.append(target.parent / name)
    return removed


@contextmanager
def atomic_file(target: Path, temp: Path | None = None) -> Iterator[IO[bytes]]:
    """A binary file that becomes target only when the block completes: written under temp (by default this
    process's `.part` name next to target), renamed over target, and removed on any failure or interruption."""
    temp = temp_path(target, "part") if temp is None else temp
    sink = open(temp, "wb")  # an OSError here is the caller's to word: nothing to remove yet
    try:
        with sink:
            yield sink
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
