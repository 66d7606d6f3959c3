"""The worker's HTTP clients (feedback_worker/http_clients.py) against real servers: a peer that
drips its answer is cut at the attempt's timeout, not kept open read by read; a kept-alive
connection the server closes as it is reused costs no call."""

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime

import pytest
from devstack.fakes import callback_receiver
from devstack.processes import free_port
from devstack.serving import KEEP_ALIVE_S, BackgroundServer
from feedback_worker.delivery import CallbackChannel
from feedback_worker.delivery.notices import notices_from_settings
from feedback_worker.errors import CallbackFailed, LlmUnavailable
from feedback_worker.http_clients import SERVER_CLOSED, AttemptTimeout, bounded_client
from feedback_worker.llm import FeedbackWriter
from feedback_worker.llm_gate import GateReason
from feedback_worker.prompt import Prompt
from feedback_worker.settings import WorkerSettings
from feedback_worker.worker import PROBE_TIMEOUT_SECONDS, callback_http, probe_http
from llm_common.contracts import FailureNotice, FeedbackResult
from llm_common.telemetry.metrics import REGISTRY
from llm_common.telemetry.names import AttemptOutcome, DeliveryOutcome

from bench import round_robin_proxy
from tests.support.fakes import (
    TEST_MODEL,
    TEST_SECRET,
    CallbackReceiver,
    SimulatedLlm,
    simulated_llm,
)
from tests.support.reliability import TcpProxy
from tests.support.waiting import eventually

Settings = Callable[..., WorkerSettings]
PROMPT = Prompt("너는 피드백 어시스턴트야.", "- 아침 달리기 (성공)\n- 물 2리터 (실패)", "", "")
DRIP_S = 0.2
"""One byte every 0.2 s: a dripped completion (~600 bytes) would stay open two minutes, the
backend's 503 envelope (62 bytes) 12 s."""
BOUND = 3
"""An attempt must end within BOUND x its timeout: near it, never read by read."""
NOTICE_PATH = "/failures"


