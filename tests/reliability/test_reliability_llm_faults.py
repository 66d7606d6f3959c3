"""An LLM that fails in the ways a real fleet does: one replica of two sick (every other call
503), 503 for half a minute, HTTP 200 with an error body, HTTP 500 at once (vLLM shutting down)
under long polls, a worker stopped during a message's last receive, a stored result waiting on
a delivery while the LLM is away. Nothing accepted is lost or dead-lettered, every record says
`delivered` with the text the backend stored, and the outage spends no receive of a message."""

import time
from collections.abc import Iterable

import pytest

from tests.support.queues import queue_counts
from tests.support.records import weekly_record
from tests.support.reliability import Figures, Platform, StartPlatform
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCENARIO = "8. LLM faults"


def _accept(platform: Platform, first_member: int, count: int, name: str) -> list[str]:
    return [platform.accept(weekly_record(first_member + n, f"{name}-{n}")) for n in range(count)]


def _all_delivered(platform: Platform, ids: list[str], within_s: float) -> float:
    return wait_until(lambda: platform.accepted_ids() >= set(ids), within_s, "every delivery")


def _record_figures(figures: Figures, platform: Platform, ids: Iterable[str]) -> None:
    """What the backend would see: deliveries, the DLQ, records, receives spent per request."""
    ids = list(ids)
    attempts = [platform.record(request_id)["attempts"] for request_id in ids]
    figures["requests"] = len(ids)
    figures["delivered"] = len(platform.accepted_ids() & set(ids))
    figures["DLQ"] = len(platform.dead_letters())
    figures["records delivered with the stored text"] = platform.records_agreeing(ids)
    figures["most receives of one request"] = max(attempts)
    figures["LLM calls failed"] = platform.llm.stats()["failures"]


def _assert_nothing_lost(figures: Figures) -> None:
    assert figures["delivered"] == figures["requests"]
    assert figures["DLQ"] == 0
    assert figures["records delivered with the stored text"] == figures["requests"]


def test_one_sick_replica_of_two_loses_nothing(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """Every other chat completion answered 503 (one replica of two sick, /health fine): 40
    requests, 4 calls and 8 prefetched at most."""
    platform = start_platform(worker_env={"WORKER_CONCURRENCY": "4", "WORKER_PREFETCH": "8"})
    platform.llm.control(fail_every=2, fail_status=503)
    ids = _accept(platform, 50_000, 40, "flapping")
    took = _all_delivered(platform, ids, 120)

    _record_figures(figures, platform, ids)
    figures["seconds to deliver all"] = round(took, 1)
    _assert_nothing_lost(figures)
    assert figures["LLM calls failed"] > 0


def _through_a_fault(
    platform: Platform, figures: Figures, fail_status: int, seconds: float, requests: int
) -> None:
    """`requests` accepted while every call is answered `fail_status` for `seconds`, then the
    LLM heals: every one delivered, none in the DLQ, every record truthful."""
    platform.llm.control(refuse=True, fail_status=fail_status)
    ids = _accept(platform, 51_000, requests, f"fault-{fail_status}")
    time.sleep(seconds)
    platform.llm.control(refuse=False)
    took = _all_delivered(platform, ids, 60)

    _record_figures(figures, platform, ids)
    figures["seconds from recovery to the last delivery"] = round(took, 1)
    _assert_nothing_lost(figures)


def test_an_llm_answering_503_for_half_a_minute_loses_nothing(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """503 for 30 s while 8 requests wait (the gate's trial calls must not wear one out)."""
    _through_a_fault(start_platform(), figures, 503, seconds=30, requests=8)
    assert figures["most receives of one request"] <= 2


def test_an_llm_answering_200_with_an_error_body_is_an_outage_not_a_loss(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """HTTP 200 with `{"error": ...}` for 20 s: the gate closes on it and nothing is lost."""
    platform = start_platform()
    _through_a_fault(platform, figures, 200, seconds=20, requests=8)
    figures["gate closed on a malformed answer"] = "LLM gate closed (malformed" in (
        platform.worker_log()
    )
    assert figures["gate closed on a malformed answer"]


def test_an_engine_failing_at_once_under_long_polls_spends_no_receives(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """HTTP 500 at once (vLLM's EngineDeadError while it shuts down) for 15 s, 13 requests,
    20 s long polls: failed messages must not come back to polls begun before the gate closed."""
    platform = start_platform(worker_env={"SQS_WAIT_SECONDS": "20"})
    _through_a_fault(platform, figures, 500, seconds=15, requests=13)
    assert figures["most receives of one request"] <= 2


def test_a_stop_during_a_last_receive_sends_the_message_again(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """Four 503s (gate off, no client retries: each spends a receive), then the 5th and last
    receive's call is slow and the worker gets SIGTERM: the message must not reach the DLQ."""
    worker_env = {"LLM_GATE_ENABLED": "false", "LLM_MAX_RETRIES": "0", "DRAIN_GRACE_SECONDS": "1"}
    platform = start_platform(worker_env=worker_env)
    platform.llm.control(fail_next=4, latency_s=30)
    [request_id] = _accept(platform, 54_000, 1, "last-receive")
    wait_until(lambda: platform.llm.stats()["in_flight"] == 1, 60, "the 5th call")
    worker = platform.stack.processes["worker"]
    worker.stop()

    assert platform.stack.queues is not None
    figures["DLQ after the stop"] = len(platform.dead_letters())
    figures["messages in the queue after the stop"] = sum(
        queue_counts(platform.sqs(), platform.stack.queues.requests)
    )
    platform.llm.control(latency_s=0)
    worker.start()
    took = _all_delivered(platform, [request_id], 60)

    _record_figures(figures, platform, [request_id])
    figures["seconds from the restart to the delivery"] = round(took, 1)
    assert figures["DLQ after the stop"] == 0
    assert figures["messages in the queue after the stop"] == 1
    _assert_nothing_lost(figures)
    # Generated on the copy's first receive, the four before the stop counted: the budget holds.
    assert figures["most receives of one request"] == 5


def test_a_stored_result_is_delivered_while_the_llm_is_away(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """A message whose result is stored only has to be delivered: the LLM going away (its gate
    closing) must not send it back to the queue, where a closed gate would leave it."""
    platform = start_platform(worker_env={"DRAIN_GRACE_SECONDS": "1"})
    platform.receiver.script(status=503, times=1_000_000)
    [request_id] = _accept(platform, 55_000, 1, "stored")
    wait_until(lambda: bool(platform.receiver.deliveries()), 30, "a first delivery attempt")
    # A new worker finds the stored result on the message's second receive.
    platform.restart("worker")
    tried = len(platform.receiver.deliveries())
    wait_until(lambda: len(platform.receiver.deliveries()) > tried, 30, "the new worker's attempt")
    llm = platform.stack.processes["llm"]
    llm.stop()
    wait_until(lambda: "LLM gate closed" in platform.worker_log(), 30, "the gate closing")
    platform.receiver.script(status=None, times=0)
    took = _all_delivered(platform, [request_id], 30)

    figures["delivered while the LLM was down"] = request_id in platform.accepted_ids()
    figures["seconds from the receiver's return to the delivery"] = round(took, 1)
    llm.start()
    _record_figures(figures, platform, [request_id])
    _assert_nothing_lost(figures)
