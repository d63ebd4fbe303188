"""A contact and a won deal synced on a local stack at log level DEBUG, in a process of its
own, so that ``test_secrets_not_logged`` reads everything the functions printed.

The functions' execution environments print as Lambda's do at that level: powertools'
logger to stdout, the root logger (every library's records) to stderr; the local runtime
copies both to this process's. At the end the OAuth tokens the QuickBooks sandbox handed
out, and the secret each vendor's sandbox filled in, are written as JSON to the file
named by the one argument, never printed.

Run as ``python -m tests.e2e.debug_log_run TOKENS_FILE`` from the repository root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from local.config import LocalConfig
from local.runtime import LocalStack
from local.sandboxes.registry import sandbox
from tests.e2e.conftest import Harness, Line, eventually, fast_retries


def main(tokens_file: Path) -> None:
    config = (
        LocalConfig.load()
        .with_free_ports()
        .model_copy(update={"log_level": "DEBUG", "reconcile_interval_s": 3600})
    )
    with LocalStack(fast_retries(config)) as stack:
        e2e = Harness(stack)
        person = e2e.create_contact()
        deal = e2e.create_deal(person.id, [Line("Services", quantity="2", price="150")])
        eventually(lambda: e2e.invoices_for(deal), f"an invoice for won deal {deal}")
        e2e.settle()
        secrets = {name: sandbox(name).secret(running) for name, running in stack.sandboxes.items()}
        tokens_file.write_text(
            json.dumps({"issued": e2e.quickbooks.issued_tokens(), "secrets": secrets}),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
