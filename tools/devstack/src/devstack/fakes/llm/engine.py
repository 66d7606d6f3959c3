"""vLLM's scheduler on a virtual GPU, without any I/O: the calibration (how long a step takes),
the output lengths, and the engine whose each `step()` is one forward pass. The figures' sources
are in the package docstring (devstack/fakes/llm/__init__.py)."""

import json
import random
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

PUBLISHED_BATCH = 256
"""The batch at which the published plateau was measured (vLLM's default --max-num-seqs)."""


@dataclass(frozen=True)
class Calibration:
    """How long the virtual GPU takes; see the module docstring for the figures' sources."""

    step_base_s: float
    step_per_seq_s: float
    prefill_per_token_s: float
    max_num_seqs: int = 256
    kv_cache_tokens: int = 400_000

    @classmethod
    def published(
        cls,
        max_num_seqs: int = 256,
        single_stream_tokens_per_s: float = 100.0,
        plateau_tokens_per_s: float = 3_300.0,
        prefill_tokens_per_s: float = 20_000.0,
        mean_prompt_tokens: float = 450.0,
        mean_output_tokens: float = 225.0,
    ) -> "Calibration":
        """a and b solved from the two published decode rates (measured at vLLM's default batch
        of 256), prefill's share taken out; `max_num_seqs` only moves the cap."""
        batch = PUBLISHED_BATCH
        full_step = batch / plateau_tokens_per_s
        # At the plateau, batch / mean_output sequences finish (and are replaced) per step.
        prefill_share = batch / mean_output_tokens * mean_prompt_tokens / prefill_tokens_per_s
        single_step = 1 / single_stream_tokens_per_s
        per_seq = (full_step - prefill_share - single_step) / (batch - 1)
        return cls(
            step_base_s=single_step - per_seq,
            step_per_seq_s=per_seq,
            prefill_per_token_s=1 / prefill_tokens_per_s,
            max_num_seqs=max_num_seqs,
        )

    @classmethod
    def fitted(
        cls,
        step_seconds: Mapping[int, float],
        prefill_per_token_s: float,
        max_num_seqs: int,
    ) -> "Calibration":
        """a and b by least squares from step times measured at several batch sizes (n
        sequences decoding with `ignore_eos`: one step writes n tokens), prefill measured apart;
        the procedure is docs/benchmarks.md's "Calibrating the simulator"."""
        per_seq, base = statistics.linear_regression(
            list(step_seconds), list(step_seconds.values())
        )
        return cls(
            step_base_s=base,
            step_per_seq_s=per_seq,
            prefill_per_token_s=prefill_per_token_s,
            max_num_seqs=max_num_seqs,
        )

    def step_seconds(self, running: int, prefill_tokens: int) -> float:
        return (
            self.step_base_s
            + self.step_per_seq_s * running
            + self.prefill_per_token_s * prefill_tokens
        )

    def ideal_seconds(self, output_tokens: float, prompt_tokens: float, replicas: int = 1) -> float:
        """The least time `replicas` GPUs need for this work: every step a full batch."""
        full_steps = output_tokens / self.max_num_seqs
        busy = full_steps * self.step_seconds(self.max_num_seqs, 0)
        return (busy + prompt_tokens * self.prefill_per_token_s) / replicas


@dataclass(frozen=True)
class OutputLengths:
    """Feedback lengths in tokens: normal, mean 225, sd 37.5 (95 % in 150-300), at least 1;
    or drawn from `empirical`, lengths an engine measured (a base model stops where it stops:
    no normal law fits the CPU engine's, bench/calibrate.py)."""

    mean: float = 225.0
    sd: float = 37.5
    empirical: tuple[int, ...] = ()

    def draw(self, rng: random.Random) -> int:
        if self.empirical:
            return rng.choice(self.empirical)
        return max(1, round(rng.gauss(self.mean, self.sd)))


FEEDBACK_LENGTHS = OutputLengths()
"""The weekly feedback's lengths: what an engine draws unless told otherwise."""


@dataclass(frozen=True)
class Fitted:
    """A calibration measured on an engine, as `python -m bench.calibrate` stores it (JSON)."""

    calibration: Calibration
    lengths: OutputLengths
    characters_per_token: float = 1.0
    """Characters of the engine's answers per output token: the simulator's text is as long as
    the engine's would be (the worker's content checks count characters)."""

    @classmethod
    def load(cls, path: Path, max_num_seqs: int) -> "Fitted":
        data = json.loads(path.read_text())
        law = data["law"]
        calibration = Calibration(
            step_base_s=law["step_base_s"],
            step_per_seq_s=law["step_per_seq_s"],
            prefill_per_token_s=law["prefill_per_token_s"],
            max_num_seqs=max_num_seqs,
        )
        lengths = OutputLengths(empirical=tuple(data["output_lengths"]))
        return cls(calibration, lengths, data["characters_per_token"])


class SchedulingPolicy(StrEnum):
    """vLLM's `--scheduling-policy`: the order in which waiting requests are admitted."""

    FCFS = "fcfs"
    """Arrival order; a request's `priority` is not consulted."""
    PRIORITY = "priority"
    """Lowest `priority` value first, then arrival order (vLLM's `RequestQueue` for it)."""


