"""5. The weekly burst: every request at once against simulated vLLM replicas.

At the week boundary the backend asks for every member's feedback within minutes. Here that
many requests are accepted at the same instant and drained by real worker processes
(`python -m feedback_worker`, SQS over HTTP from fauxqs or moto, the signed callback to devstack's
receiver)
against 1 or 2 vLLM-like simulators (devstack.fakes.llm: continuous batching, 256
running at most, FIFO waiting, aborts on disconnect), calibrated on the published 7B/H100
figures. Each configuration runs twice: with the worker's LLM gate (adaptive in-flight limit,
stop receiving while the LLM is down) and with it off, today's fixed-concurrency worker, the
same-run baseline.

Time: the simulators run at `--burst-time-scale` (virtual seconds per real second) and every
figure in seconds is virtual, i.e. what a real GPU would take. The client timeout
(LLM_TIMEOUT_SECONDS, 60 s virtual) is scaled with them; SQS's own delays (visibility,
retry delay) are not, which makes a retry cheaper here than on a real queue.

Figures:
- drain ÷ ideal: from the burst to the last delivery (real time x time scale, so a slow host
  counts against the platform), over the simulators' capacity-bound ideal for the requests
  that completed (every step a full batch; the restart adds its outage and load time);
- batch fill: the mean running batch ÷ max_num_seqs, sampled while more requests remain than
  the replicas can run at once;
- waiting p50/max: requests waiting inside vLLM, sampled;
- client timeouts: LLM attempts the workers gave up on (feedback_worker_llm_attempts_total);
- wasted ÷ generated tokens: tokens generated for requests that did not finish (aborted);
- extra LLM calls: attempts beyond one per delivered request (client and SQS retries, second
  drafts);

Every figure from the engines is read from their /metrics, vLLM's names
(bench/engine_metrics.py), so the real-engine burst (bench/engine_burst.py) is measured by the
same code.
- DLQ: messages in the dead-letter queue at the end;
- accepted → delivered p50/p99: from the burst (every request accepted at once) to its
  callback, real seconds x time scale.

Every request is queued before the workers start; the burst's clock starts when the first
worker is past its start-up checks (vLLM is up then too; the restart scenario has its start).
With more than one replica the workers reach them through bench/round_robin_proxy.py, the
Service, in its own process.

`--burst-requests` and `--burst-time-scale` set the size (the defaults, 1,000 at time scale 1,
are what 2 cores carry in under an hour: `REQUESTS`, docs/benchmarks.md); `--burst-sqs` the
queue's emulator (fauxqs, whose calls stay fast at any depth; moto's slow down with it);
`--burst-configs` and `--burst-restart` choose the replicas x workers of the bursts and of the
restart scenario (`2x1`; `none` runs no restart), each with and without the gate.
"""

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from devstack.fakes.llm import Calibration
from devstack.processes import free_port
from devstack.queues import FeedbackQueues
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    Emulator,
    Receiver,
    callback_receiver,
    emulator,
    fauxqs,
    percentile,
    process,
    running,
    worker_env,
)
from bench.engine_metrics import (
    EngineReading,
    WorkerReading,
    engine_reading,
    total,
    worker_reading,
)
from bench.worker_throughput import fill, fresh_queues
from tests.support.fakes import SimulatedLlm
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REQUESTS = 1_000
"""The real burst is tens of thousands; 2 cores drain one simulated H100 at ~13.5 requests/s (time
scale 1), and at 20,000 the baselines of 4 or 8 fixed pods collapse and run to their deadline, so
the matrix there takes about 7 hours: `--burst-requests 20000` a few configurations at a time
(`--burst-configs`; `merge` keeps the others), or on 8 cores or more."""
TIME_SCALE = 1.0
"""On 2 cores the host keeps up with one simulated H100 at time scale 1 (14.6 requests/s), not 5."""
CONFIGS = tuple((replicas, workers) for replicas in (1, 2) for workers in (1, 4, 8))
"""(vLLM replicas, worker processes) of the bursts: 1 and 2 replicas, 1, 4 and 8 pods."""
RESTART_CONFIGS = ((1, 4),)
CALIBRATION = Calibration.published()
WORKER_CONCURRENCY = 2 * CALIBRATION.max_num_seqs
"""Every pod's ceiling: two batches, so one pod can fill both replicas (the gate keeps what is
in flight to what vLLM takes; at one batch, 1 pod x 2 replicas drained in 1.28 x the ideal,
batch fill 0.42). With the gate off it is every pod's fixed number of calls, today's worker."""
CLIENT_TIMEOUT_S = 60.0
OUTAGE_S = 300.0
LOAD_S = 120.0
MODEL = "sim-7b"
SAMPLE_EVERY_S = 0.25


