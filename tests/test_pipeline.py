"""engine.pipeline: reading ahead and writing behind on threads keep the order, hand exceptions over where the
stream raised them, and stop their threads when the consumer stops."""

from __future__ import annotations

import threading
import time

import pytest

from engine.pipeline import WriteBehind, read_ahead


def _threads(name: str) -> int:
    return sum(t.name == name for t in threading.enumerate())


def test_read_ahead_keeps_the_order_and_raises_after_the_last_item():
    def source():
        yield from range(50)
        raise ValueError("bad row")

    got = []
    with pytest.raises(ValueError, match="bad row"):
        for item in read_ahead(source(), depth=2):
            got.append(item)
    assert got == list(range(50))


def test_read_ahead_runs_the_source_on_another_thread_and_stops_it_when_closed():
    seen, closed = [], []

    def source():
        try:
            for i in range(1_000_000):
                seen.append(threading.current_thread().name)
                yield i
        finally:
            closed.append(True)

    items = read_ahead(source(), depth=1)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the consumer stops early: the producer is told, and closes its source
    assert closed == [True] and _threads("read-ahead") == 0
    assert set(seen) == {"read-ahead"} and len(seen) < 10  # at most depth items ahead, not the whole source


def test_write_behind_writes_in_order_on_its_own_thread():
    written, names = [], set()

    def write(item: int) -> None:
        time.sleep(0.001 * (item % 3))
        names.add(threading.current_thread().name)
        written.append(item)

    with WriteBehind(write, depth=2) as writer:
        for i in range(30):
            writer.put(i)
    assert written == list(range(30)) and names == {"write-behind"} and _threads("write-behind") == 0


def test_write_behind_raises_a_failed_write_in_the_putting_thread():
    def write(item: int) -> None:
        if item == 3:
            raise OSError(27, "File too large")

    with pytest.raises(OSError, match="File too large"):
        with WriteBehind(write) as writer:
            for i in range(1_000):
                writer.put(i)
    assert _threads("write-behind") == 0


def test_write_behind_drops_what_waits_when_the_block_fails():
    written, release = [], threading.Event()

    def write(item: int) -> None:
        release.wait(5)
        written.append(item)

    with pytest.raises(KeyError):
        with WriteBehind(write, depth=1) as writer:
            writer.put(0)  # being written (waits for release)
            writer.put(1)  # waiting in the queue
            threading.Timer(0.2, release.set).start()
            raise KeyError("decide failed")
    assert written == [0]  # the write under way finishes; the waiting one is dropped
