"""Feedback fit to show a member: each content check on the real handler, with drafts scripted
into the fake LLM, delivered through the callback receiver over HTTP."""

import pytest
from feedback_worker.content import ContentRules, review
from feedback_worker.memory import InMemorySource
from feedback_worker.prompt import Prompt, PromptTemplate
from llm_common.contracts import FeedbackRequest
from llm_common.contracts.example import varied_weekly_records
from llm_common.telemetry.metrics import REGISTRY

from tests.support.factories import RunFeedback
from tests.support.fakes import CallbackReceiver, SimulatedLlm
from tests.support.records import weekly_record

FIT = (
    "이번 주도 정말 수고 많았어요! 😊 아침 산책을 꾸준히 해낸 노력이 멋져요. "
    "다음 주도 응원할게요! 🎉"
)
CUT = FIT + " 러닝은 조금 아쉬웠지만 다음 주에는 분명히"
CHECKS = "feedback_worker_content_checks_total"

# What Gemma 3 270M (a base model) delivered to a member from `make demo`: the prompt, continued.
ECHOED = (
    "아래는 사용자의 챌린지 기록을 바탕으로 사용자에게 보낼 "
    "짧은 피드백을 한국어 5~6문장으로 써 줘.\n"
    "1. 이번 주 챌린지를 요약하면서 칭찬과 격려를 담아 줘.\n"
    "2. 친근하고 밝은 말투로 쓰고"
)
PROMPT = PromptTemplate().render(FeedbackRequest.model_validate(weekly_record(1)))
UNFIT = [
    pytest.param("empty", "\u200b\u200b \ufeff", "stop", id="zero-width only"),
    pytest.param("empty", "<think>Praise the three runs.</think>", "stop", id="thinking only"),
    pytest.param(
        "incomplete", "이번 주도 정말 수고 많았고 아침 산책을 꾸준히 해낸", "length", id="cut"
    ),
    pytest.param("echo", ECHOED, "stop", id="the prompt handed back"),
    pytest.param("too_short", "잘했어요!", "stop", id="too short"),
    pytest.param("too_long", "정말 잘했어요! " * 200, "stop", id="too long"),
    pytest.param("link", FIT + " 기록은 https://example.com/me 에서 봐요.", "stop", id="link"),
    pytest.param("email", FIT + " 문의는 coach@example.com 으로 주세요.", "stop", id="e-mail"),
    pytest.param("phone", FIT + " 궁금하면 010-1234-5678 로 연락 주세요.", "stop", id="phone"),
    pytest.param(
        "not_korean",
        "Great job this week! You kept your morning walk going and ran three times.",
        "stop",
        id="english",
    ),
]
LINK = {"content": FIT + " 기록은 https://example.com/me 에서 봐요.", "finish_reason": "stop"}


