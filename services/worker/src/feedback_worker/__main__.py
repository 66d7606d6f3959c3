"""`python -m feedback_worker`: configuration from the environment, runs until SIGTERM/SIGINT.

`python -m feedback_worker admin ...` runs an operator's command instead (admin.py).
"""

import asyncio
import logging
import signal
import sys
from wsgiref.simple_server import WSGIServer

from llm_common.telemetry import (
    secret_values,
    setup_logging,
    setup_tracing,
    shutdown_tracing,
    start_metrics_server,
)
from pydantic import ValidationError

from feedback_worker import admin
from feedback_worker.errors import ConfigurationError
from feedback_worker.settings import WorkerSettings
from feedback_worker.worker import Worker

log = logging.getLogger("feedback_worker")

EXIT_BAD_CONFIGURATION = 2
SERVICE_NAME = "feedback-worker"


def configure_logging(settings: WorkerSettings) -> None:
    """JSON lines on stdout with the configured secrets redacted (llm_common.telemetry)."""
    setup_logging(settings.log_level, secret_values(settings))
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    # LOG_LEVEL=DEBUG is for the worker's own lines (the generated text, say): the libraries
    # log every HTTP exchange and its headers at DEBUG, which is noise and does not belong in
    # logs. openai's retries are logged at INFO and stay visible.
    logging.getLogger().setLevel(max(level, logging.INFO))
    logging.getLogger("feedback_worker").setLevel(level)
    # One line per HTTP call would drown the worker's own lines at 32 in flight.
    for client in ("httpx", "httpx2"):
        logging.getLogger(client).setLevel(max(level, logging.WARNING))


def describe(error: ValidationError) -> str:
    """One line per problem, without the values: they may include secrets."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in problem["loc"]).upper()
        lines.append(f"  {name or 'settings'}: {problem['msg']}")
    return "\n".join(lines)


async def serve(settings: WorkerSettings) -> None:
    loop = asyncio.get_running_loop()
    starting = asyncio.current_task()
    assert starting is not None
    # While start-up waits for SQS or the LLM, a SIGTERM ends the wait: nothing is held yet.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, starting.cancel)
    try:
        worker = await Worker.create(settings)
    except asyncio.CancelledError:
        log.info("stopped during start-up")
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    await worker.run()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = WorkerSettings()
    except ValidationError as error:
        print(f"feedback_worker: invalid configuration\n{describe(error)}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION
    if argv[:1] == ["admin"]:
        return admin.main(settings, argv[1:])
    configure_logging(settings)
    setup_tracing(SERVICE_NAME)
    try:
        metrics_server = serve_metrics(settings.metrics_port)
        asyncio.run(serve(settings))
    except ConfigurationError as error:
        log.error("cannot start: %s", error)
        return EXIT_BAD_CONFIGURATION
    finally:
        # After the drain: export the spans still buffered.
        shutdown_tracing()
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
    return 0


def serve_metrics(port: int) -> WSGIServer | None:
    """Prometheus metrics on every path of `port` (the chart probes /metrics); None for 0."""
    if not port:
        return None
    try:
        return start_metrics_server(port)
    except OSError as error:
        raise ConfigurationError(f"METRICS_PORT={port}: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
