"""What a drift check tells CloudWatch: its findings by connection and kind, and the
persistent ones also per function alone, the one metric the drift alarm watches."""

from __future__ import annotations

from typing import Any

import pytest

from shared.observability import EmfDriftMetrics, log_metrics
from tests.unit.test_observability import dimension_sets, emf, metrics_on  # noqa: F401

FOUND = {"field": 2, "back": 0}
PERSISTENT = {"field": 1, "back": 0}


def test_given_two_connections_checked_then_each_kind_is_counted_and_persistent_ones_summed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @log_metrics
    def handler(event: dict[str, Any], context: object) -> None:
        EmfDriftMetrics().drift("acme", FOUND, PERSISTENT)
        EmfDriftMetrics().drift("globex", {"field": 0, "back": 3}, {"field": 0, "back": 2})

    handler({}, None)

    documents = emf(capsys.readouterr().out)
    by_kind = {(d["Connection"], d["DriftKind"]): d for d in documents if "DriftKind" in d}
    acme = by_kind[("acme", "field")]
    assert (acme["Drift"], acme["DriftPersistent"]) == ([2.0], [1.0])
    assert dimension_sets(acme) == [
        {"Connection", "DriftKind", "service"},
        {"Connection", "service"},  # the connection over all kinds: the dashboard's line
    ]
    assert by_kind[("globex", "back")]["DriftPersistent"] == [2.0]
    assert by_kind[("acme", "back")]["Drift"] == [0.0]  # zeros too: the graph goes down
    (fleet,) = [d for d in documents if "Connection" not in d and "DriftPersistent" in d]
    assert dimension_sets(fleet) == [{"service"}]
    assert sorted(fleet["DriftPersistent"]) == [1.0, 2.0]
