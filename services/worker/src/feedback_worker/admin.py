"""`python -m feedback_worker admin ...`: the runbook's first steps (docs/operating.md).

    status ID       the request's record: state, times, attempts, the result or why it failed
    redrive         every message in the DLQ back to the request queue: SQS's message-move task
                    where SQS offers it, else one by one (a local emulator has no such task)
    redeliver ID    the stored result again, to the callback and/or the result queue (--channel);
                    the LLM is not asked, the record ends `delivered`
    cost --since T  what the requests accepted from T (to --until, default now) cost: feedbacks,
                    tokens and LLM seconds per feedback, from their records; with --gpu-hours
                    (the dashboard's vLLM replica-hours) and --gpu-price, the cost per 1,000

It reads the worker's environment, so run it where a worker runs:
`kubectl -n feedback exec deploy/feedback-platform-worker -- python -m feedback_worker admin
status weekly-2025-06-16`; locally `make admin ARGS="status ID"` against `make run`'s stack.
Exit status: 0 done, 1 not found or not done, 2 a configuration that cannot do it.
"""

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from llm_common.aws import aws_client
from llm_common.contracts import FeedbackResult
from llm_common.contracts.status import RequestStatus
from llm_common.requests_store import (
    NO_USAGE,
    RequestState,
    RequestStore,
    StateConflict,
    StoreUnavailable,
)

from feedback_worker.aws_calls import AwsCalls
from feedback_worker.batching import MAX_BATCH
from feedback_worker.delivery import Delivery, channels_from_settings, delivery_budget
from feedback_worker.errors import DeadLetter, RetryLater
from feedback_worker.settings import WorkerSettings
from feedback_worker.sqs import Sqs, read_queue_facts, resendable
from feedback_worker.worker import callback_http

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

DONE, NOT_DONE, CANNOT = 0, 1, 2
MOVE_TASK_POLL_SECONDS = 2.0
MOVE_TASK_WAIT_SECONDS = 300.0


class CannotDo(Exception):
    """The configuration cannot do what was asked (exit 2)."""


