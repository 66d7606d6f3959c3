"""The fleet on a SimPy clock: the queue, worker pods, vLLM replicas, their nodes and the Service.

Each part reuses the project's own code where it exists:
- a vLLM replica is the simulator's `Engine` (tools/devstack/src/devstack/fakes/llm/engine.py:
  continuous batching, `--max-num-seqs`, the KV budget, the step law `a + b x running +
  prefill`), stepped by a SimPy process instead of the simulator's asyncio loop;
- a worker pod's in-flight limit is feedback_worker.llm_gate's `next_limit`, fed every
  LLM_CAPACITY_POLL_SECONDS with the running and waiting counts of the replica its poll reaches,
  and its gate closes on a failed call and probes with the gate's own backoff
  (feedback_worker.backoff, PROBE_BASE_SECONDS to PROBE_MAX_SECONDS);
- connections expire after the worker's IDLE_EXPIRY_SECONDS (feedback_worker/http_clients.py).

What is simplified, and why it does not move the fleet's figures much:
- the gate's TRIAL state is one probe: a probe that finds a ready replica opens the gate in slow
  start (the trial call would go to that ready replica);
- no LLM timeouts: with the gate on, vLLM's queue stays near LLM_TARGET_WAITING per replica and
  the burst bench measured 0 client timeouts (docs/benchmarks.md, section 5);
- a receive is instantaneous and takes only what the pod can start (WORKER_PREFETCH hides a
  receive's few milliseconds; the fleet's times are seconds to hours), and delivery after the
  answer is instantaneous (12 ms p50 measured, docs/benchmarks.md "Reading them");
- visibility: the worker's heartbeat renews a held message's visibility every third of
  VISIBILITY_TIMEOUT_SECONDS (feedback_worker/heartbeat.py), so a message comes back only from a
  pod that is lost, a visibility timeout after its last renewal; a pod scaled in finishes its
  calls first (DRAIN_GRACE_SECONDS 30 s is longer than a call at a full batch, ~225 steps x 77 ms
  = 17 s) and hands back the messages it held for a closed gate;
- worker nodes are there (CPU pods start in `worker_start_s`); GPU nodes are provisioned.
"""

import math
import random
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import simpy
from devstack.fakes.llm.engine import Calibration, Engine, OutputLengths, Sequence
from feedback_worker.backoff import backoff_delay
from feedback_worker.http_clients import IDLE_EXPIRY_SECONDS
from feedback_worker.llm_gate import (
    PROBE_BASE_SECONDS,
    PROBE_MAX_SECONDS,
    Capacity,
    learnt_batch,
    next_limit,
    next_limit_over_replicas,
)
from feedback_worker.startup import LLM_WAIT_MAX_SECONDS, RETRY_BASE_SECONDS

from bench.fleet.chart import ChartFigures, consolidate_after_s

WEEK_BOUNDARY = datetime(2026, 12, 7, tzinfo=ZoneInfo("Asia/Seoul"))
"""The clock's 0: the week's boundary, a Monday 00:00 in the backend's time zone (docs/
configuration.md, `TZ`), when the backend asks for every member's feedback. Only a pre-warm
window (`vllm.autoscaling.prewarm`, cron in its own time zone) reads the date."""
PROMPT_TOKENS = 450
"""The feedback prompt is 300-600 tokens (tools/devstack/src/devstack/fakes/llm/engine.py,
`prompt_tokens`): the middle, as `Calibration.published`'s `mean_prompt_tokens` takes it."""


@dataclass(frozen=True)
class Delays:
    """How long each step of bringing capacity up takes, in seconds; the sources are in
    docs/benchmarks.md, "The fleet simulation", one line each."""

    node_provision_s: float = 120.0
    """A GPU node from the request (a pending vLLM pod) to a Ready node."""
    image_pull_s: float = 90.0
    """vllm/vllm-openai onto a new node (skipped on a node that ran vLLM before)."""
    vllm_start_s: float = 39.0
    """vLLM's own start for an 8B model with torch.compile (14 s without)."""
    weight_load_s: float = 30.0
    """15 GB of weights from the gp3 model cache (docs/deploying.md: ~30 s at 500 MB/s)."""
    worker_start_s: float = 10.0
    """A worker pod on a CPU node that is there: scheduling, a cached image, Python's start."""
    node_release_s: float = field(default_factory=consolidate_after_s)
    """An empty GPU node stays (and is paid) this long before it is removed: the node pool's
    `consolidateAfter` (k8s/cluster/gpu-node-pool.karpenter.yaml)."""


