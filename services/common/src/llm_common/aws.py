"""One place that builds boto3 clients, so every service talks to AWS the same way."""

from typing import TYPE_CHECKING, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def is_transient(error: ClientError) -> bool:
    """AWS answered but could not serve the call now (a 5xx or throttling): worth retrying,
    unlike a refusal (a missing queue or table, no permission), which only a fix ends."""
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status >= 500 or "Throttl" in code


def error_summary(error: ClientError) -> str:
    """`ThrottlingException (HTTP 400)`: what an answer said, for a log line or a reason."""
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return f"{code} (HTTP {status})"


def _config(max_pool_connections: int, read_timeout: float, max_attempts: int) -> Config:
    # "standard" retry mode backs off with jitter on throttling and 5xx; timeouts are short so
    # an outage surfaces as an error the caller can act on (503, redelivery) instead of a hang.
    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=3,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
    )


@overload
def aws_client(
    service: Literal["sqs"],
    region: str,
    max_pool_connections: int = ...,
    read_timeout: float = ...,
    max_attempts: int = ...,
) -> "SQSClient": ...
@overload
def aws_client(
    service: Literal["s3"],
    region: str,
    max_pool_connections: int = ...,
    read_timeout: float = ...,
    max_attempts: int = ...,
) -> "S3Client": ...
@overload
def aws_client(
    service: Literal["dynamodb"],
    region: str,
    max_pool_connections: int = ...,
    read_timeout: float = ...,
    max_attempts: int = ...,
) -> "DynamoDBClient": ...
def aws_client(
    service: Literal["sqs", "s3", "dynamodb"],
    region: str,
    max_pool_connections: int = 16,
    read_timeout: float = 30,
    max_attempts: int = 3,
) -> "SQSClient | S3Client | DynamoDBClient":
    """A client for `service`; `AWS_ENDPOINT_URL` and the credential chain come from the env.

    A caller that answers someone waiting (ingest) passes a short `read_timeout` and few
    `max_attempts`, so an SQS outage becomes a prompt 503 rather than a minute of silence.
    """
    session = boto3.session.Session(region_name=region)
    config = _config(max_pool_connections, read_timeout, max_attempts)
    return session.client(service, config=config)
