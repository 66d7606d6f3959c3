"""The bounds on the messages a runner holds, and each message's place among them.

A message passes three stages: received and waiting for a work slot, at work (the scarce call:
for feedback, the LLM), and finishing (delivery and the settle on the queue). Each stage has a
bound of its own:

- at work: the limit, what keeps vLLM's batch full. It is the concurrency unless a gate moves
  it (`set_limit`; the LLM gate in `llm_gate.py` follows what the LLM can take);
- received but not yet past work: the limit plus its share received ahead (the prefetch at the
  full concurrency), so a call that ends hands its slot to a message already here instead of
  waiting for a receive;
- finishing: the concurrency, so the work slot is free as soon as the work is done and the next
  call does not wait for this one's callback and delete.

Measured with `make bench` at 64 in flight, LLM latency 1 s, 16 rounds: one slot held from
receive to delete reached 0.86 of the ideal throughput; with 8, 16 and 32 messages received
ahead 0.93, 0.94 and 0.95. Answers arrive in waves, and without messages at hand the LLM sat
idle while a wave was received again.
"""

import asyncio
import math
from collections.abc import Callable
from enum import Enum

from feedback_worker.batching import MAX_BATCH


class Slots:
    """A count of slots, several of which can be reserved at once, whose size can change.

    A received message keeps its visibility timeout running even while it waits, so the runner
    never receives more messages than it has free slots. A smaller size takes effect as slots are
    released: nothing already reserved is taken back.
    """

    def __init__(self, size: int, batch: int = 1) -> None:
        self._size = size
        self._batch = batch
        self.in_use = 0
        self._changed = asyncio.Event()

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int, batch: int = 1) -> None:
        """A new size, and how many free slots a reservation waits for (at most the size)."""
        self._size, self._batch = size, batch
        self._changed.set()

    async def reserve(self, most: int) -> int:
        """Wait until a batch of slots is free, then take every free one, up to `most` in all.

        Taken in one step, so loops waiting side by side never split the free slots between
        them and all wait for more. Cancelling the wait takes nothing."""
        while self._size - self.in_use < max(1, min(self._batch, self._size)):
            self._changed.clear()
            await self._changed.wait()
        reserved = min(most, self._size - self.in_use)
        self.in_use += reserved
        return reserved

    def release(self, count: int = 1) -> None:
        if count > self.in_use:
            raise ValueError(f"released {count} slot(s), but only {self.in_use} are reserved")
        self.in_use -= count
        self._changed.set()


class Stage(Enum):
    RECEIVED = "received"
    WAITING = "waiting for a work slot"
    WORKING = "at work"
    FINISHING = "finishing"
    LEFT = "left"


class Bounds:
    """The three bounds of one runner (see the module's docstring)."""

    def __init__(
        self,
        concurrency: int,
        prefetch: int,
        on_limit: Callable[[int], None] = lambda _: None,
    ) -> None:
        self.ceiling = concurrency
        self._ahead_ratio = prefetch / concurrency
        self._on_limit = on_limit
        self.received = Slots(0)
        """What receives reserve: messages held before they finish."""
        self.work = Slots(0)
        self.finishing = Slots(concurrency)
        self.set_limit(concurrency)

    @property
    def limit(self) -> int:
        return self.work.size

    def set_limit(self, limit: int, *, ahead: bool = True) -> None:
        """At most `limit` (1 to the concurrency) at work, and its share received ahead unless
        `ahead` is False (a single trial call: nothing else is received)."""
        limit = max(1, min(self.ceiling, limit))
        received_ahead = math.ceil(limit * self._ahead_ratio) if ahead else 0
        self.work.resize(limit)
        # A receive waits for as many free slots as are received ahead, up to a full batch: one
        # receive per freed slot made most receives bring one message (692 receives for 1,024
        # messages at 64 in flight), and a receive costs SQS as much for one message as for
        # ten. Waiting for no more than that never starves the work: while every message
        # received ahead has started, at least that many slots are free.
        self.received.resize(limit + received_ahead, batch=min(MAX_BATCH, received_ahead))
        self._on_limit(limit)

    def close(self) -> None:
        """Nothing may start work and nothing is received (the LLM gate closed): what is held
        waits in `Place.start_work` until a limit is set again."""
        self.work.resize(0)
        self.received.resize(0)
        self._on_limit(0)

    def place(self) -> "Place":
        """The place of a message just received into one of `received`'s slots."""
        return Place(self)


class Place:
    """Where one message is among the runner's bounds. The handler moves it on (`start_work`,
    `finish_work`); the runner frees what it still holds (`leave`), once."""

    def __init__(self, bounds: Bounds) -> None:
        self._bounds = bounds
        self.stage = Stage.RECEIVED

    async def start_work(self) -> None:
        """Wait for a work slot (none is free while the gate is closed). A message still waiting
        here when the runner stops is handed back to the queue at once, for another worker."""
        self.stage = Stage.WAITING
        await self._bounds.work.reserve(1)
        self.stage = Stage.WORKING

    def stop_work(self) -> None:
        """The work failed and will be tried again: free the work slot, keep the message."""
        if self.stage is Stage.WORKING:
            self._bounds.work.release()
        self.stage = Stage.RECEIVED

    async def finish_work(self) -> None:
        """Take a finishing slot, then free the work slot and the received slot.

        Waiting with both still held is the back-pressure: while finishing is stuck (a callback
        receiver that is down), no new messages are received to pile up behind it.
        """
        await self._bounds.finishing.reserve(1)
        self._free_before_finishing()
        self.stage = Stage.FINISHING

    def leave(self) -> None:
        if self.stage is Stage.FINISHING:
            self._bounds.finishing.release()
        elif self.stage is not Stage.LEFT:
            self._free_before_finishing()
        self.stage = Stage.LEFT

    def _free_before_finishing(self) -> None:
        if self.stage is Stage.WORKING:
            self._bounds.work.release()
        self._bounds.received.release()
