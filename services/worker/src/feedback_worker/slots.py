"""The bounds on the messages a worker holds, and each message's place among them.

A message passes three stages: received and waiting for the LLM, at the LLM, and being
delivered and settled on the queue. Each stage has a bound of its own:

- at the LLM: WORKER_CONCURRENCY calls at once, what keeps vLLM's batch full;
- received but not yet past the LLM: WORKER_CONCURRENCY + WORKER_PREFETCH, so a call that ends
  hands its LLM slot to a message already here instead of waiting for a receive;
- being delivered: WORKER_CONCURRENCY, so the LLM slot is free as soon as the answer is in and
  the next call does not wait for this one's callback and delete.

Measured with `make bench` at 64 in flight, LLM latency 1 s, 16 rounds: one slot held from
receive to delete reached 0.86 of the ideal throughput; with 8, 16 and 32 messages received
ahead 0.93, 0.94 and 0.95. Answers arrive in waves, and without messages at hand the LLM sat
idle while a wave was received again.
"""

import asyncio
from enum import Enum


class Slots:
    """A bounded semaphore that can reserve several free slots at once.

    A received message keeps its visibility timeout running even while it waits, so the worker
    never receives more messages than it has free slots.
    """

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.BoundedSemaphore(size)

    async def reserve(self, most: int) -> int:
        """Wait for one free slot, then take every other free one, up to `most` in all."""
        await self._semaphore.acquire()
        reserved = 1
        while reserved < most and not self._semaphore.locked():
            await self._semaphore.acquire()  # a free slot: returns at once
            reserved += 1
        return reserved

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._semaphore.release()


class Stage(Enum):
    RECEIVED = "received"
    WAITING = "waiting for an LLM slot"
    AT_LLM = "at the LLM"
    DELIVERING = "being delivered"
    LEFT = "left"


class Bounds:
    """The three bounds of one worker (see the module's docstring)."""

    def __init__(self, concurrency: int, prefetch: int) -> None:
        self.received = Slots(concurrency + prefetch)
        """What receives reserve: messages held before delivery."""
        self.llm_calls = asyncio.BoundedSemaphore(concurrency)
        self.deliveries = asyncio.BoundedSemaphore(concurrency)

    def place(self) -> "Place":
        """The place of a message just received into one of `received`'s slots."""
        return Place(self)


class Place:
    """Where one message is among the worker's bounds; `leave` frees what it holds, once."""

    def __init__(self, bounds: Bounds) -> None:
        self._bounds = bounds
        self.stage = Stage.RECEIVED

    async def to_llm(self) -> None:
        """Wait for an LLM slot; a task cancelled meanwhile gives up only its received slot."""
        self.stage = Stage.WAITING
        await self._bounds.llm_calls.acquire()
        self.stage = Stage.AT_LLM

    async def to_delivery(self) -> None:
        """Take a delivery slot, then free the LLM slot and the received slot.

        Waiting with both still held is the back-pressure: while deliveries are stuck (a
        callback receiver that is down), no new messages are received to pile up behind them.
        """
        await self._bounds.deliveries.acquire()
        self._free_before_delivery()
        self.stage = Stage.DELIVERING

    def leave(self) -> None:
        if self.stage is Stage.DELIVERING:
            self._bounds.deliveries.release()
        elif self.stage is not Stage.LEFT:
            self._free_before_delivery()
        self.stage = Stage.LEFT

    def _free_before_delivery(self) -> None:
        if self.stage is Stage.AT_LLM:
            self._bounds.llm_calls.release()
        self._bounds.received.release()
