"""The whole platform on one machine: what `make run` starts and the end-to-end tests drive.

Order matters: the emulator first, then the queues and bucket it must hold, the LLM, the
callback receiver, and last the services that depend on all of them.
"""

import base64
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from llm_common.requests_store import create_request_table

from devstack.local_llm import START_TIMEOUT_S, base_model_worker_env, vllm_server
from devstack.local_model import MODEL_ALIAS
from devstack.processes import ManagedProcess, ProcessFailedToStart, python_module
from devstack.prometheus import prometheus_binary, prometheus_process, write_config
from devstack.queues import FeedbackQueues, create_feedback_queues

AWS_REGION = "us-east-1"
REQUEST_TABLE = "feedback-requests"
"""The request store's DynamoDB table (k8s/cluster/request-store.yaml creates it in a cluster)."""
# moto accepts any credentials; these only keep boto3 from looking for real ones.
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


@dataclass(frozen=True)
class Ports:
    moto: int = 4566
    llm: int = 8000
    ingest: int = 8080
    callback: int = 8081
    qa_sync: int = 8090
    batch_api: int = 8095
    worker_metrics: int = 0
    """The worker's METRICS_PORT; 0 (no metrics) keeps workers side by side from colliding."""
    prometheus: int = 9091
    """Not 9090: a Prometheus installed as a system service may hold that one."""