@pytest.fixture
def settings(base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`settings(**env)`: the worker's settings from the test environment, gate on (the client
    has no retries of its own, as in production)."""

    def make(**overrides: str) -> WorkerSettings:
        env = {**base_env, "FEEDBACK_QUEUE_URL": "memory", "LLM_GATE_ENABLED": "true"}
        for name, value in {**env, **overrides}.items():
            monkeypatch.setenv(name, value)
        return WorkerSettings()

    return make


@pytest.fixture
async def writers() -> AsyncIterator[list[FeedbackWriter]]:
    """Writers to close after the test."""
    made: list[FeedbackWriter] = []
    yield made
    for writer in made:
        await writer.close()


async def test_a_dripping_llm_answer_ends_at_the_call_timeout_as_a_timeout(
    settings: Settings, llm: SimulatedLlm, writers: list[FeedbackWriter]
) -> None:
    writer = FeedbackWriter.from_settings(settings(LLM_TIMEOUT_SECONDS="1"))
    writers.append(writer)
    llm.control(drip_s=DRIP_S)

    with pytest.raises(LlmUnavailable) as failure:
        async with asyncio.timeout(BOUND * 1):
            await writer.write(PROMPT)

    assert failure.value.gate_reason is GateReason.TIMEOUT  # the gate reads a timeout
    await eventually(lambda: "open_s" in llm.requests()[-1])
    assert llm.requests()[-1]["open_s"] < BOUND * 1  # the LLM saw the client hang up


def llm_attempts(outcome: AttemptOutcome) -> float:
    return (
        REGISTRY.get_sample_value("feedback_worker_llm_attempts_total", {"outcome": outcome}) or 0
    )


async def test_every_llm_attempt_that_times_out_is_counted_the_clients_own_retries_too(
    settings: Settings, llm: SimulatedLlm, writers: list[FeedbackWriter]
) -> None:
    """Without the gate the openai client retries a timeout itself: each attempt is a call
    vLLM aborts, so the burst bench counts client timeouts here, not per message."""
    writer = FeedbackWriter.from_settings(
        settings(
            LLM_TIMEOUT_SECONDS="0.5",
            LLM_GATE_ENABLED="false",
            LLM_MAX_RETRIES="2",
        )
    )
    writers.append(writer)
    before = {outcome: llm_attempts(outcome) for outcome in AttemptOutcome}
    llm.control(drip_s=DRIP_S)

    with pytest.raises(LlmUnavailable):
        await writer.write(PROMPT)
    llm.control(drip_s=0)
    await writer.write(PROMPT)

    after = {outcome: llm_attempts(outcome) - before[outcome] for outcome in AttemptOutcome}
    assert after == {
        AttemptOutcome.TIMED_OUT: 3,
        AttemptOutcome.ANSWERED: 1,
        AttemptOutcome.FAILED: 0,
    }


def _result(request_id: str) -> FeedbackResult:
    return FeedbackResult(
        member_id=7,
        content="이번 주도 수고 많았어요!",
        timestamp=datetime(2025, 6, 16),
        request_id=request_id,
    )


def _notice(request_id: str) -> FailureNotice:
    return FailureNotice(
        request_id=request_id,
        member_id=7,
        state="failed",
        reason="the LLM answered 503 five times",
        timestamp=datetime(2025, 6, 16),
    )


async def test_a_dripping_callback_answer_ends_each_attempt_at_the_callback_timeout(
    settings: Settings, receiver: CallbackReceiver
) -> None:
    config = settings(CALLBACK_TIMEOUT_SECONDS="1", CALLBACK_MAX_ATTEMPTS="2")
    assert config.callback_endpoint is not None
    receiver.script(status=503, times=2, drip_s=DRIP_S)

    async with callback_http(config) as http:
        channel = CallbackChannel(http, config.callback_endpoint, TEST_SECRET, 2)
        with pytest.raises(CallbackFailed, match="AttemptTimeout"):
            async with asyncio.timeout(2 * BOUND * 1):
                await channel.send(_result("drip-result"))

    await eventually(lambda: all("open_s" in d for d in receiver.deliveries()))
    assert [d["status"] for d in receiver.deliveries()] == [503, 503]
    assert max(d["open_s"] for d in receiver.deliveries()) < BOUND * 1


async def test_a_dripping_failure_notice_answer_ends_at_the_callback_timeout(
    settings: Settings, receiver: CallbackReceiver
) -> None:
    config = settings(
        CALLBACK_TIMEOUT_SECONDS="1", CALLBACK_MAX_ATTEMPTS="1", CALLBACK_FAILURE_PATH=NOTICE_PATH
    )
    receiver.script(status=503, times=1, drip_s=DRIP_S)

    async with callback_http(config) as http:
        notices = notices_from_settings(config, http)
        assert notices is not None
        async with asyncio.timeout(BOUND * 1):
            await notices.send(_notice("drip-notice"))  # given up: logged, not raised

    await eventually(lambda: all("open_s" in d for d in receiver.deliveries()))
    [attempt] = receiver.deliveries()
    assert (attempt["path"], attempt["status"]) == (NOTICE_PATH, 503)
    assert attempt["open_s"] < BOUND * 1


@pytest.mark.slow
async def test_a_dripping_probe_answer_ends_at_the_probe_timeout(
    settings: Settings, llm: SimulatedLlm
) -> None:
    """The LLM gate's /health and /metrics client: a dripping answer is no answer."""
    llm.control(drip_s=DRIP_S)

    async with probe_http(settings()) as http:
        with pytest.raises(AttemptTimeout):
            async with asyncio.timeout(BOUND * PROBE_TIMEOUT_SECONDS):
                await http.get(f"{llm.base_url}/models")


@pytest.fixture
def keep_alive_llm(request: pytest.FixtureRequest) -> Iterator[TcpProxy]:
    """The simulated LLM served with `request.param` seconds of keep-alive, behind a link that
    delays what the worker sends by 1.5 s: a request sent on a pooled connection within 1.5 s
    of the server's idle close reaches the server after it."""
    with simulated_llm(model=TEST_MODEL, latency_s=0.0, keep_alive_s=request.param) as server:
        proxy = TcpProxy(server.port, delay_s=1.5)
        proxy.up()
        yield proxy
        proxy.down()