def main(settings: WorkerSettings, argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "status":
            return status(settings, args.request_id)
        if args.command == "redrive":
            return redrive(settings)
        if args.command == "cost":
            return cost(settings, args)
        return asyncio.run(redeliver(settings, args.request_id, args.channel))
    except CannotDo as error:
        print(f"admin {args.command}: {error}", file=sys.stderr)
        return CANNOT
    except (StoreUnavailable, BotoCoreError, ClientError) as error:
        print(f"admin {args.command}: AWS did not answer: {error}", file=sys.stderr)
        return NOT_DONE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feedback_worker admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    status_command = commands.add_parser("status", help="show a request's record")
    status_command.add_argument("request_id")
    commands.add_parser("redrive", help="move the DLQ's messages back to the request queue")
    redeliver_command = commands.add_parser("redeliver", help="send a stored result again")
    redeliver_command.add_argument("request_id")
    redeliver_command.add_argument(
        "--channel",
        action="append",
        choices=["callback", "result queue"],
        help="only this channel (repeatable); default: every channel the worker delivers to",
    )
    cost_command = commands.add_parser("cost", help="what a burst's requests cost")
    cost_command.add_argument("--since", type=_when, required=True, help="ISO 8601, with offset")
    cost_command.add_argument("--until", type=_when, help="ISO 8601, with offset (default now)")
    cost_command.add_argument("--gpu-hours", type=float, help="vLLM replica-hours paid")
    cost_command.add_argument("--gpu-price", type=float, default=4.0, help="USD per GPU-hour")
    return parser


def _when(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give the offset (e.g. +09:00)")
    return at


def _store(settings: WorkerSettings) -> RequestStore:
    if not settings.request_table_name:
        raise CannotDo("REQUEST_TABLE_NAME is not set: there are no records")
    return RequestStore(settings.request_table_name, settings.aws_region, read_timeout=10)


def status(settings: WorkerSettings, request_id: str) -> int:
    record = _store(settings).get(request_id)
    if record is None:
        print(f"no record of request {request_id!r} (unknown, or past its TTL)", file=sys.stderr)
        return NOT_DONE
    print(json.dumps(RequestStatus.of(record).shown(), ensure_ascii=False, indent=2))
    return DONE


def cost(settings: WorkerSettings, args: argparse.Namespace) -> int:
    """The burst's figures as JSON: every record accepted in the window, those delivered, and
    what their results cost (records without `usage` count as requests, not in the sums)."""
    until = args.until or datetime.now(UTC)
    records = list(_store(settings).accepted_between(args.since, until))
    delivered = sum(1 for r in records if r.state is RequestState.DELIVERED)
    spent = sum((r.usage for r in records if r.usage), NO_USAGE)

    def each(total: float, digits: int = 1) -> float | None:
        """Per feedback delivered (None before any)."""
        return round(total / delivered, digits) if delivered else None

    figures: dict[str, float | int | None] = {
        "requests": len(records),
        "delivered": delivered,
        "promptTokens": spent.prompt_tokens,
        "completionTokens": spent.completion_tokens,
        "promptTokensPerFeedback": each(spent.prompt_tokens),
        "completionTokensPerFeedback": each(spent.completion_tokens),
        "llmSecondsPerFeedback": each(spent.llm_seconds, 3),
        "costPer1000Feedbacks": None,
    }
    if args.gpu_hours is not None:
        figures["costPer1000Feedbacks"] = each(1000 * args.gpu_hours * args.gpu_price, 2)
    print(json.dumps(figures, indent=2))
    return DONE if records else NOT_DONE


def redrive(settings: WorkerSettings) -> int:
    sqs = aws_client("sqs", settings.aws_region, read_timeout=30)
    dead_letter_url = (
        settings.feedback_dlq_url
        or read_queue_facts(sqs, settings.feedback_queue_url).dead_letter_url
    )
    if not dead_letter_url:
        raise CannotDo("no DLQ: set FEEDBACK_DLQ_URL or give the queue a RedrivePolicy")
    try:
        handle = sqs.start_message_move_task(
            SourceArn=_arn(sqs, dead_letter_url),
            DestinationArn=_arn(sqs, settings.feedback_queue_url),
        )["TaskHandle"]
    except ClientError as error:
        if not _no_move_task(error):
            raise
        moved = _move_one_by_one(sqs, dead_letter_url, settings.feedback_queue_url)
        print(f"moved {moved} message(s) one by one (this SQS has no message-move task)")
        return DONE
    return _follow_move_task(sqs, dead_letter_url, handle)


def _arn(sqs: "SQSClient", url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


def _no_move_task(error: ClientError) -> bool:
    """The endpoint does not implement StartMessageMoveTask (an emulator answers 500 or an
    unknown action); anything else (AccessDenied, say) is a real refusal."""
    code = error.response.get("Error", {}).get("Code", "")
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status >= 500 or code in {"InvalidAction", "UnknownOperationException"}


def _follow_move_task(sqs: "SQSClient", dead_letter_url: str, handle: str) -> int:
    source = _arn(sqs, dead_letter_url)
    deadline = time.monotonic() + MOVE_TASK_WAIT_SECONDS
    while time.monotonic() < deadline:
        tasks = sqs.list_message_move_tasks(SourceArn=source)["Results"]
        task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else {})
        state = task.get("Status", "UNKNOWN")
        if state in {"COMPLETED", "FAILED", "CANCELLED"}:
            moved = task.get("ApproximateNumberOfMessagesMoved", 0)
            print(f"message-move task {state.lower()}: {moved} message(s) moved")
            if state != "COMPLETED":
                print(task.get("FailureReason", ""), file=sys.stderr)
            return DONE if state == "COMPLETED" else NOT_DONE
        time.sleep(MOVE_TASK_POLL_SECONDS)
    print(f"message-move task {handle} still running; follow it with list-message-move-tasks")
    return DONE


def _move_one_by_one(sqs: "SQSClient", dead_letter_url: str, queue_url: str) -> int:
    """Each message sent to the request queue, then deleted from the DLQ. It keeps its group
    (the member's order) and its attributes, DeadLetterReason too: the worker then reads the
    request's record before working it. Its DLQ message id deduplicates a repeated move."""
    moved = 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=dead_letter_url,
            MaxNumberOfMessages=MAX_BATCH,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId"],
        ).get("Messages", [])
        if not messages:
            return moved
        for message in messages:
            sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=message["Body"],
                MessageAttributes=resendable(message.get("MessageAttributes", {})),
                MessageGroupId=message.get("Attributes", {}).get("MessageGroupId", "redriven"),
                MessageDeduplicationId=message["MessageId"],
            )
            sqs.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1


async def redeliver(settings: WorkerSettings, request_id: str, only: list[str] | None) -> int:
    store = _store(settings)
    record = store.get(request_id)
    if record is None or record.content is None:
        state = "unknown" if record is None else f"{record.state}, with no stored result"
        print(f"nothing to redeliver for {request_id!r}: {state}", file=sys.stderr)
        return NOT_DONE
    result = FeedbackResult(
        member_id=record.member_id,
        content=record.content,
        timestamp=datetime.now(),  # zone-less, like the worker's: when it was sent
        request_id=request_id,
    )
    aws = AwsCalls(4)
    sqs = Sqs.on(aws, settings.aws_region)
    try:
        async with callback_http(settings) as http:
            channels = [
                channel
                for channel in channels_from_settings(settings, sqs, http)
                if not only or channel.name in only
            ]
            if not channels:
                raise CannotDo(f"the worker does not deliver to {' or '.join(only or [])}")
            # One round, no budget: the operator is watching, and runs it again if it fails.
            delivery = Delivery(channels, replace(delivery_budget(settings), seconds=0))
            report = await delivery.deliver(result, delivery.deadline(None))
    except (DeadLetter, RetryLater) as error:
        print(f"not redelivered: {error}", file=sys.stderr)
        return NOT_DONE
    finally:
        sqs.close()
        aws.close()
    record_now = report.after(record.channels, record.missing)
    try:
        store.mark_delivered(
            request_id, record_now.taken, record_now.outcome.value, record_now.missing
        )
    except StateConflict as conflict:
        print(f"delivered, but the record was not marked: {conflict}", file=sys.stderr)
    print(f"redelivered {request_id} to {' and '.join(report.taken)}: {report.outcome.value}")
    if report.missing:
        print(f"not taken by {' and '.join(report.missing)} (see above)", file=sys.stderr)
        return NOT_DONE
    return DONE
