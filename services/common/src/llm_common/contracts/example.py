"""A realistic weekly record as the Spring backend sends it: both date shapes, nanoseconds in a
Jackson array, a challenge without id and title, a group challenge with no submissions.

One example for everything that shows or sends a request: the OpenAPI document, `make demo`,
the end-to-end tests and the benchmarks.
"""

from typing import Any


def example_weekly_record(request_id: str | None, member_id: int = 1024) -> dict[str, Any]:
    """`request_id` None: a body without one, as when the backend leaves ingest to derive it."""
    record: dict[str, Any] = {"memberId": member_id}
    if request_id is not None:
        record["requestId"] = request_id
    return record | {
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


Personal = tuple[str | None, bool]
"""A personal challenge: its title (None: missing) and whether it succeeded."""
Group = tuple[str | None, str, str, tuple[bool, ...]]
"""A group challenge: title, start and end day, and its submissions' isSuccess."""

VARIED_WEEKS: tuple[tuple[tuple[Personal, ...], tuple[Group, ...]], ...] = (
    (
        (("아침 6시 기상", True), ("하루 30분 독서", False)),
        (("주 3회 러닝", "2025-06-09", "2025-06-15", (True, True, False)),),
    ),
    ((("물 2L 마시기", True), ("야식 끊기", True), ("스마트폰 1시간 줄이기", True)), ()),
    (
        (),
        (
            (
                "매일 만 보 걷기",
                "2025-06-01",
                "2025-06-30",
                (True, True, True, True, True, True, True),
            ),
        ),
    ),
    (
        (("영어 회화 15분", False), ("명상 10분", False)),
        (("주 2회 수영", "2025-06-09", "2025-06-22", (False,)),),
    ),
    (
        (("푸시업 50개", True),),
        (
            ("새벽 독서 모임", "2025-05-26", "2025-06-22", ()),
            ("저녁 산책", "2025-06-09", "2025-06-15", (True, False)),
        ),
    ),
    ((("일기 쓰기", True), ("영양제 챙겨 먹기", False)), ()),
    (
        (),
        (
            ("주 4회 헬스", "2025-06-02", "2025-06-29", (True, True, True, False)),
            ("채식 도전", "2025-06-09", "2025-06-15", (False, False)),
        ),
    ),
    ((("밤 11시 전에 잠들기", False),), ()),
    (
        (("코딩 테스트 1문제", True), ("블로그 글 쓰기", True)),
        (("알고리즘 스터디", "2025-06-01", "2025-07-31", (True, True)),),
    ),
    ((("Duolingo streak", True), ("기타 연습 20분", False)), ()),
    (
        ((None, True), ("계단 오르기", True)),
        (("사내 걷기 챌린지", "2025-06-09", "2025-06-15", (True,)),),
    ),
    (
        (),
        (
            (
                "매일 아침 감사 일기 세 줄 쓰고 서로 응원하기",
                "2025-06-01",
                "2025-06-30",
                (True, False, True, True),
            ),
        ),
    ),
    (
        (("플랭크 2분", True), ("탄산음료 안 마시기", False), ("하루 한 번 스트레칭", True)),
        (("자전거 출근", "2025-06-09", "2025-06-15", (False, True)),),
    ),
    ((("자격증 공부 1시간", False), ("방 청소", True)), ()),
    ((), ((None, "2025-06-09", "2025-06-15", (True, True)),)),
    (
        (("줄넘기 500개", True),),
        (
            ("가족과 저녁 먹기", "2025-06-01", "2025-06-30", (True, True, True)),
            ("주 1회 봉사", "2025-06-01", "2025-08-31", ()),
        ),
    ),
    ((("금주", True), ("금연", True)), (("러닝 크루 10km", "2025-06-09", "2025-06-15", (True,)),)),
    ((("그림 한 장 그리기", False), ("요가 30분", False), ("독서 20쪽", False)), ()),
    ((), (("주 5회 공복 유산소", "2025-06-09", "2025-07-06", (True, False, False, True, False)),)),
    (
        (("감사 인사 전하기", True),),
        (("점심 샐러드", "2025-06-09", "2025-06-15", (True, True, True, True)),),
    ),
)
"""Twenty weeks unlike each other: one to three challenges of each kind or none, all succeeded,
all failed, a title missing, a long title, an English one, a challenge without submissions."""


def varied_weekly_records() -> list[dict[str, Any]]:
    """VARIED_WEEKS as the backend sends them (members 2001-2020): what `make feedback-check`
    asks the LLM about, to measure how many of its feedbacks pass the worker's content checks."""
    return [
        _record(f"varied-{number:02d}", 2000 + number, personal, groups)
        for number, (personal, groups) in enumerate(VARIED_WEEKS, start=1)
    ]


def _record(
    request_id: str, member_id: int, personal: tuple[Personal, ...], groups: tuple[Group, ...]
) -> dict[str, Any]:
    return {
        "memberId": member_id,
        "requestId": request_id,
        "personalChallenges": [
            {"id": member_id * 10 + index, "title": title, "isSuccess": success}
            for index, (title, success) in enumerate(personal)
        ],
        "groupChallenges": [
            {
                "id": member_id * 10 + index,
                "title": title,
                "startDate": f"{start}T00:00:00",
                "endDate": f"{end}T23:59:59",
                "submissions": [
                    {"isSuccess": success, "submittedAt": f"{start}T07:{day:02d}:00"}
                    for day, success in enumerate(submissions)
                ],
            }
            for index, (title, start, end, submissions) in enumerate(groups, start=5)
        ],
    }
