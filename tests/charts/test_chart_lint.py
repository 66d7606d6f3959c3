"""`helm lint --strict` and what values.schema.json lets through."""

import pytest

from tests.support.charts import CHART, MINIMAL_VALUES, Helm, HelmError


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
        # SQS keeps a received message 12 hours at most: the budget must end before.
        ("worker.delivery.retrySeconds", "43200"),
        ("requestStore.tableName", "no spaces allowed"),
    ],
)
def test_schema_rejects_invalid_values(helm: Helm, key: str, value: str) -> None:
    with pytest.raises(HelmError, match="values don't meet the specifications of the schema"):
        helm.template(MINIMAL_VALUES, sets={key: value})


@pytest.mark.parametrize(
    ("sets", "why"),
    [
        ({"queues.resultsUrl": ""}, r"queues\.resultsUrl and/or worker\.callback\.url"),
        (
            {"vllm.enabled": "false", "worker.autoscaling.maxReplicas": "20"},
            r"worker\.llm\.externalBaseUrl is required",
        ),
        # Several vLLM replicas cannot share one read-write-once model cache.
        ({"vllm.modelCache.type": "pvc", "vllm.autoscaling.maxReplicas": "2"}, "ReadWriteMany"),
        (
            {
                "vllm.modelCache.type": "pvc",
                "vllm.autoscaling.enabled": "false",
                "vllm.replicaCount": "2",
            },
            "ReadWriteMany",
        ),
        ({"vllm.autoscaling.idleReplicas": "1"}, "idleReplicas must be below minReplicas"),
        (
            {"worker.callback.failurePath": "/failures"},
            r"callback\.failurePath needs callback\.url",
        ),
    ],
    ids=[
        "no delivery target",
        "external LLM without its URL",
        "RWO cache, autoscaled",
        "RWO cache, fixed replicas",
        "idle replicas not below the minimum",
        "notices, no URL",
    ],
)
def test_values_that_cannot_work_are_refused_saying_why(
    helm: Helm, sets: dict[str, str], why: str
) -> None:
    with pytest.raises(HelmError, match=why):
        helm.template(MINIMAL_VALUES, sets=sets)
