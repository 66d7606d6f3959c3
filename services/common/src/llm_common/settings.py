"""The settings every service shares. Each service extends `ServiceSettings` with its own fields."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Read from the environment only (docs/configuration.md); validated once at start-up."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    aws_region: str = "us-east-1"
    """`AWS_REGION`. `AWS_ENDPOINT_URL` (a local emulator) is honoured by boto3 itself."""

    log_level: str = "INFO"
    """`LOG_LEVEL`: DEBUG, INFO, WARNING or ERROR; one JSON line per record on stdout."""
