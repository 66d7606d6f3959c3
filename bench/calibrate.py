"""Calibrating the simulator on an engine: what vLLM does at each batch size, measured and fit.

`python -m bench.calibrate --url http://127.0.0.1:8000 --max-num-seqs 16 --out fit.json` runs
the three measurements below against a running vLLM (any engine that serves vLLM's API and
metrics), prints the fit and stores it where the simulator reads it (`python -m
devstack.fakes.llm --calibration fit.json`). The procedure, to redo it on a GPU:
docs/benchmarks.md, "Calibrating the simulator". The real-engine burst (bench/engine_burst.py)
runs the same measurements before its bursts.

1. decode: n of the burst's requests at once (n = 1, 2, 4 ... max_num_seqs), sampled as the
   worker samples, with `ignore_eos`: once writing 1 token, once 1 + DECODE_TOKENS. One step
   writes n tokens, so the step time at batch n is the difference ÷ DECODE_TOKENS (prefill
   cancels). `Calibration.fitted` fits step = a + b·n by least squares. The burst's prompt and
   temperature matter: a first sweep with a two-syllable prompt, greedy, fitted steps a quarter
   shorter than the burst's (CPU vLLM, batch 4: 9.3 tokens/s from the law, 7.0 measured at the
   plateau) and the simulator predicted drains 28 % short (docs/benchmarks.md, section 6).
2. prefill: the burst's own prompts one at a time with `max_tokens` 1, each beside the short
   prompt: the difference in time ÷ the difference in tokens. Prefix caching is on, as in the
   burst: the system prompt and the template's text are shared, so what is measured is what a
   burst's prompt costs.
3. plateau: max_num_seqs clients, each sending the burst's prompts one after the other
   (`max_tokens` and temperature as the worker sends them), PLATEAU_ROUNDS batches in all. The
   output tokens/s between the end of the first batch and the end of the last full one is the
   engine's plateau: the ideal of a burst (Plateau.ideal_seconds). The lengths the model wrote
   are the simulator's output lengths (a base model stops where it stops), and the characters
   it wrote per token the length of the simulator's text (the worker's content checks count
   characters). The same window prices prefill as a running batch pays it: its time beyond
   the decode steps the sweep measured at a full batch, per prompt token, never below the
   prefill measured alone. A CPU vLLM without AVX-512 stalled its batch 10-20 s for prompts
   that take about a second alone (docs/benchmarks.md, section 6); on one with AVX-512 the
   window showed no such cost (batch 16: 0.246 ms a token both ways).
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from devstack.fakes.llm import Calibration, ChatMessage, prompt_tokens
from devstack.local_llm import BASE_MODEL_PROMPT, BASE_MODEL_STOP
from feedback_worker.prompt import PromptTemplate
from llm_common.contracts import FeedbackRequest

from bench.common import request_body
from bench.engine_metrics import EngineReading, engine_reading

DECODE_TOKENS = 64
"""Tokens per request in the decode sweep beyond the first: at batch 1 on CPU (50-150 ms a step)
3-10 s, long enough that the request's own overhead (~30 ms) is under 1 % of it."""
PREFILL_PROMPTS = 8
PLATEAU_ROUNDS = 3
"""Batches of the plateau run: the first fills the engine, the last drains it, the middle is
the plateau (one batch of max_num_seqs requests ending one by one)."""
TEMPERATURE = 0.7
"""The worker's LLM_TEMPERATURE default."""


@dataclass(frozen=True)
class Window:
    """The plateau's measuring window: the engine always at a full batch."""

    seconds: float
    output_tokens: int
    prompt_tokens: int
    """Of the requests completed in it, as the engine counts them (cached ones included)."""


@dataclass(frozen=True)
class Plateau:
    """The engine at a full batch: output tokens/s with prefill taken out, and prefill's cost."""

    decode_tokens_per_s: float
    prefill_per_token_s: float
    prefill_in_batch_per_token_s: float
    """What a prompt token costs the running batch: the window's time beyond its decode steps
    at the sweep's full-batch step, per prompt token; never below prefill_per_token_s."""

    @classmethod
    def from_window(
        cls,
        window: "Window",
        prefill_per_token_s: float,
        full_batch_step_s: float,
        max_num_seqs: int,
    ) -> "Plateau":
        decode_s = window.seconds - window.prompt_tokens * prefill_per_token_s
        steps_s = window.output_tokens / max_num_seqs * full_batch_step_s
        beyond_decode_s = window.seconds - steps_s
        return cls(
            decode_tokens_per_s=window.output_tokens / decode_s,
            prefill_per_token_s=prefill_per_token_s,
            prefill_in_batch_per_token_s=max(
                prefill_per_token_s, beyond_decode_s / window.prompt_tokens
            ),
        )

    def ideal_seconds(self, output_tokens: float, prompt_tokens: float, replicas: int = 1) -> float:
        """The least time `replicas` engines need for this work: all of it at the plateau."""
        return (
            output_tokens / self.decode_tokens_per_s + prompt_tokens * self.prefill_per_token_s
        ) / replicas


