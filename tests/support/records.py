"""One builder of the backend's weekly record, built on the contracts' realistic example."""

import copy
from typing import Any

from llm_common.contracts.example import example_weekly_record


def weekly_record(
    member_id: int, request_id: str | None = None, title: str = "아침 산책"
) -> dict[str, Any]:
    """A small record as the backend POSTs it: one personal challenge, "{title} {member_id}",
    succeeded; the example's group challenge "주 3회 러닝" (2025-06-09 ~ 2025-06-15, a Jackson
    array and an ISO string) with one successful submission. Without `request_id` the body has
    none, as when the backend publishes to the queue itself."""
    body = example_weekly_record(request_id, member_id)
    group = copy.deepcopy(body["groupChallenges"][0])
    group["submissions"] = [{"isSuccess": True, "submittedAt": "2025-06-10T07:00:00"}]
    body["personalChallenges"] = [{"id": 1, "title": f"{title} {member_id}", "isSuccess": True}]
    body["groupChallenges"] = [group]
    return body
