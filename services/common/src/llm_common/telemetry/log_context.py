"""The request and member a piece of work is for, so every log line inside it can say so.

A context variable, so concurrent requests and messages (one asyncio task each) keep their own.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["LogContext", "current_log_context", "log_context"]


@dataclass(frozen=True)
class LogContext:
    request_id: str | None = None
    member_id: int | None = None


_NO_CONTEXT = LogContext()
_current: ContextVar[LogContext] = ContextVar("llm_common_log_context", default=_NO_CONTEXT)


@contextmanager
def log_context(*, request_id: str | None = None, member_id: int | None = None) -> Iterator[None]:
    """Tag every log line written inside the block; fields not given keep their outer value."""
    outer = _current.get()
    token = _current.set(
        LogContext(
            request_id=request_id if request_id is not None else outer.request_id,
            member_id=member_id if member_id is not None else outer.member_id,
        )
    )
    try:
        yield
    finally:
        _current.reset(token)


def current_log_context() -> LogContext:
    return _current.get()
