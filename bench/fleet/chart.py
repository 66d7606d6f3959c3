"""What the fleet simulation takes from the chart, read from `helm template`, never retyped.

The ScaledObjects (KEDA's polling, activation, cooldown, idle replicas, the HPA behaviour),
the worker's ConfigMap (its concurrency and the LLM gate's settings), vLLM's arguments
(`--max-num-seqs`) and its startup probe all come from the objects an install would create:
charts/feedback-platform with its ci/minimal-values.yaml (the least a release needs) and the
scenario's `--set` pairs. The helm binary is the chart tests' (devstack/helm_binary.py).
How long an empty GPU node is kept comes from the node pool the chart's vLLM lands on,
k8s/cluster/gpu-node-pool.karpenter.yaml (`consolidate_after_s`).

What the chart leaves to Kubernetes is Kubernetes' default here, each with its source:
the HPA's default scale-up/scale-down behaviour and its 0.1 tolerance.
"""

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from croniter import croniter
from devstack.helm_binary import LAYER_DISTRIBUTION, helm_binary, layer_version

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "feedback-platform"
MINIMAL_VALUES = CHART / "ci" / "minimal-values.yaml"
HELM_CACHE = REPO / ".run" / f"helm-{LAYER_DISTRIBUTION}-{layer_version()}"
RELEASE = "feedback"
NODE_POOL = REPO / "k8s" / "cluster" / "gpu-node-pool.karpenter.yaml"

Manifest = dict[str, Any]


