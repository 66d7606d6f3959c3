"""Single SQS operations gathered into batch calls, so a busy worker makes one call per ten.

An operation goes out at once, alone, when no call for it is on its way: at low load nothing
waits. While calls are in flight, new operations gather and leave as soon as ten are ready or
a call returns. Each caller still learns the outcome of its own entry: a failed entry raises a
ClientError for that caller only, as the single call would have.
"""

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from botocore.exceptions import ClientError

MAX_BATCH = 10
"""SQS's limit for one receive and for one batch call."""

E = TypeVar("E", bound=Mapping[str, Any])
BatchCall = Callable[[list[E]], Awaitable[Mapping[str, Any]]]
"""Sends the entries (each with its "Id"); answers SQS's {"Successful", "Failed"}."""


class Batcher(Generic[E]):
    def __init__(self, operation: str, call: BatchCall[E], max_calls_in_flight: int = 4) -> None:
        self._operation = operation
        self._call = call
        self._max_calls = max_calls_in_flight
        self._pending: list[tuple[E, asyncio.Future[None]]] = []
        self._calls_in_flight = 0
        self._calls: set[asyncio.Task[None]] = set()
        self._ids = itertools.count()

    async def submit(self, make_entry: Callable[[str], E]) -> None:
        """Run one operation, `make_entry(id)` being its batch entry; returns once SQS took it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((make_entry(str(next(self._ids))), future))
        self._send_ready()
        # A caller cancelled meanwhile cancels only its own future: the call still goes out.
        await future

    def _send_ready(self) -> None:
        while self._pending and (
            self._calls_in_flight == 0
            or (len(self._pending) >= MAX_BATCH and self._calls_in_flight < self._max_calls)
        ):
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._calls_in_flight += 1
            task = asyncio.create_task(self._send(batch))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _send(self, batch: Sequence[tuple[E, "asyncio.Future[None]"]]) -> None:
        try:
            answer = await self._call([entry for entry, _ in batch])
        except Exception as error:
            for _, future in batch:
                _settle(future, error)
        else:
            failed = {failure["Id"]: failure for failure in answer.get("Failed", [])}
            for entry, future in batch:
                failure = failed.get(entry["Id"])
                _settle(future, self._entry_error(failure) if failure else None)
        finally:
            self._calls_in_flight -= 1
            self._send_ready()

    def _entry_error(self, failure: Mapping[str, Any]) -> ClientError:
        code, text = str(failure.get("Code", "Unknown")), str(failure.get("Message", ""))
        return ClientError({"Error": {"Code": code, "Message": text}}, self._operation)


def _settle(future: "asyncio.Future[None]", error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