def count(check: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(CHECKS, {"check": check, "outcome": outcome}) or 0.0


def send(source: InMemorySource, member_id: int) -> str:
    return source.send(weekly_record(member_id, f"req-{member_id}"), group_id=str(member_id))


async def test_a_draft_cut_by_max_tokens_is_delivered_up_to_its_last_complete_sentence(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm, receiver: CallbackReceiver
) -> None:
    trimmed = count("incomplete", "trimmed")
    llm.control(answers=[{"content": CUT, "finish_reason": "length"}])
    send(source, 31)

    await run_feedback(source)

    [delivery] = receiver.deliveries()
    assert delivery["body"]["content"] == FIT
    assert llm.stats()["requests"] == 1
    assert count("incomplete", "trimmed") == trimmed + 1


@pytest.mark.parametrize(("check", "content", "finish_reason"), UNFIT)
async def test_an_unfit_draft_is_written_once_more_and_the_fit_one_delivered(
    run_feedback: RunFeedback,
    source: InMemorySource,
    llm: SimulatedLlm,
    receiver: CallbackReceiver,
    check: str,
    content: str,
    finish_reason: str,
) -> None:
    regenerated = count(check, "regenerated")
    llm.control(answers=[{"content": content, "finish_reason": finish_reason}])
    send(source, 32)

    await run_feedback(source)

    [delivery] = receiver.deliveries()
    assert "이번 주도 정말 수고 많았어요" in delivery["body"]["content"]
    assert llm.stats()["requests"] == 2
    assert count(check, "regenerated") == regenerated + 1


async def test_two_unfit_drafts_fail_the_request_with_the_reason_and_nothing_is_delivered(
    run_feedback: RunFeedback, source: InMemorySource, llm: SimulatedLlm, receiver: CallbackReceiver
) -> None:
    failed = count("link", "failed")
    llm.control(answers=[LINK, LINK])
    message_id = send(source, 33)

    await run_feedback(source)

    assert receiver.deliveries() == []
    [dead] = source.dead_letters
    assert dead.message_id == message_id
    assert dead.reason == "feedback unfit to show after 2 drafts: contains a link"
    assert llm.stats()["requests"] == 2
    assert count("link", "failed") == failed + 1


@pytest.mark.parametrize(
    "text",
    [
        "6월 9일부터 15일까지(2025-06-09 ~ 2025-06-15) 3/5번 성공했어요. 정말 대단해요!",
        "하루 10000보 걷기를 12회나 해냈어요. 다음 주에도 꾸준히 이어 가 봐요!",
        "물 2L 마시기, 주 3회 러닝, 아침 6시 기상까지 모두 해낸 한 주였어요. 멋져요!",
    ],
)
def test_dates_counts_and_amounts_are_not_taken_for_contact_details(text: str) -> None:
    assert review(text, "stop", ContentRules(min_chars=10), PROMPT).failed is None


def test_a_cut_draft_keeps_ranges_decimals_and_emoji_of_its_last_sentence() -> None:
    cut = "한국어 5~6문장으로 정리했어요. 이번 주 2.5km를 달렸어요!😊 다음 주에는 3"

    verdict = review(cut, "length", ContentRules(min_chars=10), PROMPT)

    assert verdict.text == "한국어 5~6문장으로 정리했어요. 이번 주 2.5km를 달렸어요!😊"
    assert verdict.trimmed


def test_a_feedback_may_share_a_phrase_with_its_instructions_but_not_hand_them_back() -> None:
    fair = (
        "개인 챌린지와 그룹 챌린지 모두 정말 열심히 했어요! 😊 아침 산책을 꾸준히 이어 간 노력이 "
        "멋져요. 다음 주도 응원할게요! 🎉"
    )
    assert review(fair, "stop", ContentRules(), PROMPT).failed is None
    assert review(ECHOED, "stop", ContentRules(), PROMPT).failed == "echo"


def _varied_prompt(member_id: int) -> Prompt:
    record = next(r for r in varied_weekly_records() if r["memberId"] == member_id)
    return PromptTemplate().render(FeedbackRequest.model_validate(record))


# Gemma 3 270M's first draft for varied record 2015 (one untitled group challenge, 2/2),
# served as plain text with the worked examples: the record's frame, dates and counts garbled.
RECORD_HANDED_BACK = (
    "이번 주 개인 챌린지 기록이 없네요.\n"
    "그룹 챌린지:\n"
    "- (제목 없음)\n"
    "  기간: 2025-06-10 ~ 2025-06-15\n"
    "  이번 주 성공률: 0/2"
)


def test_a_draft_that_hands_the_members_record_back_is_refused_with_its_reason() -> None:
    verdict = review(RECORD_HANDED_BACK, "stop", ContentRules(), _varied_prompt(2015))

    assert verdict.failed == "record_echo"
    assert ContentRules().reason(verdict.failed) == (
        "hands the member's record back instead of feedback on it"
    )


@pytest.mark.parametrize(
    ("member_id", "draft"),
    [
        # Gemma 3 270M's passing drafts for varied records 2011 and 2020: titles, counts.
        (
            2011,
            "이번주는 간결하게 계단 오르기를 한 게 아니라, 걷기 한 줄로 끝내려고 했어요. "
            "걷기 챌린지 1/1를 끝으로, 오늘도 걷기 한 줄을 성공한 거예요. "
            "다음 주도 함께 걷고 싶어요! 😊",
        ),
        (
            2020,
            "개인 챌린지, 그룹 챌린지 성공률(4/4)이 너무 좋아졌어요. 오늘은 점심 샐러드부터 "
            "시작해 보겠습니다. 더 좋은 점심을 드실 수 있을지 기대가 됩니다. 😊",
        ),
        # A title longer than a copied run, quoted whole: naming a challenge is no copy.
        (
            2012,
            "'매일 아침 감사 일기 세 줄 쓰고 서로 응원하기'를 네 번 중 세 번 해냈어요! 서로 "
            "응원하는 마음이 멋져요. 다음 주도 함께해요! 🌱",
        ),
    ],
)
def test_a_feedback_may_name_the_records_challenges_and_counts(member_id: int, draft: str) -> None:
    assert review(draft, "stop", ContentRules(), _varied_prompt(member_id)).failed is None


@pytest.mark.parametrize(
    ("member_id", "draft"),
    [
        # Gemma 3 270M's drafts for varied records 2018 and 2001 that passed before this check:
        # the member's list copied and lengthened, and a feedback trailed by a record of its own.
        (
            2018,
            "그룹 챌린지:\n- 그림 한 장 그리기 (실패)\n- 요가 30분 (실패)\n- 독서 20쪽 (실패)\n"
            "- 미디어를 읽기 (실패)\n- 일기 쓰기 (실패)",
        ),
        (
            2001,
            "이번 주에는 30분 러닝을 해봤네요, 한 달에 10번 정도 걷는 게 좋아 보이네요. 다음 주도 "
            "함께 응원해요!\n- 주 1회 운동\n  기간: 2025-06-16 ~",
        ),
    ],
)
def test_a_draft_with_lines_in_the_records_form_is_refused(member_id: int, draft: str) -> None:
    assert review(draft, "stop", ContentRules(), _varied_prompt(member_id)).failed == "record_echo"
