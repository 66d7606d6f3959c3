"""The request store: one DynamoDB item per request, the record the backend and operators ask about.

Ingest writes the item when it accepts a request, the worker moves it through its states, and
`GET /ai/feedback/{requestId}` and `python -m feedback_worker admin status` read it.

Identity: the item is keyed by `requestId` alone, and a request id belongs to the member that
used it first. A second member sending the same request id is refused with 409 (`RequestIdTaken`)
instead of being silently deduplicated by SQS, which deduplicates across the whole queue. So the
request id stays the one identity everywhere: store key, SQS deduplication id, callback
`webhook-id`.

Every write is conditional: the first put only where no item exists (`attribute_not_exists`),
every transition only from the states it may leave. Two writers racing (two workers holding
copies of one message, an operator and a worker, the backend's cancel and the worker about to
ask the LLM) cannot both win, and the loser learns the state that beat it (`StateConflict`).

DynamoDB deletes an item some time after its `expiresAt` (epoch seconds; TTL is switched on by
the table's manifest), so records live `REQUEST_STORE_TTL_SECONDS` (35 days by default: a month of
weekly requests, and a retry of last week's still finds its record).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from llm_common.aws import aws_client, error_summary, is_transient

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 35 * 24 * 3600
KEY = "requestId"
TTL_ATTRIBUTE = "expiresAt"
_CONDITION_FAILED = "ConditionalCheckFailedException"


class RequestState(StrEnum):
    ACCEPTED = "accepted"
    """Ingest holds the request; its message is on the feedback queue once `enqueuedAt` is set."""
    PROCESSING = "processing"
    """A worker has received it (`attempts` counts the receives that reached a worker)."""
    GENERATING = "generating"
    """A worker is asking the LLM (it stays so until the result is stored, or the message comes
    back after a failed call): from here on a cancel is refused."""
    DELIVERED = "delivered"
    """At least one delivery channel took the result (the backend has it); `missing` lists
    those that did not (yet)."""
    FAILED = "failed"
    """Given up: a permanent refusal, unfit content, the delivery budget or the receives spent.
    A message of a failed request that comes back (`admin redrive`) starts it again."""
    EXPIRED = "expired"
    """Its deadline passed before it reached the LLM."""
    CANCELLED = "cancelled"
    """The backend cancelled it before it reached the LLM: no worker asks the LLM for it or
    delivers anything for it, ever (no transition leaves this state)."""


_STARTABLE = (
    RequestState.ACCEPTED,
    RequestState.PROCESSING,
    RequestState.GENERATING,
    RequestState.FAILED,
)
"""What a worker may move to `processing` or `generating`: never a delivered, expired or
cancelled request."""
_CANCELLABLE = (RequestState.ACCEPTED, RequestState.PROCESSING, RequestState.CANCELLED)
"""What a cancel may move to `cancelled` (with no result stored): `processing` is a message
received again, not yet at the LLM; `cancelled` makes a second cancel a no-op, not an error."""
_END_TIMES = {RequestState.FAILED: "failedAt", RequestState.EXPIRED: "expiredAt"}


class StoreUnavailable(Exception):
    """DynamoDB did not answer or refused the call (outage, throttling, permissions)."""


class RequestIdTaken(Exception):
    """The request id is already another member's."""

    def __init__(self, request_id: str, owner: int) -> None:
        super().__init__(f"request id {request_id!r} is already used by another member")
        self.request_id = request_id
        self.owner = owner


class TableUnusable(Exception):
    """The table is missing, refused to this identity, or not keyed by `requestId`: a
    configuration error, not an outage."""


class StateConflict(Exception):
    """A transition was refused: the record is not in a state it may leave that way."""

    def __init__(self, request_id: str, current: RequestRecord | None) -> None:
        state = current.state if current else "missing"
        super().__init__(f"request {request_id!r} is {state}")
        self.current = current


@dataclass(frozen=True)
class Usage:
    """What the LLM spent on a request's result, over every draft: the tokens vLLM counted and
    the seconds its calls took (a call's wall time, shared with the batch it ran in: a
    request's cost, not GPU time of its own)."""

    prompt_tokens: int
    completion_tokens: int
    llm_seconds: float

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.llm_seconds + other.llm_seconds,
        )


NO_USAGE = Usage(0, 0, 0.0)
"""The sum's start."""


