"""`python -m qa_sync` as operators run it: the server process and the CLI commands, against
moto and the fake provider over HTTP, sharing one SQLite registry."""

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from devstack.fakes.fake_batch_api import FakeBatchApi
from devstack.processes import ManagedProcess, free_port, python_module
from llm_common.webhooks import signature_headers
from qa_sync.cli import parser

from tests.support.qa_sync import API_KEY, WEBHOOK_SECRET, pairs_file
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.e2e

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture
def env(tmp_path: Path, bucket: str, provider_url: str, aws_env: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'qa-sync.db'}",
        "QA_BUCKET": bucket,
        "OPENAI_BASE_URL": provider_url,
        "OPENAI_API_KEY": "sk-test-qa-sync",
        "OPENAI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OPENAI_MAX_RETRIES": "0",
        "POLL_INTERVAL_SECONDS": "3600",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "QA_SYNC_API_KEYS": API_KEY,
    }


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    url = f"http://127.0.0.1:{env['PORT']}"
    process = ManagedProcess(
        name="qa-sync",
        argv=python_module("qa_sync"),
        log_path=tmp_path / "qa-sync.log",
        env=env,
        ready_url=f"{url}/readyz",
    ).start(timeout=30)
    yield url
    process.stop()
    assert "Application shutdown complete" in process.tail()  # SIGTERM drains the loops


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qa_sync", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_webhook_to_fine_tuning_pairs_and_a_repair_from_the_command_line(
    server: str, env: dict[str, str], provider: FakeBatchApi, s3: "S3Client", bucket: str
) -> None:
    output, _ = pairs_file(4)
    batch = provider.seed_batch(output)
    registered = cli(
        env,
        "register",
        "--influencer-id",
        "8c1f2d4e-aaaa-4bbb-8ccc-0d0e0f101112",
        "--batch-id",
        batch["id"],
    )
    assert registered.returncode == 0, registered.stderr
    task_id = json.loads(registered.stdout)["task_id"]

    body = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "created_at": 1,
            "type": "batch.completed",
            "data": {"id": batch["id"]},
        }
    )
    answer = httpx.post(
        f"{server}/webhooks/openai",
        content=body,
        headers=signature_headers(WEBHOOK_SECRET, "wh_e2e", body),
    )
    assert answer.status_code == 200
    wait_until(
        lambda: (
            httpx.get(f"{server}/jobs/{task_id}", headers=AUTH).json()["data"]["status"]
            == "completed"
        ),
        what="the webhook's sync",
    )
    pairs = httpx.get(
        f"{server}/jobs/{task_id}/qa-pairs", params={"format": "chat-jsonl"}, headers=AUTH
    )
    assert len(pairs.text.splitlines()) == 4

    job = httpx.get(f"{server}/jobs/{task_id}", headers=AUTH).json()["data"]
    s3.delete_object(Bucket=bucket, Key=job["processed_key"])

    verify = cli(env, "verify")
    assert verify.returncode == 1
    assert [f["problem"] for f in json.loads(verify.stdout)["findings"]] == ["missing"]

    reconcile = cli(env, "reconcile", "--once")
    assert reconcile.returncode == 0, reconcile.stderr
    report = json.loads(reconcile.stdout)
    assert [(fix["object"], fix["action"]) for fix in report["fixes"]] == [
        ("processed", "rebuilt_from_raw")
    ]
    assert cli(env, "verify").returncode == 0


def test_migrate_and_sync_from_the_command_line(
    env: dict[str, str], provider: FakeBatchApi, tmp_path: Path
) -> None:
    assert cli(env, "migrate").returncode == 0
    output, _ = pairs_file(2)
    batch = provider.seed_batch(output)
    task_id = json.loads(
        cli(env, "register", "--influencer-id", "3", "--batch-id", batch["id"]).stdout
    )["task_id"]

    synced = cli(env, "sync")

    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout) == {
        "task_id": task_id,
        "outcome": "synced",
        "detail": "2 pairs",
    }
    fetched = cli(env, "fetch", task_id)
    assert json.loads(fetched.stdout)["total_qa_pairs"] == 2
    target = tmp_path / "pairs.jsonl"
    as_chat = cli(env, "fetch", task_id, "--format", "chat-jsonl", "--output", str(target))
    assert as_chat.returncode == 0, as_chat.stderr
    assert "pairs from processed" in as_chat.stderr
    assert [
        json.loads(line)["messages"][2]["role"] for line in target.read_text().splitlines()
    ] == [
        "assistant",
        "assistant",
    ]


def test_the_service_refuses_to_start_without_its_bucket_setting(env: dict[str, str]) -> None:
    del env["QA_BUCKET"]
    started = cli(env, "migrate")
    assert started.returncode == 1
    assert "invalid configuration" in started.stderr
    assert "qa_bucket" in started.stderr.lower()


def test_every_command_line_flag_is_described() -> None:
    undescribed = []
    for name, command in subcommands(parser()).items():
        for action in command._actions:
            if action.help is None:
                undescribed.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert undescribed == []


def subcommands(root: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_register_adopts_a_batch_under_its_task_id(
    env: dict[str, str], provider: FakeBatchApi
) -> None:
    batch = provider.seed_batch(pairs_file(1)[0])
    task_id = "qa_8c1f2d4e-aaaa-4bbb-8ccc-0d0e0f101112_1749819600"
    argv = ["register", "--influencer-id", "8c1f2d4e-aaaa-4bbb-8ccc-0d0e0f101112"]

    adopted = cli(env, *argv, "--batch-id", batch["id"], "--task-id", task_id)
    clash = cli(env, *argv, "--batch-id", batch["id"], "--task-id", "qa_other_1")

    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["task_id"] == task_id
    assert clash.returncode == 1
    assert f"registered as {task_id}" in clash.stderr
