"""6. The weekly burst on the real engine, and the simulator calibrated on it predicting it.

The same burst as section 5 (bench/burst.py: every request queued at once, real worker
processes, SQS over HTTP, the signed callback to devstack's receiver; measured by the same code,
which reads vLLM's /metrics and the workers' own), drained by vLLM 0.32 on CPU serving Gemma 3
270M (`devstack.local_llm.vllm_server`, eager, `--max-num-seqs` MAX_NUM_SEQS), with the LLM gate
and without it (the fixed-concurrency baseline). Before the bursts, on the same engine in the
same run, bench/calibrate.py measures decode steps at batches 1 to MAX_NUM_SEQS, prefill, and
the plateau (a full batch of the burst's prompts): the plateau is the bursts' ideal, the rest
the simulator's fit. Then simulators with that fit (`--calibration`, time scale 1) run the same
bursts, and the prediction error of drain and batch fill is the simulator's figure.

Sizes, for 2 cores in minutes: MAX_NUM_SEQS 16 and LLM_MAX_TOKENS 128 where a full CPU batch
writes 176-191 tokens/s (11-12 a sequence). The workers' LLM_TIMEOUT_SECONDS is not a size but
follows from the calibration: CLIENT_TIMEOUT_CALLS calls of LLM_MAX_TOKENS at the measured
plateau, as production's 60 s stands against ~17 s calls of 225 tokens. On a CPU whose vLLM does
not batch (no AVX-512: 9 tokens/s for 1 stream, 12.5 for 16) a call at a full batch of 16 takes
minutes: size the burst down there (4 sequences, 64 tokens, 32 requests: 39 minutes measured).

    python -m bench engine_burst --engine-requests 300 --engine-workers 1 --engine-replicas 1 \
        --engine-max-num-seqs 16 --engine-max-tokens 128
"""

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.local_llm import START_TIMEOUT_S, base_model_worker_env, vllm_server
from devstack.local_model import MODEL_ALIAS
from devstack.processes import free_port

from bench import calibrate
from bench.burst import (
    FIGURE_ALIGN,
    FIGURE_COLUMNS,
    SQS_EMULATORS,
    BurstRun,
    BurstSetup,
    Engines,
    figure_cells,
    measure,
    service,
    simulators,
)
from bench.common import LOG_DIR, callback_receiver, running

REQUESTS = 300
"""About 20 batches of 16: the start and the tail weigh about a tenth, as 1,000 do in section 5
against 256; ~4 minutes a run at the CPU plateau."""
WORKERS = 1
REPLICAS = 1
MAX_NUM_SEQS = 16
LLM_MAX_TOKENS = 128
CLIENT_TIMEOUT_CALLS = 3.5
"""The workers' LLM_TIMEOUT_SECONDS in calls of LLM_MAX_TOKENS at a full batch: production's
60 s against ~17 s calls."""
BATCHES_PER_WORKER = 2
"""WORKER_CONCURRENCY in batches, as in section 5: with the gate off, a batch waits in vLLM."""
FIT = LOG_DIR / "engine-fit.json"
"""The fit of the last run, what `devstack.fakes.llm --calibration` reads."""


@dataclass(frozen=True)
class EngineBurstOptions:
    requests: int = REQUESTS
    workers: int = WORKERS
    replicas: int = REPLICAS
    max_num_seqs: int = MAX_NUM_SEQS
    max_tokens: int = LLM_MAX_TOKENS
    sqs: str = "fauxqs"

    @property
    def worker_concurrency(self) -> int:
        return BATCHES_PER_WORKER * self.max_num_seqs

    def client_timeout_s(self, plateau: calibrate.Plateau) -> float:
        """CLIENT_TIMEOUT_CALLS calls of max_tokens, each sharing the plateau with a full batch."""
        call_s = self.max_tokens * self.max_num_seqs / plateau.decode_tokens_per_s
        return round(CLIENT_TIMEOUT_CALLS * call_s)


@dataclass(frozen=True)
class Prediction:
    """The simulator's figure against the engine's, as (simulator - engine) ÷ engine."""

    gate: bool
    drain_error: float
    fill_error: float