SQS_EMULATORS = {"fauxqs": fauxqs, "moto": emulator}
"""The queue's emulator by name; moto's calls slow down with the queue's depth (22.7 s a
SendMessageBatch at 20,000 deep), fauxqs's do not."""


@dataclass(frozen=True)
class BurstSetup:
    """What a burst's runs share, whichever engine serves them."""

    requests: int
    time_scale: float
    max_num_seqs: int
    worker_concurrency: int
    client_timeout_s: float
    model: str
    ideal: Callable[[float, float, int], float]
    """(output tokens, prompt tokens, replicas) of the completed requests → the least time the
    engines need for them, in the engine's own token counts."""
    expected_tokens: tuple[float, float]
    """Output and prompt tokens of one request, roughly: the deadline's size."""
    worker_settings: tuple[tuple[str, str], ...] = ()
    """More of the workers' environment (LLM_MAX_TOKENS, say)."""


def simulated(options: "BurstOptions") -> BurstSetup:
    """The simulated burst: the published 7B/H100 calibration, 60 s client timeout."""
    return BurstSetup(
        requests=options.requests,
        time_scale=options.time_scale,
        max_num_seqs=CALIBRATION.max_num_seqs,
        worker_concurrency=WORKER_CONCURRENCY,
        client_timeout_s=CLIENT_TIMEOUT_S,
        model=MODEL,
        ideal=CALIBRATION.ideal_seconds,
        expected_tokens=(225, 450),
    )


@dataclass(frozen=True)
class BurstOptions:
    requests: int = REQUESTS
    time_scale: float = TIME_SCALE
    sqs: str = "fauxqs"
    configs: tuple[tuple[int, int], ...] = CONFIGS
    restart_configs: tuple[tuple[int, int], ...] = RESTART_CONFIGS


@dataclass(frozen=True)
class BurstRun:
    replicas: int
    workers: int
    gate: bool
    restart: bool
    measured: str
    """The commit and day of the run ("dbec146 2026-12-04"): other days' runs stay (`merge`)."""
    requests: int
    delivered: int
    complete: bool
    drain_s: float
    ideal_s: float
    drain_ratio: float
    batch_fill: float
    waiting_p50: float
    waiting_max: int
    client_timeouts: int
    wasted_ratio: float
    extra_llm_calls: int
    dlq: int
    latency_p50_s: float
    latency_p99_s: float


@dataclass(frozen=True)
class Burst:
    requests: int
    time_scale: float
    sqs: str
    max_num_seqs: int
    worker_concurrency: int
    runs: list[BurstRun]


def run(options: BurstOptions, measured: str) -> Burst:
    scenarios = [(config, False) for config in options.configs] + [
        (config, True) for config in options.restart_configs
    ]
    setup = simulated(options)
    runs = []
    with SQS_EMULATORS[options.sqs](f"{options.sqs}-burst") as aws, callback_receiver() as callback:
        for (replicas, workers), restart in scenarios:
            for gate in (True, False):
                label = (replicas, workers, gate, restart)
                with simulators(replicas, options.time_scale) as sims:
                    runs.append(measure(aws, callback, setup, label, measured, sims))
    return Burst(
        requests=options.requests,
        time_scale=options.time_scale,
        sqs=options.sqs,
        max_num_seqs=CALIBRATION.max_num_seqs,
        worker_concurrency=WORKER_CONCURRENCY,
        runs=runs,
    )


