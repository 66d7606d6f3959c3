"""One QA pair per custom_id: which pair of a batch's results is kept when several share one.

A custom_id names one request of the batch, which the provider answers once; several lines for
it come from a provider's repeat, or from raw being the output and the error file together.
Equal pairs are kept once (the first in file order), the others counted `duplicate_custom_id`.
Pairs that differ are all left out, counted `conflicting_custom_id`: the provider writes lines
in any order, so nothing says which answer is the request's, and a fine-tuning set is better
off without one example than taught an answer that may be the wrong one (in the batch that
showed this, one of two contradicting answers gave a phone number). Only pairs take part: a
failed attempt (a bad line) contradicts no answer. A pair without a custom_id cannot be
matched to another and is kept.
"""

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from contextlib import closing
from enum import IntEnum

from qa_sync.qa_lines import BadLine, QaPair


class _State(IntEnum):
    SEEN = 0
    """Every pair so far for this custom_id is the same; none is kept yet."""
    CONFLICT = 1
    """Two pairs for this custom_id differ: none is kept."""
    KEPT = 2
    """One of its (equal) pairs is kept: the others are duplicates."""


class CustomIdAnswers:
    """What each custom_id's pairs say, learnt in a first pass over the lines, then a verdict
    per pair in a second pass in the same order.

    The index is a private temporary SQLite database (nothing is ever committed: it lives for
    one build): it stays in SQLite's small page cache and spills to disk beyond it, so memory
    stays flat up to the Batch API's 50,000 lines, where a dict of their ids would add some
    7 MiB to the sync's 16 MiB peak.
    """

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # "": a private temporary database, deleted on close
        self._db.execute(
            "CREATE TABLE answers (custom_id TEXT PRIMARY KEY, digest BLOB NOT NULL, "
            "state INTEGER NOT NULL)"
        )

    def learn(self, pairs: Iterable[QaPair]) -> None:
        """First pass: note each pair's question and answer under its custom_id."""
        self._db.executemany(
            "INSERT INTO answers VALUES (?1, ?2, ?3) ON CONFLICT (custom_id) DO UPDATE "
            "SET state = ?4 WHERE answers.digest != excluded.digest",
            (
                (pair.custom_id, _digest(pair), _State.SEEN, _State.CONFLICT)
                for pair in pairs
                if pair.custom_id is not None
            ),
        )

    def verdict(self, pair: QaPair) -> BadLine | None:
        """Second pass: None to keep the pair, else the kind of bad line it is counted as."""
        if pair.custom_id is None:
            return None
        with closing(self._db.cursor()) as cursor:
            cursor.execute("SELECT state FROM answers WHERE custom_id = ?", (pair.custom_id,))
            (state,) = cursor.fetchone()
            if state == _State.CONFLICT:
                return BadLine.CONFLICTING_CUSTOM_ID
            if state == _State.KEPT:
                return BadLine.DUPLICATE_CUSTOM_ID
            cursor.execute(
                "UPDATE answers SET state = ? WHERE custom_id = ?", (_State.KEPT, pair.custom_id)
            )
            return None

    def close(self) -> None:
        self._db.close()


def _digest(pair: QaPair) -> bytes:
    """The pair's question and answer in 16 bytes: what two lines must share to be one pair."""
    text = json.dumps([pair.question, pair.answer], ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
