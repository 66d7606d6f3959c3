"""moto's server for the benchmarks, without the one cost that grows with the square of a
queue's depth.

For every message a receive returns, moto checks its retention period by computing all of the
queue's attributes, approximate counts included, each a scan of every message in the queue: a
receive of ten from a queue 500 deep scans it 30 times. Real SQS has no such cost, and on a
2-core machine it made the emulator, not the worker, the limit of the burst bench. Here the
check reads the queue's retention period directly; everything else is moto's own.

    python -m bench.moto_server -H 127.0.0.1 -p PORT   (moto.server's arguments)
"""

from moto.core.utils import unix_time
from moto.server import main
from moto.sqs.models import Message, SQSBackend


def _within_retention(backend: SQSBackend, queue_name: str, message: Message) -> bool:
    retention_s = int(backend.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
    sent_s: float = message.sent_timestamp / 1000  # type: ignore[operator]
    return sent_s + retention_s > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _within_retention  # type: ignore[assignment]

if __name__ == "__main__":
    main()