@dataclass
class Engines:
    """The replicas (real vLLM or simulators), reached by the workers through one address (the
    Service); `controls`, the simulators' control ports (a restart), empty for real vLLM."""

    url: str
    apis: list[str]
    controls: list[str] = field(default_factory=list)

    def reading(self) -> EngineReading:
        """Every replica's /metrics, summed; a transport error while one is down."""
        return total(
            engine_reading(httpx.get(f"{api}/metrics", timeout=10).text) for api in self.apis
        )

    def reading_if_up(self) -> EngineReading | None:
        """`reading`, or None while a replica is down (the restart's outage: the API port
        closed)."""
        try:
            return self.reading()
        except httpx.TransportError:
            return None

    def control(self, **change: Any) -> None:
        for control_url in self.controls:
            SimulatedLlm(control_url).control(**change)


@contextmanager
def simulators(
    replicas: int, time_scale: float, *options: str, model: str = MODEL
) -> Iterator[Engines]:
    """`replicas` simulators (`options` go to each: `--calibration fit.json`, say)."""
    with ExitStack() as stack:
        ports, controls = [], []
        for number in range(replicas):
            port, control = free_port(), free_port()
            sim = process(
                f"vllm-sim-{number}",
                "devstack.fakes.llm",
                *("--port", str(port), "--control-port", str(control)),
                *("--time-scale", str(time_scale), "--seed", str(number), "--model", model),
                *options,
                ready_path="/health",
                port=port,
            )
            stack.enter_context(running(sim))
            ports.append(port)
            controls.append(f"http://127.0.0.1:{control}")
        url = stack.enter_context(service(ports))
        yield Engines(url, [f"http://127.0.0.1:{port}" for port in ports], controls)


@contextmanager
def service(ports: list[int]) -> Iterator[str]:
    """The one address the workers call: the replica itself, or bench/round_robin_proxy.py."""
    if len(ports) == 1:
        yield f"http://127.0.0.1:{ports[0]}"
        return
    proxy_port = free_port()
    proxy = process(
        "vllm-service",
        "bench.round_robin_proxy",
        "--port",
        str(proxy_port),
        *(arg for port in ports for arg in ("--backend", str(port))),
        ready_path="/health",
        port=proxy_port,
    )
    with running(proxy):
        yield f"http://127.0.0.1:{proxy_port}"


def burst_worker_env(
    aws: Emulator,
    callback: Receiver,
    queues: FeedbackQueues,
    llm_url: str,
    gate: bool,
    setup: BurstSetup,
) -> dict[str, str]:
    scale = setup.time_scale
    return worker_env(
        aws,
        queues,
        callback,
        f"{llm_url}/v1",
        setup.model,
        LLM_TIMEOUT_SECONDS=str(setup.client_timeout_s / scale),
        WORKER_CONCURRENCY=str(setup.worker_concurrency),
        LLM_GATE_ENABLED="true" if gate else "false",
        # One line per request would cost the 2-core machine more than the work itself.
        LOG_LEVEL="WARNING",
        # One poll per real second of a GPU, whatever the time scale.
        LLM_CAPACITY_POLL_SECONDS=str(max(0.1, 1.0 / scale)),
        **dict(setup.worker_settings),
    )


