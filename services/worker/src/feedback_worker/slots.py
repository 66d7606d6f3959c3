"""The bound on in-flight messages, which is also the bound on what a receive may ask for."""

import asyncio


class Slots:
    """A bounded semaphore that can reserve several free slots at once.

    A received message keeps its visibility timeout running even while it waits for a slot, so
    the worker never receives more messages than it has free slots.
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
