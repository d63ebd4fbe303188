"""Chaos: N HubSpot changes under every fault the service must survive, for given seeds.

    python -m bench.chaos --changes 10000 --seeds 1,2,3,4,5

For each seed, a seeded person makes the changes in the HubSpot sandbox while
vendor faults (5xx, 429 bursts, timeouts, lost responses, token expiry), webhook
chaos (lost, refused, duplicated, replayed, reordered deliveries) and crashes
(after a vendor write, after a record is applied) are injected, with as many
concurrent invocations as the Sync function is deployed with. Then the run
settles (reconciliation included) and is judged from the sandboxes' state. One
line per seed says duplicates, lost records, wrong amounts, dead letters and time;
``--verbose`` adds what was injected and what happened. Exits 1 when any seed
found a duplicate, a lost record, a wrong amount or another violation, naming them.
"""

from __future__ import annotations

import argparse
import sys

from local.chaos import ChaosConfig, ChaosReport, run_chaos
from local.chaos.check import tally
from local.chaos.run import SYNC

FINDINGS_SHOWN = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--changes", type=int, default=ChaosConfig.changes, help="changes per seed")
    parser.add_argument(
        "--seeds", default="1", help="comma-separated seeds, one run each (default: 1)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=ChaosConfig.workers,
        help=f"concurrent invocations (default: the Sync function's {SYNC.max_concurrency})",
    )
    parser.add_argument("--verbose", action="store_true", help="print what was injected")
    args = parser.parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]

    reports: list[ChaosReport] = []
    for seed in seeds:

        def progress(message: str, seed: int = seed) -> None:
            if args.verbose:
                print(f"  seed {seed}: {message}", flush=True)

        config = ChaosConfig(changes=args.changes, seed=seed, workers=args.workers)
        report = run_chaos(config, progress)
        reports.append(report)
        print(report.line(), flush=True)
        if args.verbose or not report.ok:
            for line in report.details():
                print(line)
        for kind, found in report.verdict.problems().items():
            print(f"  {kind}:")
            for finding in tally(found, FINDINGS_SHOWN):
                print(f"    {finding}")

    failed = [r.config.seed for r in reports if not r.ok]
    total = sum(r.seconds for r in reports)
    print(
        f"{len(reports)} seed(s), {sum(r.changes for r in reports)} changes in {total:.0f} s: "
        f"duplicates {sum(len(r.verdict.duplicates) for r in reports)}, "
        f"lost {sum(len(r.verdict.lost) for r in reports)}, "
        f"wrong amounts {sum(len(r.verdict.wrong_amounts) for r in reports)}, "
        f"DLQ {sum(r.dead_letters for r in reports)}"
        + (f"; FAILED seeds {failed}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
