"""Probes, and the envelope on routes that do not exist."""

import httpx
from feedback_ingest.settings import IngestSettings

from tests.support.ingest import RequestQueue, Serve, assert_envelope


async def test_healthz_says_the_process_answers(client: httpx.AsyncClient) -> None:
    assert assert_envelope(await client.get("/healthz"), 200) == {}


async def test_readyz_says_the_queue_answers(client: httpx.AsyncClient) -> None:
    assert assert_envelope(await client.get("/readyz"), 200) == {"queue": "reachable"}


async def test_readyz_reuses_its_last_answer_instead_of_asking_sqs_on_every_probe(
    serve: Serve, settings: IngestSettings, request_queue: RequestQueue
) -> None:
    async with serve(settings) as client:
        assert_envelope(await client.get("/readyz"), 200)
        request_queue.sqs.delete_queue(QueueUrl=request_queue.url)
        cached = await client.get("/readyz")
    async with serve(settings) as fresh_client:
        fresh = await fresh_client.get("/readyz")

    assert_envelope(cached, 200)
    assert_envelope(fresh, 503)


async def test_an_unknown_path_is_a_404_envelope(client: httpx.AsyncClient) -> None:
    assert_envelope(await client.get("/ai/feedbacks"), 404)


async def test_a_wrong_method_is_a_405_envelope_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.get("/ai/feedback")

    assert_envelope(response, 405)
    assert response.headers["allow"] == "POST"
