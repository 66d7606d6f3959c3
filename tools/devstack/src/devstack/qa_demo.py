"""`make demo`'s second half: a finished OpenAI batch lands in S3 through qa-sync.

The fake Batch API that `make run` starts plays the provider: a completed batch is seeded with
a few realistic output lines (JSON pairs, the older `Q: … A:` text, one truncated answer), the
job is registered with qa-sync's own CLI, and qa-sync's poller does the rest.
"""

import json
import subprocess
import time
from typing import Any

import httpx

from devstack.processes import python_module

INFLUENCER_ID = 7


def _output_line(custom_id: str, content: str, finish_reason: str = "stop") -> str:
    body = {"choices": [{"message": {"content": content}, "finish_reason": finish_reason}]}
    response = {"status_code": 200, "request_id": f"req_{custom_id}", "body": body}
    line = {"id": f"batch_req_{custom_id}", "custom_id": custom_id, "response": response}
    return json.dumps(line, ensure_ascii=False)


def demo_batch_output() -> str:
    lines = [
        _output_line("qa-1", json.dumps({"q": "아침 루틴 어떻게 시작해?", "a": "물 한 잔부터!"})),
        _output_line("qa-2", "Q: 러닝 전에 뭐 먹어? A: 바나나 반 개 정도."),
        _output_line("qa-3", '{"q": "잠은 몇 시간', finish_reason="length"),
    ]
    return "\n".join(lines) + "\n"


def run_qa_demo(
    batch_api_url: str, qa_sync_url: str, qa_sync_env: dict[str, str], bucket: str
) -> int:
    batch = httpx.post(
        f"{batch_api_url}/seed/batches",
        json={"status": "completed", "output": demo_batch_output(), "total": 3},
        timeout=10,
    ).json()
    print(f"\nqa-sync: a completed batch {batch['id']} with 3 output lines (one truncated)")
    job = _register(batch["id"], qa_sync_env)
    print(f"registered {job['task_id']}; waiting for qa-sync's poller ...", flush=True)
    synced = _wait_until_terminal(qa_sync_url, job["task_id"], _auth(qa_sync_env))
    if synced is None:
        print("qa-sync did not finish the job within 60s; see .run/logs/qa-sync.log")
        return 1
    print(f"  status {synced['status']}, {synced['generated_qa_pairs']} pairs")
    print(f"  processed  s3://{bucket}/{synced['processed_key']}")
    print(f"  raw        s3://{bucket}/{synced['raw_key']}")
    pairs = httpx.get(
        f"{qa_sync_url}/jobs/{job['task_id']}/qa-pairs", headers=_auth(qa_sync_env), timeout=10
    ).json()
    print(json.dumps(pairs["qa_pairs"], ensure_ascii=False, indent=2))
    return 0


def _register(batch_id: str, env: dict[str, str]) -> dict[str, Any]:
    argv = python_module(
        "qa_sync", "register", "--influencer-id", str(INFLUENCER_ID), "--batch-id", batch_id
    )
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)  # noqa: S603
    job: dict[str, Any] = json.loads(done.stdout)
    return job


def _auth(env: dict[str, str]) -> dict[str, str]:
    return {"X-API-Key": env["QA_SYNC_API_KEYS"].split(",")[0]}


def _wait_until_terminal(
    qa_sync_url: str, task_id: str, headers: dict[str, str]
) -> dict[str, Any] | None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{qa_sync_url}/jobs/{task_id}", headers=headers, timeout=5).json()
        job: dict[str, Any] = answer["data"]
        if job["status"] != "pending":
            return job
        time.sleep(1)
    return None
