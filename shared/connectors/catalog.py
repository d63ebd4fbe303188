"""Lists a target rarely changes, read whole and kept: no lookup per record or line.

Items and payment terms change rarely, and invoices name them on every line (or
every record), so a connector reads each list once (a few calls for thousands of
entries) instead of a query or two each time. One invalidation rule for all: a list
is read again when it is older than ``kept_s``; when a name is not in it (one made
since; at most once per ``reread_s``, so a record naming none costs no call per
retry); and when the connector says so (``forget``: after the target refused a write,
perhaps for an entry made inactive since).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, NamedTuple, TypeVar

# Our choice: these lists change rarely, and a new entry is seen at once through a miss.
KEPT_S = 900.0
REREAD_S = 10.0

V = TypeVar("V")


class KeptIndex(Generic[V]):
    """Entries by their names (case-insensitive, as the vendors' queries compare),
    read whole by ``read``: each entry with the names it is found by."""

    def __init__(
        self,
        read: Callable[[], Iterable[tuple[Sequence[str | None], V]]],
        *,
        clock: Callable[[], float] = time.monotonic,
        kept_s: float = KEPT_S,
        reread_s: float = REREAD_S,
    ) -> None:
        self._read = read
        self._clock = clock
        self._kept_s = kept_s
        self._reread_s = reread_s
        self._entries: dict[str, V] = {}
        self._read_at: float | None = None

    def find(self, *names: str | None) -> V | None:
        """The entry of the first of ``names`` (None skipped) that has one."""
        if self._read_at is None or self._clock() - self._read_at > self._kept_s:
            self._reload()
        found = self._lookup(names)
        if found is None and self._clock() - (self._read_at or 0.0) > self._reread_s:
            self._reload()
            found = self._lookup(names)
        return found

    def forget(self) -> None:
        self._read_at = None

    def add(self, names: Sequence[str | None], value: V) -> None:
        """An entry the connector just made: found at once, without reading the list."""
        for name in names:
            if name:
                self._entries.setdefault(name.casefold(), value)

    def _lookup(self, names: Sequence[str | None]) -> V | None:
        for name in names:
            if name and (found := self._entries.get(name.casefold())) is not None:
                return found
        return None

    def _reload(self) -> None:
        entries: dict[str, V] = {}
        for names, value in self._read():
            for name in names:
                if name:
                    entries.setdefault(name.casefold(), value)
        self._entries, self._read_at = entries, self._clock()


class CatalogItem(NamedTuple):
    ref: str  # what an invoice line names the item by (an id, a code)
    name: str
    sku: str | None


class ItemCatalog:
    """A target's items by SKU, else by name, kept by ``KeptIndex``'s rules."""

    def __init__(
        self,
        read: Callable[[], Iterable[CatalogItem]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._index: KeptIndex[str] = KeptIndex(
            lambda: ((_keys(item.name, item.sku), item.ref) for item in read()),
            clock=clock,
        )

    def find(self, *, name: str, sku: str | None) -> str | None:
        return self._index.find(*_keys(name, sku))

    def add(self, item: CatalogItem) -> None:
        self._index.add(_keys(item.name, item.sku), item.ref)

    def forget(self) -> None:
        self._index.forget()


def _keys(name: str, sku: str | None) -> list[str | None]:
    """An item's keys, SKU first; SKUs and names apart (an item named like another's SKU)."""
    return [f"sku:{sku}" if sku else None, f"name:{name}"]