class Balancing(StrEnum):
    CONNECTION = "connection"
    """kube-proxy: a new connection goes to a ready endpoint at random; a kept-alive connection
    stays on its replica until it is idle IDLE_EXPIRY_SECONDS."""
    REQUEST = "request"
    """An L7 balancer: each call to the next ready replica in turn."""
    REPLICA = "replica"
    """The worker's own (LLM_REPLICAS, feedback_worker/replicas.py): each poll reads every
    ready replica, and each call goes to the one with the least running + waiting + calls the
    pod sent it since; the gate's law over all the readings (`next_limit_over_replicas`)."""


@dataclass(slots=True)
class Message:
    accepted_s: float
    receives: int = 0
    received_s: float = math.nan
    delivered_s: float = math.nan


class Queue:
    """The SQS FIFO queue as KEDA and the workers see it (one message per member: no group
    waits behind another)."""

    def __init__(self) -> None:
        self.visible: deque[Message] = deque()
        self.in_flight = 0

    @property
    def depth(self) -> int:
        """Visible + in flight: what the ScaledObjects count (scaleOnInFlight true)."""
        return len(self.visible) + self.in_flight

    def receive(self, now: float) -> Message | None:
        if not self.visible:
            return None
        message = self.visible.popleft()
        message.receives += 1
        message.received_s = now
        self.in_flight += 1
        return message

    def give_back(self, message: Message) -> None:
        self.in_flight -= 1
        self.visible.appendleft(message)


@dataclass
class Node:
    """A GPU node: paid from its launch to its removal."""

    launched_s: float
    removed_s: float | None = None
    idle_since: float | None = None


class ReplicaState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    GONE = "gone"


@dataclass(slots=True, eq=False)
class Call:
    message: Message
    pod: "Pod"
    connection: "Connection"
    sequence: Sequence | None = None


class Replica:
    """A vLLM pod: the simulator's engine stepped on the SimPy clock once it is Ready."""

    def __init__(self, fleet: "Fleet", node: Node, fresh_node: bool) -> None:
        self.fleet = fleet
        self.node = node
        self.state = ReplicaState.STARTING
        seed = fleet.rng.randrange(2**32)
        self.engine = Engine(fleet.calibration, seed=seed, lengths=fleet.lengths)
        self.calls: dict[int, Call] = {}
        self._wake = fleet.env.event()
        self._serving: simpy.Process | None = None
        fleet.env.process(self._start(fresh_node))

    @property
    def capacity(self) -> Capacity:
        return Capacity(len(self.engine.running), len(self.engine.waiting))

    def submit(self, call: Call) -> None:
        self.engine.idle(self.fleet.env.now - self.engine.now_s)
        call.sequence = self.engine.submit(PROMPT_TOKENS, self.fleet.chart.worker.max_tokens)
        self.calls[call.sequence.number] = call
        if not self._wake.triggered:
            self._wake.succeed()

    def disconnect(self, call: Call) -> None:
        """The client went away: vLLM aborts its request."""
        if call.sequence is not None and self.calls.pop(call.sequence.number, None) is call:
            self.engine.abort(call.sequence)

    def stop(self) -> None:
        """SIGTERM or a lost node: vLLM aborts what it runs (its --shutdown-timeout 0, the
        LLM gate's docstring) and every call on it fails."""
        self.state = ReplicaState.GONE
        self.engine.abort_all()
        if not self._wake.triggered:
            self._wake.succeed()  # an idle serving loop sees the state and ends
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.pod.failed(call)

    def restart(self, down_s: float) -> None:
        """A Ready replica stopped and started again on its node (the burst bench's restart,
        bench/burst.py `Outage`): its calls fail now, and it is Ready again `down_s` later with
        the same engine, as the simulator's stop and start keep it."""
        self.stop()
        self.state = ReplicaState.STARTING
        self.fleet.env.process(self._ready_after(down_s))

    def _ready_after(self, down_s: float) -> Generator[simpy.Event, Any, None]:
        yield self.fleet.env.timeout(down_s)
        if self._serving is not None and self._serving.is_alive:
            yield self._serving  # the step it was in when stopped ends first
        if self.state is ReplicaState.STARTING:
            self._ready()

    def _start(self, fresh_node: bool) -> Generator[simpy.Event, Any, None]:
        delays = self.fleet.delays
        env = self.fleet.env
        if fresh_node:
            yield env.timeout(delays.node_provision_s + delays.image_pull_s)
        started = env.now
        yield env.timeout(delays.vllm_start_s + delays.weight_load_s)
        period = self.fleet.chart.startup_probe_period_s
        probes = math.ceil((env.now - started) / period)
        yield env.timeout(started + probes * period - env.now)
        if self.state is ReplicaState.GONE:
            return
        self._ready()

    def _ready(self) -> None:
        self.state = ReplicaState.READY
        self._serving = self.fleet.env.process(self._serve())
        self.fleet.workers.fill()

    def _serve(self) -> Generator[simpy.Event, Any, None]:
        env = self.fleet.env
        while self.state is ReplicaState.READY:
            if not self.engine.has_work():
                self._wake = env.event()
                yield self._wake
                continue
            self.engine.idle(env.now - self.engine.now_s)
            duration, finished = self.engine.step()
            yield env.timeout(duration)
            if self.state is not ReplicaState.READY:
                return  # stopped during the step: its calls have failed already
            for sequence in finished:
                # A call whose pod was lost during the step is no longer here: its answer is lost.
                call = self.calls.pop(sequence.number, None)
                if call is not None:
                    call.pod.answered(call)


