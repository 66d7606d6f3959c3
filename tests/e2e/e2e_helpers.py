"""Waiting for what the platform delivers, as the backend would see it."""

import time
from collections.abc import Callable
from typing import Any

import httpx
from devstack.stack import Stack

StartStack = Callable[..., Stack]
"""The `start_stack` fixture: keyword arguments are `StackConfig` fields."""


def wait_for_callback(stack: Stack, request_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The receiver's record of the (signature-verified) callback for `request_id`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in httpx.get(f"{stack.callback_url}/deliveries", timeout=5).json():
            if delivery["webhook_id"] == request_id:
                return dict(delivery)
        time.sleep(0.2)
    worker_log = stack.processes["worker"].tail(40)
    raise AssertionError(f"no callback for {request_id} within {timeout}s\n{worker_log}")
