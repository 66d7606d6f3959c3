"""Callback signing is verifiable by any Standard Webhooks receiver."""

import base64
import hashlib
import hmac

import pytest
from llm_common.webhooks import WebhookVerificationError, signature_headers, verify_signature

SECRET = "whsec_" + base64.b64encode(b"a-32-byte-secret-for-the-tests!!").decode()


def test_signature_is_hmac_sha256_of_id_timestamp_body() -> None:
    body = '{"memberId":1,"content":"hi"}'
    headers = signature_headers(SECRET, "req-1", body)
    signed = f"req-1.{headers['webhook-timestamp']}.{body}".encode()
    expected = hmac.new(b"a-32-byte-secret-for-the-tests!!", signed, hashlib.sha256).digest()
    assert headers["webhook-id"] == "req-1"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    verify_signature(SECRET, body, headers)


def test_tampered_body_or_wrong_secret_fails_verification() -> None:
    headers = signature_headers(SECRET, "req-1", "{}")
    with pytest.raises(WebhookVerificationError):
        verify_signature(SECRET, '{"x":1}', headers)
    other = "whsec_" + base64.b64encode(b"another-secret-another-secret-!!").decode()
    with pytest.raises(WebhookVerificationError):
        verify_signature(other, "{}", headers)