class PolicyKind(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


@dataclass(frozen=True)
class ScalingPolicy:
    """One HPAScalingPolicy: at most `value` pods (or percent) of change per `period_s`."""

    kind: PolicyKind
    value: int
    period_s: float


@dataclass(frozen=True)
class ScalingRules:
    """One direction of an HPA's behaviour (autoscaling/v2 HPAScalingRules)."""

    stabilization_s: float
    policies: tuple[ScalingPolicy, ...]
    select: str = "Max"
    """Max: the policy that allows the most change; Min: the least; Disabled: no change."""


DEFAULT_SCALE_UP = ScalingRules(
    0, (ScalingPolicy(PolicyKind.PERCENT, 100, 15), ScalingPolicy(PolicyKind.PODS, 4, 15))
)
DEFAULT_SCALE_DOWN = ScalingRules(300, (ScalingPolicy(PolicyKind.PERCENT, 100, 15),))
"""Kubernetes' HPA behaviour where a ScaledObject gives none for a direction ("Default
Behavior" in the HorizontalPodAutoscaler documentation, kubernetes.io, autoscaling/v2)."""
HPA_TOLERANCE = 0.1
"""kube-controller-manager's --horizontal-pod-autoscaler-tolerance default: a metric within
10 % of its target changes nothing."""


@dataclass(frozen=True)
class Trigger:
    """A KEDA trigger, as an AverageValue target per replica and an activation threshold."""

    name: str
    target: float
    activation: float


@dataclass(frozen=True)
class CronWindow:
    """A KEDA cron trigger: `replicas` from each `start` to the next `end` (5-field cron, in
    `timezone`). Its trigger (named `name`, AverageValue target 1) reads `replicas` inside the
    window, where it is also active. Outside, KEDA's cron scaler reads 1 and is inactive; here
    0, which the HPA takes the same way (its floor is one replica) and which keeps the model's
    activity rule (a value above the activation) KEDA's."""

    name: str
    timezone: str
    start: str
    end: str
    replicas: int

    def replicas_at(self, when: datetime) -> int:
        """KEDA's cron scaler's rule (its GetMetricsAndActivity): open when the next end comes
        before the next start."""
        next_start = self._schedule(self.start, when).get_next(datetime)
        next_end = self._schedule(self.end, when).get_next(datetime)
        return self.replicas if next_end < next_start else 0

    def opened_before(self, when: datetime) -> datetime | None:
        """When the window open at `when` opened (None: closed then)."""
        if not self.replicas_at(when):
            return None
        opened: datetime = self._schedule(self.start, when).get_prev(datetime)
        return opened

    def _schedule(self, cron: str, when: datetime) -> croniter:
        return croniter(cron, when.astimezone(ZoneInfo(self.timezone)))


@dataclass(frozen=True)
class ScaledObject:
    """A KEDA ScaledObject's scaling figures."""

    min_replicas: int
    max_replicas: int
    idle_replicas: int | None
    polling_s: float
    cooldown_s: float
    scale_up: ScalingRules
    scale_down: ScalingRules
    triggers: tuple[Trigger, ...]
    windows: tuple[CronWindow, ...] = ()
    """The cron triggers among `triggers`, by name."""


@dataclass(frozen=True)
class Worker:
    """The worker pod's settings the fleet depends on (its ConfigMap)."""

    concurrency: int
    gate_poll_s: float
    target_waiting: int
    start_limit: int
    max_tokens: int
    visibility_timeout_s: float
    """A received message is invisible this long; the heartbeat renews it every third of it."""
    connection_max_age_s: float
    """No connection to vLLM takes a request once this old (a new pool takes them)."""
    routes_to_replicas: bool
    """LLM_REPLICAS is set: the worker balances its calls over the replicas itself."""


@dataclass(frozen=True)
class ChartFigures:
    """Everything the fleet reads from one rendering of the chart."""

    worker_scaling: ScaledObject
    pods_per_llm_replica: int | None
    """The worker ScaledObject's cap: pods ≤ vLLM replicas (Ready or starting) x this (None:
    llmCap off)."""
    vllm_scaling: ScaledObject
    worker: Worker
    max_num_seqs: int
    startup_probe_period_s: float
    """vLLM is Ready (a Service endpoint) at the first probe once up."""


def consolidate_after_s(path: Path = NODE_POOL) -> float:
    """The NodePool's `disruption.consolidateAfter` in seconds: how long Karpenter keeps an
    empty node (a Go duration such as 30s or 1m30s; "Never" has no price, so it is refused)."""
    (pool,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc["kind"] == "NodePool"]
    duration = pool["spec"]["disruption"]["consolidateAfter"]
    parts = re.findall(r"(\d+)([smh])", duration)
    if not parts or "".join(n + unit for n, unit in parts) != duration:
        raise ValueError(f"{path}: consolidateAfter {duration!r} is no duration to price")
    return float(sum(int(n) * {"s": 1, "m": 60, "h": 3600}[unit] for n, unit in parts))


def render(sets: Mapping[str, str]) -> list[Manifest]:
    """The objects `helm template` renders with the minimal values and these --set pairs."""
    args = [str(helm_binary(HELM_CACHE)), "template", RELEASE, str(CHART), "--namespace"]
    args += [RELEASE, "--values", str(MINIMAL_VALUES)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    with tempfile.TemporaryDirectory() as home:
        kinds = ("CACHE", "CONFIG", "DATA")
        homes = {f"HELM_{kind}_HOME": f"{home}/{kind.lower()}" for kind in kinds}
        done = subprocess.run(
            args, capture_output=True, text=True, check=True, env=os.environ | homes
        )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def figures(manifests: list[Manifest]) -> ChartFigures:
    worker_object = _one(manifests, "ScaledObject", "worker")
    deployment = _one(manifests, "Deployment", "vllm")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    worker_scaling = scaled_object(worker_object)
    return ChartFigures(
        worker_scaling=worker_scaling,
        pods_per_llm_replica=_pods_per_llm_replica(worker_object["spec"]),
        vllm_scaling=scaled_object(_one(manifests, "ScaledObject", "vllm")),
        worker=_worker(_one(manifests, "ConfigMap", "worker")["data"]),
        max_num_seqs=int(_argument(container["args"], "--max-num-seqs")),
        startup_probe_period_s=float(container["startupProbe"]["periodSeconds"]),
    )


def scaled_object(manifest: Manifest) -> ScaledObject:
    spec = manifest["spec"]
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    behavior = behavior or {}
    modifiers = spec.get("advanced", {}).get("scalingModifiers")
    if modifiers:
        # A formula over the triggers is one metric to KEDA's HPA: its target and activation.
        triggers: tuple[Trigger, ...] = (
            Trigger("formula", float(modifiers["target"]), float(modifiers["activationTarget"])),
        )
    else:
        triggers = tuple(_trigger(item) for item in spec["triggers"])
    crons = [item["metadata"] for item in spec["triggers"] if item["type"] == "cron"]
    return ScaledObject(
        min_replicas=int(spec.get("minReplicaCount", 0)),
        max_replicas=int(spec.get("maxReplicaCount", 100)),
        idle_replicas=spec.get("idleReplicaCount"),
        polling_s=float(spec.get("pollingInterval", 30)),
        cooldown_s=float(spec.get("cooldownPeriod", 300)),
        scale_up=_rules(behavior.get("scaleUp"), DEFAULT_SCALE_UP),
        scale_down=_rules(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN),
        triggers=triggers,
        windows=tuple(_window(meta) for meta in crons),
    )


def _trigger(item: Manifest) -> Trigger:
    """aws-sqs-queue: queueLength / activationQueueLength; prometheus: threshold /
    activationThreshold (KEDA's defaults for an absent activation: 0); cron: target 1 (KEDA's
    cron scaler), named after its window."""
    meta = item["metadata"]
    if item["type"] == "cron":
        return Trigger(_window(meta).name, 1, 0)
    if item["type"] == "aws-sqs-queue":
        return Trigger(
            "queue", float(meta["queueLength"]), float(meta.get("activationQueueLength", 0))
        )
    if item["type"] == "prometheus":
        return Trigger(
            item.get("name", "waiting"),
            float(meta["threshold"]),
            float(meta.get("activationThreshold", 0)),
        )
    raise ValueError(f"no model of a {item['type']} trigger")


def _window(meta: Manifest) -> CronWindow:
    name = f"cron {meta['start']} to {meta['end']} {meta['timezone']}"
    return CronWindow(
        name, meta["timezone"], meta["start"], meta["end"], int(meta["desiredReplicas"])
    )


def _rules(rules: Manifest | None, default: ScalingRules) -> ScalingRules:
    if rules is None:
        return default
    policies = tuple(
        ScalingPolicy(PolicyKind(p["type"]), int(p["value"]), float(p["periodSeconds"]))
        for p in rules.get("policies", [])
    )
    return ScalingRules(
        stabilization_s=float(rules.get("stabilizationWindowSeconds", default.stabilization_s)),
        policies=policies or default.policies,
        select=rules.get("selectPolicy", "Max"),
    )


def _pods_per_llm_replica(spec: Manifest) -> int | None:
    """From the chart's formula `min(queue, llm_replicas * N)` with target T: N ÷ T pods a
    replica; None without the formula (llmCap off)."""
    modifiers = spec.get("advanced", {}).get("scalingModifiers")
    if not modifiers:
        return None
    found = re.fullmatch(r"min\(queue, llm_replicas \* (\d+)\)", modifiers["formula"])
    if found is None:
        raise ValueError(f"no model of the formula {modifiers['formula']!r}")
    return int(found.group(1)) // int(modifiers["target"])


def _worker(data: Mapping[str, str]) -> Worker:
    return Worker(
        concurrency=int(data["WORKER_CONCURRENCY"]),
        gate_poll_s=float(data["LLM_CAPACITY_POLL_SECONDS"]),
        target_waiting=int(data["LLM_TARGET_WAITING"]),
        start_limit=int(data["LLM_START_LIMIT"]),
        max_tokens=int(data["LLM_MAX_TOKENS"]),
        visibility_timeout_s=float(data["VISIBILITY_TIMEOUT_SECONDS"]),
        connection_max_age_s=float(data["LLM_CONNECTION_MAX_AGE_SECONDS"]),
        routes_to_replicas=bool(data.get("LLM_REPLICAS")),
    )


def _argument(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _one(manifests: list[Manifest], kind: str, component: str) -> Manifest:
    found = [
        m
        for m in manifests
        if m["kind"] == kind
        and m["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    if len(found) != 1:
        raise ValueError(f"expected one {kind} of {component}, found {len(found)}")
    return found[0]
