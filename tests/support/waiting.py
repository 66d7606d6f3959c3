"""One way to wait for a condition, for tests and the bench, blocking or from async code."""

import asyncio
import time
from collections.abc import Callable

WAIT_S = 30.0
"""A generous bound for anything the platform does; tests normally finish far sooner."""


def wait_until(
    condition: Callable[[], bool],
    timeout: float = WAIT_S,
    what: str = "condition",
    every: float = 0.05,
) -> float:
    """Poll until `condition()` holds; the seconds it took. Fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(every)
    return time.monotonic() - started


async def eventually(
    condition: Callable[[], bool], within_s: float = WAIT_S, what: str = "condition"
) -> float:
    """`wait_until` on a thread, so `condition` may block on HTTP or SQS."""
    return await asyncio.to_thread(wait_until, condition, within_s, what)
