"""Feedback behind interactive calls: on a vLLM scheduled by priority (the simulator, held to
vLLM's order by tests/conformance), a chat call that arrives while feedback waits goes before
the waiting feedback when the worker sends LLM_PRIORITY, and behind all of it when it sends
none (both then have vLLM's default 0, and arrival order decides)."""

import asyncio

import httpx
import pytest
from devstack.fakes.llm import Calibration
from devstack.fakes.llm.engine import SchedulingPolicy
from feedback_worker.memory import InMemorySource

from tests.support.factories import RunFeedback
from tests.support.fakes import CallbackReceiver, simulated_llm
from tests.support.records import weekly_record
from tests.support.waiting import eventually

SIM_MODEL = "sim-7b"
FEEDBACK = 6


def _success(stats: dict[str, object]) -> int:
    success = stats["success"]
    assert isinstance(success, dict)
    return sum(success.values())


@pytest.mark.parametrize(("llm_priority", "feedback_before_the_chat"), [("10", 1), (None, 6)])
async def test_a_chat_call_waits_only_for_the_running_feedback_when_feedback_has_a_priority(
    run_feedback: RunFeedback,
    receiver: CallbackReceiver,
    llm_priority: str | None,
    feedback_before_the_chat: int,
) -> None:
    # One sequence at a time: the first feedback call runs, the other five wait.
    one_seq = Calibration.published(max_num_seqs=1)
    policy = SchedulingPolicy.PRIORITY
    with simulated_llm(one_seq, time_scale=5, model=SIM_MODEL, scheduling_policy=policy) as sim:
        source = InMemorySource()
        for member_id in range(1, FEEDBACK + 1):
            source.send(weekly_record(member_id, f"{member_id}-w"), group_id=str(member_id))
        env = {
            "LLM_BASE_URL": sim.base_url,
            "LLM_MODEL": SIM_MODEL,
            "WORKER_CONCURRENCY": str(FEEDBACK),
            "LLM_TIMEOUT_SECONDS": "60",
        }
        if llm_priority is not None:
            env["LLM_PRIORITY"] = llm_priority
        worker = asyncio.create_task(run_feedback(source, **env))
        await eventually(lambda: sim.stats()["waiting"] == FEEDBACK - 1, what="feedback waiting")

        async with httpx.AsyncClient(timeout=60) as chatbot:
            chat = await chatbot.post(
                f"{sim.base_url}/chat/completions",
                json={"model": SIM_MODEL, "messages": [{"role": "user", "content": "안녕"}]},
            )
        answered_before = _success(sim.stats()) - 1  # the chat call itself
        await worker

    assert chat.status_code == 200
    assert answered_before == feedback_before_the_chat
    assert len(receiver.deliveries()) == FEEDBACK
    assert source.counts() == (0, 0)
