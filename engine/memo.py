"""A bounded, thread-safe memo: each value made once per key, the least recently used dropped beyond its size."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(OrderedDict[K, V], Generic[K, V]):
    """An OrderedDict, least recently used first, that keeps at most `size` values (callers key it by everything
    that defines a value, never by a name)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._lock = threading.Lock()

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value of key, made (under the lock: once, even with threads) when missing."""
        with self._lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
            value = self[key] = make()
            while len(self) > self.size:
                self.popitem(last=False)
            return value
