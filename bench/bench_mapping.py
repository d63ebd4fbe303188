"""Mapping engine throughput: records/s for contacts and for won deals with line items.

Method: the default mapping (config/hubspot/services.yaml), fixed synthetic records, 50
warm-up calls, then N timed calls of ``Mapper.map``; prints rate, p50 and p99, and beside
the 20-line deal the rate it must reach.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import report, time_calls
from shared.mapping import Mapper, load_mapping
from shared.models import ObjectType, SourceRecord

DEFAULT_MAPPING = Path(__file__).resolve().parents[1] / "config" / "hubspot" / "services.yaml"

N = 20_000
# Deals per second per core a 20-line deal must map at (issue: mapping fast for big deals).
DEAL_GOAL = 5_000


def contact() -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.CONTACT,
        id="1",
        version=1_700_000_000_000,
        properties={
            "firstname": "  Ada ",
            "lastname": "Lovelace",
            "email": " Ada@Example.com ",
            "phone": "+44 20 7946 0000",
            "city": "London",
            "country": "UK",
        },
    )


def deal(lines: int) -> SourceRecord:
    return SourceRecord(
        object_type=ObjectType.DEAL,
        id="9",
        version=1_700_000_000_000,
        properties={
            "dealname": "Website redesign",
            "dealstage": "closedwon",
            "pipeline": "default",
            "closedate": "2026-11-20T15:00:00Z",
            "deal_currency_code": "usd",
            "hs_object_id": "9",
        },
        associations={ObjectType.CONTACT: ["1"]},
        children={
            ObjectType.LINE_ITEM: [
                SourceRecord(
                    object_type=ObjectType.LINE_ITEM,
                    id=str(100 + i),
                    version=1_700_000_000_000,
                    properties={
                        "name": f"Service {i}",
                        "quantity": "2.5",
                        "price": "149.995",
                        "hs_total_discount": "10",
                    },
                )
                for i in range(lines)
            ]
        },
    )


def main() -> None:
    mapper = Mapper(load_mapping(DEFAULT_MAPPING))
    print(f"mapping engine, {DEFAULT_MAPPING.name}")
    record = contact()
    report("contact → Party", time_calls(lambda: mapper.map(record), n=N))
    for lines in (1, 5, 20):
        record = deal(lines)
        name = f"won deal, {lines} line items → Deal"
        samples = time_calls(lambda record=record: mapper.map(record), n=N // lines)  # type: ignore[misc]
        report(name, samples, f"goal ≥ {DEAL_GOAL:,}/s" if lines == 20 else "")


if __name__ == "__main__":
    main()
