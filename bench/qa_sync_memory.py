"""4. qa-sync: time and peak memory to process a batch output of realistic size.

Each output line is about 4 KB (a long Korean answer, as the test suite's memory test uses), so
50,000 lines, the Batch API's line limit, are about 200 MB. The fake provider makes the file
on the fly, chunk by chunk: nothing holds it whole but the code under test.

Each measurement runs in a child process of its own, so its peak resident memory (ru_maxrss)
is that run's alone: the fake provider's thread, qa-sync's sync of one job (download, process,
raw and processed objects to S3 on moto, registry on SQLite) and the interpreter itself.
"growth" is the peak minus the resident memory just before the sync started.

Baseline, in the same run: the load-everything way: the whole output file read into memory,
every line json.loads'ed into a list, the pairs extracted, the processed JSON dumped as one
string, both objects put whole.
"""

import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Emulator, emulator

SIZES = (5_000, 50_000)
ANSWER = "오늘도 꾸준히 운동한 덕분에 컨디션이 정말 좋아졌어요. " * 47
LINES_PER_CHUNK = 64
API_KEY = "sk-bench"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Run:
    lines: int
    output_mib: float
    seconds: float
    peak_rss_mib: float
    growth_mib: float
    pairs: int


@dataclass(frozen=True)
class QaSyncMemory:
    streaming: list[Run]
    baseline_load_all: list[Run]
    growth_ratio_streaming: float
    """Growth at the largest size over growth at the smallest: 1 is perfectly flat."""
    growth_ratio_baseline: float


def run() -> QaSyncMemory:
    with emulator("moto-qa-sync") as aws:
        streaming = [child(aws, "stream", lines) for lines in SIZES]
        baseline = [child(aws, "load-all", lines) for lines in SIZES]
    return QaSyncMemory(
        streaming=streaming,
        baseline_load_all=baseline,
        growth_ratio_streaming=round(streaming[-1].growth_mib / streaming[0].growth_mib, 2),
        growth_ratio_baseline=round(baseline[-1].growth_mib / baseline[0].growth_mib, 2),
    )


def child(aws: Emulator, mode: str, lines: int) -> Run:
    argv = [sys.executable, "-m", "bench.qa_sync_memory", mode, str(lines)]
    done = subprocess.run(argv, env={**_environ(), **aws.env()}, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"qa-sync {mode} {lines}: {done.stderr.decode()[-2000:]}")
    return Run(**json.loads(done.stdout.decode().strip().splitlines()[-1]))


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


# --- in the child process ---


def output_line(number: int) -> bytes:
    """One realistic output line (~4 KB): a 200 with a JSON {"q", "a"} answer."""
    content = json.dumps(
        {"q": f"{number}번째 질문: 어떻게 꾸준히 운동하나요?", "a": ANSWER}, ensure_ascii=False
    )
    record = {
        "id": f"batch_req_{number}",
        "custom_id": f"req-{number}",
        "response": {
            "status_code": 200,
            "request_id": f"req_{number}",
            "body": {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content, "refusal": None},
                    }
                ],
                "usage": {"prompt_tokens": 120, "completion_tokens": 60, "total_tokens": 180},
            },
        },
        "error": None,
    }
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def generated_output(lines: int) -> Iterator[bytes]:
    for start in range(0, lines, LINES_PER_CHUNK):
        yield b"".join(output_line(n) for n in range(start, min(start + LINES_PER_CHUNK, lines)))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def measure_in_child(mode: str, lines: int) -> Run:
    import boto3
    from devstack.fakes.fake_batch_api import FakeBatchApi, create_app
    from devstack.serving import BackgroundServer
    from qa_sync.components import build_components
    from qa_sync.settings import QaSyncSettings

    bucket = f"qa-bench-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    api = FakeBatchApi(api_key=API_KEY)
    with BackgroundServer(create_app(api)) as server, tempfile.TemporaryDirectory() as tmp:
        batch = api.seed_batch(lambda: generated_output(lines), total=lines)
        settings = QaSyncSettings(
            database_url=f"sqlite:///{tmp}/qa-sync.db",
            qa_bucket=bucket,
            openai_base_url=f"{server.url}/v1",
            openai_api_key=API_KEY,
        )
        qa = build_components(settings)
        job = qa.registry.register("77", batch["id"])
        before = rss_mib()
        started = time.perf_counter()
        if mode == "stream":
            result = qa.syncer.sync(job)
            if result.outcome != "synced":
                raise RuntimeError(f"sync: {result.outcome} {result.detail}")
            pairs = qa.registry.get(job.task_id).generated_qa_pairs or 0
        else:
            pairs = load_everything(settings, batch["output_file_id"], s3, bucket)
        seconds = time.perf_counter() - started
        qa.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(len(chunk) for chunk in generated_output(lines))
    return Run(
        lines=lines,
        output_mib=round(size / MIB, 1),
        seconds=round(seconds, 2),
        peak_rss_mib=round(peak, 1),
        growth_mib=round(peak - before, 1),
        pairs=pairs,
    )


def load_everything(settings: Any, file_id: str, s3: Any, bucket: str) -> int:
    """The baseline: everything in memory at once."""
    import openai
    from qa_sync.qa_lines import BadLineFound, parse_content

    client = openai.OpenAI(base_url=settings.openai_base_url, api_key=API_KEY)
    raw = client.files.content(file_id).read()
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    pairs = []
    for record in records:
        try:
            content = record["response"]["body"]["choices"][0]["message"]["content"]
            question, answer = parse_content(content)
        except (BadLineFound, KeyError, IndexError, TypeError):
            continue
        pairs.append({"question": question, "answer": answer, "custom_id": record["custom_id"]})
    document = json.dumps({"total_qa_pairs": len(pairs), "qa_pairs": pairs}, ensure_ascii=False)
    s3.put_object(Bucket=bucket, Key="raw.jsonl", Body=raw)
    s3.put_object(Bucket=bucket, Key="processed.json", Body=document.encode())
    return len(pairs)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        from dataclasses import asdict

        print(json.dumps(asdict(measure_in_child(sys.argv[1], int(sys.argv[2])))))
    else:
        from dataclasses import asdict

        print(json.dumps(asdict(run()), indent=1))
