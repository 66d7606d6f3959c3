"""`python -m devstack run` (make run), `python -m devstack demo` (make demo) and
`python -m devstack admin ...` (make admin: the worker's operator commands against that stack)."""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from devstack.feedback_demo import feedback_demo
from devstack.processes import ProcessFailedToStart, python_module
from devstack.prometheus import prometheus_binary
from devstack.qa_demo import run_qa_demo
from devstack.stack import REQUEST_TABLE, Ports, Stack, StackConfig

RUN_DIR = Path(".run")
WORKER_ENV = RUN_DIR / "worker.env.json"
"""The running stack's worker environment (it holds the callback secret: readable by this user
only), for `make admin`."""
WORKER_METRICS_PORT = 9100
FAILURE_PATH = "/feedback-failures"
"""Where `make run`'s worker sends failure notices (off by default elsewhere)."""


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
        llm=external_llm or StackConfig.llm,
        llm_model=os.environ.get("LLM_MODEL", "") or StackConfig.llm_model,
        ports=Ports(worker_metrics=WORKER_METRICS_PORT) if with_prometheus else Ports(),
        prometheus_rules=() if with_prometheus else None,
        worker_env={"CALLBACK_FAILURE_PATH": FAILURE_PATH},
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
        _keep_worker_env(stack)
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
        WORKER_ENV.unlink(missing_ok=True)
        print("stopped.", flush=True)


def _keep_worker_env(stack: Stack) -> None:
    WORKER_ENV.unlink(missing_ok=True)
    WORKER_ENV.touch(mode=0o600)
    WORKER_ENV.write_text(json.dumps(stack.worker_env()))


def admin(args: list[str]) -> int:
    """`python -m feedback_worker admin ARGS` with the running stack's worker environment."""
    if not WORKER_ENV.exists():
        print("no stack is running: start it with `make run` first", file=sys.stderr)
        return 1
    env = {**os.environ, **json.loads(WORKER_ENV.read_text())}
    argv = python_module("feedback_worker", "admin", *args)
    return subprocess.run(argv, env=env, check=False).returncode  # noqa: S603 - our own argv


def _banner(stack: Stack, elapsed: float) -> str:
    local = stack.config.llm == StackConfig.llm
    llm = stack.llm_base_url + (" (vLLM on CPU: Gemma 3 270M)" if local else "")
    return "\n".join(
        [
            f"platform up in {elapsed:.1f}s",
            f"  ingest     {stack.ingest_url}/ai/feedback   (docs: {stack.ingest_url}/docs)",
            f"             X-API-Key: the one in {stack.config.run_dir}/ingest-api-key",
            f"  LLM        {llm}",
            f"  callbacks  {stack.callback_url}   (verifies signatures, prints each delivery)",
            f"  AWS        {stack.aws_endpoint}   (moto: SQS, S3, DynamoDB's {REQUEST_TABLE})",
            f"  qa-sync    {stack.qa_sync_url}   (provider: fake Batch API {stack.batch_api_url})",
            *_prometheus_lines(stack),
            'now run `make demo` in another terminal, then `make admin ARGS="status <id>"`;',
            "Ctrl-C here stops everything.",
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
    stack = Stack(StackConfig(run_dir=RUN_DIR.resolve()))
    with httpx.Client(base_url=ingest_url, headers=stack.ingest_headers, timeout=10) as ingest:
        status = feedback_demo(ingest, callback_url)
    if status != 0:
        return status
    return run_qa_demo(
        stack.batch_api_url, stack.qa_sync_url, stack.qa_sync_env(), stack.config.qa_bucket
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole platform locally")
    demo_parser = sub.add_parser("demo", help="post a request and print the feedback")
    demo_parser.add_argument("--ingest-url", default=f"http://127.0.0.1:{Ports.ingest}")
    demo_parser.add_argument("--callback-url", default=f"http://127.0.0.1:{Ports.callback}")
    admin_parser = sub.add_parser("admin", help="the worker's operator commands on this stack")
    admin_parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command == "run":
        return run()
    if args.command == "admin":
        return admin(args.args)
    return demo(args.ingest_url, args.callback_url)


if __name__ == "__main__":
    sys.exit(main())
