"""Waiting for what the local stack delivers, as the backend would see it."""

from typing import TYPE_CHECKING, Any

import boto3
import httpx
from devstack.processes import free_port
from devstack.stack import AWS_REGION, EMULATOR_CREDENTIALS, Ports, Stack

from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def wait_for_callback(stack: Stack, request_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The receiver's record of the (signature-verified) callback for `request_id`."""
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        deliveries = httpx.get(f"{stack.callback_url}/deliveries", timeout=5).json()
        found.extend(d for d in deliveries if d["webhook_id"] == request_id)
        return bool(found)

    try:
        wait_until(arrived, timeout, f"a callback for {request_id}", every=0.2)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{stack.processes['worker'].tail(40)}") from None
    return dict(found[0])


def stack_sqs(stack: Stack) -> "SQSClient":
    """An SQS client on the stack's emulator."""
    return boto3.client(
        "sqs",
        endpoint_url=stack.aws_endpoint,
        region_name=AWS_REGION,
        aws_access_key_id=EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def free_ports() -> Ports:
    """A free port for every process of the stack, so stacks side by side never collide."""
    return Ports(
        moto=free_port(), llm=free_port(), ingest=free_port(), callback=free_port(),
        qa_sync=free_port(),
    )  # fmt: skip