class Outcome(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    ABORTED = "aborted"


@dataclass
class Sequence:
    """One request inside the engine."""

    number: int
    prompt_tokens: int
    max_tokens: int
    wanted_tokens: int
    """What the model would write if nothing cut it (drawn from OutputLengths)."""
    arrived_s: float
    priority: int = 0
    generated: int = 0
    outcome: Outcome | None = None
    finished_s: float = 0.0

    @property
    def target_tokens(self) -> int:
        return min(self.wanted_tokens, self.max_tokens)

    @property
    def kv_reserve(self) -> int:
        return self.prompt_tokens + self.max_tokens


@dataclass
class Counters:
    """What the engine has done since it was made or reset (`/sim/reset`); survives stop/start,
    as a bench needs."""

    prompt_tokens: int = 0
    generation_tokens: int = 0
    wasted_tokens: int = 0
    """Tokens generated for requests that were then aborted: GPU work thrown away."""
    useful_prompt_tokens: int = 0
    useful_output_tokens: int = 0
    """Prompt and output tokens of requests that completed: what the ideal is computed on."""
    success: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0})
    aborted: int = 0
    disconnected: int = 0
    """Aborts because the client went away (its timeout, mostly), not because of a stop."""
    steps: int = 0
    busy_s: float = 0.0
    running_integral: float = 0.0
    """Σ running * step time: divided by busy_s, the mean batch while the GPU works."""


class Engine:
    """vLLM's scheduler on a virtual clock, without any I/O: each `step()` is one forward pass."""

    def __init__(
        self,
        calibration: Calibration,
        seed: int = 0,
        lengths: OutputLengths = FEEDBACK_LENGTHS,
        policy: SchedulingPolicy = SchedulingPolicy.FCFS,
    ) -> None:
        self.calibration = calibration
        self.policy = policy
        self.now_s = 0.0
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.counters = Counters()
        self._rng = random.Random(seed)
        self._lengths = lengths
        self._numbers = 0
        self._kv_reserved = 0

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of the KV cache in use, as vllm:kv_cache_usage_perc reports it (0-1)."""
        used = sum(s.prompt_tokens + s.generated for s in self.running)
        return used / self.calibration.kv_cache_tokens

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def unfinished(self) -> int:
        """Requests waiting or running: what `--max-num-queued-reqs` bounds."""
        return len(self.waiting) + len(self.running)

    def submit(
        self, prompt_tokens: int, max_tokens: int, priority: int = 0, ignore_eos: bool = False
    ) -> Sequence:
        """`ignore_eos`: vLLM's sampling parameter, the model writes until `max_tokens` and
        ends cut ("length"), as one that would write on (vLLM checks the EOS token, which it
        then ignores, before the length)."""
        self._numbers += 1
        seq = Sequence(
            number=self._numbers,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            wanted_tokens=max_tokens + 1 if ignore_eos else self._lengths.draw(self._rng),
            arrived_s=self.now_s,
            priority=priority,
        )
        self._enqueue(seq)
        return seq

    def _enqueue(self, seq: Sequence) -> None:
        """Behind every waiting request that goes first under the policy: all of them (FCFS),
        or those of a lower or equal `priority` value (priority; ties in arrival order)."""
        if self.policy is SchedulingPolicy.FCFS:
            self.waiting.append(seq)
            return
        behind = next(
            (i for i, other in enumerate(self.waiting) if other.priority > seq.priority),
            len(self.waiting),
        )
        self.waiting.insert(behind, seq)

    def abort(self, seq: Sequence) -> None:
        """The client went away: its tokens so far are wasted, its KV space freed."""
        if seq.outcome is not None:
            return
        if seq in self.running:
            self.running.remove(seq)
            self._kv_reserved -= seq.kv_reserve
        else:
            self.waiting.remove(seq)
        self.counters.wasted_tokens += seq.generated
        self.counters.aborted += 1
        seq.outcome = Outcome.ABORTED
        seq.finished_s = self.now_s

    def abort_all(self) -> list[Sequence]:
        everything = [*self.running, *self.waiting]
        for seq in everything:
            self.abort(seq)
        return everything

    def idle(self, seconds: float) -> None:
        self.now_s += seconds

    def step(self) -> tuple[float, list[Sequence]]:
        """Admit what fits, decode one token per running sequence; (step time, finished ones)."""
        admitted = self._admit()
        if not self.running:
            return 0.0, []
        prefill = sum(s.prompt_tokens for s in admitted)
        duration = self.calibration.step_seconds(len(self.running), prefill)
        self.now_s += duration
        counters = self.counters
        counters.steps += 1
        counters.busy_s += duration
        counters.running_integral += len(self.running) * duration
        counters.prompt_tokens += prefill
        counters.generation_tokens += len(self.running)
        finished = []
        for seq in self.running:
            seq.generated += 1
            if seq.generated >= seq.target_tokens:
                finished.append(seq)
        for seq in finished:
            self._finish(seq)
        return duration, finished

    def _admit(self) -> list[Sequence]:
        """In queue order: the head waits until it fits, and so does everything behind it."""
        admitted = []
        budget = self.calibration.kv_cache_tokens
        while self.waiting and len(self.running) < self.calibration.max_num_seqs:
            head = self.waiting[0]
            if self._kv_reserved + head.kv_reserve > budget:
                break
            self.waiting.popleft()
            self.running.append(head)
            self._kv_reserved += head.kv_reserve
            admitted.append(head)
        return admitted

    def _finish(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self._kv_reserved -= seq.kv_reserve
        seq.outcome = Outcome.LENGTH if seq.generated < seq.wanted_tokens else Outcome.STOP
        seq.finished_s = self.now_s
        self.counters.success[seq.outcome] += 1
        self.counters.useful_output_tokens += seq.generated
        self.counters.useful_prompt_tokens += seq.prompt_tokens
