"""The LLM for machines without a GPU: vLLM itself, its CPU build, serving Gemma 3 270M.

The same OpenAI server, `/health` and `/metrics` as production's vLLM pods, so what the worker
and its LLM gate do locally is what they do there. vLLM lives in an environment of its own
(`.vllm`, made by `make vllm` from tools/vllm/requirements.txt): its pins (transformers 5.x,
fastapi < 0.137, openai >= 2.25, torch 2.13.0+cpu) are not the project's, as production gives it
an image of its own.
"""

import json
import os
from pathlib import Path

from devstack.local_model import MODEL_ALIAS, is_built, model_dir
from devstack.processes import ManagedProcess, ProcessFailedToStart

REPO_ROOT = Path(__file__).resolve().parents[4]
VLLM_ENV = Path(os.environ.get("VLLM_ENV") or REPO_ROOT / ".vllm")
"""vLLM's virtual environment; `VLLM_ENV` points elsewhere."""
START_TIMEOUT_S = 300.0
"""From launch to `/health` answering 200, measured on 2 cores shared with other test suites
(load average 4 to 6): 68 to 121 s; about 50 s on an idle machine (issue 27)."""
KV_CACHE_GIB = 1
"""`VLLM_CPU_KVCACHE_SPACE`: 1 GiB holds 247,802 tokens of this model (vLLM's start-up log), far
beyond what a local run asks. Measured with it: 5.6 GB resident over vLLM's three processes
(API server 1.7, engine core 0.9, worker 3.0)."""


PLAIN_CHAT_TEMPLATE = REPO_ROOT / "tools" / "vllm" / "plain-chat-template.jinja"
"""vLLM's `--chat-template` for the local model: the messages as plain text, no turns. Gemma 3
270M is a base model: in Gemma's turn format it continued production's prompt instead of
answering it (tools/vllm/README.md, The prompt a base model completes)."""
BASE_MODEL_PROMPT = REPO_ROOT / "tools" / "vllm" / "base-model-prompt.txt"
"""The worker's PROMPT_TEMPLATE_FILE for the local model: worked examples (`[기록]` → `[피드백]`)
ending at the member's `[피드백]`, a text a base model completes with a feedback."""
BASE_MODEL_STOP = ("[기록]", "[피드백]")
"""The worker's LLM_STOP for it: after its feedback a base model writes the next example."""


SAMPLING = {"top_k": 64, "top_p": 0.95}
"""vLLM's sampling defaults for the local model (`--override-generation-config`): Gemma 3's
own, which its GGUF does not carry, so vLLM sampled from the whole vocabulary where llama.cpp
had cut the tail (top_k 40, top_p 0.95, min_p 0.05)."""


def base_model_worker_env() -> dict[str, str]:
    """The worker's settings for the local model served with PLAIN_CHAT_TEMPLATE."""
    return {
        "PROMPT_TEMPLATE_FILE": str(BASE_MODEL_PROMPT),
        "LLM_STOP": json.dumps(BASE_MODEL_STOP, ensure_ascii=False),
    }


def vllm_python() -> Path:
    return VLLM_ENV / "bin" / "python"


def vllm_server(
    port: int,
    log_path: Path,
    *extra_args: str,
    cores: str | None = None,
    chat_template: Path | None = PLAIN_CHAT_TEMPLATE,
) -> ManagedProcess:
    """A vLLM OpenAI server serving `MODEL_ALIAS` on 127.0.0.1:`port`, ready when `/health` is.

    `extra_args` go to vLLM as they are (`--max-num-seqs 16`, say); `cores` binds its engine's
    threads (VLLM_CPU_OMP_THREADS_BIND: "1", "0-1"): unset, vLLM takes core 0 and leaves core 1
    to the rest, so a second replica would share core 0; `chat_template` None serves the
    model's own, Gemma's turn format (production's path, for comparison). Started with the
    module, not the `vllm` console script, which fails (the distribution is named vllm-cpu);
    eager, because torch.compile adds about 100 s to every start and its cache did not reload.
    """
    python, model = vllm_python(), model_dir()
    if not python.exists() or not is_built(model):
        raise ProcessFailedToStart(
            f"vLLM or its model is not installed ({python}, {model}): run `make vllm`"
        )
    argv = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model),
        "--served-model-name", MODEL_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--enforce-eager",
        "--override-generation-config", json.dumps(SAMPLING),
        *(("--chat-template", str(chat_template)) if chat_template else ()),
        *extra_args,
    ]  # fmt: skip
    env = {
        "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB),
        # Nothing but loopback is reachable: no usage report, no look-up on the Hub.
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
        **({"VLLM_CPU_OMP_THREADS_BIND": cores} if cores else {}),
    }
    return ManagedProcess(
        name="llm",
        argv=argv,
        env=env,
        log_path=log_path,
        ready_url=f"http://127.0.0.1:{port}/health",
        private_tmp=True,
    )
