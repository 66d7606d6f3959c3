"""One place that builds boto3 clients, so every service talks to AWS the same way."""

from typing import TYPE_CHECKING, Literal, overload

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


def _config(max_pool_connections: int) -> Config:
    # "standard" retry mode backs off with jitter on throttling and 5xx; timeouts are short so
    # an outage surfaces as an error the caller can act on (503, redelivery) instead of a hang.
    return Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=3,
        read_timeout=30,
        max_pool_connections=max_pool_connections,
    )


@overload
def aws_client(
    service: Literal["sqs"], region: str, max_pool_connections: int = ...
) -> "SQSClient": ...
@overload
def aws_client(
    service: Literal["s3"], region: str, max_pool_connections: int = ...
) -> "S3Client": ...
def aws_client(
    service: Literal["sqs", "s3"], region: str, max_pool_connections: int = 16
) -> "SQSClient | S3Client":
    """A client for `service`; `AWS_ENDPOINT_URL` and the credential chain come from the env."""
    session = boto3.session.Session(region_name=region)
    return session.client(service, config=_config(max_pool_connections))