@dataclass(frozen=True)
class EngineBurst:
    requests: int
    workers: int
    replicas: int
    max_num_seqs: int
    llm_max_tokens: int
    client_timeout_s: float
    worker_concurrency: int
    sqs: str
    engine_rss_gib: float
    """Resident memory of the vLLM replicas together, after the bursts."""
    calibration: dict[str, Any]
    runs: list[BurstRun]
    predicted: list[BurstRun]
    errors: list[Prediction]
    seconds: dict[str, float]
    """How long each part took: vLLM's start, the calibration, the real bursts, the simulated."""


def run(options: EngineBurstOptions, measured: str) -> EngineBurst:
    clock = Clock()
    with vllm_engines(options.replicas, options.max_num_seqs) as engines:
        clock.lap("vllm_start")
        fit = asyncio.run(
            calibrate.measure(
                engines.apis[0], MODEL_ALIAS, options.max_num_seqs, options.max_tokens
            )
        )
        clock.lap("calibration")
        store(fit)
        engine_setup = setup(options, fit.plateau.ideal_seconds, fit)
        runs = bursts(options, engine_setup, measured, lambda: nullcontext(engines))
        rss = sum(map(group_rss_gib, engines.pids))
        clock.lap("engine_bursts")
    law = fit.law()
    sim_options = ("--calibration", str(FIT), "--max-num-seqs", str(options.max_num_seqs))
    predicted = bursts(
        options,
        setup(options, law.ideal_seconds, fit),
        measured,
        lambda: simulators(options.replicas, 1.0, *sim_options, model=MODEL_ALIAS),
    )
    clock.lap("simulated_bursts")
    return EngineBurst(
        requests=options.requests,
        workers=options.workers,
        replicas=options.replicas,
        max_num_seqs=options.max_num_seqs,
        llm_max_tokens=options.max_tokens,
        client_timeout_s=engine_setup.client_timeout_s,
        worker_concurrency=engine_setup.worker_concurrency,
        sqs=options.sqs,
        engine_rss_gib=round(rss, 2),
        calibration=fit.stored(),
        runs=runs,
        predicted=predicted,
        errors=[prediction(real, sim) for real, sim in zip(runs, predicted, strict=True)],
        seconds=clock.laps,
    )


def store(fit: calibrate.Measured) -> None:
    """The fit, kept and shown before the bursts: on a busy host they may not finish (at a load
    of 10-16 a full batch of 128 tokens outlasted the 40 s timeout), the fit is still there."""
    FIT.parent.mkdir(parents=True, exist_ok=True)
    FIT.write_text(json.dumps(fit.stored(), indent=1) + "\n")
    print(calibrate.summary(fit), file=sys.stderr, flush=True)


class Clock:
    def __init__(self) -> None:
        self._last = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 1)
        self._last = now


def setup(
    options: EngineBurstOptions,
    ideal: Callable[[float, float, int], float],
    fit: calibrate.Measured,
) -> BurstSetup:
    return BurstSetup(
        requests=options.requests,
        time_scale=1.0,
        max_num_seqs=options.max_num_seqs,
        worker_concurrency=options.worker_concurrency,
        client_timeout_s=options.client_timeout_s(fit.plateau),
        model=MODEL_ALIAS,
        ideal=ideal,
        expected_tokens=(statistics.mean(fit.output_lengths), fit.prompt_tokens),
        # The local base model's prompt and stop strings, as `make run` gives its worker.
        worker_settings=(
            ("LLM_MAX_TOKENS", str(options.max_tokens)),
            *base_model_worker_env().items(),
        ),
    )


def bursts(
    options: EngineBurstOptions,
    burst_setup: BurstSetup,
    measured: str,
    engines: Callable[[], AbstractContextManager[Engines]],
) -> list[BurstRun]:
    """The gate's run, then the baseline's, each on `engines()` (the same vLLM for both; fresh
    simulators for each)."""
    runs = []
    with SQS_EMULATORS[options.sqs](f"{options.sqs}-engine") as aws, callback_receiver() as cb:
        for gate in (True, False):
            label = (options.replicas, options.workers, gate, False)
            with engines() as serving:
                runs.append(measure(aws, cb, burst_setup, label, measured, serving))
    return runs