class VllmPool:
    """vLLM's Deployment: replicas on GPU nodes, a replacement for a lost one."""

    def __init__(self, fleet: "Fleet") -> None:
        self.fleet = fleet
        self.live: list[Replica] = []
        self.retired: list[Replica] = []
        self.nodes: list[Node] = []

    @property
    def replicas(self) -> int:
        return len(self.live)

    def ready(self) -> list[Replica]:
        return [r for r in self.live if r.state is ReplicaState.READY]

    def scale_to(self, replicas: int) -> None:
        while len(self.live) < replicas:
            self._add()
        while len(self.live) > replicas:
            self._retire(self.live[-1], keep_node=True)  # the newest goes first

    def lose(self, replica: Replica) -> None:
        """The replica's node is gone (a spot reclaim, a hardware fault): the Deployment
        replaces the pod at once, on a new node."""
        self._retire(replica, keep_node=False)
        self._add()

    def _add(self) -> None:
        env = self.fleet.env
        idle = [n for n in self.nodes if n.idle_since is not None and n.removed_s is None]
        if idle:
            node, fresh = idle[0], False
            node.idle_since = None
        else:
            node, fresh = Node(launched_s=env.now), True
            self.nodes.append(node)
        self.live.append(Replica(self.fleet, node, fresh))

    def _retire(self, replica: Replica, keep_node: bool) -> None:
        self.live.remove(replica)
        self.retired.append(replica)
        replica.stop()
        env = self.fleet.env
        if keep_node:
            replica.node.idle_since = env.now
            env.process(self._release(replica.node))
        else:
            replica.node.removed_s = env.now
        self.fleet.workers.fill()

    def _release(self, node: Node) -> Generator[simpy.Event, Any, None]:
        since = node.idle_since
        yield self.fleet.env.timeout(self.fleet.delays.node_release_s)
        if node.idle_since == since:  # not taken by a new replica meanwhile
            node.removed_s = self.fleet.env.now

    def engines(self) -> list[Engine]:
        return [r.engine for r in (*self.retired, *self.live)]


@dataclass
class Connection:
    replica: Replica
    generation: int
    """The pod's pool it belongs to: requests take only the current one's."""
    idle_since: float = 0.0


class PodState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    GONE = "gone"


