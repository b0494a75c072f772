"""Stages of a stream on threads of their own: reading ahead and writing behind the thread that decides, in order.

Arrow parses and writes CSV without holding the GIL, so on a second core both overlap the deciding; each stage
holds at most `depth` items waiting (memory stays flat), and an exception is raised where the stream would have
raised it without threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()  # after the last item (with the exception that ended the stream, if any)
_POLL = 0.05  # seconds between looks at the stop flag while a queue is full


def _put(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put item unless stop is set first; whether it was put."""
    while not stop.is_set():
        try:
            items.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def read_ahead(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of source in order, produced by a thread up to depth items ahead; the exception that ends
    source is raised after its last item. Closing this iterator early stops the thread (and closes source)."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                if not _put(waiting, (item, None), stop):
                    break
            else:
                _put(waiting, (_END, None), stop)
        except BaseException as exc:  # noqa: B036 - handed to the consumer, raised there
            _put(waiting, (_END, exc), stop)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = waiting.get()
            if item is _END:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        thread.join()


class WriteBehind(Generic[T]):
    """A thread calling write on each item put, in order, at most depth items behind; leaving the block waits
    for the writes and raises the first one's exception (an exception inside the block drops pending items)."""

    def __init__(self, write: Callable[[T], None], depth: int = 1) -> None:
        self._write = write
        self._waiting: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)

    def __enter__(self) -> WriteBehind[T]:
        self._thread.start()
        return self

    def put(self, item: T) -> None:
        """Queue item for writing; raises the exception of a write that failed before it."""
        if self._failed is None:
            _put(self._waiting, item, self._stop)
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        while True:
            try:
                item = self._waiting.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if item is _END or self._stop.is_set():  # the end, or the block failed: what waits is dropped
                return
            try:
                self._write(item)  # type: ignore[arg-type]  # not _END: an item put
            except BaseException as exc:  # noqa: B036 - raised in the thread that puts
                self._failed = exc
                self._stop.set()
                return

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            _put(self._waiting, _END, self._stop)
        else:
            self._stop.set()
        self._thread.join()
        if kind is None and self._failed is not None:
            raise self._failed
