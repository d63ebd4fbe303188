"""Chaos runs: thousands of HubSpot changes under every fault the service must survive.

``run_chaos(ChaosConfig(changes=..., seed=...))`` serves the HubSpot and QuickBooks
sandboxes over real HTTP, lets a seeded person edit HubSpot while vendor faults,
webhook chaos and crashes are injected, drives the real ingest, consumer and engine
on the in-memory stores (the deployed queue's FIFO semantics, the function's
concurrency), lets everything settle with reconciliation, and then judges the
result from the sandboxes' own state: duplicates, lost records, wrong amounts,
dead letters. ``bench/chaos.py`` is the command; ``tests/e2e/test_chaos.py`` the
short run in CI.
"""

from local.chaos.run import ChaosConfig, ChaosReport, run_chaos

__all__ = ["ChaosConfig", "ChaosReport", "run_chaos"]