class Pod:
    """A worker pod: the LLM gate's limit and state, its connections, the calls it makes."""

    def __init__(self, fleet: "Fleet") -> None:
        self.fleet = fleet
        worker = fleet.chart.worker
        self.state = PodState.STARTING
        self.limit = max(1, min(worker.concurrency, worker.start_limit))
        self.slow_start = True
        self.gate_open = True
        self.in_flight = 0
        self.calls: set[Call] = set()
        self.running_since = math.nan
        """When its heartbeat began: it renews every third of the visibility timeout from then."""
        self.held: deque[Message] = deque()
        """Messages whose call failed: they wait for the gate (feedback_worker/handler.py)."""
        self.idle: list[Connection] = []
        self.readings: dict[Replica, Capacity] = {}
        """Balancing.REPLICA: every replica's reading at the last poll."""
        self.sent: dict[Replica, int] = {}
        """Balancing.REPLICA: calls sent to each replica since its reading."""
        self.batch = 0.0
        """Balancing.REPLICA: the largest batch seen full (`learnt_batch`)."""
        self._failed_probes = 0
        self._poll_connection: Connection | None = None
        fleet.env.process(self._start())

    def fill(self) -> None:
        """Start calls while the gate is open and the limit allows: held messages first."""
        if self.state is not PodState.RUNNING or not self.gate_open:
            return
        allowed = min(self.fleet.chart.worker.concurrency, self.limit)
        now = self.fleet.env.now
        while self.in_flight < allowed:
            message = self.held.popleft() if self.held else self.fleet.queue.receive(now)
            if message is None:
                return
            connection = self._connection()
            if connection is None:
                self.held.appendleft(message)
                self._close_gate()
                return
            self.in_flight += 1
            call = Call(message, self, connection)
            self.calls.add(call)
            connection.replica.submit(call)

    def answered(self, call: Call) -> None:
        env = self.fleet.env
        call.message.delivered_s = env.now
        self.fleet.queue.in_flight -= 1
        self.fleet.delivered += 1
        self.in_flight -= 1
        self.calls.discard(call)
        call.connection.idle_since = env.now
        self.idle.append(call.connection)
        self._after_call()

    def failed(self, call: Call) -> None:
        """The replica went away under the call: the message waits here for the gate (or, in
        a pod being scaled in, goes back to the queue)."""
        self.in_flight -= 1
        self.calls.discard(call)
        if self.state is PodState.DRAINING:
            self.fleet.queue.give_back(call.message)
        else:
            self.held.append(call.message)
            self._close_gate()
        self._after_call()

    def drain(self) -> None:
        """Scaled in: no more receives; held messages go back to the queue."""
        self.state = PodState.DRAINING
        while self.held:
            self.fleet.queue.give_back(self.held.pop())
        self._after_call()

    def lose(self) -> None:
        """The pod is gone at once (its node failed): its calls are disconnected, and every
        message it held comes back a visibility timeout after its last renewal."""
        self.state = PodState.GONE
        for call in self.calls:
            call.connection.replica.disconnect(call)
        messages = [call.message for call in self.calls] + list(self.held)
        self.calls.clear()
        self.held.clear()
        self.in_flight = 0
        self.fleet.env.process(self._visible_again(messages))

    def _visible_again(self, messages: list[Message]) -> Generator[simpy.Event, Any, None]:
        env = self.fleet.env
        timeout = self.fleet.chart.worker.visibility_timeout_s
        renewed = self.running_since + (env.now - self.running_since) // (timeout / 3) * (
            timeout / 3
        )
        for message in sorted(messages, key=lambda m: max(m.received_s, renewed)):
            yield env.timeout(max(0.0, max(message.received_s, renewed) + timeout - env.now))
            self.fleet.queue.give_back(message)
            self.fleet.workers.fill()

    def _after_call(self) -> None:
        if self.state is PodState.DRAINING and self.in_flight == 0:
            self.state = PodState.GONE
        else:
            self.fill()

    def _connection(self) -> Connection | None:
        """A kept-alive connection if one is idle, fresh and of the current pool, else a new
        one (Balancing)."""
        fleet = self.fleet
        if fleet.balancing is Balancing.REQUEST:
            return self._connect(fleet.next_replica())
        if fleet.balancing is Balancing.REPLICA and (chosen := self._least_loaded()):
            self.sent[chosen] = self.sent.get(chosen, 0) + 1
            return self._connect(chosen)
        now, generation = fleet.env.now, self._generation()
        self.idle = [
            c
            for c in self.idle
            if c.replica.state is ReplicaState.READY
            and now - c.idle_since < IDLE_EXPIRY_SECONDS
            and c.generation == generation
        ]
        if self.idle:
            return self.idle.pop(0)  # httpcore takes the first available connection
        return self._connect(fleet.random_replica())

    def _least_loaded(self) -> "Replica | None":
        """feedback_worker/replicas.py's choice among the replicas read at the last poll that
        are still ready (None before the first reading: the call takes the Service)."""
        ready = [r for r in self.readings if r.state is ReplicaState.READY]
        if not ready:
            return None
        return min(
            ready,
            key=lambda r: self.readings[r].running + self.readings[r].waiting + self.sent[r],
        )

    def _connect(self, replica: Replica | None) -> Connection | None:
        return Connection(replica, self._generation()) if replica is not None else None

    def _generation(self) -> int:
        """The worker's transport starts a new pool every LLM_CONNECTION_MAX_AGE_SECONDS
        (feedback_worker/http_clients.py, AttemptTransport)."""
        return math.floor(self.fleet.env.now / self.fleet.chart.worker.connection_max_age_s)

    def _close_gate(self) -> None:
        if self.gate_open:
            self.gate_open = False
            self.fleet.env.process(self._probe())

    def _probe(self) -> Generator[simpy.Event, Any, None]:
        while True:
            self._failed_probes += 1
            yield self.fleet.env.timeout(
                backoff_delay(self._failed_probes, PROBE_BASE_SECONDS, PROBE_MAX_SECONDS)
            )
            if self.state is PodState.GONE or self.fleet.vllm.ready():
                break
        self._failed_probes = 0
        self.gate_open = True
        self.limit = max(self.limit, self.fleet.chart.worker.start_limit)
        self.slow_start = True
        self.fill()

    def _start(self) -> Generator[simpy.Event, Any, None]:
        """Its start, then its start-up check's wait for a ready vLLM replica (a replica's pods
        start during its cold start, feedback_worker/startup.py)."""
        env = self.fleet.env
        yield env.timeout(self.fleet.delays.worker_start_s)
        tries = 0
        while self.state is PodState.STARTING and not self.fleet.vllm.ready():
            tries += 1
            yield env.timeout(backoff_delay(tries, RETRY_BASE_SECONDS, LLM_WAIT_MAX_SECONDS))
        if self.state is PodState.STARTING:
            self.state = PodState.RUNNING
            self.running_since = self.fleet.env.now
            self.fleet.env.process(self._follow_capacity())
            self.fill()

    def _follow_capacity(self) -> Generator[simpy.Event, Any, None]:
        worker = self.fleet.chart.worker
        while self.state is PodState.RUNNING:
            yield self.fleet.env.timeout(worker.gate_poll_s)
            if not self.gate_open or self.state is not PodState.RUNNING:
                continue
            if self.fleet.balancing is Balancing.REPLICA:
                self._read_every_replica()
                continue
            replica = self._polled_replica()
            if replica is None:
                self._close_gate()
                continue
            self.limit, self.slow_start = next_limit(
                self.limit, self.in_flight, replica.capacity, worker.target_waiting, self.slow_start
            )
            self.fill()

    def _read_every_replica(self) -> None:
        ready = self.fleet.vllm.ready()
        if not ready:
            self._close_gate()
            return
        self.readings = {r: r.capacity for r in ready}
        self.sent = dict.fromkeys(ready, 0)
        readings = list(self.readings.values())
        self.batch = learnt_batch(readings, self.batch)
        self.limit, self.slow_start = next_limit_over_replicas(
            self.limit,
            self.in_flight,
            readings,
            self.fleet.chart.worker.target_waiting,
            self.slow_start,
            self.batch,
        )
        self.fill()

    def _polled_replica(self) -> Replica | None:
        """The gate's poll every second keeps its own connection alive, so it reads one
        replica until that one goes away or the connection ages out (per-connection
        balancing)."""
        polled = self._poll_connection
        if (
            polled is None
            or polled.replica.state is not ReplicaState.READY
            or polled.generation != self._generation()
        ):
            self._poll_connection = self._connect(self.fleet.random_replica())
        return self._poll_connection.replica if self._poll_connection is not None else None


