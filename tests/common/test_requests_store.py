"""The request store against moto's DynamoDB over HTTP: conditional writes decide every race."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from llm_common.contracts.status import RequestStatus
from llm_common.requests_store import (
    RequestIdTaken,
    RequestState,
    RequestStore,
    StateConflict,
    StoreUnavailable,
    TableUnusable,
    Usage,
)

DEADLINE = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(request_table: str) -> RequestStore:
    return RequestStore(request_table, "us-east-1")


def test_a_new_request_id_is_accepted_once_and_a_retry_finds_its_record(
    store: RequestStore,
) -> None:
    assert store.accept("weekly-1", 1001, DEADLINE) is None
    retry = store.accept("weekly-1", 1001, DEADLINE)
    assert retry is not None
    assert retry.state is RequestState.ACCEPTED
    assert retry.member_id == 1001


def test_a_request_id_of_another_member_is_refused(store: RequestStore) -> None:
    store.accept("weekly-1", 1001, DEADLINE)
    with pytest.raises(RequestIdTaken) as taken:
        store.accept("weekly-1", 2002, DEADLINE)
    assert taken.value.owner == 1001


def test_the_lifecycle_records_each_transition_and_the_result(store: RequestStore) -> None:
    store.accept("r1", 7, DEADLINE)
    store.mark_enqueued("r1")
    store.store_result("r1", "잘했어요.", receive=1)
    assert store.start_processing("r1", receive=2).content == "잘했어요."
    record = store.mark_delivered("r1", ["callback"], "delivered", missing=[])
    assert record.state is RequestState.DELIVERED
    assert (record.content, record.attempts) == ("잘했어요.", 2)
    assert record.enqueued_at is not None
    assert record.processing_at is not None
    assert record.generated_at is not None
    assert record.delivered_at is not None
    assert RequestStatus.of(record).shown()["result"] == {
        "content": "잘했어요.",
        "channels": ["callback"],
        "missing": [],
        "outcome": "delivered",
    }


def test_what_a_result_cost_is_kept_with_it_and_shown_once_generated(
    store: RequestStore,
) -> None:
    store.accept("r2", 7, DEADLINE)
    assert "usage" not in RequestStatus.of(store.start_processing("r2", receive=1)).shown()
    spent = Usage(prompt_tokens=512, completion_tokens=230, llm_seconds=17.25)
    store.store_result("r2", "잘했어요.", receive=1, usage=spent)
    record = store.mark_delivered("r2", ["callback"], "delivered", missing=[])
    assert record.usage == spent
    assert RequestStatus.of(record).shown()["usage"] == {
        "promptTokens": 512,
        "completionTokens": 230,
        "llmSeconds": 17.25,
    }
    # A worker that did not count (or a record from before) shows none, not zeros.
    store.accept("r3", 7, DEADLINE)
    assert store.store_result("r3", "잘했어요.", receive=1).usage is None


def test_a_partial_delivery_is_delivered_and_says_which_channel_is_missing(
    store: RequestStore,
) -> None:
    store.accept("r9", 7, DEADLINE)
    store.store_result("r9", "잘했어요.", receive=1)
    partial = store.mark_delivered("r9", ["callback"], "delivered", missing=["result queue"])
    complete = store.mark_delivered("r9", ["callback", "result queue"], "delivered", missing=[])

    assert partial.state is RequestState.DELIVERED
    assert RequestStatus.of(partial).shown()["result"]["missing"] == ["result queue"]
    assert complete.channels == ("callback", "result queue")
    assert complete.missing == ()
    assert complete.delivered_at == partial.delivered_at  # when the backend first had it


def test_a_second_result_is_refused_and_the_first_one_kept(store: RequestStore) -> None:
    store.accept("r8", 7, DEADLINE)
    store.store_result("r8", "첫 번째", receive=1)
    with pytest.raises(StateConflict) as conflict:
        store.store_result("r8", "두 번째", receive=2)
    assert conflict.value.current is not None
    assert conflict.value.current.content == "첫 번째"


def test_a_delivered_or_expired_request_cannot_start_again(store: RequestStore) -> None:
    store.accept("r2", 7, DEADLINE)
    store.end("r2", RequestState.EXPIRED, "deadline passed")
    with pytest.raises(StateConflict) as conflict:
        store.start_processing("r2", receive=1)
    assert conflict.value.current is not None
    assert conflict.value.current.state is RequestState.EXPIRED
    assert RequestStatus.of(conflict.value.current).shown()["failureReason"] == "deadline passed"
    store.accept("r5", 7, DEADLINE)
    store.store_result("r5", "잘했어요.", receive=1)
    store.mark_delivered("r5", ["callback"], "delivered", missing=[])
    with pytest.raises(StateConflict):
        store.start_processing("r5", receive=2)


def test_a_failed_request_starts_again_when_its_message_comes_back(store: RequestStore) -> None:
    # An operator's redrive brings a failed request's message back: it is worked again, and
    # the result it stored is what goes out.
    store.accept("r6", 7, DEADLINE)
    store.store_result("r6", "잘했어요.", receive=1)
    store.end("r6", RequestState.FAILED, "callback rejected the result: HTTP 404")
    again = store.start_processing("r6", receive=2)
    assert (again.state, again.attempts, again.content) == (RequestState.PROCESSING, 2, "잘했어요.")
    assert "failureReason" not in RequestStatus.of(again).shown()


def test_a_cancel_before_the_llm_wins_and_a_second_cancel_changes_nothing(
    store: RequestStore,
) -> None:
    store.accept("c1", 7, DEADLINE)
    cancelled = store.cancel("c1")
    again = store.cancel("c1")

    assert cancelled.state is RequestState.CANCELLED
    assert again == cancelled  # `cancelledAt` is the first cancel's
    assert "cancelledAt" in RequestStatus.of(again).shown()["times"]
    for worker_write in (
        lambda: store.start_generating("c1", receive=1),
        lambda: store.start_processing("c1", receive=2),
        lambda: store.store_result("c1", "잘했어요.", receive=1),
        lambda: store.end("c1", RequestState.FAILED, "gave up"),
    ):
        with pytest.raises(StateConflict) as conflict:
            worker_write()
        assert conflict.value.current == cancelled


def test_a_message_received_again_can_still_be_cancelled_before_the_llm(
    store: RequestStore,
) -> None:
    store.accept("c2", 7, DEADLINE)
    store.start_processing("c2", receive=2)
    assert store.cancel("c2").state is RequestState.CANCELLED


def test_a_cancel_once_the_llm_is_asked_or_a_result_is_stored_is_refused_with_the_state(
    store: RequestStore,
) -> None:
    store.accept("c3", 7, DEADLINE)
    generating = store.start_generating("c3", receive=1)
    with pytest.raises(StateConflict) as conflict:
        store.cancel("c3")
    assert conflict.value.current == generating
    assert generating.state is RequestState.GENERATING
    store.store_result("c3", "잘했어요.", receive=1)
    store.start_processing("c3", receive=2)  # `processing` again, with its result
    with pytest.raises(StateConflict) as conflict:
        store.cancel("c3")
    assert conflict.value.current is not None
    assert conflict.value.current.content == "잘했어요."


def test_a_cancel_of_an_unknown_id_is_refused_without_a_record(store: RequestStore) -> None:
    with pytest.raises(StateConflict) as conflict:
        store.cancel("never-sent")
    assert conflict.value.current is None
    assert store.get("never-sent") is None


def test_the_llm_is_not_marked_asked_when_a_copy_stored_a_result_first(
    store: RequestStore,
) -> None:
    """The copy that stored it goes on to mark it delivered, which `generating` would refuse."""
    store.accept("c4", 7, DEADLINE)
    store.store_result("c4", "잘했어요.", receive=1)
    with pytest.raises(StateConflict):
        store.start_generating("c4", receive=2)
    assert store.mark_delivered("c4", ["callback"], "delivered", []).state is RequestState.DELIVERED


def test_a_record_lives_at_least_until_its_deadline(request_table: str) -> None:
    store = RequestStore(request_table, "us-east-1", ttl_seconds=3600)
    deadline = datetime.now(UTC) + timedelta(days=60)
    store.accept("r7", 7, deadline)
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=request_table, Key={"requestId": {"S": "r7"}}
    )["Item"]
    assert int(item["expiresAt"]["N"]) == int(deadline.timestamp())


def test_the_record_carries_a_ttl_of_the_configured_life(request_table: str) -> None:
    store = RequestStore(request_table, "us-east-1", ttl_seconds=3600)
    store.accept("r3", 7, datetime.now(UTC) + timedelta(minutes=10))
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=request_table, Key={"requestId": {"S": "r3"}}
    )["Item"]
    expires = datetime.fromtimestamp(int(item["expiresAt"]["N"]), UTC)
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)


def test_a_missing_table_is_reported_as_unavailable(aws_env: str) -> None:
    store = RequestStore("no-such-table", "us-east-1")
    assert not store.is_reachable()
    with pytest.raises(TableUnusable):
        store.check_table()
    with pytest.raises(StoreUnavailable):
        store.accept("r4", 7, DEADLINE)
