"""Kept lists (items, terms): read whole once, read again by their invalidation rules."""

from __future__ import annotations

from collections.abc import Iterator

from shared.connectors.catalog import KEPT_S, REREAD_S, CatalogItem, ItemCatalog


class Items:
    """An item list that counts its reads and can change between them."""

    def __init__(self, *items: CatalogItem) -> None:
        self.items = list(items)
        self.reads = 0

    def __call__(self) -> Iterator[CatalogItem]:
        self.reads += 1
        return iter(list(self.items))


def catalog(items: Items, now: list[float]) -> ItemCatalog:
    return ItemCatalog(items, clock=lambda: now[0])


def test_given_many_lines_when_items_are_found_then_the_list_is_read_once() -> None:
    items = Items(CatalogItem("12", "Hours", "HR-1"), CatalogItem("13", "Design", None))
    found = catalog(items, [0.0])

    assert found.find(name="Anything", sku="hr-1") == "12"  # SKU first, any case
    assert found.find(name="design", sku="NO-SUCH") == "13"  # then the name
    assert found.find(name="Hours", sku=None) == "12"
    assert items.reads == 1


def test_given_an_item_made_since_when_a_line_names_it_then_the_list_is_read_again() -> None:
    items = Items()
    now = [0.0]
    found = catalog(items, now)

    assert found.find(name="New", sku=None) is None
    assert found.find(name="New", sku=None) is None  # read moments ago: no read
    items.items.append(CatalogItem("5", "New", None))
    now[0] = REREAD_S + 1

    assert found.find(name="New", sku=None) == "5"
    assert items.reads == 2


def test_given_an_old_list_or_a_refusal_then_the_list_is_read_again() -> None:
    items = Items(CatalogItem("1", "Hours", None))
    now = [0.0]
    found = catalog(items, now)
    found.find(name="Hours", sku=None)

    now[0] = KEPT_S + 1  # kept long enough: an item may have been archived
    found.find(name="Hours", sku=None)
    found.forget()  # the target refused an invoice
    found.find(name="Hours", sku=None)

    assert items.reads == 3


def test_given_an_item_named_like_another_items_sku_then_the_sku_wins() -> None:
    items = Items(CatalogItem("1", "X-1", None), CatalogItem("2", "Other", "X-1"))

    assert catalog(items, [0.0]).find(name="Whatever", sku="X-1") == "2"
    assert catalog(items, [0.0]).find(name="X-1", sku=None) == "1"
