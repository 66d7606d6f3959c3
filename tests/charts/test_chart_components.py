"""What each component renders, and how values change it."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.charts import (
    COMPONENTS,
    MINIMAL_VALUES,
    SCENARIOS,
    SELECTOR_KEYS,
    Helm,
    HelmError,
    Manifest,
    component_of,
    config_of,
    env_of,
    objects,
    one,
)

Render = Callable[[str], list[Manifest]]
VALUES_KEY = {"ingest": "ingest", "worker": "worker", "qa-sync": "qaSync", "vllm": "vllm"}
RECOMMENDED_LABELS = (
    *SELECTOR_KEYS,
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
)


def _container(deployment: Manifest) -> Manifest:
    containers: list[Manifest] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


# --- switches ------------------------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_component_can_be_switched_off(helm: Helm, component: str) -> None:
    sets = {f"{VALUES_KEY[component]}.enabled": "false"}
    if component == "vllm":
        sets |= {
            "worker.llm.externalBaseUrl": "https://llm.example.com/v1",
            "worker.llm.model": "m",
            # No in-release vLLM to derive the worker cap from.
            "worker.autoscaling.maxReplicas": "20",
        }
    manifests = helm.template(MINIMAL_VALUES, sets=sets)
    assert not [m for m in manifests if component_of(m) == component]
    assert {component_of(m) for m in objects(manifests, "Deployment")} == set(COMPONENTS) - {
        component
    }


def test_each_component_gets_its_own_service_account_with_irsa_annotations(
    render_scenario: Render,
) -> None:
    manifests = render_scenario("eks-irsa")
    for component in ("ingest", "worker", "qa-sync"):
        account = one(manifests, "ServiceAccount", component)
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
            f"role/feedback-{component}"
        )
        deployment = one(manifests, "Deployment", component)
        assert (
            deployment["spec"]["template"]["spec"]["serviceAccountName"]
            == (account["metadata"]["name"])
        )


# --- labels and selectors ------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_carries_the_recommended_labels(
    render_scenario: Render, scenario: str
) -> None:
    for manifest in render_scenario(scenario):
        labels = manifest["metadata"]["labels"]
        missing = [key for key in RECOMMENDED_LABELS if key not in labels]
        assert not missing, f"{manifest['kind']}/{manifest['metadata']['name']}: {missing}"


def _selectors(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        spec = manifest.get("spec", {})
        if manifest["kind"] in ("Deployment", "PodDisruptionBudget", "ServiceMonitor"):
            found[name] = spec["selector"]["matchLabels"]
        elif manifest["kind"] == "Service":
            found[name] = spec["selector"]
        elif manifest["kind"] == "NetworkPolicy":
            found[name] = spec["podSelector"]["matchLabels"]
    return found


def test_selectors_are_name_instance_component_only(render_scenario: Render) -> None:
    selectors = _selectors(render_scenario("defaults"))
    assert selectors
    for name, selector in selectors.items():
        assert set(selector) == set(SELECTOR_KEYS), name


def test_user_labels_never_reach_selectors(render_scenario: Render) -> None:
    plain = _selectors(render_scenario("defaults"))
    labelled_manifests = render_scenario("all-on")
    labelled = _selectors(labelled_manifests)
    for name, selector in plain.items():
        assert labelled[name] == selector, name
    # ... while the labels themselves are there.
    ingest = one(labelled_manifests, "Deployment", "ingest")
    assert ingest["metadata"]["labels"]["team"] == "feedback"
    assert ingest["spec"]["template"]["metadata"]["labels"]["version-track"] == "canary"


def test_pod_labels_match_their_selector(render_scenario: Render) -> None:
    for deployment in objects(render_scenario("all-on"), "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert "helm.sh/chart" not in pod_labels, "a chart upgrade alone must not restart pods"


# --- ingest --------------------------------------------------------------------------------


def test_ingest_is_routed_at_ai_feedback_with_class_and_host(render_scenario: Render) -> None:
    manifests = render_scenario("all-on")
    ingress = one(manifests, "Ingress", "ingest")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "feedback-api.example.com"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/ai/feedback"
    service = one(manifests, "Service", "ingest")
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"number": service["spec"]["ports"][0]["port"]},
    }


def test_ingest_scales_on_cpu_and_keeps_replicas_through_disruptions(
    render_scenario: Render,
) -> None:
    manifests = render_scenario("defaults")
    hpa = one(manifests, "HorizontalPodAutoscaler", "ingest")
    deployment = one(manifests, "Deployment", "ingest")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(manifests, "PodDisruptionBudget", "ingest")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_ingress_off_leaves_a_fixed_ingest(render_scenario: Render) -> None:
    manifests = render_scenario("ingress-off")
    assert not [m for m in manifests if m["kind"] in ("Ingress", "HorizontalPodAutoscaler")]
    assert not [p for p in objects(manifests, "PodDisruptionBudget") if component_of(p) == "ingest"]
    assert one(manifests, "Deployment", "ingest")["spec"]["replicas"] == 2


# --- worker --------------------------------------------------------------------------------


def test_worker_scales_with_keda_on_the_request_queue(render_scenario: Render) -> None:
    manifests = render_scenario("defaults")
    deployment = one(manifests, "Deployment", "worker")
    scaled = one(manifests, "ScaledObject", "worker")
    auth = one(manifests, "TriggerAuthentication", "worker")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0
    trigger = _trigger(scaled, "aws-sqs-queue")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    config = config_of(manifests, "worker")
    assert trigger["metadata"] == {
        "queueURL": config["FEEDBACK_QUEUE_URL"],
        "queueLength": config["WORKER_CONCURRENCY"],
        "activationQueueLength": "0",
        "scaleOnInFlight": "true",
        "awsRegion": config["AWS_REGION"],
    }
    assert auth["spec"] == {"podIdentity": {"provider": "aws", "identityOwner": "keda"}}


def test_worker_prefetch_follows_the_concurrency_unless_set(helm: Helm) -> None:
    by_default = config_of(helm.template(MINIMAL_VALUES), "worker")
    none_ahead = config_of(helm.template(MINIMAL_VALUES, sets={"worker.prefetch": "0"}), "worker")
    assert "WORKER_PREFETCH" not in by_default  # the worker then derives it
    assert none_ahead["WORKER_PREFETCH"] == "0"


def test_ingest_and_worker_share_the_request_table_unless_it_is_switched_off(helm: Helm) -> None:
    on = helm.template(MINIMAL_VALUES)
    off = helm.template(MINIMAL_VALUES, sets={"requestStore.tableName": ""})
    ingest, worker = config_of(on, "ingest"), config_of(on, "worker")
    assert ingest["REQUEST_TABLE_NAME"] == worker["REQUEST_TABLE_NAME"] == "feedback-requests"
    assert ingest["REQUEST_STORE_TTL_SECONDS"] == str(35 * 24 * 3600)
    assert ingest["REQUEST_TTL_SECONDS"] == str(7 * 24 * 3600)
    assert "REQUEST_TABLE_NAME" not in config_of(off, "ingest")
    assert "REQUEST_TABLE_NAME" not in config_of(off, "worker")


def test_worker_gets_its_delivery_budget_content_checks_and_failure_path(
    helm: Helm, tmp_path: Path
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "worker:\n"
        "  callback: {url: https://backend.example, path: /ai/feedback/result,"
        " failurePath: /ai/feedback/failure}\n"
        "  delivery: {retrySeconds: 7200, retryMaxDelaySeconds: 60}\n"
        "  content: {minChars: 40, maxChars: 1200, minKoreanRatio: 0.7}\n"
    )
    config = config_of(helm.template(MINIMAL_VALUES, site), "worker")
    assert config["CALLBACK_FAILURE_PATH"] == "/ai/feedback/failure"
    assert config["DELIVERY_RETRY_SECONDS"] == "7200"
    assert config["DELIVERY_RETRY_MAX_DELAY_SECONDS"] == "60"
    assert (config["CONTENT_MIN_CHARS"], config["CONTENT_MAX_CHARS"]) == ("40", "1200")
    assert config["CONTENT_MIN_KOREAN_RATIO"] == "0.7"
    assert "CALLBACK_FAILURE_PATH" not in config_of(helm.template(MINIMAL_VALUES), "worker")


def test_scale_to_zero_against_an_emulator_with_secret_credentials(render_scenario: Render) -> None:
    manifests = render_scenario("min-replicas-0")
    scaled = one(manifests, "ScaledObject", "worker")
    assert scaled["spec"]["minReplicaCount"] == 0
    trigger = _trigger(scaled, "aws-sqs-queue")
    assert trigger["metadata"]["awsEndpoint"] == "http://moto.feedback-dev.svc.cluster.local:5000"
    assert trigger["metadata"]["queueLength"] == "8"
    assert trigger["metadata"]["activationQueueLength"] == "1"
    auth = one(manifests, "TriggerAuthentication", "worker")
    assert {ref["parameter"]: ref["key"] for ref in auth["spec"]["secretTargetRef"]} == {
        "awsAccessKeyID": "AWS_ACCESS_KEY_ID",
        "awsSecretAccessKey": "AWS_SECRET_ACCESS_KEY",
    }


def _trigger(scaled: Manifest, kind: str) -> Manifest:
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == kind]
    return trigger


def test_workers_are_capped_by_the_ready_vllm_replicas(render_scenario: Render) -> None:
    manifests = render_scenario("defaults")
    scaled = one(manifests, "ScaledObject", "worker")
    queue_length = int(config_of(manifests, "worker")["WORKER_CONCURRENCY"])
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    # 256 running sequences per vLLM replica / 32 calls per pod = 8 pods per replica, each
    # counted at its queue length: pods = min(queue / 32, replicas * 8), the replicas vLLM's
    # Deployment asks for, so a replica's pods start (and wait for it) during its cold start.
    assert modifiers["formula"] == f"min(queue, llm_replicas * {8 * queue_length})"
    assert modifiers["target"] == str(queue_length)
    assert _trigger(scaled, "aws-sqs-queue")["name"] == "queue"
    replicas = _trigger(scaled, "prometheus")
    assert replicas["name"] == "llm_replicas"
    vllm = one(manifests, "Deployment", "vllm")["metadata"]["name"]
    assert f'deployment="{vllm}"' in replicas["metadata"]["query"]
    assert "kube_deployment_spec_replicas" in replicas["metadata"]["query"]
    assert replicas["metadata"]["serverAddress"].startswith("http://")


def test_workers_per_vllm_replica_follow_its_batch_and_their_concurrency(helm: Helm) -> None:
    manifests = helm.template(
        MINIMAL_VALUES, sets={"vllm.maxNumSeqs": "128", "worker.concurrency": "48"}
    )
    modifiers = one(manifests, "ScaledObject", "worker")["spec"]["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == f"min(queue, llm_replicas * {3 * 48})"  # ceil(128 / 48) = 3


def test_the_worker_cap_keeps_every_vllm_replica_busy_unless_set_higher(helm: Helm) -> None:
    # 0 (the default) derives the cap: vLLM's most replicas x pods per replica (256 / 32 = 8).
    sets = {"vllm.modelCache.type": "ephemeral", "vllm.autoscaling.maxReplicas": "3"}
    manifests = helm.template(MINIMAL_VALUES, sets=sets)
    assert one(manifests, "ScaledObject", "worker")["spec"]["maxReplicaCount"] == 3 * 8
    higher = helm.template(MINIMAL_VALUES, sets={**sets, "worker.autoscaling.maxReplicas": "40"})
    assert one(higher, "ScaledObject", "worker")["spec"]["maxReplicaCount"] == 40
    # A cap below 3 x 8 would leave batches short at the burst's peak: refused, saying why.
    with pytest.raises(HelmError, match=r"maxReplicas 20 starves vLLM: its 3 replica\(s\) need 24"):
        helm.template(MINIMAL_VALUES, sets={**sets, "worker.autoscaling.maxReplicas": "20"})


def test_an_external_llm_leaves_workers_on_the_queue_alone(render_scenario: Render) -> None:
    scaled = one(render_scenario("external-llm"), "ScaledObject", "worker")
    assert [t["type"] for t in scaled["spec"]["triggers"]] == ["aws-sqs-queue"]
    assert "scalingModifiers" not in scaled["spec"]["advanced"]


def test_worker_fallback_and_hpa_behaviour_come_from_values(helm: Helm) -> None:
    manifests = helm.template(
        MINIMAL_VALUES,
        sets={
            "worker.autoscaling.fallback.replicas": "5",
            "worker.autoscaling.behavior.scaleDown.stabilizationWindowSeconds": "600",
        },
    )
    spec = one(manifests, "ScaledObject", "worker")["spec"]
    assert spec["fallback"] == {"failureThreshold": 3, "replicas": 5}
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 4, "periodSeconds": 30}]
    no_fallback = helm.template(MINIMAL_VALUES, sets={"worker.autoscaling.fallback": "null"})
    assert "fallback" not in one(no_fallback, "ScaledObject", "worker")["spec"]


def test_workload_identity_for_keda(render_scenario: Render) -> None:
    auth = one(render_scenario("eks-irsa"), "TriggerAuthentication", "worker")
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}


def test_keda_off_gives_a_fixed_worker_count(render_scenario: Render) -> None:
    manifests = render_scenario("keda-off")
    assert not [m for m in manifests if m["apiVersion"].startswith("keda.sh/")]
    assert one(manifests, "Deployment", "worker")["spec"]["replicas"] == 3


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_worker_grace_period_outlasts_llm_calls_and_drain(
    render_scenario: Render, scenario: str
) -> None:
    manifests = render_scenario(scenario)
    config = config_of(manifests, "worker")
    # With the LLM gate the client does not retry: one attempt per call.
    gated = config["LLM_GATE_ENABLED"] == "true"
    attempts = 1 if gated else int(config["LLM_MAX_RETRIES"]) + 1
    budget = float(config["LLM_TIMEOUT_SECONDS"]) * attempts + float(config["DRAIN_GRACE_SECONDS"])
    grace = one(manifests, "Deployment", "worker")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    assert grace > budget


def test_vllm_grace_period_outlasts_the_workers_llm_timeout(helm: Helm) -> None:
    # A stopping vLLM waits for its calls: the worker's timeout, not the kill, must end one.
    for timeout in (60, 120):
        sets = {"worker.llm.timeoutSeconds": str(timeout)}
        manifests = helm.template(MINIMAL_VALUES, sets=sets)
        spec = one(manifests, "Deployment", "vllm")["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > timeout


def test_grace_period_follows_the_llm_timeout(helm: Helm) -> None:
    def grace(timeout: str, gate: str = "true") -> int:
        sets = {"worker.llm.timeoutSeconds": timeout, "worker.llm.gate.enabled": gate}
        manifests = helm.template(MINIMAL_VALUES, sets=sets)
        spec = one(manifests, "Deployment", "worker")["spec"]["template"]["spec"]
        value: int = spec["terminationGracePeriodSeconds"]
        return value

    # One attempt with the LLM gate; 3 (maxRetries 2) of each extra second without it.
    assert grace("120") - grace("60") == 60
    assert grace("120", "false") - grace("60", "false") == 180


def test_the_llm_gate_is_configured_from_values(helm: Helm) -> None:
    by_default = config_of(helm.template(MINIMAL_VALUES), "worker")
    assert by_default["LLM_GATE_ENABLED"] == "true"
    assert by_default["LLM_TARGET_WAITING"] == "16"
    off = helm.template(MINIMAL_VALUES, sets={"worker.llm.gate.enabled": "false"})
    assert config_of(off, "worker")["LLM_GATE_ENABLED"] == "false"


def test_stop_strings_reach_the_worker_as_json_only_when_set(helm: Helm, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text('worker:\n  llm: {stop: ["[기록]", "[피드백]"]}\n', encoding="utf-8")
    stop = helm.template(MINIMAL_VALUES, site)
    assert json.loads(config_of(stop, "worker")["LLM_STOP"]) == ["[기록]", "[피드백]"]
    assert "LLM_STOP" not in config_of(helm.template(MINIMAL_VALUES), "worker")


def test_feedback_queues_behind_interactive_calls_on_a_priority_scheduled_vllm(
    helm: Helm, tmp_path: Path
) -> None:
    manifests = helm.template(MINIMAL_VALUES)
    args = _container(one(manifests, "Deployment", "vllm"))["args"]
    assert args[args.index("--scheduling-policy") + 1] == "priority"
    assert config_of(manifests, "worker")["LLM_PRIORITY"] == "10"
    site = tmp_path / "site.yaml"
    site.write_text("worker:\n  llm: {priority: null}\nvllm: {schedulingPolicy: fcfs}\n")
    fcfs = helm.template(MINIMAL_VALUES, site)
    args = _container(one(fcfs, "Deployment", "vllm"))["args"]
    assert args[args.index("--scheduling-policy") + 1] == "fcfs"
    assert "LLM_PRIORITY" not in config_of(fcfs, "worker")


def test_prompt_template_is_mounted_and_named(render_scenario: Render) -> None:
    manifests = render_scenario("all-on")
    config = config_of(manifests, "worker")
    path = config["PROMPT_TEMPLATE_FILE"]
    spec = one(manifests, "Deployment", "worker")["spec"]["template"]["spec"]
    (mount,) = [m for m in _container_mounts(spec) if path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    prompt_map = next(
        m
        for m in objects(manifests, "ConfigMap")
        if m["metadata"]["name"] == volume["configMap"]["name"]
    )
    assert prompt_map["data"][path.rsplit("/", 1)[1]].startswith("너는 피드백 어시스턴트야.")


def _container_mounts(spec: Manifest) -> list[Manifest]:
    mounts: list[Manifest] = spec["containers"][0]["volumeMounts"]
    return mounts


# --- LLM -----------------------------------------------------------------------------------


def test_worker_talks_to_the_in_release_vllm(render_scenario: Render) -> None:
    manifests = render_scenario("defaults")
    config = config_of(manifests, "worker")
    service = one(manifests, "Service", "vllm")
    port = service["spec"]["ports"][0]["port"]
    assert config["LLM_BASE_URL"] == f"http://{service['metadata']['name']}:{port}/v1"
    args = _container(one(manifests, "Deployment", "vllm"))["args"]
    assert config["LLM_MODEL"] == args[args.index("--served-model-name") + 1]


def test_workers_read_every_vllm_replica_through_a_headless_service(
    render_scenario: Render, helm: Helm
) -> None:
    manifests = render_scenario("defaults")
    headless = one(manifests, "Service", "vllm-replicas")
    assert headless["spec"]["clusterIP"] == "None"
    pods = one(manifests, "Deployment", "vllm")["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= pods.items()
    port = headless["spec"]["ports"][0]["port"]
    name, namespace = headless["metadata"]["name"], headless["metadata"]["namespace"]
    assert config_of(manifests, "worker")["LLM_REPLICAS"] == f"{name}.{namespace}.svc:{port}"
    # vLLM's ServiceMonitor selects its one Service, not this one: no pod scraped twice.
    monitored = one(render_scenario("all-on"), "ServiceMonitor", "vllm")["spec"]["selector"]
    assert not monitored["matchLabels"].items() <= headless["metadata"]["labels"].items()

    off = helm.template(MINIMAL_VALUES, sets={"worker.llm.gate.replicaRouting": "false"})
    assert "LLM_REPLICAS" not in config_of(off, "worker")
    assert not [s for s in objects(off, "Service") if component_of(s) == "vllm-replicas"]


def test_external_llm_replaces_vllm(render_scenario: Render) -> None:
    manifests = render_scenario("external-llm")
    config = config_of(manifests, "worker")
    assert config["LLM_BASE_URL"] == "https://llm.example.com/v1"
    assert config["LLM_MODEL"] == "qwen2.5-7b-instruct"
    assert not [m for m in manifests if component_of(m) == "vllm"]


def test_vllm_runs_on_the_gpu_pool_with_its_engine_arguments(render_scenario: Render) -> None:
    manifests = render_scenario("eks-irsa")
    spec = one(manifests, "Deployment", "vllm")["spec"]["template"]["spec"]
    container = _container(one(manifests, "Deployment", "vllm"))
    assert spec["nodeSelector"] == {"feedback-platform/node-pool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = container["args"]
    assert args[0] == "Qwen/Qwen2.5-7B-Instruct"
    for flag, value in {
        "--served-model-name": "feedback-llm",
        "--max-model-len": "4096",
        "--gpu-memory-utilization": "0.9",
    }.items():
        assert args[args.index(flag) + 1] == value
    assert "--enable-prefix-caching" in args


def test_vllm_has_shared_memory_a_model_cache_and_a_long_startup(render_scenario: Render) -> None:
    manifests = render_scenario("defaults")
    deployment = one(manifests, "Deployment", "vllm")
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(deployment)["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    # One volume per pod (the pool grows past one replica), not one shared claim.
    assert "ephemeral" in volumes[mounts["/models"]]
    assert not objects(manifests, "PersistentVolumeClaim")
    container = _container(deployment)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 15 * 60
    assert env_of(container)["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_vllm_pool_empties_between_bursts_and_wakes_on_the_queue(render_scenario: Render) -> None:
    manifests = render_scenario("defaults")
    deployment = one(manifests, "Deployment", "vllm")
    scaled = one(manifests, "ScaledObject", "vllm")
    spec = scaled["spec"]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert (spec["idleReplicaCount"], spec["minReplicaCount"]) == (0, 1)
    queue = _trigger(scaled, "aws-sqs-queue")
    assert queue["metadata"]["queueURL"] == config_of(manifests, "worker")["FEEDBACK_QUEUE_URL"]
    auth = one(manifests, "TriggerAuthentication", "worker")
    assert queue["authenticationRef"]["name"] == auth["metadata"]["name"]
    waiting = _trigger(scaled, "prometheus")["metadata"]
    assert waiting["query"].startswith("sum(vllm:num_requests_waiting{")
    assert 'model_name="feedback-llm"' in waiting["query"]
    # A lull inside a burst (a message parked for its retry) never gives a GPU back: the parked
    # message is in flight, and in-flight messages keep the queue trigger active.
    assert queue["metadata"]["scaleOnInFlight"] == "true"


def test_vllm_is_warmed_up_ahead_of_a_known_burst(render_scenario: Render, helm: Helm) -> None:
    # A cron trigger per window: KEDA holds `replicas` from start to end, so the pool is Ready
    # when the week's burst comes instead of a cold start after it.
    cron = _trigger(one(render_scenario("all-on"), "ScaledObject", "vllm"), "cron")
    assert cron["metadata"] == {
        "timezone": "Asia/Seoul",
        "start": "54 23 * * 0",
        "end": "10 0 * * 1",
        "desiredReplicas": "1",
    }
    defaults = one(render_scenario("defaults"), "ScaledObject", "vllm")
    assert "cron" not in [t["type"] for t in defaults["spec"]["triggers"]]
    # More than the pool may hold would be capped by KEDA without a word: refused, saying why.
    window = "vllm.autoscaling.prewarm[0]"
    sets = {f"{window}.timezone": "UTC", f"{window}.start": "0 6 * * 1"}
    sets |= {f"{window}.end": "30 6 * * 1", f"{window}.replicas": "5"}
    with pytest.raises(HelmError, match=r"prewarm: 5 replicas from \"0 6 \* \* 1\" is above"):
        helm.template(MINIMAL_VALUES, sets=sets)


def test_vllm_keeps_replicas_through_voluntary_disruptions(render_scenario: Render) -> None:
    manifests = render_scenario("defaults")
    pdb = one(manifests, "PodDisruptionBudget", "vllm")
    selector = one(manifests, "Deployment", "vllm")["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"]["maxUnavailable"] == 1


def test_a_per_pod_model_cache_rolls_without_an_outage(helm: Helm) -> None:
    manifests = helm.template(
        MINIMAL_VALUES,
        sets={
            "vllm.modelCache.type": "ephemeral",
            "vllm.modelCache.storageClassName": "gp3",
            "vllm.autoscaling.maxReplicas": "2",
        },
    )
    deployment = one(manifests, "Deployment", "vllm")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (cache,) = [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache"
    ]
    claim = cache["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == "gp3"
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert not objects(manifests, "PersistentVolumeClaim")
    assert one(manifests, "ScaledObject", "vllm")["spec"]["maxReplicaCount"] == 2


def test_vllm_pins_its_revision_names_its_user_and_its_runtime(helm: Helm) -> None:
    revision = "a09a35458c702b33eeacc393d103063234e8bc28"
    manifests = helm.template(
        MINIMAL_VALUES, sets={"vllm.revision": revision, "vllm.runtimeClassName": "nvidia"}
    )
    deployment = one(manifests, "Deployment", "vllm")
    container = _container(deployment)
    args = container["args"]
    assert args[args.index("--revision") + 1] == revision
    assert args[args.index("--max-num-seqs") + 1] == "256"
    assert deployment["spec"]["template"]["spec"]["runtimeClassName"] == "nvidia"
    assert env_of(container)["USER"]["value"] == "vllm"
    unpinned = _container(one(helm.template(MINIMAL_VALUES), "Deployment", "vllm"))
    assert "--revision" not in unpinned["args"]


def test_vllm_and_the_worker_share_one_api_key_secret(render_scenario: Render) -> None:
    manifests = render_scenario("defaults")
    served = env_of(_container(one(manifests, "Deployment", "vllm")))["VLLM_API_KEY"]
    sent = env_of(_container(one(manifests, "Deployment", "worker")))["LLM_API_KEY"]
    assert served["valueFrom"] == sent["valueFrom"]
    assert served["valueFrom"]["secretKeyRef"]["key"] == "VLLM_API_KEY"
    assert "optional" not in served["valueFrom"]["secretKeyRef"]


def test_without_a_vllm_key_the_worker_key_is_its_own_and_optional(helm: Helm) -> None:
    manifests = helm.template(MINIMAL_VALUES, sets={"vllm.apiKey.enabled": "false"})
    assert "VLLM_API_KEY" not in env_of(_container(one(manifests, "Deployment", "vllm")))
    sent = env_of(_container(one(manifests, "Deployment", "worker")))["LLM_API_KEY"]
    worker_secret = sent["valueFrom"]["secretKeyRef"]
    assert worker_secret["key"] == "LLM_API_KEY"
    assert worker_secret["optional"] is True


def test_model_cache_can_be_an_empty_dir(helm: Helm) -> None:
    manifests = helm.template(MINIMAL_VALUES, sets={"vllm.modelCache.type": "emptyDir"})
    spec = one(manifests, "Deployment", "vllm")["spec"]["template"]["spec"]
    (cache,) = [v for v in spec["volumes"] if v["name"] == "model-cache"]
    assert cache["emptyDir"]["sizeLimit"] == "50Gi"
    assert not objects(manifests, "PersistentVolumeClaim")


# --- network policies ----------------------------------------------------------------------


def _rules(manifests: list[Manifest], component: str) -> list[Manifest]:
    rules: list[Manifest] = one(manifests, "NetworkPolicy", component)["spec"].get("ingress") or []
    return rules


def _selector_of(manifests: list[Manifest], component: str) -> dict[str, str]:
    selector: dict[str, str] = one(manifests, "Deployment", component)["spec"]["selector"][
        "matchLabels"
    ]
    return selector


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_network_policy_rule_admits_everyone(render_scenario: Render, scenario: str) -> None:
    for policy in objects(render_scenario(scenario), "NetworkPolicy"):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"].get("ingress") or []:
            assert rule.get("from"), f"{policy['metadata']['name']}: a rule without peers"
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule for every port"


@pytest.mark.parametrize("scenario", ["defaults", "eks-irsa", "min-replicas-0"])
def test_only_workers_reach_vllm(render_scenario: Render, scenario: str) -> None:
    manifests = render_scenario(scenario)
    worker = _selector_of(manifests, "worker")
    rules = _rules(manifests, "vllm")
    monitoring = _monitoring_peer(manifests)
    for rule in rules:
        for peer in rule["from"]:
            is_worker = peer == {"podSelector": {"matchLabels": worker}}
            assert is_worker or peer == monitoring, peer
    worker_rules = [r for r in rules if {"podSelector": {"matchLabels": worker}} in r["from"]]
    assert worker_rules
    assert worker_rules[0]["ports"] == [{"protocol": "TCP", "port": 8000}]


def _monitoring_peer(manifests: list[Manifest]) -> Manifest | None:
    """The monitoring peer, present only when the component's ServiceMonitor is on."""
    for monitor in objects(manifests, "ServiceMonitor"):
        if component_of(monitor) == "vllm":
            return {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
    return None


def test_ingest_admits_the_ingress_controller_and_the_helm_test_only(
    render_scenario: Render,
) -> None:
    manifests = render_scenario("defaults")
    (rule,) = _rules(manifests, "ingest")
    test_pod_labels = one(manifests, "Pod", "test")["metadata"]["labels"]
    controller, test_peer = rule["from"]
    assert controller == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
    }
    assert test_peer["podSelector"]["matchLabels"].items() <= test_pod_labels.items()
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_qa_sync_webhook_comes_through_the_ingress_controller_alone(
    render_scenario: Render,
) -> None:
    (rule,) = _rules(render_scenario("defaults"), "qa-sync")
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
        }
    ]