def measure(
    aws: Emulator,
    callback: Receiver,
    setup: BurstSetup,
    label: tuple[int, int, bool, bool],
    measured: str,
    engines: Engines,
) -> BurstRun:
    """One run: (replicas, workers, gate, restart) of `label`, on fresh queues and workers."""
    replicas, workers, gate, restart = label
    scale, total_requests = setup.time_scale, setup.requests
    name = f"{replicas}r{workers}w{'-gate' if gate else ''}{'-restart' if restart else ''}"
    sqs, queues = queued_burst(aws, callback, name, total_requests)
    env = burst_worker_env(aws, callback, queues, engines.url, gate, setup)
    start = engines.reading()
    with burst_workers(f"burst-{name}", env, workers) as metrics_ports:
        started = time.time()
        samples = Sampler(engines.reading_if_up, total_requests, replicas * setup.max_num_seqs)
        deadline_s = drain_deadline_s(setup, replicas) + (OUTAGE_S + LOAD_S) / scale * restart
        outage = Outage(engines, scale) if restart else None
        wait_drained(callback, sqs, queues, total_requests, samples, deadline_s, outage)
        end = engines.reading()
        attempts = [worker_attempts(port) for port in metrics_ports]
    deliveries = httpx.get(f"{callback.url}/deliveries", timeout=60).json()
    return figures(
        label=label,
        measured=measured,
        setup=setup,
        engine=end - start,
        attempts=attempts,
        started=started,
        deliveries=deliveries,
        samples=samples,
        dlq=dlq_count(sqs, queues.dead_letters),
    )


def drain_deadline_s(setup: BurstSetup, replicas: int) -> float:
    """Real seconds a burst may take: three times its ideal, two minutes more."""
    output, prompt = setup.expected_tokens
    requests = setup.requests
    return 3 * setup.ideal(requests * output, requests * prompt, replicas) / setup.time_scale + 120


def wait_drained(
    callback: Receiver,
    sqs: "SQSClient",
    queues: FeedbackQueues,
    total_requests: int,
    samples: "Sampler",
    deadline_s: float,
    outage: "Outage | None" = None,
) -> None:
    """Until every request is delivered or dead-lettered, sampling the engines every
    SAMPLE_EVERY_S (and stopping and starting them for the restart's `outage`). Past the
    deadline it returns too: the figures then say what was delivered, no crash."""

    def finished() -> bool:
        delivered = delivered_count(callback)
        samples.take(delivered)
        if outage is not None:
            outage.maybe(delivered, total_requests)
        return delivered + dlq_count(sqs, queues.dead_letters) >= total_requests

    with contextlib.suppress(AssertionError):
        wait_until(finished, deadline_s, "the burst", every=SAMPLE_EVERY_S)


def queued_burst(
    aws: Emulator, callback: Receiver, name: str, requests: int
) -> tuple["SQSClient", FeedbackQueues]:
    """Fresh queues for the run `name` with every request on them at once (the burst), and
    the receiver emptied."""
    sqs = aws.sqs()
    queues = fresh_queues(sqs, name)
    fill(sqs, queues.requests, range(1, requests + 1))
    httpx.post(f"{callback.url}/reset").raise_for_status()
    return sqs, queues


@contextmanager
def burst_workers(name: str, env: dict[str, str], workers: int) -> Iterator[list[int]]:
    """`workers` worker processes on `env`, each with a metrics port of its own; yields those
    ports once the first worker is past its start-up checks, and stops them all at the end.

    A burst's clock starts then: a worker's process start (seconds here, times the time scale)
    is not the GPU's drain, and vLLM is up at the start too (the restart scenario has its
    start)."""
    with ExitStack() as stack:
        metrics_ports = [free_port() for _ in range(workers)]
        for n, port in enumerate(metrics_ports):
            env_n = env | {"METRICS_PORT": str(port)}
            stack.enter_context(running(process(f"{name}-{n}", "feedback_worker", env=env_n)))
        wait_until(lambda: any(map(worker_ready, metrics_ports)), 120, f"the {name} workers")
        yield metrics_ports


def worker_attempts(metrics_port: int) -> WorkerReading:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return worker_reading(text)


def worker_ready(metrics_port: int) -> bool:
    """Past its start-up checks: the worker has set its in-flight limit."""
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
    except httpx.TransportError:
        return False
    return any(
        sample.value > 0
        for family in text_string_to_metric_families(text)
        if family.name == "feedback_worker_llm_limit"
        for sample in family.samples
    )


