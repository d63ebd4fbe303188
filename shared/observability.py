"""Logger, metrics and tracer, defined once for every function (powertools)."""

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "crmsync"

# At DEBUG these print whole requests and responses (secret values, OAuth tokens): never
# below INFO, whatever the log level, since no redaction filter knows every (rotating)
# secret; above it they follow the function's level (the runtime sets it before import).
_QUIETEST = max(logging.INFO, logging.getLogger().getEffectiveLevel())
for library in ("boto3", "botocore", "urllib3", "httpx", "httpcore"):
    logging.getLogger(library).setLevel(_QUIETEST)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="crmsync", service=SERVICE)
tracer = Tracer(service=SERVICE)
