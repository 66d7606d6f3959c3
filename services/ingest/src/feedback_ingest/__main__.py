"""`python -m feedback_ingest`: read the settings, then serve the app with uvicorn."""

import logging
import sys

import uvicorn
from pydantic import ValidationError

from feedback_ingest.app import create_app
from feedback_ingest.settings import IngestSettings


def main() -> None:
    try:
        settings = IngestSettings()
    except ValidationError as error:
        sys.exit(f"feedback-ingest: invalid configuration\n{error}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
