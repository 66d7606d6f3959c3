"""No coercion: a value of the wrong JSON type is a 400 naming the field, and nothing is queued.

Before, `"memberId": true` was accepted as member 1 and `"isSuccess": "false"` as a success.
"""

from typing import Any

import httpx
import pytest

from tests.support.ingest import JSON, RequestQueue, error_fields


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"memberId": True}, "memberId"),
        ({"memberId": "77"}, "memberId"),
        ({"memberId": 77.0}, "memberId"),
        ({"requestId": 77}, "requestId"),
        ({"personalChallenges": [{"id": 1, "title": "t", "isSuccess": "yes"}]}, "isSuccess"),
        ({"personalChallenges": [{"id": 1, "title": "t", "isSuccess": 1}]}, "isSuccess"),
        ({"personalChallenges": [{"id": 1, "title": "t", "isSuccess": "false"}]}, "isSuccess"),
        ({"personalChallenges": [{"id": "1", "title": "t", "isSuccess": True}]}, "id"),
        ({"personalChallenges": [{"id": 1.0, "title": "t", "isSuccess": True}]}, "id"),
    ],
)
async def test_a_coercible_value_of_the_wrong_type_is_refused(
    client: httpx.AsyncClient,
    record: dict[str, Any],
    request_queue: RequestQueue,
    change: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/ai/feedback", json={**record, **change}, headers=JSON)
    assert any(name.endswith(field) for name in error_fields(response)), response.text
    assert request_queue.count() == 0
