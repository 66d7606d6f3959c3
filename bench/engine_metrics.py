"""What the burst reads from vLLM's `/metrics` and the workers' own, the same for real vLLM and
the simulator (which serves vLLM's names: tests/conformance), so both bursts are measured by one
code path.

vLLM counts a request in `vllm:request_success_total` and its tokens in
`vllm:request_prompt_tokens` / `vllm:request_generation_tokens` only when it finishes: an
aborted one (the client gone, its timeout) is in none of them, while every token generated for
it is in `vllm:generation_tokens_total`. The difference is the work thrown away.
"""

from collections.abc import Iterable
from dataclasses import dataclass, fields

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class EngineReading:
    """One scrape of one engine's `/metrics` (or several engines', summed)."""

    running: int = 0
    waiting: int = 0
    generation_tokens: int = 0
    completed: int = 0
    """Requests finished (stop or length): not aborted ones."""
    completed_prompt_tokens: int = 0
    completed_output_tokens: int = 0

    def __add__(self, other: "EngineReading") -> "EngineReading":
        return EngineReading(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self))
        )

    def __sub__(self, other: "EngineReading") -> "EngineReading":
        return EngineReading(
            *(getattr(self, f.name) - getattr(other, f.name) for f in fields(self))
        )

    @property
    def wasted_tokens(self) -> int:
        """Tokens generated for requests that did not complete (between two readings with
        nothing running: an aborted request's)."""
        return self.generation_tokens - self.completed_output_tokens


ENGINE_SAMPLES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:generation_tokens_total": "generation_tokens",
    "vllm:request_success_total": "completed",
    "vllm:request_prompt_tokens_sum": "completed_prompt_tokens",
    "vllm:request_generation_tokens_sum": "completed_output_tokens",
}
"""Sample name → field; every label set summed (engine), but see COMPLETED."""
COMPLETED = frozenset({"stop", "length"})
"""The `finished_reason`s of `vllm:request_success_total` that are completions: vLLM counts the
requests it aborted there too, as `abort` (a client gone, a shutdown)."""


def engine_reading(text: str) -> EngineReading:
    """vLLM's Prometheus text → the figures the burst needs."""
    values = dict.fromkeys(ENGINE_SAMPLES.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = ENGINE_SAMPLES.get(sample.name)
            reason = sample.labels.get("finished_reason")
            if name is not None and (reason is None or reason in COMPLETED):
                values[name] += sample.value
    return EngineReading(**{name: round(value) for name, value in values.items()})


def total(readings: Iterable[EngineReading]) -> EngineReading:
    return sum(readings, EngineReading())


@dataclass(frozen=True)
class WorkerReading:
    """A worker's LLM attempts (`feedback_worker_llm_attempts_total`), by how each ended."""

    answered: int = 0
    timed_out: int = 0
    failed: int = 0

    @property
    def attempts(self) -> int:
        return self.answered + self.timed_out + self.failed


def worker_reading(text: str) -> WorkerReading:
    counts = {f.name: 0 for f in fields(WorkerReading)}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "feedback_worker_llm_attempts_total":
                counts[sample.labels["outcome"]] += round(sample.value)
    return WorkerReading(**counts)