class Sampler:
    """vLLM's running batch and waiting queue, every SAMPLE_EVERY_S, while a backlog lasts.

    `read` gives the replicas' summed reading, or None while one is down; the fleet
    simulation's validation (bench/fleet/validation.py) samples its model with this class too,
    so both compute batch fill the same way."""

    def __init__(
        self, read: Callable[[], EngineReading | None], total_requests: int, slots: int
    ) -> None:
        self._read, self._total, self._slots = read, total_requests, slots
        self.fill: list[float] = []
        self.waiting: list[int] = []

    def take(self, delivered: int) -> None:
        if self._total - delivered <= self._slots:
            return  # the tail: fewer left than one full batch per replica
        reading = self._read()
        if reading is None:
            return  # the restart's outage is not a batch to fill
        self.fill.append(reading.running / self._slots)
        self.waiting.append(reading.waiting)

    @property
    def batch_fill(self) -> float:
        """The mean running batch ÷ the replicas' slots over the samples (0 without any)."""
        return round(sum(self.fill) / len(self.fill), 3) if self.fill else 0.0


class Outage:
    """Half-way through the burst every replica stops for OUTAGE_S, then loads for LOAD_S."""

    def __init__(self, engines: Engines, scale: float) -> None:
        self._engines, self._scale = engines, scale
        self._stopped_at: float | None = None
        self._restarted = False

    @staticmethod
    def due(delivered: int, total_requests: int) -> bool:
        """Half-way: when the replicas stop (the fleet simulation's validation reads it too)."""
        return delivered >= total_requests // 2

    def maybe(self, delivered: int, total_requests: int) -> None:
        if self._stopped_at is None and self.due(delivered, total_requests):
            self._engines.control(action="stop")
            self._stopped_at = time.monotonic()
        elif (
            self._stopped_at is not None
            and not self._restarted
            and time.monotonic() - self._stopped_at >= OUTAGE_S / self._scale
        ):
            self._engines.control(action="start", load_s=LOAD_S)
            self._restarted = True


def delivered_count(callback: Receiver) -> int:
    accepted: int = httpx.get(f"{callback.url}/stats", timeout=10).json()["accepted"]
    return accepted


def dlq_count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def figures(
    label: tuple[int, int, bool, bool],
    measured: str,
    setup: BurstSetup,
    engine: EngineReading,
    attempts: list[WorkerReading],
    started: float,  # Unix seconds of the burst, the callbacks' `received_at` clock
    deliveries: list[dict[str, Any]],
    samples: Sampler,
    dlq: int,
) -> BurstRun:
    """`engine`: what the engines did during the run (the end's reading less the start's);
    `attempts`: each worker's LLM attempts."""
    replicas, workers, gate, restart = label
    scale = setup.time_scale
    accepted = [d for d in deliveries if d["status"] == 200]
    latencies = sorted((d["received_at"] - started) * scale for d in accepted)
    ideal = ideal_seconds(setup.ideal, engine, replicas, restart)
    drain = latencies[-1] if latencies else math.nan
    generated = engine.generation_tokens
    return BurstRun(
        replicas=replicas,
        workers=workers,
        gate=gate,
        restart=restart,
        measured=measured,
        requests=setup.requests,
        delivered=len(accepted),
        complete=len(accepted) == setup.requests,
        drain_s=round(drain, 1),
        ideal_s=round(ideal, 1),
        drain_ratio=round(drain / ideal, 3) if ideal else math.nan,
        batch_fill=samples.batch_fill,
        waiting_p50=percentile([float(w) for w in samples.waiting], 50) if samples.waiting else 0,
        waiting_max=max(samples.waiting, default=0),
        client_timeouts=sum(a.timed_out for a in attempts),
        wasted_ratio=round(engine.wasted_tokens / generated, 4) if generated else 0.0,
        extra_llm_calls=max(0, sum(a.attempts for a in attempts) - len(accepted)),
        dlq=dlq,
        latency_p50_s=round(percentile(latencies, 50), 1) if latencies else math.nan,
        latency_p99_s=round(percentile(latencies, 99), 1) if latencies else math.nan,
    )


