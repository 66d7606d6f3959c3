"""Each kind of result line: a pair, or the kind of bad line it is."""

import json

import pytest
from qa_sync.qa_lines import BadLine, BadLineFound, QaPair, read_line

from tests.support.qa_sync import error_line, pair_line, result_line


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
    assert kind_of(result_line("c", "x", status_code=500)) == BadLine.NON_200
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