def test_alb_ip_mode_admits_the_vpc_instead_of_controller_pods(render_scenario: Render) -> None:
    (rule, _metrics) = _rules(render_scenario("eks-irsa"), "ingest")
    assert rule["from"][0] == {"ipBlock": {"cidr": "10.0.0.0/16"}}


def test_nobody_connects_to_workers_without_metrics_scraping(render_scenario: Render) -> None:
    assert _rules(render_scenario("defaults"), "worker") == []


def test_without_any_allowed_peer_ingest_admits_nobody(helm: Helm, tmp_path: Path) -> None:
    no_peers = tmp_path / "no-peers.yaml"
    no_peers.write_text(
        "tests: {enabled: false}\n"
        "networkPolicy: {ingressController: {namespaceSelector: null, podSelector: null}}\n"
    )
    manifests = helm.template(MINIMAL_VALUES, no_peers)
    assert _rules(manifests, "ingest") == []


# --- configuration and telemetry -----------------------------------------------------------


def test_config_change_rolls_only_the_pods_that_read_it(helm: Helm) -> None:
    def checksums(**sets: str) -> dict[str | None, str]:
        manifests = helm.template(MINIMAL_VALUES, sets=sets)
        return {
            component_of(d): d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in objects(manifests, "Deployment")
            if "annotations" in d["spec"]["template"]["metadata"]
        }

    before = checksums()
    after = checksums(**{"ingest.maxBodyBytes": "1048576"})
    assert before.keys() == {"ingest", "worker", "qa-sync"}
    assert after["ingest"] != before["ingest"]
    assert after["worker"] == before["worker"]
    assert after["qa-sync"] == before["qa-sync"]


