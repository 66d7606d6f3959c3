"""Exponential backoff with jitter, shared by message retries and callback attempts."""

import random


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """`base`·2^(attempt-1), at most `cap`, less up to a quarter at random.

    The jitter spreads out retries of work that failed together (an LLM restart fails every
    in-flight message at once), so that they do not all come back at the same moment.
    """
    exponential = base * 2.0 ** min(max(attempt - 1, 0), 32)
    return min(exponential, cap) * (1 - 0.25 * random.random())
