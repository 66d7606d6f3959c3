"""`python -m feedback_ingest`: read the settings, then serve the app with uvicorn."""

import sys

import uvicorn
from llm_common.telemetry import secret_values, setup_logging, setup_tracing, shutdown_tracing
from pydantic import ValidationError

from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings

SERVICE_NAME = "feedback-ingest"


def main() -> None:
    try:
        settings = IngestSettings()
    except ValidationError as error:
        sys.exit(f"feedback-ingest: invalid configuration\n{error}")
    setup_logging(settings.log_level, secret_values(settings))
    setup_tracing(SERVICE_NAME)
    # log_config=None: uvicorn's loggers go through our JSON handler instead of their own.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    # uvicorn returns after its graceful shutdown: export the spans still buffered.
    shutdown_tracing()


if __name__ == "__main__":
    main()
