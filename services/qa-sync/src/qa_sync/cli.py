"""`python -m qa_sync [command]`: the server (default) and the operator's commands.

serve                         webhook, fetch API, health, poller and reconciler in one process
migrate                       bring the registry's schema up to date
register --influencer-id I --batch-id B [--task-id T]   a pending job for an OpenAI batch
                              (with --task-id: adopt a batch the registry lacks under its task id)
sync [--task-id T]            sync pending jobs (or one) now instead of waiting for the poller
reconcile [--once]            verify and repair every terminal job (prints the report as JSON)
verify                        the same checks, changing nothing; exit 1 if anything is wrong
fetch TASK_ID [--format json|chat-jsonl] [--output FILE]   a job's QA pairs for fine-tuning
"""

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import uvicorn
from llm_common.telemetry import secret_values, setup_logging, setup_tracing, shutdown_tracing
from pydantic import ValidationError

from qa_sync.app import create_app
from qa_sync.components import Components, build_components
from qa_sync.fetch import (
    FetchedPairs,
    JobBusy,
    JobNotReady,
    JobPending,
    PairFormat,
    PairsUnavailable,
)
from qa_sync.registry.database import create_registry_engine, migrate
from qa_sync.registry.jobs import JobNotFound, TaskIdTaken
from qa_sync.settings import QaSyncSettings
from qa_sync.storage import StorageError
from qa_sync.views import JobView


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m qa_sync", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the service (the default)")
    commands.add_parser("migrate", help="bring the registry's schema up to date")
    register = commands.add_parser(
        "register",
        help="register a job for an OpenAI batch (or adopt one with --task-id)",
        description="Register a pending job for an OpenAI batch; the poller (or its webhook) "
        "syncs it once the batch has finished. Prints the job as JSON.",
    )
    register.add_argument(
        "--influencer-id", required=True, help="the influencer the QA pairs are for (a UUID)"
    )
    register.add_argument(
        "--batch-id", required=True, help="the OpenAI batch id (batch_...); registered once"
    )
    register.add_argument(
        "--batch-key", help="the old system's batch_key column, kept for its readers"
    )
    register.add_argument(
        "--task-id",
        help="adopt the batch under this existing task id (qa_{influencer_id}_{ts}) instead of "
        "a new one: its S3 objects are found and written under that task's keys",
    )
    sync = commands.add_parser("sync", help="sync pending jobs now")
    sync.add_argument("--task-id", help="only this job (default: every pending job)")
    reconcile = commands.add_parser("reconcile", help="verify and repair terminal jobs")
    reconcile.add_argument(
        "--once", action="store_true", help="one run, then exit (default: every interval)"
    )
    commands.add_parser("verify", help="check terminal jobs, change nothing")
    fetch = commands.add_parser("fetch", help="a job's QA pairs")
    fetch.add_argument("task_id", help="the job's task id")
    fetch.add_argument(
        "--format",
        type=PairFormat,
        default=PairFormat.JSON,
        choices=list(PairFormat),
        help="json: the processed document; chat-jsonl: one fine-tuning chat per line",
    )
    fetch.add_argument("--output", type=Path, help="file to write (default: stdout)")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = QaSyncSettings()
    except ValidationError as error:
        sys.exit(f"qa-sync: invalid configuration\n{error}")
    command = args.command or "serve"
    _setup_telemetry(settings, command)
    if command == "migrate":
        engine = create_registry_engine(settings.database_url)
        migrate(engine)
        engine.dispose()
        print(json.dumps({"migrated": True}))
        return 0
    components = build_components(settings)
    try:
        return COMMANDS[command](components, args)
    finally:
        components.close()
        shutdown_tracing()


def _setup_telemetry(settings: QaSyncSettings, command: str) -> None:
    # A command's own output (a report, the pairs) owns stdout; its logs go to stderr.
    stream = sys.stdout if command == "serve" else sys.stderr
    setup_logging(settings.log_level, secret_values(settings), stream=stream)
    setup_tracing("qa-sync")


def _serve(components: Components, _: argparse.Namespace) -> int:
    settings = components.settings
    uvicorn.run(create_app(components), host=settings.host, port=settings.port, log_config=None)
    return 0


def _register(components: Components, args: argparse.Namespace) -> int:
    try:
        job = components.registry.register(
            args.influencer_id, args.batch_id, args.batch_key, args.task_id
        )
    except TaskIdTaken as error:
        print(f"cannot register {args.batch_id}: {error}", file=sys.stderr)
        return 1
    print(JobView.of(job).model_dump_json())
    return 0


def _sync(components: Components, args: argparse.Namespace) -> int:
    if args.task_id:
        results = [components.syncer.sync(components.registry.get(args.task_id))]
    else:
        results = components.syncer.sync_pending()
    for result in results:
        print(
            json.dumps(
                {"task_id": result.task_id, "outcome": result.outcome, "detail": result.detail}
            )
        )
    return 0


def _reconcile(components: Components, args: argparse.Namespace) -> int:
    while True:
        report = components.reconciler.run(repair=True)
        print(report.model_dump_json(indent=2), flush=True)
        if args.once:
            return 0 if report.healthy else 1
        time.sleep(components.settings.reconcile_interval_seconds)


def _verify(components: Components, _: argparse.Namespace) -> int:
    report = components.reconciler.run(repair=False)
    print(report.model_dump_json(indent=2))
    return 0 if report.healthy else 1


def _fetch(components: Components, args: argparse.Namespace) -> int:
    try:
        fetched = _fetch_synced(components, args.task_id)
    except (JobNotFound, JobNotReady, JobPending, JobBusy, PairsUnavailable, StorageError) as error:
        print(f"cannot fetch {args.task_id}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    with fetched:
        _write(args.output, fetched.body(args.format, components.settings.finetune_system_prompt))
    print(f"{args.task_id}: pairs from {fetched.source}", file=sys.stderr)
    return 0


def _fetch_synced(components: Components, task_id: str) -> FetchedPairs:
    """The pairs; a job still pending is synced first (the operator waits for it here)."""
    try:
        return components.fetcher.fetch(task_id)
    except JobPending:
        components.syncer.sync(components.registry.get(task_id))
    return components.fetcher.fetch(task_id)


def _write(path: Path | None, chunks: Iterable[bytes]) -> None:
    target: IO[bytes]
    with path.open("wb") if path else open(sys.stdout.fileno(), "wb", closefd=False) as target:
        for chunk in chunks:
            target.write(chunk)


COMMANDS: dict[str, Callable[[Components, argparse.Namespace], int]] = {
    "serve": _serve,
    "register": _register,
    "sync": _sync,
    "reconcile": _reconcile,
    "verify": _verify,
    "fetch": _fetch,
}
