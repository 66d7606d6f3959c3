"""The prompt the LLM gets for a realistic weekly record (docs/backend-contract.md, Prompt)."""

from pathlib import Path

import pytest
from feedback_worker.prompt import SYSTEM_PROMPT, InvalidTemplate, PromptTemplate
from llm_common.contracts import FeedbackJob
from llm_common.contracts.example import example_weekly_record


def realistic_request() -> FeedbackJob:
    # Both date shapes, a null title, a group challenge without submissions, all in June 2025:
    # long before "now", so any filtering by the server's clock would show as 0/0.
    return FeedbackJob.model_validate(example_weekly_record("req-1"))


def test_system_prompt_is_the_korean_assistant_line() -> None:
    prompt = PromptTemplate().render(realistic_request())

    assert prompt.system == SYSTEM_PROMPT == "너는 피드백 어시스턴트야."


def test_personal_challenges_are_listed_with_success_or_failure() -> None:
    user = PromptTemplate().render(realistic_request()).user

    assert "- 아침 6시 기상 (성공)\n- 하루 30분 독서 (실패)\n- (제목 없음) (성공)" in user


def test_group_challenges_carry_their_period_and_the_requests_success_rate() -> None:
    user = PromptTemplate().render(realistic_request()).user

    assert "- 주 3회 러닝\n  기간: 2025-06-09 ~ 2025-06-15\n  이번 주 성공률: 2/3" in user
    assert "- 물 2L 마시기\n  기간: 2025-06-01 ~ 2025-06-30\n  이번 주 성공률: 0/0" in user


def test_default_prompt_asks_for_a_short_friendly_feedback() -> None:
    user = PromptTemplate().render(realistic_request()).user

    for wish in ("5~6문장", "칭찬과 격려", "이모지", "위로", "개인 챌린지와 그룹 챌린지"):
        assert wish in user


def test_empty_lists_and_missing_fields_still_give_a_readable_prompt() -> None:
    request = FeedbackJob.model_validate(
        {
            "memberId": 5,
            "personalChallenges": [],
            "groupChallenges": [{"title": "  줄\n바꿈  제목 ", "submissions": []}],
        }
    )

    user = PromptTemplate().render(request).user

    assert "이번 주 개인 챌린지 기록이 없어요." in user
    # A title cannot add lines of its own to the list.
    assert "- 줄 바꿈 제목\n  기간: 정보 없음\n  이번 주 성공률: 0/0" in user


def test_template_from_a_file_with_named_placeholders(tmp_path: Path) -> None:
    template = tmp_path / "prompt.txt"
    template.write_text("개인:\n$personal_challenges\n그룹:\n$group_challenges\n가격 $$5", "utf-8")

    user = PromptTemplate.from_file(template).render(realistic_request()).user

    assert user.startswith("개인:\n- 아침 6시 기상 (성공)")
    assert "그룹:\n- 주 3회 러닝" in user
    assert user.endswith("가격 $5")


@pytest.mark.parametrize("text", ["$member_name 님", "{personal_challenges} $", "비용 $ 5"])
def test_template_with_unknown_placeholders_is_refused(text: str) -> None:
    with pytest.raises(InvalidTemplate):
        PromptTemplate(text)