def ideal_seconds(
    ideal: Callable[[float, float, int], float],
    engine: EngineReading,
    replicas: int,
    restart: bool,
) -> float:
    """The replicas' capacity-bound least time for the requests they completed (`ideal`: every
    step a full batch); the restart adds its outage and load time, in which nothing can run."""
    completed = ideal(engine.completed_output_tokens, engine.completed_prompt_tokens, replicas)
    return completed + (OUTAGE_S + LOAD_S) * restart


SIZE = ("requests", "time_scale", "sqs", "max_num_seqs", "worker_concurrency")
"""What makes two runs comparable: a run of another size replaces every earlier one."""


def merge(previous: dict[str, Any] | None, latest: dict[str, Any]) -> dict[str, Any]:
    """`latest`'s runs, and `previous`'s runs of other configurations at the same size.

    A burst of 20,000 takes 12-25 minutes a run on 2 cores, so its matrix is measured a few
    configurations at a time (`--burst-configs`); each run keeps its commit and day, and each
    gate run sits beside the baseline measured right after it."""
    if previous is None or any(previous.get(key) != latest[key] for key in SIZE):
        return latest

    def config(run: dict[str, Any]) -> tuple[bool, int, int]:
        return run["restart"], run["replicas"], run["workers"]

    rerun = {config(run) for run in latest["runs"]}
    kept = [run for run in previous["runs"] if config(run) not in rerun]
    runs = sorted(kept + latest["runs"], key=lambda run: (*config(run), not run["gate"]))
    return latest | {"runs": runs}


FIGURE_COLUMNS = (
    "| delivered | drain s | ideal s | drain ÷ ideal | batch fill | waiting p50 / max "
    "| client timeouts | wasted ÷ generated | extra LLM calls | DLQ "
    "| accepted→delivered p50 / p99 s | measured |"
)
FIGURE_ALIGN = "---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"


def figure_cells(r: dict[str, Any]) -> str:
    """One run's figures, the columns of FIGURE_COLUMNS (the simulated and the real burst)."""
    return (
        f"| {r['delivered']}/{r['requests']} "
        f"| {r['drain_s']:.0f} | {r['ideal_s']:.0f} | {r['drain_ratio']:.2f} "
        f"| {r['batch_fill']:.2f} | {r['waiting_p50']:.0f} / {r['waiting_max']} "
        f"| {r['client_timeouts']} | {100 * r['wasted_ratio']:.2f} % "
        f"| {r['extra_llm_calls']} | {r['dlq']} "
        f"| {r['latency_p50_s']:.0f} / {r['latency_p99_s']:.0f} | {r.get('measured', '')} |"
    )


def table(b: dict[str, Any]) -> str:
    lines = [
        f"### 5. Weekly burst ({b['requests']} requests at once, time scale {b['time_scale']}, "
        f"max_num_seqs {b['max_num_seqs']}, WORKER_CONCURRENCY {b['worker_concurrency']}, "
        f"SQS: {b.get('sqs', 'moto')})\n",
        "| vLLM | workers | scenario | gate " + FIGURE_COLUMNS,
        "|---:|---:|---|---|" + FIGURE_ALIGN,
    ]
    for r in b["runs"]:
        lines.append(
            f"| {r['replicas']} | {r['workers']} | {'restart' if r['restart'] else 'burst'} "
            f"| {'on' if r['gate'] else 'off (baseline)'} " + figure_cells(r)
        )
    lines.append(
        "\nTargets: drain ≤ 1.1 x ideal, batch fill ≥ 0.9, 0 client timeouts, 0 DLQ, wasted "
        "< 1 %; restart: 0 DLQ, all delivered, drain ≤ ideal + outage + 10 %.\n"
    )
    return "\n".join(lines)
