"""Lambda functions locally: execution environments, the context object, the timeout.

A function whose handler is a dotted path runs as Lambda runs it. Each execution
environment is a child process (spawned, never forked: this process runs moto's and
the servers' threads) that gets the function's environment variables, imports the
handler once (its cold start) and then serves one invocation at a time; handlers keep
per-invocation state in module globals, and environments share no memory. A function
keeps up to ``concurrency`` environments and hands each invocation to an idle one,
cold-starting another when all are busy. An invocation that runs past the function's
timeout is killed with its environment, as Lambda kills it ("Task timed out after
N.NN seconds"): it fails, and a later invocation cold-starts a fresh environment.
What the children print is copied line by line to this process's ``sys.stdout`` and
``sys.stderr``, whichever objects those are at the time (pytest's ``capsys`` and
``capfd`` see it).

A handler given as a callable (a test's stand-in) cannot move to another process:
it runs in a thread of this one, up to ``concurrency`` at once, and reads this
process's environment. One that overruns its timeout fails its invocation all the
same, but is not killed (a Python thread cannot be): it runs on, holding its slot,
until it returns.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

from infra.resources import FunctionSpec

Handler = Callable[[dict[str, Any], Any], Any]

# Lambda gives a cold start 10 s, and when that is not enough retries it with the
# function's timeout; a cold start here may take the longer of the two.
INIT_LIMIT_S = 10.0


class InvocationError(Exception):
    """The invocation failed: its handler raised, or the runtime gave up on it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.error_message = message


class FunctionTimedOut(InvocationError):
    """The invocation outlived the function's timeout (its environment, if any, was killed)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__("Sandbox.Timedout", f"Task timed out after {timeout_s:.2f} seconds")


def resolve_handler(path: str) -> Handler:
    """``package.module.function`` (or ``package.module:function``) → the callable.

    Importing runs the module's cold start, which builds AWS clients and settings
    from the environment, so call this only once the environment points at the local
    stack.
    """
    module_name, sep, attribute = path.replace(":", ".").rpartition(".")
    if not sep:
        raise ValueError(f"handler {path!r} is not of the form module.function")
    module = importlib.import_module(module_name)
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


def _serve(
    requests: Connection,
    handler_path: str,
    environment: dict[str, str | None],
    template: LambdaContext,
    outputs: list[Connection],
) -> None:
    """An execution environment's main: the cold start, then one invocation after another."""
    # A terminal's Ctrl-C reaches the whole process group; the stack stops its
    # environments itself (and one whose parent dies reads end-of-file and ends).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd, output in zip((1, 2), outputs, strict=True):
        os.dup2(output.fileno(), fd)
        output.close()
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)  # a log line shows when it is written
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # Lambda's runtime prints the root logger's records: from the function's log level
    # under advanced logging controls (AWS_LAMBDA_LOG_LEVEL), else from WARNING.
    logging.basicConfig(
        level=os.environ.get("AWS_LAMBDA_LOG_LEVEL") or logging.WARNING,
        format="[%(levelname)s]\t%(asctime)s\t%(name)s\t%(message)s",
    )
    try:
        handler = resolve_handler(handler_path)
    except Exception as exc:
        requests.send(_failure(exc))
        return
    requests.send(("ready",))
    while True:
        try:
            event, request_id, timeout_s = requests.recv()
        except EOFError:
            return  # the function let go of this environment
        context = replace(
            template, aws_request_id=request_id, deadline=time.monotonic() + timeout_s
        )
        try:
            result = handler(json.loads(event), context)
        except Exception as exc:
            requests.send(_failure(exc))
            continue
        try:
            requests.send(("result", json.dumps(result)))
        except (TypeError, ValueError) as exc:
            requests.send(("error", "Runtime.MarshalError", f"Unable to marshal response: {exc}"))


def _failure(exc: Exception) -> tuple[str, str, str]:
    traceback.print_exc()  # Lambda logs an unhandled error with its stack trace
    return ("error", type(exc).__name__, str(exc))


def _relay(output: Connection, stream: str) -> None:
    """Copy what a child writes to ``output`` to ``sys.<stream>``, a line at a time."""
    with open(output.fileno(), "rb", closefd=False) as lines:
        for line in lines:
            target = getattr(sys, stream)
            try:
                target.write(line.decode(errors="replace"))
                target.flush()
            except (OSError, ValueError):
                # A closed stream (a finished test's capture) must not end the relay:
                # the child would block on a full pipe.
                pass
    output.close()


