"""A short chaos run: a few hundred HubSpot changes under every kind of fault, one seed.

The full runs (``python -m bench.chaos``, 10,000 changes a seed) are too long for CI;
this one makes sure the harness still runs and that, for a fixed seed, nothing ends
duplicated, lost or wrongly invoiced. A failure names the records and what the person
did to them.
"""

from __future__ import annotations

import pytest

from local.chaos import ChaosConfig, run_chaos
from local.chaos.check import tally

pytestmark = pytest.mark.e2e

CHANGES = 300
SEED = 7


def test_given_every_fault_when_a_few_hundred_changes_settle_then_quickbooks_agrees() -> None:
    report = run_chaos(ChaosConfig(changes=CHANGES, seed=SEED))

    injected = report.grouped()
    vendor_faults = {k: n for k, n in injected["vendor faults"].items() if k != "unconsumed"}
    webhook_chaos = {k: n for k, n in injected["webhooks"].items() if "delivered" not in k}
    # Duplicates, lost records and wrong amounts first among them; all named.
    findings = {kind: tally(found, 10) for kind, found in report.verdict.problems().items()}
    assert sum(vendor_faults.values()) > 0
    assert sum(webhook_chaos.values()) > 0
    assert report.settled, "\n".join(report.details())
    assert findings == {}, report.line()