@dataclass(frozen=True)
class StackConfig:
    run_dir: Path
    ports: Ports = Ports()
    llm: str = "vllm"
    """"vllm" (vLLM on CPU with the local model), "fake" (devstack.fakes.llm in exact-latency mode,
    no latency until a test sets one) or a server's base URL."""
    llm_model: str = MODEL_ALIAS
    llm_max_tokens: int = 160
    qa_bucket: str = "qa-data"
    worker_env: dict[str, str] = field(default_factory=dict)
    ingest_env: dict[str, str] = field(default_factory=dict)
    with_qa_sync: bool = True
    otlp_endpoint: str | None = None
    """An OTLP/HTTP collector (devstack.fakes.otlp_receiver, say) every process exports spans to."""
    prometheus_rules: tuple[Path, ...] | None = None
    """Start a real Prometheus scraping the stack with these rule files (None: no Prometheus).
    It scrapes the worker only when `ports.worker_metrics` is set."""
    scrape_interval: str = "5s"


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret for one run; worker and receiver share it via env."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _local_key(path: Path) -> str:
    """The key stored at `path`, made (readable by this user only) when there is none."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(key)
    return key


class Stack:
    """Starts the platform's processes in order and stops them in reverse."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.callback_secret = new_webhook_secret()
        self.ingest_api_key = _local_key(config.run_dir / "ingest-api-key")
        """The key for ingest's /ai/feedback (INGEST_API_KEYS), kept in the run directory so
        `make demo`, another process, sends the one `make run` started ingest with."""
        self.qa_sync_api_key = _local_key(config.run_dir / "qa-sync-api-key")
        """The key for qa-sync's job APIs (QA_SYNC_API_KEYS), kept in the run directory so
        `make demo`, another process, sends the one `make run` started qa-sync with."""
        self.processes: dict[str, ManagedProcess] = {}
        self.queues: FeedbackQueues | None = None

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.moto}"

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.ingest}"

    @property
    def ingest_headers(self) -> dict[str, str]:
        """What a client of ingest sends to be let in (`ingest_env` may set other keys)."""
        return {"X-API-Key": self.ingest_api_key}

    @property
    def callback_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.callback}"

    @property
    def llm_base_url(self) -> str:
        if self.config.llm in ("vllm", "fake"):
            return f"http://127.0.0.1:{self.config.ports.llm}/v1"
        return self.config.llm

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_REGION": AWS_REGION,
            "AWS_DEFAULT_REGION": AWS_REGION,
            **EMULATOR_CREDENTIALS,
        }

    def start(self) -> None:
        try:
            self._start_emulator()
            self.queues = self._create_queues_and_bucket()
            self._start_llm()
            self._start_callback_receiver()
            self._start_ingest(self.queues)
            self._start_worker()
            if self.config.with_qa_sync:
                self._start_qa_sync()
            if self.config.prometheus_rules is not None:
                self._start_prometheus(self.config.prometheus_rules)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def _launch(
        self, name: str, argv: list[str], env: dict[str, str], ready_path: str | None, port: int
    ) -> ManagedProcess:
        process = ManagedProcess(
            name=name,
            argv=argv,
            env={**self._telemetry_env(), **env},
            log_path=self.config.run_dir / "logs" / f"{name}.log",
            ready_url=f"http://127.0.0.1:{port}{ready_path}" if ready_path else None,
        )
        self.processes[name] = process
        return process.start()

    def _telemetry_env(self) -> dict[str, str]:
        if not self.config.otlp_endpoint:
            return {}
        # Spans leave each process within 100 ms instead of the SDK's 5 s, so tests see them soon.
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.config.otlp_endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def _start_emulator(self) -> None:
        port = self.config.ports.moto
        argv = python_module("moto.server", "-H", "127.0.0.1", "-p", str(port))
        self._launch("moto", argv, {}, "/moto-api/", port)

    def _create_queues_and_bucket(self) -> FeedbackQueues:
        session = boto3.session.Session(
            region_name=AWS_REGION,
            aws_access_key_id=EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        sqs = session.client("sqs", endpoint_url=self.aws_endpoint)
        s3 = session.client("s3", endpoint_url=self.aws_endpoint)
        s3.create_bucket(Bucket=self.config.qa_bucket)
        create_request_table(
            session.client("dynamodb", endpoint_url=self.aws_endpoint), REQUEST_TABLE
        )
        return create_feedback_queues(sqs)

    def _start_llm(self) -> None:
        port = self.config.ports.llm
        if self.config.llm == "vllm":
            process = vllm_server(port, self.config.run_dir / "logs" / "llm.log")
            self.processes["llm"] = process
            process.start(timeout=START_TIMEOUT_S)
        elif self.config.llm == "fake":
            # The worker checks at start-up that the LLM serves LLM_MODEL.
            argv = python_module(
                "devstack.fakes.llm", "--latency", "0", "--model", self.config.llm_model
            )
            self._launch("llm", argv, _http(port), "/v1/models", port)

    def _start_callback_receiver(self) -> None:
        port = self.config.ports.callback
        env = {**_http(port), "CALLBACK_SECRET": self.callback_secret}
        self._launch(
            "callback", python_module("devstack.fakes.callback_receiver"), env, "/deliveries", port
        )

    def _start_ingest(self, queues: FeedbackQueues) -> None:
        port = self.config.ports.ingest
        env = {
            **self.aws_env(),
            **_http(port),
            "FEEDBACK_QUEUE_URL": queues.requests,
            "REQUEST_TABLE_NAME": REQUEST_TABLE,
            "INGEST_API_KEYS": self.ingest_api_key,
            **self.config.ingest_env,
        }
        self._launch("ingest", python_module("feedback_ingest"), env, "/readyz", port)

    def add_worker(self, name: str) -> ManagedProcess:
        """One more worker process on the same queues (workers scale out side by side)."""
        return self._launch(name, python_module("feedback_worker"), self.worker_env(), None, 0)

    def _start_worker(self) -> None:
        self._launch("worker", python_module("feedback_worker"), self.worker_env(), None, 0)

    def worker_env(self) -> dict[str, str]:
        """The worker's environment; also what `python -m feedback_worker admin` needs."""
        queues = self.queues
        assert queues is not None, "start the stack first"
        return {
            **self.aws_env(),
            "FEEDBACK_QUEUE_URL": queues.requests,
            "RESULT_QUEUE_URL": queues.results,
            "REQUEST_TABLE_NAME": REQUEST_TABLE,
            "CALLBACK_URL": self.callback_url,
            "CALLBACK_SECRET": self.callback_secret,
            "LLM_BASE_URL": self.llm_base_url,
            "LLM_MODEL": self.config.llm_model,
            "LLM_MAX_TOKENS": str(self.config.llm_max_tokens),
            "METRICS_PORT": str(self.config.ports.worker_metrics),
            # The local model, whoever serves it, is a base model served as plain text.
            **(base_model_worker_env() if self.config.llm_model == MODEL_ALIAS else {}),
            **self.config.worker_env,
        }

    @property
    def batch_api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.batch_api}"

    @property
    def qa_sync_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.qa_sync}"

    def qa_sync_env(self) -> dict[str, str]:
        """qa-sync's environment; also what its CLI needs to act on the same registry."""
        return {
            **self.aws_env(),
            **_http(self.config.ports.qa_sync),
            "QA_BUCKET": self.config.qa_bucket,
            "DATABASE_URL": f"sqlite:///{self.config.run_dir / 'qa-sync.db'}",
            # No OpenAI account locally: the fake Batch API plays the provider.
            "OPENAI_BASE_URL": f"{self.batch_api_url}/v1",
            "POLL_INTERVAL_SECONDS": "2",
            "QA_SYNC_API_KEYS": self.qa_sync_api_key,
        }

    def _start_qa_sync(self) -> None:
        batch_port = self.config.ports.batch_api
        fake = python_module("devstack.fakes.fake_batch_api")
        self._launch("batch-api", fake, _http(batch_port), "/stats", batch_port)
        port = self.config.ports.qa_sync
        self._launch("qa-sync", python_module("qa_sync"), self.qa_sync_env(), "/healthz", port)

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.prometheus}"

    def _start_prometheus(self, rule_files: tuple[Path, ...]) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise ProcessFailedToStart("prometheus is not installed (apt-get install prometheus)")
        ports = self.config.ports
        # vLLM serves its /metrics on the API's host and port (the simulator too; the fake in
        # exact-latency mode, not vLLM, has none: its target is down).
        llm = urlsplit(self.llm_base_url).netloc
        targets = {"ingest": f"127.0.0.1:{ports.ingest}", "vllm": llm}
        if ports.worker_metrics:
            targets["worker"] = f"127.0.0.1:{ports.worker_metrics}"
        if self.config.with_qa_sync:
            targets["qa-sync"] = f"127.0.0.1:{ports.qa_sync}"
        run_dir = self.config.run_dir
        config = write_config(
            run_dir / "prometheus.yml", targets, rule_files, self.config.scrape_interval
        )
        process = prometheus_process(binary, config, run_dir / "prometheus", ports.prometheus)
        self.processes[process.name] = process
        process.start()


def _http(port: int) -> dict[str, str]:
    return {"HOST": "127.0.0.1", "PORT": str(port)}