@dataclass
class VllmEngines(Engines):
    pids: tuple[int, ...] = ()


@contextmanager
def vllm_engines(replicas: int, max_num_seqs: int) -> Iterator[VllmEngines]:
    """`replicas` vLLM servers; with two, each engine on a core of its own."""
    with ExitStack() as stack:
        ports, pids = [], []
        for number in range(replicas):
            port = free_port()
            server = vllm_server(
                port,
                LOG_DIR / f"vllm-engine-{number}.log",
                *("--max-num-seqs", str(max_num_seqs)),
                cores=str(number) if replicas > 1 else None,
            )
            stack.enter_context(running(server, START_TIMEOUT_S))
            ports.append(port)
            pids.append(server.pid)
        url = stack.enter_context(service(ports))
        apis = [f"http://127.0.0.1:{port}" for port in ports]
        yield VllmEngines(url, apis, pids=tuple(pids))


def group_rss_gib(leader: int) -> float:
    """Resident memory of a process and everything in its session (vLLM's API server, engine
    core and worker: ManagedProcess starts each server in a session of its own)."""
    pages = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == leader:
                pages += int((entry / "statm").read_text().split()[1])
        except (OSError, ValueError):
            continue  # gone meanwhile
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


def prediction(real: BurstRun, sim: BurstRun) -> Prediction:
    def error(engine: float, simulated: float) -> float:
        return round(simulated / engine - 1, 4) if engine else float("nan")

    return Prediction(
        gate=real.gate,
        drain_error=error(real.drain_s, sim.drain_s),
        fill_error=error(real.batch_fill, sim.batch_fill),
    )


def table(e: dict[str, Any]) -> str:
    law = e["calibration"]["law"]
    measured = e["calibration"]["measured"]
    lines = [
        f"### 6. Weekly burst on vLLM (CPU) and the simulator's prediction ({e['requests']} "
        f"requests at once, {e['replicas']} replica(s) x {e['workers']} worker(s), max_num_seqs "
        f"{e['max_num_seqs']}, LLM_MAX_TOKENS {e['llm_max_tokens']}, LLM_TIMEOUT_SECONDS "
        f"{e['client_timeout_s']:.0f}, WORKER_CONCURRENCY {e['worker_concurrency']}, "
        f"SQS: {e['sqs']})\n",
        "| engine | gate " + FIGURE_COLUMNS,
        "|---|---|" + FIGURE_ALIGN,
    ]
    for engine, runs in (("vLLM 0.32 CPU", e["runs"]), ("simulator (fit)", e["predicted"])):
        for r in runs:
            gate = "on" if r["gate"] else "off (baseline)"
            lines.append(f"| {engine} | {gate} " + figure_cells(r))
    lines += [
        "",
        "| gate | drain: simulator vs vLLM | batch fill: simulator vs vLLM |",
        "|---|---:|---:|",
        *(
            f"| {'on' if p['gate'] else 'off'} | {100 * p['drain_error']:+.1f} % "
            f"| {100 * p['fill_error']:+.1f} % |"
            for p in e["errors"]
        ),
        "",
        f"Fit: step = {1000 * law['step_base_s']:.2f} ms + {1000 * law['step_per_seq_s']:.3f} ms "
        f"x running (residuals {e['calibration']['residuals']}); prefill "
        f"{1000 * measured['prefill_per_token_s']:.3f} ms per engine token; plateau "
        f"{measured['plateau']['decode_tokens_per_s']:.0f} output tokens/s; vLLM resident "
        f"{e['engine_rss_gib']} GiB; took {e['seconds']} s.",
        "\nTargets (vLLM, gate on): drain ≤ 1.1 x ideal, batch fill ≥ 0.9, 0 client timeouts, "
        "wasted < 1 %; the simulator's drain and fill within 10 % of vLLM's.\n",
    ]
    return "\n".join(lines)
