"""Small generic helpers, each with one home: `round_up`, `LruCache`, `progress_bar`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def round_up(n: int, multiple: int) -> int:
    """`n` rounded up to a multiple of `multiple` (the padding rule of the networks and graphs)."""
    return -(-n // multiple) * multiple


class LruCache(Generic[K, V]):
    """A dict that keeps the `maxsize` most recently used entries (not thread-safe on its own)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = max(1, int(maxsize))
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The entry (now the most recently used) or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        """Store `value` (dropping the least recently used beyond `maxsize`) and return it."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()


def progress_bar(items: Iterable[Any], enabled: bool, total: int | None, desc: str, unit: str = "img") -> Iterable[Any]:
    """`items`, behind a tqdm bar when `enabled` (tqdm is imported only then)."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit=unit)


HASH_PREFIX_MIN = 12
"""Fewest hex digits of a hash prefix that may name a file (48 bits: a short frame record's weights)."""


def hash_names(asked: str, full: str) -> bool:
    """`asked` names the content whose SHA-256 is `full`: the same hash (two empty ones: untrained weights),
    or a prefix of it with at least `HASH_PREFIX_MIN` hex digits (what a short frame record stores)."""
    return asked == full or (len(asked) >= HASH_PREFIX_MIN and full.startswith(asked))

