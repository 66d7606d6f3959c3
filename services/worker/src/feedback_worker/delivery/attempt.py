"""One delivery attempt as a `feedback.deliver` span and a count by target and outcome."""

from collections.abc import Iterator
from contextlib import contextmanager

from llm_common.telemetry import metrics, names, record_error
from llm_common.telemetry.names import DeliveryOutcome, DeliveryTarget
from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from feedback_worker.errors import DeadLetter

tracer = trace.get_tracer(__name__)


class DeliveryAttempt:
    def __init__(self, span: Span, target: DeliveryTarget) -> None:
        self._span = span
        self._target = target
        self.outcome: DeliveryOutcome | None = None

    def settle(self, outcome: DeliveryOutcome, problem: BaseException | str | None = None) -> None:
        """Say how the attempt ended; `problem` marks the span failed (a handled error)."""
        self.outcome = outcome
        self._span.set_attribute(names.DELIVERY_OUTCOME_ATTRIBUTE, outcome)
        if problem is not None:
            record_error(self._span, problem)
        metrics.WORKER_DELIVERIES.labels(self._target, outcome).inc()


@contextmanager
def delivery_attempt(target: DeliveryTarget, number: int = 1) -> Iterator[DeliveryAttempt]:
    """Wrap attempt `number` to `target`; an attempt the body does not settle itself is settled
    by the error leaving it: DeadLetter is a permanent failure, anything else a transient one."""
    attributes: dict[str, AttributeValue] = {
        names.DELIVERY_TARGET_ATTRIBUTE: str(target),
        names.DELIVERY_ATTEMPT_ATTRIBUTE: number,
    }
    with tracer.start_as_current_span(names.DELIVERY_SPAN, attributes=attributes) as span:
        attempt = DeliveryAttempt(span, target)
        try:
            yield attempt
        except DeadLetter:
            # The span records the escaping exception itself.
            if attempt.outcome is None:
                attempt.settle(DeliveryOutcome.PERMANENT_FAILURE)
            raise
        except Exception:
            if attempt.outcome is None:
                attempt.settle(DeliveryOutcome.TRANSIENT_FAILURE)
            raise