class ExecutionEnvironment:
    """One execution environment: a child process that imported the handler.

    Used by one invocation at a time; ``kill`` may come from any thread.
    """

    def __init__(
        self,
        handler: str,
        environment: Mapping[str, str | None],
        template: LambdaContext,
        *,
        init_timeout_s: float,
    ) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._requests, child_requests = spawn.Pipe()
        outputs = [spawn.Pipe(duplex=False) for _ in ("stdout", "stderr")]
        self._process = spawn.Process(
            target=_serve,
            args=(child_requests, handler, dict(environment), template, [w for _, w in outputs]),
            name=f"{template.function_name}-environment",
            daemon=True,
        )
        self._process.start()
        # Only the child holds these ends now: its death reads as end-of-file here.
        child_requests.close()
        for stream, (reader, writer) in zip(("stdout", "stderr"), outputs, strict=True):
            writer.close()
            threading.Thread(
                target=_relay,
                args=(reader, stream),
                name=f"{self._process.name}-{stream}",
                daemon=True,
            ).start()
        self._init_timeout_s = init_timeout_s
        self._init_lock = threading.Lock()  # the stack and a first invocation may both wait
        self._ready = False
        self._killed = False
        self.pid = self._process.pid

    @property
    def alive(self) -> bool:
        return not self._killed and self._process.is_alive()

    def wait_ready(self) -> None:
        """Wait for the cold start to finish; ``InvocationError`` if it failed."""
        with self._init_lock:
            if not self._ready:
                self._reply(self._init_timeout_s, "Runtime.InitTimeout")
                self._ready = True

    def invoke(self, event: dict[str, Any], *, request_id: str, timeout_s: float) -> Any:
        """The handler's result, or ``InvocationError`` (``FunctionTimedOut`` past the timeout)."""
        self.wait_ready()
        try:
            self._requests.send((json.dumps(event), request_id, timeout_s))
        except OSError:
            raise self._exited() from None
        (result,) = self._reply(timeout_s, None)
        return json.loads(result)

    def kill(self) -> None:
        self._killed = True
        self._process.kill()
        self._process.join()

    def _reply(self, timeout_s: float, timeout_type: str | None) -> list[str]:
        """The details of the child's next reply, or raises what went wrong instead."""
        try:
            replied = self._requests.poll(timeout_s)
            reply: tuple[str, ...] | None = self._requests.recv() if replied else None
        except (EOFError, OSError):
            raise self._exited() from None
        if reply is None:
            self.kill()
            if timeout_type is None:
                raise FunctionTimedOut(timeout_s)
            raise InvocationError(timeout_type, f"the cold start took over {timeout_s:.2f} seconds")
        kind, *details = reply
        if kind == "error":
            if not self._ready:  # a failed cold start leaves nothing to invoke
                self.kill()
            raise InvocationError(*details)
        return list(details)

    def _exited(self) -> InvocationError:
        self.kill()
        return InvocationError(
            "Runtime.ExitError", f"Runtime exited with exit code {self._process.exitcode}"
        )


class LocalFunction:
    """One function of the description: its handler, its environments, its concurrency."""

    def __init__(
        self,
        spec: FunctionSpec,
        *,
        name: str,
        arn: str,
        concurrency: int,
        handler: Handler | None = None,
        environment: Mapping[str, str | None] | None = None,
    ) -> None:
        """``handler`` runs in this process in place of ``spec.handler``; otherwise each
        execution environment imports ``spec.handler`` with ``environment`` set."""
        self.spec = spec
        self.name = name
        self.arn = arn
        self.concurrency = concurrency
        self._handler = handler
        self._environment = dict(environment or {})
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._idle: list[ExecutionEnvironment] = []
        self._environments: set[ExecutionEnvironment] = set()
        self._stopped = False

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.spec.memory_mb,
            deadline=time.monotonic() + self.spec.timeout_s,
        )

    def start(self) -> LocalFunction:
        """Begin one environment's cold start now, so the first event does not wait for it
        (``wait_ready`` says how it went). Nothing to start for an in-process handler."""
        if self._handler is None:
            with self._lock:
                self._idle.append(self._new_environment())
        return self

    def wait_ready(self) -> None:
        """Wait for the cold starts begun so far; ``InvocationError`` if one failed."""
        with self._lock:
            idle = list(self._idle)
        for environment in idle:
            try:
                environment.wait_ready()
            except InvocationError:
                self._release(environment)
                raise

    def invoke(self, event: dict[str, Any]) -> Any:
        """The handler's result; its exception, or ``InvocationError``, if the invocation failed."""
        self._slots.acquire()
        if self._handler is not None:
            return self._invoke_in_thread(self._handler, event)
        try:
            environment = self._take()
            try:
                return environment.invoke(
                    event, request_id=str(uuid.uuid4()), timeout_s=self.spec.timeout_s
                )
            finally:
                self._release(environment)
        finally:
            self._slots.release()

    def stop(self) -> None:
        """Kill every environment, busy or idle; later invocations fail."""
        with self._lock:
            self._stopped = True
            environments, self._environments, self._idle = self._environments, set(), []
        for environment in environments:
            environment.kill()

    def _invoke_in_thread(self, handler: Handler, event: dict[str, Any]) -> Any:
        """Run ``handler`` in a thread that frees the caller's slot when it returns."""
        future: Future[Any] = Future()
        context = self.context()

        def run() -> None:
            try:
                future.set_result(handler(event, context))
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                self._slots.release()

        threading.Thread(target=run, name=f"{self.name}-invocation", daemon=True).start()
        if not wait([future], timeout=self.spec.timeout_s).done:
            raise FunctionTimedOut(self.spec.timeout_s)
        return future.result()

    def _new_environment(self) -> ExecutionEnvironment:
        """A new environment, counted as this function's; call with ``_lock`` held."""
        if self._stopped:
            raise RuntimeError(f"the function {self.name} has stopped")
        environment = ExecutionEnvironment(
            self.spec.handler,
            self._environment,
            replace(self.context(), deadline=0.0),
            init_timeout_s=max(INIT_LIMIT_S, self.spec.timeout_s),
        )
        self._environments.add(environment)
        return environment

    def _take(self) -> ExecutionEnvironment:
        with self._lock:
            return self._idle.pop() if self._idle else self._new_environment()

    def _release(self, environment: ExecutionEnvironment) -> None:
        """Back to the idle ones if it can serve again; otherwise gone for good."""
        with self._lock:
            if environment.alive and not self._stopped:
                self._idle.append(environment)
                return
            self._environments.discard(environment)
            if environment in self._idle:
                self._idle.remove(environment)
        environment.kill()