def test_otel_block_becomes_the_standard_variables(render_scenario: Render) -> None:
    manifests = render_scenario("all-on")
    names = set()
    for deployment in objects(manifests, "Deployment"):
        if component_of(deployment) == "vllm":
            continue
        env = env_of(_container(deployment))
        names.add(env["OTEL_SERVICE_NAME"]["value"])
        assert (
            env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
            == "http://otel-collector.observability:4318"
        )
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
        assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.5"
        attributes = env["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(",")
        assert "deployment.environment.name=staging" in attributes
        assert "k8s.pod.name=$(K8S_POD_NAME)" in attributes
        # $(VAR) only expands for variables defined before it.
        order = list(env)
        assert order.index("K8S_POD_NAME") < order.index("OTEL_RESOURCE_ATTRIBUTES")
        assert "OTEL_SDK_DISABLED" not in env
    assert names == {"feedback-ingest", "feedback-worker", "qa-sync"}


def test_otel_off_disables_the_sdk(render_scenario: Render) -> None:
    for deployment in objects(render_scenario("defaults"), "Deployment"):
        if component_of(deployment) != "vllm":
            assert env_of(_container(deployment))["OTEL_SDK_DISABLED"]["value"] == "true"


def test_service_monitors_are_off_by_default_and_select_their_service(
    render_scenario: Render,
) -> None:
    assert not objects(render_scenario("defaults"), "ServiceMonitor")
    manifests = render_scenario("all-on")
    monitors = objects(manifests, "ServiceMonitor")
    assert {component_of(m) for m in monitors} == set(COMPONENTS)
    for monitor in monitors:
        services = [
            s
            for s in objects(manifests, "Service")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        (service,) = services
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["port"] in port_names
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