@dataclass(frozen=True)
class Measured:
    """Everything one calibration measured, and the law fitted to it."""

    max_num_seqs: int
    step_seconds: dict[int, float]
    """Decode step time at each batch size (seconds)."""
    prefill_per_token_s: float
    """Per prompt token as the engine counts them (its tokenizer)."""
    prompt_tokens: int
    """The burst's prompt in the engine's tokens."""
    prompt_characters: int
    """The same prompt as the simulator counts it (a character a token): its prefill per token
    is prefill_per_token_s x prompt_tokens ÷ prompt_characters."""
    plateau: Plateau
    output_lengths: list[int]
    characters_per_token: float
    """Characters of the model's answers per output token (the plateau's completions)."""

    def law(self) -> Calibration:
        """The sweep's line, prefill at the price a running batch pays for it."""
        return Calibration.fitted(
            self.step_seconds,
            self.plateau.prefill_in_batch_per_token_s * self.prompt_tokens / self.prompt_characters,
            self.max_num_seqs,
        )

    def residuals(self) -> dict[int, float]:
        """The law's step time against the measured one at each batch size, relative."""
        law = self.law()
        return {
            n: round(law.step_seconds(n, 0) / seconds - 1, 4)
            for n, seconds in self.step_seconds.items()
        }

    def stored(self) -> dict[str, Any]:
        """What `devstack.fakes.llm --calibration` reads, with what it was fitted on."""
        return {
            "law": asdict(self.law()),
            "output_lengths": self.output_lengths,
            "characters_per_token": self.characters_per_token,
            "residuals": self.residuals(),
            "measured": asdict(self),
        }


def batch_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4 ... up to and including max_num_seqs."""
    sizes = [1]
    while sizes[-1] * 2 < max_num_seqs:
        sizes.append(sizes[-1] * 2)
    return [*sizes, max_num_seqs] if max_num_seqs > 1 else sizes


TEMPLATE = PromptTemplate(BASE_MODEL_PROMPT.read_text())
"""The burst's workers prompt the local base model as `make run` does
(`devstack.local_llm.base_model_worker_env`): worked examples, ended by BASE_MODEL_STOP."""


def burst_messages(member_id: int) -> list[dict[str, str]]:
    """The worker's prompt for this member's request (the burst's bodies)."""
    prompt = TEMPLATE.render(FeedbackRequest.model_validate(request_body(member_id)))
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]


