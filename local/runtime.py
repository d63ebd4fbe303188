"""The local stack: everything ``cdk deploy`` would give, on 127.0.0.1.

``LocalStack(config)`` starts moto's server and creates the described resources in
it, starts a sandbox for each vendor the connections use, stores the connections and
fills their secrets from the sandboxes' accounts, points the ``CRMSYNC_*`` and AWS
environment at all of that, then serves the webhook routes (API Gateway stand-in),
runs one SQS worker per consumed queue (event source mapping stand-in) and one
scheduler per schedule (EventBridge stand-in). The real handlers run in execution
environments, child processes given that environment (``local.lambdas``); the
callables a test passes in run in this process. Use it as a context manager;
``stop`` undoes it all, the environment included.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import urlsplit

import boto3

from infra.environment import function_environment, resource_settings
from infra.outputs import StackOutputs
from infra.resources import (
    DESCRIPTION,
    FunctionSpec,
    ServiceDescription,
    webhook_path,
    webhook_route,
)
from local.apigw import create_app
from local.aws import (
    AwsClients,
    LocalResources,
    MotoServer,
    create_resources,
    function_arn,
    function_name,
    register_outputs,
)
from local.config import NO_VENDOR, LocalConfig, Ports, ensure_port_free
from local.lambdas import Handler, InvocationError, LocalFunction
from local.sandboxes.base import SandboxServer
from local.sandboxes.registry import SANDBOXES, sandbox
from local.scheduler import Scheduler, SchedulerStatus
from local.worker import SqsWorker, WorkerStatus
from ops.redrive import DeadLetterQueue
from shared.connectors.registry import vendor
from shared.connectors.spec import secret_id
from shared.secrets.secrets_manager import put_secret
from shared.settings import get_settings
from shared.stores import DynamoConnections

log = logging.getLogger(__name__)

# Where vendor calls go without sandboxes: the discard port, closed on any sane machine.
# Environments of a function that declares no maximum concurrency: API Gateway invokes
# the webhook function for several requests at once; a rate schedule fires one run
# at a time.
WEBHOOK_CONCURRENCY = 4


class LocalStackError(Exception):
    """The local stack cannot start; the message says why in a sentence."""


class PortInUse(LocalStackError):
    def __init__(self, service: str, port: int) -> None:
        super().__init__(
            f"port {port} for the {service} is already in use on 127.0.0.1; stop whatever "
            f"holds it or choose another port in the local config (0 picks a free one)"
        )
        self.service = service
        self.port = port


@dataclass(frozen=True)
class Urls:
    api: str
    moto: str
    webhooks: dict[str, str]  # vendor -> its connection's webhook URL
    sandboxes: dict[str, str]  # vendor -> its sandbox's base URL


@dataclass(frozen=True)
class QueueCounts:
    visible: int
    in_flight: int
    dead_letters: int


@dataclass(frozen=True)
class StackStatus:
    workers: dict[str, WorkerStatus]
    schedulers: dict[str, SchedulerStatus]
    queues: dict[str, QueueCounts]


@contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) variables in ``os.environ``; put the old values back after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set_env(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set_env(name, value)


def _set_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextmanager
def _claiming(service: str, port: int) -> Iterator[None]:
    """Turn "address in use" while binding ``service`` into a ``PortInUse`` that says so."""
    try:
        ensure_port_free(port)
        yield
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(service, port) from exc
        raise


class LocalStack:
    """See the module docstring. One stack at a time per process: the environment is global."""

    _running: ClassVar[LocalStack | None] = None
    _running_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        config: LocalConfig,
        *,
        handlers: Mapping[str, Handler] | None = None,
        sandboxes: bool = True,
        description: ServiceDescription = DESCRIPTION,
    ) -> None:
        """``handlers`` replaces the handlers of the named functions (by ``FunctionSpec.id``);
        the others are imported from their spec. ``sandboxes=False`` leaves the vendor
        sandboxes out; the vendor URLs then point at a closed local port, never at a
        real vendor. The config's ``failures`` apply to ``description``'s queues."""
        self.config = config
        self.description = config.failures.apply(description)
        self._handler_overrides = dict(handlers or {})
        self._with_sandboxes = sandboxes
        self._exit = ExitStack()
        self.sandboxes: dict[str, Any] = {}  # vendor -> its running sandbox
        self.clients: AwsClients
        self.resources: LocalResources
        self.urls: Urls
        self.outputs: StackOutputs
        self.functions: dict[str, LocalFunction] = {}
        self.workers: dict[str, SqsWorker] = {}
        self.schedulers: dict[str, Scheduler] = {}
        self.environment: dict[str, str | None] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        with LocalStack._running_lock:
            if LocalStack._running is not None:
                raise LocalStackError("another local stack is running in this process")
            LocalStack._running = self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything that was started, newest first, and restore the environment."""
        try:
            self._exit.close()
        finally:
            with LocalStack._running_lock:
                if LocalStack._running is self:
                    LocalStack._running = None

    def _start(self) -> None:
        config = self.config
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        with _claiming("AWS (moto) server", config.ports.moto):
            moto = MotoServer(config.ports.moto).start()
        self._exit.callback(moto.stop)
        self.clients = AwsClients.connect(moto.url, config.aws)
        self.resources = create_resources(
            self.clients, self.description, stack=config.stack, region=config.aws.region
        )

        with _claiming("API", config.ports.api):
            api = SandboxServer(
                create_app(self._invoke_webhook, self._route_keys()), config.ports.api
            )
        api.start()
        self._exit.callback(api.stop)
        webhooks = {
            name: f"{api.url}{webhook_path(name, config.connection_of(name).id)}"
            for name in config.vendors()
        }
        sandbox_urls = self._start_sandboxes(webhooks) if self._with_sandboxes else {}
        self.urls = Urls(api=api.url, moto=moto.url, webhooks=webhooks, sandboxes=sandbox_urls)
        self.outputs = self._outputs(api.url)
        register_outputs(self.clients, config.stack, self.outputs)
        self._store_connections()

        self.environment = self._environment_values()
        self._exit.enter_context(_environment(self.environment))
        # A test's handlers run in this process and read this environment.
        get_settings.cache_clear()
        boto3.DEFAULT_SESSION = None
        self._exit.callback(get_settings.cache_clear)

        for spec in self.description.functions:
            name = function_name(config.stack, spec.id)
            function = LocalFunction(
                spec,
                name=name,
                arn=function_arn(config.aws.region, name),
                concurrency=self._concurrency(spec),
                handler=self._handler_overrides.get(spec.id),
                environment=self.environment,
            )
            # Stopped after the workers and schedulers that invoke it (callbacks run last first).
            self._exit.callback(function.stop)
            self.functions[spec.id] = function.start()
        for spec_id, function in self.functions.items():
            try:
                function.wait_ready()
            except InvocationError as exc:
                raise LocalStackError(
                    f"the {spec_id} function's handler {function.spec.handler} "
                    f"failed its cold start: {exc}"
                ) from None

        for spec in self.description.functions:
            for queue_id in spec.queues_consume:
                queue = self.resources.queues[queue_id]
                if queue.visibility_timeout_s < spec.timeout_s:
                    log.warning(
                        "queue %s hides a received message for %d s, less than the %d s "
                        "timeout of %s, which AWS refuses for an event source: a message "
                        "can come back, to another poller, while its batch still runs",
                        queue_id,
                        queue.visibility_timeout_s,
                        spec.timeout_s,
                        spec.id,
                    )
                worker = SqsWorker(
                    self.clients.sqs,
                    queue_url=queue.url,
                    queue_arn=queue.arn,
                    function=self.functions[spec.id],
                    region=config.aws.region,
                    batch_size=config.worker.batch_size,
                    wait_time_s=config.worker.wait_time_s,
                )
                self.workers[queue_id] = worker.start()
                self._exit.callback(worker.stop)
        for schedule in self.description.schedules:
            scheduler = Scheduler(
                self.functions[schedule.function],
                rule_arn=self.resources.schedules[schedule.id],
                region=config.aws.region,
                interval_s=config.reconcile_interval_s or schedule.rate_minutes * 60.0,
            )
            self.schedulers[schedule.id] = scheduler.start()
            self._exit.callback(scheduler.stop)

    def _concurrency(self, spec: FunctionSpec) -> int:
        if spec.max_concurrency is not None:
            return spec.max_concurrency
        return WEBHOOK_CONCURRENCY if spec.id == self.description.webhook_function else 1

    def _route_keys(self) -> tuple[str, ...]:
        return tuple(f"POST {webhook_route(v)}" for v in self.description.webhook_vendors())

    def _invoke_webhook(self, event: dict[str, Any]) -> Any:
        return self.functions[self.description.webhook_function].invoke(event)

    def _start_sandboxes(self, webhooks: Mapping[str, str]) -> dict[str, str]:
        """A sandbox for each vendor the connections use; returns their base URLs."""
        urls = {}
        for name in self.config.vendors():
            running = sandbox(name).start(webhooks[name])
            self._exit.callback(running.close)
            self.sandboxes[name] = running
            with _claiming(f"{vendor(name).label} sandbox", self.config.ports.sandbox(name)):
                server = SandboxServer(running.app, self.config.ports.sandbox(name))
            server.start()
            self._exit.callback(server.stop)
            urls[name] = server.url
        return urls

    @property
    def running_config(self) -> LocalConfig:
        """The config with the ports this stack listens on: what ``crmsync … --local``
        needs to find it when the config asked for free ports."""

        def port(url: str) -> int:
            number = urlsplit(url).port
            assert number, url  # a running server's URL has its port
            return number

        ports = Ports(
            api=port(self.urls.api),
            moto=port(self.urls.moto),
            sandboxes={name: port(url) for name, url in self.urls.sandboxes.items()},
        )
        return self.config.model_copy(update={"ports": ports})

    def _outputs(self, api_url: str) -> StackOutputs:
        """The deployed stack's outputs, for this stack's resources."""
        tables, events = self.resources.tables, self.resources.queues["Events"]
        assert events.dead_letter_url and events.dead_letter_arn
        return StackOutputs(
            connections_table=tables["Connections"],
            audit_table=tables["Audit"],
            links_table=tables["Links"],
            cursors_table=tables["Cursors"],
            events_queue_url=events.url,
            dead_letter_queue_url=events.dead_letter_url,
            dead_letter_queue_arn=events.dead_letter_arn,
            webhook_urls={
                name: f"{api_url}{webhook_route(name)}" for name in self.config.vendors()
            },
        )

    def _store_connections(self) -> None:
        """Each connection in the Connections table and its secrets filled from the
        sandboxes' accounts: what ``crmsync connect`` does in AWS."""
        session = boto3.session.Session(
            aws_access_key_id=self.config.aws.access_key_id,
            aws_secret_access_key=self.config.aws.secret_access_key,
            region_name=self.config.aws.region,
        )
        connections = DynamoConnections(
            self.clients.dynamodb,
            session.resource("dynamodb", endpoint_url=self.urls.moto),
            self.resources.tables["Connections"],
        )
        for local in self.config.connections:
            connections.put(local.connection())
            for name in (local.crm, local.accounting):
                put_secret(
                    self.clients.secretsmanager, secret_id(local.id, name), self._secret_of(name)
                )

    def _secret_of(self, name: str) -> dict[str, str]:
        spec = sandbox(name)
        running = self.sandboxes.get(name)
        if running is None:  # no sandboxes: the dummy account's values all the same
            running = spec.start(None)
            running.close()
        values = spec.secret(running)
        missing = set(vendor(name).secret_keys) - set(values)
        if missing:
            raise LocalStackError(f"the {name} sandbox gives no {sorted(missing)} for its secret")
        return values

    def _environment_values(self) -> dict[str, str | None]:
        config = self.config
        values = resource_settings(
            tables=self.resources.tables,
            queues={queue_id: q.url for queue_id, q in self.resources.queues.items()},
            dead_letters={
                queue_id: q.dead_letter_url
                for queue_id, q in self.resources.queues.items()
                if q.dead_letter_url
            },
            description=self.description,
        )
        values |= {"public_base_url": self.urls.api}
        # Every registered vendor points at its sandbox, or at nothing: never a real one.
        vendor_settings = {
            name: sandbox(name).settings(self.urls.sandboxes.get(name, NO_VENDOR))
            for name in SANDBOXES
        }
        quiet = config.log_level != "DEBUG"
        return {
            **function_environment(values, vendor_settings),
            "AWS_ENDPOINT_URL": self.urls.moto,
            "AWS_ACCESS_KEY_ID": config.aws.access_key_id,
            "AWS_SECRET_ACCESS_KEY": config.aws.secret_access_key,
            "AWS_DEFAULT_REGION": config.aws.region,
            "AWS_REGION": config.aws.region,
            # A developer's real profile or session must not leak into the local stack.
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
            # Lambda's application log level (advanced logging controls): the root logger's
            "AWS_LAMBDA_LOG_LEVEL": config.log_level,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            "POWERTOOLS_METRICS_DISABLED": "true" if quiet else "false",
        }

    # --- for tests, the CLI and the demo -----------------------------------------------

    def wait_until_drained(self, timeout: float = 30.0) -> bool:
        """True once every consumed queue is empty and no batch is being handled."""
        deadline = time.monotonic() + timeout
        return all(
            worker.wait_until_drained(max(deadline - time.monotonic(), 0.0))
            for worker in self.workers.values()
        )

    def redrive(self, queue_id: str = "Events") -> int:
        """Move the queue's dead letters back onto it (``crmsync redrive all``)."""
        queue = self.resources.queues[queue_id]
        if queue.dead_letter_url is None:
            return 0
        return DeadLetterQueue(self.clients.sqs, queue.dead_letter_url, queue.url).move_all()

    def fire_schedule(self, schedule_id: str | None = None) -> Any:
        """Run a schedule's function now (the only schedule when ``schedule_id`` is None)."""
        if schedule_id is None:
            (schedule_id,) = self.schedulers
        return self.schedulers[schedule_id].fire_now()

    def status(self) -> StackStatus:
        queues = {}
        for queue_id, queue in self.resources.queues.items():
            counts = self._counts(queue.url)
            dead = self._counts(queue.dead_letter_url) if queue.dead_letter_url else (0, 0)
            queues[queue_id] = QueueCounts(
                visible=counts[0], in_flight=counts[1], dead_letters=sum(dead)
            )
        return StackStatus(
            workers={queue_id: w.status() for queue_id, w in self.workers.items()},
            schedulers={schedule_id: s.status() for schedule_id, s in self.schedulers.items()},
            queues=queues,
        )

    def _counts(self, url: str) -> tuple[int, int]:
        attributes = self.clients.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )
