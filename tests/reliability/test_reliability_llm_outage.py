"""The LLM goes away (503s, then refused connections) and comes back: everything is delivered
afterwards; a message that keeps failing reaches the DLQ with its reason."""

import re
import time

import pytest
from mypy_boto3_sqs.type_defs import MessageTypeDef

from tests.support.queues import body_request_id, dead_letter_reason
from tests.support.records import weekly_record
from tests.support.reliability import Figures, StartPlatform, duplicates_by_id
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCENARIO = "2. LLM outage"
ANSWERS_503_S = 8.0
REFUSES_S = 10.0
"""An 18 s outage instead of a minute: the retry delays are scaled down with it."""


def test_an_llm_outage_delays_but_loses_nothing(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """503 for 8 s, then connections refused for 10 s, while requests keep arriving."""
    platform = start_platform(
        worker_env={"RETRY_DELAY_SECONDS": "3", "RETRY_MAX_DELAY_SECONDS": "15"}
    )
    before = [platform.accept(weekly_record(30_000 + n, f"before-{n}")) for n in range(10)]
    wait_until(lambda: platform.accepted_ids() >= set(before), 30, "deliveries before")

    platform.llm.control(refuse=True, fail_status=503)
    during = [platform.accept(weekly_record(31_000 + n, f"during-503-{n}")) for n in range(10)]
    time.sleep(ANSWERS_503_S)
    answered_503 = platform.llm.stats()["failures"]
    llm = platform.stack.processes["llm"]
    llm.stop()
    outage_started = time.monotonic()
    during += [platform.accept(weekly_record(32_000 + n, f"during-refused-{n}")) for n in range(10)]
    time.sleep(REFUSES_S)
    delivered_during = len(platform.accepted_ids() & set(during))
    llm.start()
    recovered = time.monotonic()
    took = wait_until(
        lambda: platform.accepted_ids() >= set(during), 90, "deliveries after the outage"
    )

    deliveries = platform.receiver.deliveries()
    figures["outage (s)"] = round(ANSWERS_503_S + recovered - outage_started, 1)
    figures["LLM 503 answers"] = answered_503
    figures["requests accepted during the outage"] = len(during)
    figures["delivered during the outage"] = delivered_during
    figures["delivered after recovery"] = len(platform.accepted_ids() & set(during))
    figures["seconds from recovery to the last delivery"] = round(took, 1)
    figures["duplicate callbacks"] = duplicates_by_id(deliveries)
    figures["DLQ"] = len(platform.dead_letters())

    assert delivered_during == 0
    assert platform.accepted_ids() >= set(before) | set(during)
    assert figures["DLQ"] == 0


def test_a_message_failing_past_the_redrive_limit_is_in_the_dlq_with_its_reason(
    start_platform: StartPlatform, figures: Figures
) -> None:
    """The LLM answers 503 for good: after 5 receives the message is dead-lettered, with why."""
    platform = start_platform(worker_env={"RETRY_MAX_DELAY_SECONDS": "1"})
    platform.llm.control(refuse=True, fail_status=503)
    request_id = platform.accept(weekly_record(33_000, "doomed"))

    dead_letters: list[MessageTypeDef] = []
    # 5 receives of 3 calls each (the gate holds a message through 3 failed calls), with the
    # probe's backoff between calls: 54 s on a loaded 2-core machine.
    took = wait_until(
        lambda: bool(dead_letters.extend(platform.dead_letters()) or dead_letters), 180, "the DLQ"
    )

    [dead] = dead_letters
    reason = dead_letter_reason(dead)
    receives = re.search(r"after (\d+) receives", reason)
    figures["receives before the DLQ"] = int(receives.group(1)) if receives else None
    figures["LLM calls"] = platform.llm.stats()["requests"]
    figures["seconds to the DLQ"] = round(took, 1)
    figures["DLQ reason"] = reason
    assert body_request_id(dead) == request_id
    assert reason.startswith("gave up after 5 receives: LLM call failed: HTTP 503")
    assert platform.receiver.deliveries() == []
