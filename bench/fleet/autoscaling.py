"""KEDA's ScaledObject loop and the HPA it drives: one `Keda` per Deployment (workers, vLLM).

KEDA owns 0 ↔ 1: every `pollingInterval` it reads its triggers; at 0 replicas an active trigger
(a metric above its activation threshold) scales the Deployment to max(minReplicaCount, 1), and
once no trigger has been active for `cooldownPeriod` it scales to idleReplicaCount (or to
minReplicaCount when that is 0). Between, the HPA KEDA creates (minReplicas max(minReplicaCount,
1)) decides, with the algorithm of Kubernetes' pkg/controller/podautoscaler/horizontal.go:

- per metric, an AverageValue target: desired = ceil(value ÷ target), unless value ÷ (target x
  current) is within the 0.1 tolerance of 1 (then current); the largest over the metrics;
- stabilization: the recommendation is held between the lowest recommendation of the scale-up
  window and the highest of the scale-down window (so a scale-down waits for the window);
- rate: the change since each policy's period began (the HPA's own scale events) may not pass
  the policy (Pods: value pods; Percent: value % of the replicas at the period's start);
  selectPolicy Max takes the policy that allows the most change.

Simplified: the HPA syncs at KEDA's pollingInterval (both 15 s by default: KEDA's
pollingInterval in values.yaml and kube-controller-manager's --horizontal-pod-autoscaler-sync-
period), and the metrics are read at that instant (no Prometheus scrape lag).
"""

import math
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import simpy

from bench.fleet.chart import HPA_TOLERANCE, PolicyKind, ScaledObject, ScalingRules


class Deployment(Protocol):
    """What a ScaledObject scales: its `spec.replicas` and the change of it."""

    @property
    def replicas(self) -> int: ...

    def scale_to(self, replicas: int) -> None: ...


@dataclass
class Hpa:
    """The HPA's decision for one ScaledObject (module docstring)."""

    scaling: ScaledObject
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    scale_events: list[tuple[float, int]] = field(default_factory=list)
    """(time, change) of every scaling the HPA did: what the rate policies count."""

    def desired(self, now: float, current: int, metrics: Mapping[str, float]) -> int:
        triggers = self.scaling.triggers
        raw = max(self._for_metric(current, t.target, metrics[t.name]) for t in triggers)
        raw = min(max(raw, self._min_replicas), self.scaling.max_replicas)
        stabilized = self._stabilize(now, current, raw)
        return self._rate_limited(now, current, stabilized)

    def record(self, now: float, change: int) -> None:
        self.scale_events.append((now, change))

    @property
    def _min_replicas(self) -> int:
        return max(1, self.scaling.min_replicas)

    @staticmethod
    def _for_metric(current: int, target: float, value: float) -> int:
        if abs(value / (target * current) - 1) <= HPA_TOLERANCE:
            return current
        return math.ceil(value / target)

    def _stabilize(self, now: float, current: int, raw: int) -> int:
        up_window = self.scaling.scale_up.stabilization_s
        down_window = self.scaling.scale_down.stabilization_s
        up_cutoff, down_cutoff = now - up_window, now - down_window
        longest = max(up_window, down_window)
        while self.recommendations and self.recommendations[0][0] < now - longest:
            self.recommendations.popleft()
        up = down = raw
        for time, recommended in self.recommendations:
            if time > up_cutoff:
                up = min(up, recommended)
            if time > down_cutoff:
                down = max(down, recommended)
        self.recommendations.append((now, raw))
        return min(max(current, up), down)

    def _rate_limited(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            limit = _limit(self.scaling.scale_up, now, current, self.scale_events, up=True)
            return min(desired, max(limit, current))
        if desired < current:
            limit = _limit(self.scaling.scale_down, now, current, self.scale_events, up=False)
            return max(desired, min(limit, current))
        return desired


def _limit(
    rules: ScalingRules, now: float, current: int, events: list[tuple[float, int]], up: bool
) -> int:
    """The most (scale-up) or fewest (scale-down) replicas the policies allow now."""
    if rules.select == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        changed = sum(
            change for time, change in events if time > now - policy.period_s and (change > 0) == up
        )
        start = current - changed  # the replicas when the policy's period began
        if policy.kind is PolicyKind.PODS:
            proposals.append(start + policy.value if up else start - policy.value)
        elif up:
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            proposals.append(int(start * (1 - policy.value / 100)))
    # Max: the policy allowing the most change (the highest count up, the lowest down).
    highest = (rules.select == "Max") == up
    return max(proposals) if highest else min(proposals)


class Keda:
    """KEDA's loop over one ScaledObject (module docstring)."""

    def __init__(
        self,
        env: simpy.Environment,
        scaling: ScaledObject,
        target: Deployment,
        metrics: Callable[[], Mapping[str, float]],
    ) -> None:
        self.scaling = scaling
        self.hpa = Hpa(scaling)
        self._env = env
        self._target = target
        self._metrics = metrics
        self._last_active = -math.inf
        env.process(self._run())

    def _run(self) -> Generator[simpy.Event, Any, None]:
        while True:
            yield self._env.timeout(self.scaling.polling_s)
            self.poll(self._env.now)

    def poll(self, now: float) -> None:
        values = self._metrics()
        if any(values[t.name] > t.activation for t in self.scaling.triggers):
            self._last_active = now
        current = self._target.replicas
        if current == 0:
            if self._last_active == now:
                self._target.scale_to(max(1, self.scaling.min_replicas))
            return
        idle = self.scaling.idle_replicas
        floor = idle if idle is not None else self.scaling.min_replicas
        if floor == 0 and now - self._last_active >= self.scaling.cooldown_s:
            self._target.scale_to(0)
            return
        desired = self.hpa.desired(now, current, values)
        if desired != current:
            self.hpa.record(now, desired - current)
            self._target.scale_to(desired)