@dataclass(frozen=True)
class RequestRecord:
    """The stored record; `llm_common.contracts.status.RequestStatus` is how an API shows it."""

    request_id: str
    member_id: int
    state: RequestState
    accepted_at: datetime
    deadline: datetime
    attempts: int = 0
    enqueued_at: datetime | None = None
    processing_at: datetime | None = None
    generating_at: datetime | None = None
    generated_at: datetime | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    expired_at: datetime | None = None
    cancelled_at: datetime | None = None
    content: str | None = None
    """The generated feedback, stored before its first delivery so a retry sends the same text."""
    channels: tuple[str, ...] = ()
    """The delivery channels that took the result."""
    missing: tuple[str, ...] = ()
    """The channels that did not: retried while a worker holds the message, until the delivery
    budget ends; after that `admin redeliver --channel` sends them the stored result."""
    outcome: str | None = None
    failure_reason: str | None = None
    usage: Usage | None = None
    """Stored with the result (None before, or from a worker that did not count)."""


_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def _attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _SERIALIZER.serialize(value) for name, value in values.items()}


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value is not None else None


def _record(item: Mapping[str, Any]) -> RequestRecord:
    plain = {name: _DESERIALIZER.deserialize(value) for name, value in item.items()}
    accepted_at = _time(plain["acceptedAt"])
    deadline = _time(plain["deadline"])
    assert accepted_at is not None
    assert deadline is not None
    return RequestRecord(
        request_id=str(plain[KEY]),
        member_id=int(plain["memberId"]),
        state=RequestState(plain["state"]),
        accepted_at=accepted_at,
        deadline=deadline,
        attempts=int(plain.get("attempts", 0)),
        enqueued_at=_time(plain.get("enqueuedAt")),
        processing_at=_time(plain.get("processingAt")),
        generating_at=_time(plain.get("generatingAt")),
        generated_at=_time(plain.get("generatedAt")),
        delivered_at=_time(plain.get("deliveredAt")),
        failed_at=_time(plain.get("failedAt")),
        expired_at=_time(plain.get("expiredAt")),
        cancelled_at=_time(plain.get("cancelledAt")),
        content=plain.get("content"),
        channels=tuple(plain.get("channels", ())),
        missing=tuple(plain.get("missingChannels", ())),
        outcome=plain.get("outcome"),
        failure_reason=plain.get("failureReason"),
        usage=_usage(plain),
    )


def _spent(usage: Usage | None) -> dict[str, Any]:
    """The record's attributes for `usage` (none when not counted)."""
    if usage is None:
        return {}
    return {
        "promptTokens": usage.prompt_tokens,
        "completionTokens": usage.completion_tokens,
        # DynamoDB numbers are decimals; milliseconds are all a cost needs.
        "llmSeconds": Decimal(f"{usage.llm_seconds:.3f}"),
    }


def _usage(plain: Mapping[str, Any]) -> Usage | None:
    if "promptTokens" not in plain:
        return None
    return Usage(
        int(plain["promptTokens"]), int(plain["completionTokens"]), float(plain["llmSeconds"])
    )


