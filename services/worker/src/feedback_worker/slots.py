"""The bounds on the messages a runner holds, and each message's place among them.

A message passes three stages: received and waiting for a work slot, at work (the scarce call:
for feedback, the LLM), and finishing (delivery and the settle on the queue). Each stage has a
bound of its own:

- at work: the concurrency, what keeps vLLM's batch full;
- received but not yet past work: concurrency + prefetch, so a call that ends hands its slot to
  a message already here instead of waiting for a receive;
- finishing: the concurrency, so the work slot is free as soon as the work is done and the next
  call does not wait for this one's callback and delete.

Measured with `make bench` at 64 in flight, LLM latency 1 s, 16 rounds: one slot held from
receive to delete reached 0.86 of the ideal throughput; with 8, 16 and 32 messages received
ahead 0.93, 0.94 and 0.95. Answers arrive in waves, and without messages at hand the LLM sat
idle while a wave was received again.
"""

import asyncio
from enum import Enum


class Slots:
    """A bounded count of free slots, several of which can be reserved at once.

    A received message keeps its visibility timeout running even while it waits, so the runner
    never receives more messages than it has free slots.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._free = size
        self._released = asyncio.Event()

    async def reserve(self, most: int, least: int = 1) -> int:
        """Wait until `least` slots are free, then take every free one, up to `most` in all.

        Taken in one step, so receive loops waiting side by side never split the free slots
        between them and all wait for more."""
        while self._free < least:
            self._released.clear()
            await self._released.wait()
        reserved = min(most, self._free)
        self._free -= reserved
        return reserved

    def release(self, count: int = 1) -> None:
        if self._free + count > self._size:
            raise ValueError(f"released more slots than were reserved ({self._size} in all)")
        self._free += count
        self._released.set()


class Stage(Enum):
    RECEIVED = "received"
    WAITING = "waiting for a work slot"
    WORKING = "at work"
    FINISHING = "finishing"
    LEFT = "left"


class Bounds:
    """The three bounds of one runner (see the module's docstring)."""

    def __init__(self, concurrency: int, prefetch: int) -> None:
        self.received = Slots(concurrency + prefetch)
        """What receives reserve: messages held before they finish."""
        self.work = asyncio.BoundedSemaphore(concurrency)
        self.finishing = asyncio.BoundedSemaphore(concurrency)

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
        """Wait for a work slot. A message still waiting here when the runner stops is handed
        back to the queue at once, for another worker to start."""
        self.stage = Stage.WAITING
        await self._bounds.work.acquire()
        self.stage = Stage.WORKING

    async def finish_work(self) -> None:
        """Take a finishing slot, then free the work slot and the received slot.

        Waiting with both still held is the back-pressure: while finishing is stuck (a callback
        receiver that is down), no new messages are received to pile up behind it.
        """
        await self._bounds.finishing.acquire()
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