class WorkerPool:
    """The worker Deployment."""

    def __init__(self, fleet: "Fleet") -> None:
        self.fleet = fleet
        self.pods: list[Pod] = []

    @property
    def replicas(self) -> int:
        return len(self.pods)

    def scale_to(self, replicas: int) -> None:
        while len(self.pods) < replicas:
            self.pods.append(Pod(self.fleet))
        while len(self.pods) > replicas:
            self.pods.pop().drain()

    def fill(self) -> None:
        for pod in self.pods:
            pod.fill()

    def lose(self, pod: Pod) -> None:
        """A pod lost with its node: the Deployment starts a replacement at once."""
        self.pods.remove(pod)
        pod.lose()
        self.pods.append(Pod(self.fleet))


@dataclass
class Sample:
    time_s: float
    vllm_replicas: int
    vllm_ready: int
    worker_pods: int
    backlog: int
    """Visible messages: accepted, not yet received."""
    in_flight: int
    delivered: int
    running: int
    waiting: int


@dataclass
class Fleet:
    """Everything on one clock; `Scenario.run` (bench/fleet/scenarios.py) builds and runs it."""

    chart: ChartFigures
    calibration: Calibration
    delays: Delays
    balancing: Balancing
    seed: int = 0
    lengths: OutputLengths = field(default_factory=OutputLengths)
    env: simpy.Environment = field(default_factory=simpy.Environment)
    """Its time 0 is WEEK_BOUNDARY; a run with a pre-warm window starts before it."""
    queue: Queue = field(default_factory=Queue)
    delivered: int = 0
    messages: list[Message] = field(default_factory=list)
    """Every message accepted, for the latencies."""
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        random.seed(self.seed)  # feedback_worker.backoff's jitter draws from the module's random
        self.vllm = VllmPool(self)
        self.workers = WorkerPool(self)
        self._turn = 0

    def accept(self, messages: int) -> None:
        now = self.env.now
        accepted = [Message(now) for _ in range(messages)]
        self.messages.extend(accepted)
        self.queue.visible.extend(accepted)
        self.workers.fill()

    def random_replica(self) -> Replica | None:
        ready = self.vllm.ready()
        return self.rng.choice(ready) if ready else None

    def next_replica(self) -> Replica | None:
        ready = self.vllm.ready()
        if not ready:
            return None
        self._turn += 1
        return ready[self._turn % len(ready)]

    def sample(self) -> Sample:
        ready = self.vllm.ready()
        return Sample(
            time_s=self.env.now,
            vllm_replicas=self.vllm.replicas,
            vllm_ready=len(ready),
            worker_pods=self.workers.replicas,
            backlog=len(self.queue.visible),
            in_flight=self.queue.in_flight,
            delivered=self.delivered,
            running=sum(len(r.engine.running) for r in ready),
            waiting=sum(len(r.engine.waiting) for r in ready),
        )

    def vllm_metrics(self) -> dict[str, float]:
        """The vLLM ScaledObject's triggers: the queue, Σ vllm:num_requests_waiting, and each
        pre-warm window's replicas at this moment of the week."""
        waiting = sum(len(r.engine.waiting) for r in self.vllm.ready())
        now = WEEK_BOUNDARY + timedelta(seconds=self.env.now)
        windows = {w.name: w.replicas_at(now) for w in self.chart.vllm_scaling.windows}
        return {"queue": self.queue.depth, "waiting": waiting, **windows}

    def worker_metrics(self) -> dict[str, float]:
        """The worker ScaledObject's formula: min(queue, llm_replicas x pods per replica x
        target), the replicas vLLM's Deployment asks for (Ready or starting), or its queue
        trigger alone without the cap."""
        (trigger,) = self.chart.worker_scaling.triggers
        per_replica = self.chart.pods_per_llm_replica
        if per_replica is None:
            return {trigger.name: self.queue.depth}
        cap = self.vllm.replicas * per_replica * trigger.target
        return {trigger.name: min(self.queue.depth, cap)}
