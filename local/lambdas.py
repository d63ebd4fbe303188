"""Lambda functions in-process: handler lookup, the context object, one invocation at a time."""

from __future__ import annotations

import importlib
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.resources import FunctionSpec

Handler = Callable[[dict[str, Any], Any], Any]


def resolve_handler(path: str) -> Handler:
    """``package.module.function`` (or ``package.module:function``) → the callable.

    Importing runs the module's cold start, which builds AWS clients and settings
    from the environment, so call this only once the environment points at the local
    stack. A module imported before (an earlier stack in this process) is reloaded:
    its cold start must see this stack, not the last one.
    """
    module_name, sep, attribute = path.replace(":", ".").rpartition(".")
    if not sep:
        raise ValueError(f"handler {path!r} is not of the form module.function")
    loaded = sys.modules.get(module_name)
    module = importlib.reload(loaded) if loaded else importlib.import_module(module_name)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ValueError(f"handler {path!r}: {module_name} has no function {attribute!r}")
    return handler  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LambdaContext:
    """The attributes of Lambda's context that powertools and handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    deadline: float  # time.monotonic() at which Lambda would stop the invocation
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.deadline - time.monotonic()) * 1000), 0)


class LocalFunction:
    """One function of the description with its handler.

    Invocations are serialized: Lambda runs one invocation per execution
    environment at a time, and handlers keep per-invocation state in module
    globals (powertools' logger keys, idempotency's registered context).
    """

    def __init__(self, spec: FunctionSpec, handler: Handler, *, name: str, arn: str) -> None:
        self.spec = spec
        self.name = name
        self.arn = arn
        self._handler = handler
        self._lock = threading.Lock()

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.spec.memory_mb,
            deadline=time.monotonic() + self.spec.timeout_s,
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            return self._handler(event, self.context())
