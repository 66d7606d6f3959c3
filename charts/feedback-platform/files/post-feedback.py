"""`helm test`: post one realistic weekly record to ingest and expect 202 with a request id.

Standard library only: it runs in the ingest image. The body has both date shapes the backend
sends (ISO strings and Jackson arrays, nanoseconds included) — see docs/backend-contract.md.
"""

import json
import os
import sys
import urllib.error
import urllib.request

body = {
    "memberId": int(os.environ["TEST_MEMBER_ID"]),
    "requestId": os.environ["TEST_REQUEST_ID"],
    "personalChallenges": [
        {"id": 101, "title": "매일 30분 걷기", "isSuccess": True},
        {"id": 102, "title": "물 2리터 마시기", "isSuccess": False},
    ],
    "groupChallenges": [
        {
            "id": 201,
            "title": "아침 6시 기상",
            "startDate": "2025-06-09T00:00:00",
            "endDate": [2025, 6, 15, 23, 59, 59],
            "submissions": [
                {"isSuccess": True, "submittedAt": [2025, 6, 13, 13, 8, 16, 710986000]},
                {"isSuccess": False, "submittedAt": "2025-06-12 07:01:00"},
            ],
        },
        {
            "id": 202,
            "title": "주 3회 독서",
            "startDate": [2025, 6, 9, 0, 0],
            "endDate": "2025-06-22T23:59:59.000001",
            "submissions": [],
        },
    ],
}

headers = {"Content-Type": "application/json", "Accept": "application/json"}
api_key = os.environ.get("INGEST_API_KEYS", "").split(",")[0].strip()
if api_key:
    headers["X-API-Key"] = api_key

request = urllib.request.Request(
    os.environ["INGEST_URL"], data=json.dumps(body).encode(), headers=headers, method="POST"
)
try:
    with urllib.request.urlopen(request, timeout=15) as response:
        status, text = response.status, response.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
except OSError as error:
    sys.exit(f"FAIL: ingest unreachable: {error}")

print(f"POST {os.environ['INGEST_URL']} -> {status} {text}")
if status != 202:
    sys.exit(f"FAIL: expected 202, got {status}")
data = json.loads(text).get("data") or {}
if data.get("requestId") != body["requestId"]:
    sys.exit(f"FAIL: 202 without our requestId in data: {text}")
print("OK: ingest accepted the request")
