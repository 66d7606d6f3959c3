"""Each kind of result line: a pair, or the kind of bad line it is."""

import json
from contextlib import closing

import pytest
from qa_sync.custom_ids import CustomIdAnswers
from qa_sync.qa_lines import BadLine, BadLineFound, QaPair, read_line

from tests.support.qa_sync import error_line, pair_line, responses_line, result_line


def kind_of(line: bytes) -> BadLine:
    with pytest.raises(BadLineFound) as found:
        read_line(line)
    return found.value.kind


def test_json_content_gives_a_pair_with_its_custom_id() -> None:
    pair = read_line(pair_line("req-7", "  잠은 몇 시간?  ", "일곱 시간이요."))
    assert pair == QaPair(question="잠은 몇 시간?", answer="일곱 시간이요.", custom_id="req-7")


@pytest.mark.parametrize(
    "content",
    [
        "Q: 좋아하는 음식은? A: 김치찌개요.",
        "Q: 좋아하는 음식은?\nA: 김치찌개요.",
        "Q\uff1a 좋아하는 음식은?\nA\uff1a 김치찌개요.",
        '```json\n{"q": "좋아하는 음식은?", "a": "김치찌개요."}\n```',
    ],
)
def test_older_text_and_fenced_json_give_the_same_pair(content: str) -> None:
    pair = read_line(result_line("r", content))
    assert (pair.question, pair.answer) == ("좋아하는 음식은?", "김치찌개요.")


def test_each_bad_line_is_named_for_what_is_wrong_with_it() -> None:
    null_response = json.dumps({"custom_id": "a", "response": None, "error": None}).encode()
    assert kind_of(b"{not json") == BadLine.MALFORMED_LINE
    assert kind_of(b"[1, 2]") == BadLine.MALFORMED_LINE
    assert kind_of(error_line("b")) == BadLine.REQUEST_ERROR
    assert kind_of(null_response) == BadLine.NULL_RESPONSE
    assert kind_of(result_line("c", "x", status_code=500)) == BadLine.REQUEST_ERROR
    assert kind_of(result_line("d", None)) == BadLine.NULL_CONTENT
    assert (
        kind_of(result_line("e", '{"q": "잘려버린 질', finish_reason="length")) == BadLine.TRUNCATED
    )
    assert kind_of(result_line("f", '{"q": "닫히지 않은 객체", "a": "답')) == BadLine.TRUNCATED
    assert kind_of(result_line("g", '{"q": "no answer"}')) == BadLine.UNPARSEABLE
    assert kind_of(result_line("h", "just some prose")) == BadLine.UNPARSEABLE
    assert kind_of(result_line("i", '{"q": 1, "a": 2} }')) == BadLine.UNPARSEABLE


def test_a_request_error_carries_the_providers_error_code() -> None:
    with pytest.raises(BadLineFound) as found:
        read_line(error_line("x", code="context_length_exceeded"))
    assert found.value.error_code == "context_length_exceeded"


@pytest.mark.parametrize(
    "content",
    ["Q: 좋아하는 음식은? A: 김치찌개요. 그리고 된장", '{"q": "좋아하는 음식은?", "a": "김치"}'],
)
def test_a_line_cut_by_max_tokens_is_truncated_even_when_its_text_parses(content: str) -> None:
    assert kind_of(result_line("cut", content, finish_reason="length")) == BadLine.TRUNCATED


def test_a_responses_batch_line_gives_its_output_text_as_a_pair() -> None:
    line = responses_line("resp-1", '{"q": "좋아하는 음식은?", "a": "김치찌개요."}')
    assert read_line(line) == QaPair(
        question="좋아하는 음식은?", answer="김치찌개요.", custom_id="resp-1"
    )


def test_bad_responses_batch_lines_are_named_for_what_is_wrong() -> None:
    cut = responses_line("r1", "Q: 질문? A: 답", status="incomplete", reason="max_output_tokens")
    assert kind_of(cut) == BadLine.TRUNCATED
    assert kind_of(responses_line("r2", None)) == BadLine.NULL_CONTENT
    assert kind_of(responses_line("r3", "just prose")) == BadLine.UNPARSEABLE


def test_an_openai_error_file_line_is_a_request_error_with_its_code() -> None:
    # What OpenAI's error file holds: a response with a non-200 status and `error: null`.
    line = result_line("failed", None, status_code=500)
    with pytest.raises(BadLineFound) as found:
        read_line(line)
    assert (found.value.kind, found.value.error_code) == (BadLine.REQUEST_ERROR, "server_error")


def test_a_custom_id_keeps_its_first_pair_unless_another_contradicts_it() -> None:
    def pair(custom_id: str | None, answer: str) -> QaPair:
        return QaPair(question="q", answer=answer, custom_id=custom_id)

    lines = [
        pair("thrice", "a"),
        pair("split", "a"),
        pair("thrice", "a"),
        pair(None, "a"),
        pair("split", "a"),
        pair("thrice", "a"),
        pair("split", "b"),
        pair(None, "a"),
    ]
    with closing(CustomIdAnswers()) as answers:
        answers.learn(lines)
        verdicts = [answers.verdict(line) for line in lines]

    duplicate, conflicting = BadLine.DUPLICATE_CUSTOM_ID, BadLine.CONFLICTING_CUSTOM_ID
    assert verdicts == [
        None,
        conflicting,
        duplicate,
        None,
        conflicting,
        duplicate,
        conflicting,
        None,
    ]