class RequestStore:
    """boto3 blocks: async callers run these methods in a worker thread."""

    def __init__(
        self,
        table_name: str,
        region: str,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        client: DynamoDBClient | None = None,
        max_pool_connections: int = 16,
        read_timeout: float = 3,
        max_attempts: int = 2,
    ) -> None:
        """The defaults suit ingest: a backend waits on the answer, so a store outage must become
        a prompt 503, not a minute of silence. The worker, which nobody waits on, passes more."""
        self.table_name = table_name
        self._ttl_seconds = ttl_seconds
        self._dynamodb = client or aws_client(
            "dynamodb",
            region,
            max_pool_connections=max_pool_connections,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )

    def close(self) -> None:
        self._dynamodb.close()

    def is_reachable(self) -> bool:
        try:
            self.check_table()
        except (StoreUnavailable, TableUnusable) as error:
            log.warning("request store unusable: %s", error)
            return False
        return True

    def check_table(self) -> None:
        """The table exists, may be read, and is keyed as this code writes it; TableUnusable if
        not (the cluster creates the table, never the services), StoreUnavailable when DynamoDB
        does not answer or throttles."""
        try:
            table = self._dynamodb.describe_table(TableName=self.table_name)["Table"]
        except BotoCoreError as error:
            raise StoreUnavailable(str(error)) from error
        except ClientError as error:
            if is_transient(error):
                raise StoreUnavailable(error_summary(error)) from error
            raise TableUnusable(f"table {self.table_name!r}: {error_summary(error)}") from error
        key = [(part["AttributeName"], part["KeyType"]) for part in table.get("KeySchema", [])]
        if key != [(KEY, "HASH")]:
            raise TableUnusable(f"table {self.table_name!r} is keyed {key}, not [({KEY!r}, HASH)]")

    def get(self, request_id: str) -> RequestRecord | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self.table_name, Key=_attributes({KEY: request_id}), ConsistentRead=True
            ).get("Item")
        except (BotoCoreError, ClientError) as error:
            raise StoreUnavailable(str(error)) from error
        return _record(item) if item else None

    def accepted_between(self, since: datetime, until: datetime) -> Iterator[RequestRecord]:
        """Every record accepted from `since` up to `until` (a burst): a whole-table Scan,
        read page by page, for an operator's question, never for a request's path."""
        pages = self._dynamodb.get_paginator("scan").paginate(
            TableName=self.table_name,
            FilterExpression="acceptedAt BETWEEN :since AND :until",
            ExpressionAttributeValues=_attributes(
                {":since": _stored(since), ":until": _stored(until)}
            ),
        )
        try:
            for page in pages:
                yield from (_record(item) for item in page.get("Items", []))
        except (BotoCoreError, ClientError) as error:
            raise StoreUnavailable(str(error)) from error

    def accept(self, request_id: str, member_id: int, deadline: datetime) -> RequestRecord | None:
        """Create the record; `None` when it is new, else the existing record (a retry).

        Raises `RequestIdTaken` when the existing record is another member's.
        """
        now = _now()
        item = {
            KEY: request_id,
            "memberId": member_id,
            "state": RequestState.ACCEPTED.value,
            "acceptedAt": now.isoformat(),
            "deadline": deadline.isoformat(),
            "attempts": 0,
            # Never before the deadline: a retry of a request still worth working must find it.
            TTL_ATTRIBUTE: int(max(now.timestamp() + self._ttl_seconds, deadline.timestamp())),
        }
        try:
            self._dynamodb.put_item(
                TableName=self.table_name,
                Item=_attributes(item),
                ConditionExpression="attribute_not_exists(#key)",
                ExpressionAttributeNames={"#key": KEY},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise StoreUnavailable(str(error)) from error
            existing = _record(error.response["Item"])  # type: ignore[typeddict-item]
            if existing.member_id != member_id:
                raise RequestIdTaken(request_id, existing.member_id) from None
            return existing
        except BotoCoreError as error:
            raise StoreUnavailable(str(error)) from error
        return None

    def mark_enqueued(self, request_id: str) -> None:
        """SQS took the message. Idempotent; a record the worker moved on keeps its state."""
        self._update(request_id, "SET enqueuedAt = :now", {}, required=None)

    def start_processing(self, request_id: str, receive: int) -> RequestRecord:
        """A message of the request came back (or was re-sent): `processing`, `attempts` the
        message's receive count, and the record as it now is, with the result an earlier
        receive stored. Refused (StateConflict) once the request is delivered or expired, so a
        second copy of its message makes no second job."""
        return self._update(
            request_id,
            "SET #state = :processing, processingAt = if_not_exists(processingAt, :now), "
            "attempts = :receive",
            {":processing": RequestState.PROCESSING.value, ":receive": receive},
            required=_STARTABLE,
        )

    def start_generating(self, request_id: str, receive: int) -> RequestRecord:
        """The worker is about to ask the LLM: `generating`. The one write a cancel races
        with: refused (StateConflict, with the record) once the request is cancelled, as the
        cancel is refused once this has been written, so DynamoDB's condition alone decides
        which came first. Also refused when a result is stored already (a copy of the message
        raced this one) or the request has ended."""
        return self._update(
            request_id,
            "SET #state = :generating, generatingAt = if_not_exists(generatingAt, :now), "
            "attempts = :receive",
            {":generating": RequestState.GENERATING.value, ":receive": receive},
            required=_STARTABLE,
            unless="content",
        )

    def cancel(self, request_id: str) -> RequestRecord:
        """`cancelled`, while no worker has asked the LLM and no result is stored; the record
        as it now is. A second cancel finds it cancelled and changes nothing (`cancelledAt`
        stays the first one's). Refused (StateConflict, with the record; None for an unknown
        id) once the request is `generating` or beyond (see `start_generating`)."""
        return self._update(
            request_id,
            "SET #state = :cancelled, cancelledAt = if_not_exists(cancelledAt, :now)",
            {":cancelled": RequestState.CANCELLED.value},
            required=_CANCELLABLE,
            unless="content",
        )

    def store_result(
        self,
        request_id: str,
        content: str,
        receive: int,
        generated_at: datetime | None = None,
        usage: Usage | None = None,
    ) -> RequestRecord:
        """Keep the generated feedback before its first delivery attempt: `processing`, with
        the result, when it was generated (now when None) and what it cost (when counted).
        Refused (StateConflict, with the record) when a result is stored already or the
        request has ended: the caller then delivers the stored one, or nothing."""
        spent = _spent(usage)
        return self._update(
            request_id,
            "SET #state = :processing, processingAt = if_not_exists(processingAt, :now), "
            "attempts = :receive, content = :content, generatedAt = :generated"
            + "".join(f", {name} = :{name}" for name in spent),
            {
                ":processing": RequestState.PROCESSING.value,
                ":receive": receive,
                ":content": content,
                ":generated": (generated_at or _now()).isoformat(),
                **{f":{name}": value for name, value in spent.items()},
            },
            required=_STARTABLE,
            unless="content",
        )

    def mark_delivered(
        self, request_id: str, channels: Sequence[str], outcome: str, missing: Sequence[str]
    ) -> RequestRecord:
        """`delivered`: `channels` took the result, `missing` did not (yet). Written again as a
        partial delivery completes; `deliveredAt` stays the first channel's time."""
        return self._update(
            request_id,
            "SET #state = :delivered, deliveredAt = if_not_exists(deliveredAt, :now), "
            "channels = :channels, missingChannels = :missing, outcome = :outcome",
            {
                ":delivered": RequestState.DELIVERED.value,
                ":channels": list(channels),
                ":missing": list(missing),
                ":outcome": outcome,
            },
            # `delivered` and `failed` too: an operator's redeliver.
            required=(RequestState.PROCESSING, RequestState.DELIVERED, RequestState.FAILED),
        )

    def end(self, request_id: str, state: RequestState, reason: str) -> RequestRecord:
        """`failed` or `expired`, with the reason."""
        at = _END_TIMES[state]
        return self._update(
            request_id,
            f"SET #state = :end, {at} = :now, failureReason = :reason",
            {":end": state.value, ":reason": reason},
            required=_STARTABLE,
        )

    def _update(
        self,
        request_id: str,
        expression: str,
        values: Mapping[str, Any],
        required: tuple[RequestState, ...] | None,
        unless: str | None = None,
    ) -> RequestRecord:
        """Apply `expression` to an existing record in one of the `required` states that has no
        attribute `unless`; StateConflict (with the record as it is) otherwise."""
        names = {"#key": KEY}
        condition = "attribute_exists(#key)"
        if unless is not None:
            condition += f" AND attribute_not_exists({unless})"
        bound: dict[str, Any] = {":now": _now().isoformat(), **values}
        if "#state" in expression or required:
            names["#state"] = "state"
        if required:
            allowed = [f":from{i}" for i in range(len(required))]
            condition += f" AND #state IN ({', '.join(allowed)})"
            bound.update({name: state.value for name, state in zip(allowed, required, strict=True)})
        try:
            answer = self._dynamodb.update_item(
                TableName=self.table_name,
                Key=_attributes({KEY: request_id}),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_attributes(bound),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise StoreUnavailable(str(error)) from error
            old = cast("Mapping[str, Any] | None", error.response.get("Item"))
            raise StateConflict(request_id, _record(old) if old else None) from None
        except BotoCoreError as error:
            raise StoreUnavailable(str(error)) from error
        return _record(answer["Attributes"])


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == _CONDITION_FAILED


def _stored(at: datetime) -> str:
    """A time as the records keep it: ISO 8601 in UTC, so that they compare as strings."""
    return at.astimezone(UTC).isoformat()


def _now() -> datetime:
    return datetime.now(UTC)


def create_request_table(dynamodb: DynamoDBClient, table_name: str) -> None:
    """The table as k8s/cluster/request-store.yaml declares it, for `make run` and the tests
    (production creates nothing at start-up: the table is a cluster resource)."""
    try:
        dynamodb.create_table(
            TableName=table_name,
            AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        return
    dynamodb.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )
