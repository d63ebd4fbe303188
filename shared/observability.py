"""Logger, metrics and tracer, defined once for every function (powertools)."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "crmsync"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="crmsync", service=SERVICE)
tracer = Tracer(service=SERVICE)
