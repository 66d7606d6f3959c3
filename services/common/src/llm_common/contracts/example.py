"""A realistic weekly record as the Spring backend sends it: both date shapes, nanoseconds in a
Jackson array, a challenge without id and title, a group challenge with no submissions.

One example for everything that shows or sends a request: the OpenAPI document, `make demo`,
the end-to-end tests and the benchmarks.
"""

from typing import Any


def example_weekly_record(request_id: str, member_id: int = 1024) -> dict[str, Any]:
    return {
        "memberId": member_id,
        "requestId": request_id,
        "personalChallenges": [
            {"id": 11, "title": "아침 6시 기상", "isSuccess": True},
            {"id": 12, "title": "하루 30분 독서", "isSuccess": False},
            {"id": None, "title": None, "isSuccess": True},
        ],
        "groupChallenges": [
            {
                "id": 301,
                "title": "주 3회 러닝",
                "startDate": [2025, 6, 9, 0, 0],
                "endDate": "2025-06-15T23:59:59",
                "submissions": [
                    {"isSuccess": True, "submittedAt": [2025, 6, 10, 7, 12, 5, 710986000]},
                    {"isSuccess": True, "submittedAt": "2025-06-12 07:30:00"},
                    {"isSuccess": False, "submittedAt": "2025-06-14T08:01:44.5"},
                ],
            },
            {
                "id": 302,
                "title": "물 2L 마시기",
                "startDate": "2025-06-01T00:00:00",
                "endDate": "2025-06-30T23:59:59",
                "submissions": [],
            },
        ],
    }
