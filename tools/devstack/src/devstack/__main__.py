"""`python -m devstack run` (make run) and `python -m devstack demo` (make demo)."""

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
from llm_common.contracts.example import example_weekly_record

from devstack.processes import ProcessFailedToStart
from devstack.prometheus import prometheus_binary
from devstack.qa_demo import run_qa_demo
from devstack.stack import Ports, Stack, StackConfig

RUN_DIR = Path(".run")
WORKER_METRICS_PORT = 9100
DEMO_TIMEOUT_S = 300.0


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the launcher."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def _ports_in_use(ports: Ports, skip_llm: bool, with_prometheus: bool) -> list[int]:
    wanted = [ports.moto, ports.ingest, ports.callback, ports.qa_sync, ports.batch_api]
    if with_prometheus:
        wanted += [ports.worker_metrics, ports.prometheus]
    if not skip_llm:
        wanted.append(ports.llm)
    busy = []
    for port in wanted:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def run() -> int:
    external_llm = os.environ.get("LLM_BASE_URL", "").strip()
    # With Debian's prometheus installed, a real Prometheus scrapes the stack (worker included).
    with_prometheus = prometheus_binary() is not None
    config = StackConfig(
        run_dir=RUN_DIR,
        llm=external_llm or "llama",
        llm_model=os.environ.get("LLM_MODEL", "") or StackConfig.llm_model,
        ports=Ports(worker_metrics=WORKER_METRICS_PORT) if with_prometheus else Ports(),
        prometheus_rules=() if with_prometheus else None,
    )
    busy = _ports_in_use(config.ports, bool(external_llm), with_prometheus)
    if busy:
        print(f"ports {busy} are taken: is another `make run` still up?", file=sys.stderr)
        return 1
    for old in (RUN_DIR / "logs").glob("*.log"):
        old.unlink()
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    stack = Stack(config)
    started = time.monotonic()
    print(f"starting the platform (logs in {RUN_DIR / 'logs'}/) ...", flush=True)
    try:
        stack.start()
        print(_banner(stack, time.monotonic() - started), flush=True)
        return _follow(stack)
    except ProcessFailedToStart as failure:
        print(f"start-up failed: {failure}", file=sys.stderr)
        return 1
    except Interrupted:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        print("stopped.", flush=True)


def _banner(stack: Stack, elapsed: float) -> str:
    llm = stack.llm_base_url + ("" if stack.config.llm != "llama" else " (local Gemma 3 270M, CPU)")
    return "\n".join(
        [
            f"platform up in {elapsed:.1f}s",
            f"  ingest     {stack.ingest_url}/ai/feedback   (docs: {stack.ingest_url}/docs)",
            f"  LLM        {llm}",
            f"  callbacks  {stack.callback_url}   (verifies signatures, prints each delivery)",
            f"  SQS/S3     {stack.aws_endpoint}   (moto)",
            f"  qa-sync    {stack.qa_sync_url}   (provider: fake Batch API {stack.batch_api_url})",
            *_prometheus_lines(stack),
            "now run `make demo` in another terminal; Ctrl-C here stops everything.",
        ]
    )


def _prometheus_lines(stack: Stack) -> list[str]:
    if stack.config.prometheus_rules is None:
        return ["  Prometheus not installed (apt-get install prometheus): no local metrics server"]
    return [f"  Prometheus {stack.prometheus_url}/targets   (scrapes ingest, worker, qa-sync)"]


def _follow(stack: Stack) -> int:
    """Echo the callback receiver's output until interrupted or a process dies."""
    receiver_log = stack.processes["callback"].log_path
    offset = receiver_log.stat().st_size
    while True:
        with receiver_log.open() as log:
            log.seek(offset)
            for line in log:
                print(f"[callback] {line}", end="", flush=True)
            offset = log.tell()
        for process in stack.processes.values():
            if not process.is_running():
                print(f"{process.name} exited:\n{process.tail()}", file=sys.stderr)
                return 1
        time.sleep(0.5)


def demo(ingest_url: str, callback_url: str) -> int:
    """The feedback path, then the QA path, against the stack `make run` started."""
    status = feedback_demo(ingest_url, callback_url)
    if status != 0:
        return status
    stack = Stack(StackConfig(run_dir=RUN_DIR.resolve()))
    return run_qa_demo(
        stack.batch_api_url, stack.qa_sync_url, stack.qa_sync_env(), stack.config.qa_bucket
    )


def feedback_demo(ingest_url: str, callback_url: str) -> int:
    request_id = f"demo-{int(time.time())}"
    body = example_weekly_record(request_id)
    print(f"POST {ingest_url}/ai/feedback (memberId={body['memberId']}, requestId={request_id})")
    try:
        answer = httpx.post(f"{ingest_url}/ai/feedback", json=body, timeout=10)
    except httpx.TransportError as error:
        print(f"ingest is not reachable ({error}): start the platform with `make run` first.")
        return 1
    print(f"← {answer.status_code} {answer.text}")
    if answer.status_code != 202:
        return 1
    print("waiting for the worker, the LLM and the signed callback ...", flush=True)
    started = time.monotonic()
    while time.monotonic() - started < DEMO_TIMEOUT_S:
        for delivery in httpx.get(f"{callback_url}/deliveries", timeout=5).json():
            if delivery["webhook_id"] == request_id:
                print(f"callback after {time.monotonic() - started:.1f}s, signature verified:")
                print(json.dumps(delivery["body"], ensure_ascii=False, indent=2))
                return 0
        time.sleep(1)
    print(f"no callback within {DEMO_TIMEOUT_S:.0f}s; see .run/logs/worker.log")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole platform locally")
    demo_parser = sub.add_parser("demo", help="post a request and print the feedback")
    demo_parser.add_argument("--ingest-url", default=f"http://127.0.0.1:{Ports.ingest}")
    demo_parser.add_argument("--callback-url", default=f"http://127.0.0.1:{Ports.callback}")
    args = parser.parse_args()
    if args.command == "run":
        return run()
    return demo(args.ingest_url, args.callback_url)


if __name__ == "__main__":
    sys.exit(main())
