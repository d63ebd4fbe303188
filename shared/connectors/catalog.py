"""A target's item list, read whole and kept: no item lookups per invoice line.

Items change rarely and an invoice names one on every line, so a connector reads the
list once (a few calls for thousands of items) instead of a query or two a line.
Invalidation: the list is read again when it is older than ``kept_s``, when a line
names an item it lacks (one made since; at most once per ``reread_s``, so a line
naming no item costs no call per retry) and when the connector says so (``forget``:
after the target refused an invoice, perhaps for an item made inactive since).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

# Our choice: items change rarely, and a new one is seen at once through a miss.
ITEMS_KEPT_S = 900.0
ITEMS_REREAD_S = 10.0


class CatalogItem(NamedTuple):
    ref: str  # what an invoice line names the item by (an id, a code)
    name: str
    sku: str | None


class ItemCatalog:
    """Items by SKU and by name, case-insensitive as the vendors' queries compare."""

    def __init__(
        self,
        read: Callable[[], Iterable[CatalogItem]],
        *,
        clock: Callable[[], float] = time.monotonic,
        kept_s: float = ITEMS_KEPT_S,
        reread_s: float = ITEMS_REREAD_S,
    ) -> None:
        self._read = read
        self._clock = clock
        self._kept_s = kept_s
        self._reread_s = reread_s
        self._by_sku: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self._read_at: float | None = None

    def find(self, *, name: str, sku: str | None) -> str | None:
        """The item's ref by SKU when given and known, else by name."""
        if self._read_at is None or self._clock() - self._read_at > self._kept_s:
            self._reload()
        found = self._lookup(name, sku)
        if found is None and self._clock() - (self._read_at or 0.0) > self._reread_s:
            self._reload()
            found = self._lookup(name, sku)
        return found

    def forget(self) -> None:
        self._read_at = None

    def _lookup(self, name: str, sku: str | None) -> str | None:
        found = self._by_sku.get(sku.casefold()) if sku else None
        return found or self._by_name.get(name.casefold())

    def _reload(self) -> None:
        by_sku: dict[str, str] = {}
        by_name: dict[str, str] = {}
        for item in self._read():
            by_name[item.name.casefold()] = item.ref
            if item.sku:
                by_sku[item.sku.casefold()] = item.ref
        self._by_sku, self._by_name, self._read_at = by_sku, by_name, self._clock()