@pytest.mark.slow
@pytest.mark.parametrize("keep_alive_llm", [KEEP_ALIVE_S], indirect=True)
async def test_a_connection_vllm_is_about_to_close_is_not_reused(
    settings: Settings, keep_alive_llm: TcpProxy, writers: list[FeedbackWriter]
) -> None:
    """vLLM closes connections idle 5 s; one taken at 4 s idle would arrive at 5.5 s."""
    writer = FeedbackWriter.from_settings(settings(LLM_BASE_URL=f"{keep_alive_llm.url}/v1"))
    writers.append(writer)
    await writer.write(PROMPT)

    await asyncio.sleep(4.0)

    assert await writer.write(PROMPT)  # no APIConnectionError, so no gate closed


@pytest.mark.parametrize("keep_alive_llm", [1], indirect=True)
async def test_a_request_a_kept_alive_connection_lost_is_sent_again_on_a_new_one(
    settings: Settings, keep_alive_llm: TcpProxy, writers: list[FeedbackWriter]
) -> None:
    """A server keeping connections 1 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE=1, a proxy): taken at
    0.3 s idle, well within the client's expiry, the request arrives after the close."""
    writer = FeedbackWriter.from_settings(settings(LLM_BASE_URL=f"{keep_alive_llm.url}/v1"))
    writers.append(writer)
    await writer.write(PROMPT)

    await asyncio.sleep(0.3)

    assert await writer.write(PROMPT)


@pytest.fixture
def keep_alive_receiver() -> Iterator[TcpProxy]:
    """The callback receiver keeping connections 1 s, behind the same slow link."""
    with BackgroundServer(callback_receiver.create_app(TEST_SECRET), 1) as server:
        proxy = TcpProxy(server.port, delay_s=1.5)
        proxy.up()
        yield proxy
        proxy.down()


async def test_a_callback_a_kept_alive_connection_lost_spends_no_attempt(
    settings: Settings, keep_alive_receiver: TcpProxy
) -> None:
    config = settings(CALLBACK_URL=keep_alive_receiver.url, CALLBACK_MAX_ATTEMPTS="1")
    assert config.callback_endpoint is not None

    async with callback_http(config) as http:
        channel = CallbackChannel(http, config.callback_endpoint, TEST_SECRET, 1)
        assert await channel.send(_result("first")) is DeliveryOutcome.DELIVERED
        await asyncio.sleep(0.3)
        assert await channel.send(_result("second")) is DeliveryOutcome.DELIVERED


async def test_a_new_connection_closed_unanswered_is_not_sent_again() -> None:
    """Only a reused connection is retried: a server that closes new ones fails at once (a
    retry would loop until the deadline and end in AttemptTimeout instead)."""
    closing = TcpProxy(free_port())  # accepts, cannot reach its target, closes
    closing.up()
    try:
        async with bounded_client(5.0, 1) as http:
            with pytest.raises(SERVER_CLOSED):
                await http.get(closing.url)
    finally:
        closing.down()


CALLS_AFTER_ADDING = 20


@pytest.mark.parametrize(("max_age_s", "added_gets_calls"), [(3600.0, False), (0.5, True)])
async def test_a_replica_added_behind_per_connection_balancing_gets_calls_once_connections_age(
    settings: Settings, max_age_s: float, added_gets_calls: bool
) -> None:
    # kube-proxy's part: each new connection goes to the next replica. Calls never 2 s apart
    # keep their connection alive, so only its age sends one to the replica added mid-burst.
    with (
        simulated_llm(model=TEST_MODEL, latency_s=0.0) as first,
        simulated_llm(model=TEST_MODEL, latency_s=0.0) as added,
    ):
        replicas = [first.port]
        service = free_port()
        balancer = asyncio.create_task(round_robin_proxy.serve(service, replicas))
        writer = FeedbackWriter.from_settings(
            settings(
                LLM_BASE_URL=f"http://127.0.0.1:{service}/v1",
                LLM_CONNECTION_MAX_AGE_SECONDS=str(max_age_s),
            )
        )
        try:
            await eventually(lambda: _listening(service), what="the balancer")
            await writer.write(PROMPT)
            replicas.append(added.port)
            for _ in range(CALLS_AFTER_ADDING):  # 2 s: four ages of 0.5 s
                await writer.write(PROMPT)
                await asyncio.sleep(0.1)
        finally:
            await writer.close()  # its connections first, so the balancer's pipes end
            balancer.cancel()
        calls = first.stats()["completions"], added.stats()["completions"]
        assert sum(calls) == 1 + CALLS_AFTER_ADDING
        assert (calls[1] > 0) is added_gets_calls


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
