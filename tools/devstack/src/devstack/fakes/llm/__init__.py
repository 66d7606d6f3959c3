"""The LLM fake: a vLLM-like server, continuous batching on a virtual GPU, with a mode for exact
latencies and injected faults; for the tests, `make bench` and the stack's `llm="fake"`.

    engine.py  vLLM's scheduler on a virtual clock, and its calibration (no I/O)
    faults.py  the one control model: faults, scripted answers, drip, recorded requests
    app.py     the API, the control API, the scheduler loop, vLLM's metrics
    streaming.py  a streamed answer's server-sent events, framed as vLLM frames them

A GPU does not answer every call in the same time however many it is given; by default this
one schedules like vLLM's engine:

- a scheduler loop where each step decodes one token for every running sequence; a step takes
  `a + b * running` seconds, plus `prefill_per_token_s` for each prompt token admitted in it;
- at most `max_num_seqs` sequences run at once (vLLM's `--max-num-seqs`, 256 by default) within a
  KV-cache budget in tokens; the rest wait (`vllm:num_requests_waiting`) in arrival order, or
  under `--scheduling-policy priority` lowest `priority` value first, as vLLM orders them;
- past `--max-num-queued-reqs` unfinished (waiting + running) requests, a new one gets vLLM's
  503 at once instead of a place in the queue;
- output lengths drawn from a normal distribution fitting the weekly feedback (mean 225, sd 37.5:
  95 % between 150 and 300 tokens), capped by `max_tokens` (finish_reason "length" when cut), or
  from the lengths an engine wrote (`--calibration`); the text one character a token, or the
  engine's characters per token (`--calibration`);
- a client that disconnects aborts its request, as vLLM does; the tokens generated for it so far
  count as wasted (`sim_wasted_tokens_total`, and /sim/stats);
- `/health`, `/v1/models`, `/v1/chat/completions` and `/metrics` with vLLM's own
  metric names and labels (`model_name`, `engine`), on the API port; `--api-key` (or
  VLLM_API_KEY) guards /v1/* as in vLLM. While the model loads the API port refuses
  connections, as vLLM's does (it listens only once the engine is up);
- `stream: true` streams as vLLM does (streaming.py): the role with the first token, then each
  step's token as its time passes, the finish_reason on the last, usage when
  `stream_options.include_usage`, `[DONE]`; a client gone mid-stream aborts the sequence.

What vLLM itself does here is pinned by tests/conformance, run against both this simulator and
vLLM on CPU; its module docstring lists what had to change to match.

Calibration (`Calibration.published()`), for a 7B model on one H100:
- about 100 output tokens/s for a single stream and about 3,300 output tokens/s at high
  concurrency (LambdaLabsML/vllm-benchmark; vLLM blog "vLLM v0.6.0: 2.7x throughput
  improvement and 5x latency reduction", 2024-09-05). A single stream gives `a + b = 1/100 s`;
  a full batch of 256 gives 256 tokens per `256/3,300 s`, of which prefill takes its share;
- prefill at 20,000 prompt tokens/s: a 7B forward pass is about 2 * 7e9 FLOP per token, an
  H100's ~990 dense BF16 TFLOP/s allow ~70,000 tokens/s at full use; vLLM reaches well under
  half of that in mixed batches, so 20,000 is an assumption to revisit with a measurement;
- a KV cache of 400,000 tokens: 80 GB * 0.9 (`--gpu-memory-utilization`) minus ~15 GB of
  weights leaves ~57 GB, at 128 KiB per token for a 32-layer model with 8 KV heads of 128
  (Mistral-7B / Llama-3-8B in BF16). Admission reserves prompt + max_tokens, so nothing is ever
  preempted (vLLM would preempt and recompute instead); at the feedback's sizes 256 sequences
  need ~230,000 tokens, so `max_num_seqs` binds first, as on the real GPU.
From the same calibration, `Calibration.ideal_seconds` gives the capacity-bound drain time of a
set of requests: every step at a full batch, nothing waiting on the client.

Time: the engine keeps a virtual clock. A busy step advances it by the step's time and sleeps
that time ÷ `time_scale` of real time; an idle engine's clock follows real time * `time_scale`.
At `--time-scale 60` an hour of GPU work takes a minute; every time the API reports (latency,
load time) is virtual. A slow host makes the engine run slower in real time but never changes
what its virtual clock says a step cost.

Exact-latency mode (`latency_s` set, `--latency S`): every completion takes exactly `latency_s`
virtual seconds, outside the engine (no batching law), and answers a Korean feedback that quotes
the prompt's `- ...` lines: controlled latency for the worker's tests, and proof that a request
reached the model. It stands for an OpenAI-compatible server that is not vLLM (a proxy, a hosted
API): `/health` and `/metrics` answer 404. It does not stream (400): an exact latency is one
answer at its end, with no engine steps to stream.

The one control API, `/sim/*`, on the API port and, given `--control-port`, on a port of its own
that answers while the API port is closed (stop and start go there only):

    POST /sim/control   change modes and faults; only the fields given change (faults.py):
                        {"action": "stop"}  abort everything, close the API port
                        {"action": "start", "load_s": 120}  listen again after load_s virtual
                                            seconds (connections refused meanwhile)
                        {"latency_s": 1.0, "fail_next": 3, "fail_every": 0, "fail_status": 503,
                         "retry_after": "1", "refuse": false, "drip_s": 0.5,
                         "answers": [{"content": "...", "finish_reason": "length"}]}
    GET  /sim/stats     the chat API's traffic (requests, completions, failures, in_flight,
                        max_in_flight), the faults in force, the engine's counters, the virtual
                        clock, queue sizes, the ideal for the work done
    GET  /sim/requests  the last 100 completion bodies, oldest first, with `received_at`
                        (and `open_s` for a dripped answer)
    POST /sim/reset     traffic, faults, recorded requests and counters back to their start

    python -m devstack.fakes.llm [--host H] [--port P] [--control-port C] [--latency S]
        [--time-scale S] [--max-num-seqs N] [--seed N] [--model NAME] [--api-key KEY]
        [--max-num-queued-reqs N] [--scheduling-policy fcfs|priority] [--calibration FIT]
"""

from devstack.fakes.llm.app import ChatMessage, Simulator, prompt_tokens
from devstack.fakes.llm.engine import (
    Calibration,
    Engine,
    Fitted,
    Outcome,
    OutputLengths,
    SchedulingPolicy,
)

__all__ = [
    "Calibration",
    "ChatMessage",
    "Engine",
    "Fitted",
    "Outcome",
    "OutputLengths",
    "SchedulingPolicy",
    "Simulator",
    "prompt_tokens",
]
