"""k8s/: cluster prerequisites and local-dev manifests are valid, and the dev bootstrap
creates in moto (over HTTP) exactly the queues and bucket the platform expects."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from llm_common.requests_store import KEY, TTL_ATTRIBUTE, RequestStore, create_request_table

from tests.support.charts import (
    REPO,
    SUPPORTED_KUBERNETES,
    Manifest,
    containers,
    has_crd_schema,
    pod_specs,
    validate_builtin,
    validate_custom,
)

K8S = REPO / "k8s"
# eksctl's own format (a node group definition), not a Kubernetes object.
NOT_KUBERNETES = {"eksctl.io/v1alpha5"}


def _documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _is_kubernetes(path: Path) -> bool:
    """Kubernetes objects, as opposed to the chart values and eksctl's config kept here."""
    return all("kind" in d and d.get("apiVersion") not in NOT_KUBERNETES for d in _documents(path))


KUBERNETES_FILES = [path for path in sorted(K8S.rglob("*.yaml")) if _is_kubernetes(path)]


@pytest.mark.parametrize("kubernetes_version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("path", KUBERNETES_FILES, ids=lambda p: str(p.relative_to(K8S)))
def test_manifests_are_valid(path: Path, kubernetes_version: str) -> None:
    for manifest in _documents(path):
        if has_crd_schema(manifest):
            validate_custom(manifest)
        else:
            validate_builtin(manifest, kubernetes_version)


def test_dev_workloads_meet_the_restricted_pod_security_profile() -> None:
    for path in [p for p in KUBERNETES_FILES if p.parent.name == "dev"]:
        for name, spec in pod_specs(_documents(path)):
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
            for container in containers(spec):
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False, name
                assert context["capabilities"]["drop"] == ["ALL"], name
                assert {"requests", "limits"} <= set(container["resources"]), name
                assert re.fullmatch(r"[^@]+:[\w.-]+", container["image"]), name
                assert not container["image"].endswith(":latest"), name


def test_production_queues_are_fifo_with_a_dead_letter_queue() -> None:
    queues = {
        q["spec"]["queueName"]: q["spec"] for q in _documents(K8S / "cluster" / "sqs-queues.yaml")
    }
    assert queues.keys() == {
        "feedback-requests.fifo",
        "feedback-requests-dlq.fifo",
        "feedback-results.fifo",
    }
    assert all(spec["fifoQueue"] == "true" for spec in queues.values())
    redrive = json.loads(queues["feedback-requests.fifo"]["redrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":feedback-requests-dlq.fifo")
    assert int(redrive["maxReceiveCount"]) > 1


def _bootstrap_script() -> str:
    (config_map,) = [
        d for d in _documents(K8S / "dev" / "bootstrap.yaml") if d["kind"] == "ConfigMap"
    ]
    script: str = config_map["data"]["bootstrap.py"]
    return script


def test_bootstrap_creates_the_queues_with_redrive_the_table_and_the_bucket(
    aws_env: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    prefix = f"boot{abs(hash(request.node.nodeid)) % 10**6}"
    bucket = f"{prefix}-qa"
    script = tmp_path / "bootstrap.py"
    script.write_text(_bootstrap_script())
    env_overrides = {"QUEUE_PREFIX": prefix, "QA_BUCKET": bucket, "REQUEST_TABLE_NAME": prefix}
    for _ in range(2):  # idempotent: a re-run of the Job changes nothing
        result = subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, **env_overrides},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    sqs = boto3.client("sqs", endpoint_url=aws_env, region_name="us-east-1")
    requests_url = sqs.get_queue_url(QueueName=f"{prefix}-requests.fifo")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=requests_url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["FifoQueue"] == "true"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(f":{prefix}-requests-dlq.fifo")
    results_url = sqs.get_queue_url(QueueName=f"{prefix}-results.fifo")["QueueUrl"]
    results = sqs.get_queue_attributes(QueueUrl=results_url, AttributeNames=["FifoQueue"])
    assert results["Attributes"]["FifoQueue"] == "true"
    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    s3.head_bucket(Bucket=bucket)
    # The services check the table the way they will use it.
    RequestStore(prefix, "us-east-1").check_table()


def test_the_qa_bucket_aborts_incomplete_multipart_uploads() -> None:
    # qa-sync's multipart uploads rely on this rule for parts a crash leaves behind.
    (bucket,) = _documents(K8S / "cluster" / "s3-bucket.yaml")
    rules = bucket["spec"]["lifecycle"]["rules"]
    (abort,) = [rule for rule in rules if "abortIncompleteMultipartUpload" in rule]
    assert abort["status"] == "Enabled"
    assert abort["filter"] == {"prefix": ""}  # every key, not one prefix
    assert abort["abortIncompleteMultipartUpload"]["daysAfterInitiation"] >= 1


def test_the_request_table_is_keyed_by_request_id_with_ttl_on_the_records_expiry() -> None:
    (table,) = _documents(K8S / "cluster" / "request-store.yaml")
    spec = table["spec"]
    assert spec["keySchema"] == [{"attributeName": KEY, "keyType": "HASH"}]
    assert spec["attributeDefinitions"] == [{"attributeName": KEY, "attributeType": "S"}]
    assert spec["timeToLive"] == {"attributeName": TTL_ATTRIBUTE, "enabled": True}
    assert spec["billingMode"] == "PAY_PER_REQUEST"
    # The name the chart gives the services by default is the table created here.
    values = yaml.safe_load((REPO / "charts" / "feedback-platform" / "values.yaml").read_text())
    assert values["requestStore"]["tableName"] == spec["tableName"]


def test_the_table_make_run_creates_is_the_one_the_cluster_declares(aws_env: str) -> None:
    (table,) = _documents(K8S / "cluster" / "request-store.yaml")
    dynamodb = boto3.client("dynamodb", endpoint_url=aws_env, region_name="us-east-1")
    name = f"declared-{os.getpid()}"
    create_request_table(dynamodb, name)

    described = dynamodb.describe_table(TableName=name)["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    spec = table["spec"]
    assert [dict(k) for k in described["KeySchema"]] == [
        {"AttributeName": k["attributeName"], "KeyType": k["keyType"]} for k in spec["keySchema"]
    ]
    assert ttl["AttributeName"] == spec["timeToLive"]["attributeName"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"
