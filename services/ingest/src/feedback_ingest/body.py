"""Reading the request body ourselves: size-capped, UTF-8, JSON, then the feedback contract.

FastAPI's body handling would read any size into memory and answer 422 in its own format;
here each failure is a 400 or 413 envelope that names what is wrong.
"""

from fastapi import Request
from llm_common.contracts import FeedbackRequest
from llm_common.request_body import BodyTooLarge, BodyUnreadable, read_capped_body
from pydantic import ValidationError

from feedback_ingest.errors import InvalidRequest, PayloadTooLarge

JSON_MEDIA_TYPE = "application/json"
_UTF8_NAMES = {"utf-8", "utf8"}

# The backend's memberId is a Java long. The contract does not bound it yet; without a bound a
# 100-digit id would pass validation and then be refused by SQS (MessageGroupId ≤ 128 chars).


async def read_feedback_request(request: Request, max_bytes: int) -> FeedbackRequest:
    require_json_content_type(request.headers.get("content-type"))
    try:
        raw = await read_capped_body(request, max_bytes)
    except BodyTooLarge as error:  # ingest's own errors: they count the rejection by reason
        raise PayloadTooLarge(error.max_bytes) from None
    except BodyUnreadable as error:
        raise InvalidRequest.about(error.field, error.reason) from None
    return parse_feedback_request(raw)


def require_json_content_type(content_type: str | None) -> None:
    media_type, *parameters = (content_type or "").split(";")
    if media_type.strip().lower() != JSON_MEDIA_TYPE or not all(
        _is_utf8_charset_or_other(p) for p in parameters
    ):
        raise InvalidRequest.about(
            "Content-Type", f"expected {JSON_MEDIA_TYPE} (UTF-8), got {content_type!r}"
        )


def _is_utf8_charset_or_other(parameter: str) -> bool:
    name, _, value = parameter.partition("=")
    if name.strip().lower() != "charset":
        return True
    return value.strip().strip('"').lower() in _UTF8_NAMES


def parse_feedback_request(raw: bytes) -> FeedbackRequest:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest.about("body", f"not valid UTF-8 at byte {error.start}") from None
    try:
        request = FeedbackRequest.model_validate_json(text)
    except ValidationError as error:
        raise InvalidRequest.from_validation(error) from None
    return request
