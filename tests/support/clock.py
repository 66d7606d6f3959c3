"""Simulated wall time, for waits too long to sit through (an hour of delivery retries)."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class SimulatedClock:
    """Time that moves only when something sleeps on it. `at(seconds, action)` runs `action`
    once the simulated time reaches `seconds` (say, a receiver that comes back after an hour)."""

    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    elapsed: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    _due: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def at(self, seconds: float, action: Callable[[], None]) -> None:
        self._due.append((seconds, action))

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds
        for due in [due for due in self._due if due[0] <= self.elapsed]:
            self._due.remove(due)
            due[1]()
        await asyncio.sleep(0)
