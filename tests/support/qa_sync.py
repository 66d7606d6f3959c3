"""Batch result lines as the provider writes them, and small waits for the tests."""

import json
from typing import Any

API_KEY = "qa-sync-test-key"
"""The key the tests' qa-sync accepts on its job APIs (QA_SYNC_API_KEYS)."""
WEBHOOK_SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLXFhLXN5bmMtd2ViaG9va3M="


def result_line(
    custom_id: str,
    content: str | None,
    *,
    status_code: int = 200,
    finish_reason: str = "stop",
) -> bytes:
    """One output line whose assistant content is `content`."""
    body: dict[str, Any] = {
        "id": f"chatcmpl-{custom_id}",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 60, "total_tokens": 180},
    }
    if status_code != 200:
        body = {
            "error": {"message": "server error", "type": "server_error", "code": "server_error"}
        }
    record = {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": f"req_{custom_id}", "body": body},
        "error": None,
    }
    return json.dumps(record, ensure_ascii=False).encode()


def responses_line(
    custom_id: str, text: str | None, *, status: str = "completed", reason: str | None = None
) -> bytes:
    """One output line of a /v1/responses batch whose output text is `text`."""
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
    body = {
        "id": f"resp_{custom_id}",
        "object": "response",
        "status": status,
        "incomplete_details": {"reason": reason} if reason else None,
        "model": "gpt-4o-mini",
        "output": [
            {"type": "reasoning", "id": f"rs_{custom_id}", "summary": []},
            {"type": "message", "role": "assistant", "content": content},
        ],
    }
    record = {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": f"req_{custom_id}", "body": body},
        "error": None,
    }
    return json.dumps(record, ensure_ascii=False).encode()


def pair_line(custom_id: str, question: str, answer: str) -> bytes:
    return result_line(custom_id, json.dumps({"q": question, "a": answer}, ensure_ascii=False))


def error_line(custom_id: str, code: str = "rate_limit_exceeded") -> bytes:
    """A failed request, as the batch's error file holds it."""
    record = {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": f"{code} for {custom_id}"},
    }
    return json.dumps(record).encode()


def jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def pairs_file(count: int, prefix: str = "req") -> tuple[bytes, list[str]]:
    """An output file of `count` good lines, and their custom ids in order."""
    ids = [f"{prefix}-{n}" for n in range(count)]
    return jsonl([pair_line(i, f"질문 {i}?", f"답변 {i}.") for i in ids]), ids


PHONE_NUMBER = "010-1234-5678"


def answered_twice() -> tuple[bytes, bytes]:
    """(output file, error file) of a batch that answered two custom_ids twice: `same` with the
    same pair both times, `split` with two contradicting answers, one giving a phone number;
    `once` answered once; the error file holds failed attempts of `once` and `same`."""
    output = jsonl(
        [
            pair_line("same", "운동은 언제 하나요?", "아침 7시에 달려요."),
            pair_line("split", "연락은 어떻게 하나요?", "DM으로 물어봐 주세요."),
            pair_line("once", "좋아하는 음식은?", "김치찌개요."),
            pair_line("same", "운동은 언제 하나요?", "아침 7시에 달려요."),
            pair_line("split", "연락은 어떻게 하나요?", f"{PHONE_NUMBER}로 전화 주세요."),
        ]
    )
    return output, jsonl([error_line("once"), error_line("same", "server_error")])


class InjectedS3Failures:
    """A botocore `before-send` hook: the first `failures` requests of an operation get the
    500 InternalError a struggling S3 answers, without reaching moto; the rest go through."""

    def __init__(self, failures: int) -> None:
        self.remaining = failures
        self.attempts = 0

    def __call__(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        self.attempts += 1
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
        return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def legacy_processed_document(influencer_id: str, task_id: str, pairs: int) -> bytes:
    """A processed JSON as the old system wrote it (indented, no provenance)."""
    document = {
        "influencer_id": influencer_id,
        "task_id": task_id,
        "generated_at": "2025-06-13T13:08:16",
        "total_qa_pairs": pairs,
        "qa_pairs": [
            {"question": f"질문 req-{n}?", "answer": f"답변 req-{n}.", "custom_id": f"req-{n}"}
            for n in range(pairs)
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode()
