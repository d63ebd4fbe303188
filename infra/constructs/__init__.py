"""One construct per concern; ``infra.stack.CrmSyncStack`` composes them."""

from infra.constructs.dashboard import Dashboard
from infra.constructs.functions import Functions
from infra.constructs.ingress import Ingress
from infra.constructs.monitoring import Monitoring
from infra.constructs.queues import Queues
from infra.constructs.schedules import Schedules
from infra.constructs.secrets import SecretGrants
from infra.constructs.tables import Tables

__all__ = [
    "Dashboard",
    "Functions",
    "Ingress",
    "Monitoring",
    "Queues",
    "Schedules",
    "SecretGrants",
    "Tables",
]