class Client:
    """Chat completions and /metrics of one engine."""

    def __init__(self, http: httpx.AsyncClient, url: str, model: str) -> None:
        self._http, self._url, self._model = http, url, model

    async def complete(self, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
        body = {"model": self._model, "messages": messages, **params}
        response = await self._http.post(f"{self._url}/v1/chat/completions", json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    async def reading(self) -> EngineReading:
        return engine_reading((await self._http.get(f"{self._url}/metrics")).text)


SHORT = [{"role": "user", "content": "안녕"}]
"""Prefill's reference: a few tokens."""


async def decode_step(client: Client, batch: int, members: Iterator[int]) -> float:
    """Seconds of one decode step at `batch`: the burst's prompts and sampling, prefill out."""

    async def batch_seconds(tokens: int) -> float:
        started = time.monotonic()
        await asyncio.gather(
            *(
                client.complete(
                    burst_messages(next(members)),
                    max_tokens=tokens,
                    ignore_eos=True,
                    temperature=TEMPERATURE,
                )
                for _ in range(batch)
            )
        )
        return time.monotonic() - started

    prefill_only = await batch_seconds(1)
    return (await batch_seconds(1 + DECODE_TOKENS) - prefill_only) / DECODE_TOKENS


async def timed(client: Client, messages: list[dict[str, str]]) -> tuple[float, int]:
    """Seconds and prompt tokens of one request that writes one token."""
    started = time.monotonic()
    answer = await client.complete(messages, max_tokens=1)
    return time.monotonic() - started, answer["usage"]["prompt_tokens"]


async def prefill(client: Client, members: Iterator[int]) -> float:
    """Seconds per prompt token: a burst prompt's time less the short prompt's (which cancels
    the request's own cost, ~50 ms on a busy host, a third of the answer), over the difference
    in tokens; the median of PREFILL_PROMPTS pairs."""
    costs: list[float] = []
    for _ in range(PREFILL_PROMPTS):
        long_s, long_tokens = await timed(client, burst_messages(next(members)))
        short_s, short_tokens = await timed(client, SHORT)
        costs.append(max(0.0, long_s - short_s) / (long_tokens - short_tokens))
    return statistics.median(costs)


@dataclass(frozen=True)
class PlateauRun:
    """What the plateau run measured: the engine's rate, and what its answers were like."""

    plateau: Plateau
    output_lengths: list[int]
    characters_per_token: float


async def plateau(
    client: Client,
    max_num_seqs: int,
    max_tokens: int,
    prefill_s: float,
    full_batch_step_s: float,
    members: Iterator[int],
) -> PlateauRun:
    total = PLATEAU_ROUNDS * max_num_seqs
    marks = {max_num_seqs, total - max_num_seqs}
    lengths: list[int] = []
    characters = 0
    window: list[tuple[float, EngineReading]] = []

    sent = 0

    async def one_client() -> None:
        nonlocal sent, characters
        while sent < total:
            sent += 1
            answer = await client.complete(
                burst_messages(next(members)),
                max_tokens=max_tokens,
                temperature=TEMPERATURE,
                stop=list(BASE_MODEL_STOP),
            )
            lengths.append(answer["usage"]["completion_tokens"])
            characters += len(answer["choices"][0]["message"]["content"] or "")
            if len(lengths) in marks:
                window.append((time.monotonic(), await client.reading()))

    await asyncio.gather(*(one_client() for _ in range(max_num_seqs)))
    (t0, r0), (t1, r1) = window
    measured = Window(
        seconds=t1 - t0,
        output_tokens=r1.generation_tokens - r0.generation_tokens,
        prompt_tokens=r1.completed_prompt_tokens - r0.completed_prompt_tokens,
    )
    found = Plateau.from_window(measured, prefill_s, full_batch_step_s, max_num_seqs)
    return PlateauRun(found, lengths, characters / sum(lengths))


async def measure(url: str, model: str, max_num_seqs: int, max_tokens: int) -> Measured:
    """The three measurements of the module docstring, one after the other on one engine."""
    # Members as the burst has them, one request each. Today every member's example record
    # renders the same prompt, so prefix caching serves most of it, here as in the burst (72 %
    # of prompt tokens hit the cache in the plateau on CPU vLLM).
    members = iter(range(1_000_000, 2_000_000))
    async with httpx.AsyncClient(timeout=600) as http:
        client = Client(http, url, model)
        await decode_step(client, 1, members)  # warm-up: the first requests pay for the start
        steps = {n: await decode_step(client, n, members) for n in batch_sizes(max_num_seqs)}
        prefill_s = await prefill(client, members)
        found = await plateau(
            client, max_num_seqs, max_tokens, prefill_s, steps[max_num_seqs], members
        )
        engine_tokens = (await client.complete(burst_messages(1), max_tokens=1))["usage"]
    messages = [ChatMessage.model_validate(m) for m in burst_messages(1)]
    return Measured(
        max_num_seqs=max_num_seqs,
        step_seconds={n: round(s, 5) for n, s in steps.items()},
        prefill_per_token_s=prefill_s,
        prompt_tokens=engine_tokens["prompt_tokens"],
        prompt_characters=prompt_tokens(messages),
        plateau=found.plateau,
        output_lengths=found.output_lengths,
        characters_per_token=found.characters_per_token,
    )


def summary(measured: Measured) -> str:
    law = measured.law()
    steps = ", ".join(f"{n}: {s * 1000:.1f} ms" for n, s in measured.step_seconds.items())
    lengths = measured.output_lengths
    return (
        f"decode step by batch: {steps}\n"
        f"fit: step = {law.step_base_s * 1000:.2f} ms + {law.step_per_seq_s * 1000:.3f} ms x "
        f"running; residuals {measured.residuals()}\n"
        f"prefill: {measured.prefill_per_token_s * 1000:.3f} ms per engine token alone, "
        f"{measured.plateau.prefill_in_batch_per_token_s * 1000:.3f} in a running batch "
        f"({law.prefill_per_token_s * 1000:.3f} ms per simulator token: the prompt is "
        f"{measured.prompt_tokens} tokens, {measured.prompt_characters} characters)\n"
        f"plateau: {measured.plateau.decode_tokens_per_s:.1f} output tokens/s at "
        f"{measured.max_num_seqs}; output lengths mean {statistics.mean(lengths):.0f}, "
        f"sd {statistics.pstdev(lengths):.0f}, n {len(lengths)}; "
        f"{measured.characters_per_token:.2f} characters a token"
    )


def main(argv: list[str] | None = None) -> int:
    parse = argparse.ArgumentParser(prog="python -m bench.calibrate", description=__doc__)
    parse.add_argument("--url", required=True, help="the engine: http://HOST:PORT")
    parse.add_argument("--model", default="gemma-3-270m")
    parse.add_argument("--max-num-seqs", type=int, required=True, help="as vLLM was started")
    parse.add_argument("--max-tokens", type=int, required=True, help="the worker's LLM_MAX_TOKENS")
    parse.add_argument("--out", type=Path, required=True, help="the fit, as JSON")
    args = parse.parse_args(argv)
    measured = asyncio.run(measure(args.url, args.model, args.max_num_seqs, args.max_tokens))
    args.out.write_text(json.dumps(measured.stored(), indent=1) + "\n")
    print(summary(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
