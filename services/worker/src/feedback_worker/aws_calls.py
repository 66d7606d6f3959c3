"""The one place where the worker's blocking boto3 calls meet the event loop.

Every SQS call (`sqs.py`) and every request-store write (`records.py`, `startup.py`) runs on
the threads of one `AwsCalls`, sized once by the worker for every message it may hold: each
held message may be settled, or have its record written, at the same moment. The loop's
default executor (cpu + 4 threads) or anyio's (40) would cap that at a number nobody chose.
"""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class AwsCalls:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        """Also the connections each boto3 client keeps: one per thread, none waits."""
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aws")

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one blocking call on the threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        """Wait for the calls under way, then end the threads."""
        self._pool.shutdown(wait=True)
