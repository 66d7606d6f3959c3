"""`helm lint --strict` and what values.schema.json lets through."""

import pytest
from chart_support import CHART, MINIMAL_VALUES, Helm, HelmError


def test_lint_strict_passes_with_the_minimal_site_values(helm: Helm) -> None:
    output = helm.run("lint", "--strict", str(CHART), "--values", str(MINIMAL_VALUES))
    assert "0 chart(s) failed" in output


def test_install_without_queue_urls_fails_naming_the_missing_value(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"queues\.requestsUrl is required"):
        helm.template()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("unknownTopLevel", "1"),
        ("ingest.replicas", "3"),
        ("worker.autoscaling.queueLenght", "10"),
        ("vllm.modelCache.sizeLimit", "10Gi"),
        ("otel.endpiont", "http://collector:4318"),
    ],
)
def test_schema_rejects_unknown_keys(helm: Helm, key: str, value: str) -> None:
    with pytest.raises(HelmError, match="additional properties"):
        helm.template(MINIMAL_VALUES, sets={key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ingest.image.tag", "latest"),
        ("worker.concurrency", "0"),
        ("worker.terminationMarginSeconds", "0"),
        ("vllm.gpuMemoryUtilization", "1.5"),
        ("worker.autoscaling.auth.mode", "keys"),
        ("otel.protocol", "grpc"),
        ("ingest.podLabels.app\\.kubernetes\\.io/component", "other"),
        ("commonLabels.app\\.kubernetes\\.io/instance", "other"),
    ],
)
def test_schema_rejects_invalid_values(helm: Helm, key: str, value: str) -> None:
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema"):
        helm.template(MINIMAL_VALUES, sets={key: value})


def test_worker_without_any_delivery_target_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"queues\.resultsUrl and/or worker\.callback\.url"):
        helm.template(MINIMAL_VALUES, sets={"queues.resultsUrl": ""})


def test_external_llm_needs_its_url(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"worker\.llm\.externalBaseUrl is required"):
        helm.template(MINIMAL_VALUES, sets={"vllm.enabled": "false"})


def test_several_vllm_replicas_cannot_share_one_read_write_once_cache(helm: Helm) -> None:
    with pytest.raises(HelmError, match="ReadWriteMany"):
        helm.template(MINIMAL_VALUES, sets={"vllm.replicaCount": "2"})


def test_failure_notices_without_a_callback_url_are_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"callback\.failurePath needs callback\.url"):
        helm.template(MINIMAL_VALUES, sets={"worker.callback.failurePath": "/failures"})


def test_a_delivery_budget_past_sqs_twelve_hours_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema"):
        helm.template(MINIMAL_VALUES, sets={"worker.delivery.retrySeconds": "43200"})
