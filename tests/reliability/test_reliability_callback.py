"""The backend's callback endpoint misbehaves: down, slow, 500, 429 with Retry-After are retried
with backoff and delivered later, down for longer than the request's receives would last too;
404 and 400 are final, tried once and recorded in the DLQ."""

import itertools
import time
from typing import Any

import pytest
from mypy_boto3_sqs.type_defs import MessageTypeDef

from tests.support.queues import body_request_id, dead_letter_reason
from tests.support.records import weekly_record
from tests.support.reliability import Figures, Platform, StartPlatform
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCENARIO = "3. Callback trouble"


def _attempts(platform: Platform, request_id: str) -> list[dict[str, Any]]:
    return [d for d in platform.receiver.deliveries() if d["webhook_id"] == request_id]


def _delivered(platform: Platform, request_id: str) -> bool:
    return any(d["status"] in (200, 409) for d in _attempts(platform, request_id))


@pytest.fixture
def platform(start_platform: StartPlatform) -> Platform:
    # A callback times out after 1 s; 4 attempts per receive (0.5 s, 1 s, 2 s apart).
    return start_platform(worker_env={"CALLBACK_TIMEOUT_SECONDS": "1"})


def _outage(platform: Platform, seconds: float, name: str, first_member: int) -> list[str]:
    """Five requests accepted while the receiver is down for `seconds`, then it is back."""
    receiver = platform.stack.processes["callback"]
    receiver.stop()
    ids = [platform.accept(weekly_record(first_member + n, f"{name}-{n}")) for n in range(5)]
    time.sleep(seconds)
    receiver.start()
    return ids


def test_a_receiver_that_is_down_gets_the_results_once_it_is_back(
    platform: Platform, figures: Figures
) -> None:
    """Receiver down (connection refused) for 6 s."""
    ids = _outage(platform, 6, "down", 40_000)
    took = wait_until(lambda: all(_delivered(platform, i) for i in ids), 60, "deliveries")

    figures["requests"] = len(ids)
    figures["receiver down (s)"] = 6
    figures["delivered after it came back"] = sum(_delivered(platform, i) for i in ids)
    figures["seconds from its return to the last delivery"] = round(took, 1)
    assert figures["delivered after it came back"] == len(ids)


def test_a_receiver_down_longer_than_the_receives_last_is_retried_within_the_delivery_budget(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """Receiver down 40 s, past the 5 receives of the suite's fast settings: one LLM call each."""
    platform = start_platform(
        worker_env={"CALLBACK_TIMEOUT_SECONDS": "1", "DELIVERY_RETRY_MAX_DELAY_SECONDS": "5"}
    )
    ids = _outage(platform, 40, "outage", 43_000)
    took = wait_until(lambda: all(_delivered(platform, i) for i in ids), 60, "deliveries")

    figures["requests"] = len(ids)
    figures["receiver down (s)"] = 40
    figures["delivered after it came back"] = sum(_delivered(platform, i) for i in ids)
    figures["LLM calls"] = platform.llm.stats()["completions"]
    figures["DLQ"] = len(platform.dead_letters())
    figures["records delivered with the stored text"] = platform.records_agreeing(ids)
    figures["seconds from its return to the last delivery"] = round(took, 1)
    assert figures["delivered after it came back"] == len(ids)
    assert figures["LLM calls"] == len(ids)
    assert figures["DLQ"] == 0
    assert figures["records delivered with the stored text"] == len(ids)


@pytest.mark.parametrize(
    ("trouble", "script"),
    [
        ("slow (2 s, timeout 1 s) twice", {"delay_s": 2.0, "times": 2}),
        ("500 three times", {"status": 500, "times": 3}),
        ("429 with Retry-After: 3, twice", {"status": 429, "times": 2, "retry_after": "3"}),
    ],
)
def test_transient_answers_are_retried_with_backoff_until_delivered(
    trouble: str, script: dict[str, Any], platform: Platform, figures: Figures
) -> None:
    """Slow, 500 and 429 answers are retried (Retry-After honoured) until delivered."""
    platform.receiver.script(**script)
    request_id = platform.accept(weekly_record(41_000, f"transient-{script.get('status', 'slow')}"))
    # A slow answer is recorded by the receiver after its delay, while the worker has given up
    # on it already: wait for every attempt, not the first that was stored.
    wait_until(
        lambda: (
            len(_attempts(platform, request_id)) > script["times"]
            and _delivered(platform, request_id)
        ),
        60,
        "the delivery",
    )

    attempts = _attempts(platform, request_id)
    sent_at = sorted(int(a["headers"]["webhook-timestamp"]) for a in attempts)
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    figures["trouble"] = trouble
    figures["attempts"] = len(attempts)
    figures["answers"] = " ".join(str(a["status"]) for a in attempts)
    figures["gaps between attempts (s, whole)"] = " ".join(map(str, gaps))
    assert len(attempts) == script["times"] + 1
    assert attempts[-1]["status"] in (200, 409)
    if "retry_after" in script:
        # Retry-After: 3 was waited out (the timestamps are whole seconds).
        assert min(gaps) >= 2


@pytest.mark.parametrize("status", [404, 400])
def test_404_and_400_are_not_retried_and_are_recorded_in_the_dlq(
    status: int, start_platform: StartPlatform, figures: Figures
) -> None:
    """404 (unknown member) and 400 (bad body) are final: one attempt, then the DLQ with why."""
    # The callback alone: a refusal fails the request only when no other channel took it.
    platform = start_platform(worker_env={"CALLBACK_TIMEOUT_SECONDS": "1", "RESULT_QUEUE_URL": ""})
    platform.receiver.script(status=status, times=1)
    request_id = platform.accept(weekly_record(42_000, f"permanent-{status}"))
    dead: list[MessageTypeDef] = []
    wait_until(lambda: bool(dead.extend(platform.dead_letters()) or dead), 30, "the DLQ")
    time.sleep(2)  # room for a wrong retry to show itself

    attempts = _attempts(platform, request_id)
    figures["answer"] = status
    figures["attempts"] = len(attempts)
    figures["DLQ reason"] = dead_letter_reason(dead[0])
    assert [a["status"] for a in attempts] == [status]
    assert body_request_id(dead[0]) == request_id
    assert f"HTTP {status}" in figures["DLQ reason"]
