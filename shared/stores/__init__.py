"""DynamoDB adapters behind the state ports of ``shared.ports``.

The queue adapters are in ``shared.queues``, the secret store's in ``shared.secrets``.

AWS adapters take their boto3 client and resource name from the composition root,
which creates clients once per process. ``local.memory`` holds in-memory
twins of each for tests, benchmarks and dry runs; Lambdas never import it.
"""

from shared.stores.audit import DynamoAuditLog
from shared.stores.connections import DynamoConnections
from shared.stores.cursors import DynamoCursorStore
from shared.stores.deferrals import DynamoDeferralCounter
from shared.stores.directory import DynamoCustomerDirectory
from shared.stores.links import DynamoLinkStore
from shared.stores.lock import DynamoLock
from shared.stores.ratelimit import DynamoCallBudget

__all__ = [
    "DynamoAuditLog",
    "DynamoCallBudget",
    "DynamoConnections",
    "DynamoCursorStore",
    "DynamoCustomerDirectory",
    "DynamoDeferralCounter",
    "DynamoLinkStore",
    "DynamoLock",
]
