"""The types of the factory fixtures, for the tests' annotations (conftest.py files define the
fixtures themselves and are never imported)."""

from collections.abc import Awaitable, Callable

from devstack.stack import Stack
from feedback_worker.runner import Runner
from feedback_worker.worker import Worker

StartWorker = Callable[..., Awaitable[Worker]]
"""`await start_worker(**env)`: a whole worker on moto's queues, stopped after the test."""
RunFeedback = Callable[..., Awaitable[Runner]]
"""`await run_feedback(source, **env)`: the worker as `Worker.create` composes it, on an
in-memory source, until the source is empty."""
StartStack = Callable[..., Stack]
"""`start_stack(**StackConfig fields)`: the local stack, stopped after the test."""
