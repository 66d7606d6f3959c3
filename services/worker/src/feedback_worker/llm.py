"""The one LLM call: a chat completion on an OpenAI-compatible server (vLLM in production)."""

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import openai
from llm_common.requests_store import NO_USAGE, Usage
from llm_common.telemetry import chat_span, debug_text, metrics, record_chat_completion
from llm_common.telemetry.names import (
    ContentCheck,
    ContentOutcome,
    Outcome,
    RetryOperation,
    TokenType,
)
from openai import AsyncOpenAI, omit
from openai.types.chat import ChatCompletion

from feedback_worker.content import ContentRules, Review, review
from feedback_worker.errors import LlmUnavailable, UnfitContent
from feedback_worker.http_clients import bounded_client
from feedback_worker.llm_gate import GateReason
from feedback_worker.prompt import Prompt
from feedback_worker.replicas import Replicas
from feedback_worker.settings import WorkerSettings

log = logging.getLogger(__name__)

# vLLM checks no key unless started with --api-key, but the client insists on one.
NO_API_KEY = "EMPTY"


DRAFTS = 2
"""A draft that fails the content checks is written once more; the second one is final."""


@dataclass(frozen=True)
class Drafts:
    """Every draft written for one prompt, each judged, and what they cost together."""

    reviews: list[Review]
    """Up to DRAFTS, the last one the first that passes unless every one failed."""
    usage: Usage


@dataclass(frozen=True)
class Feedback:
    """What `write` gives: the text to show, and what every draft of it cost."""

    text: str
    usage: Usage


class FeedbackWriter:
    """Writes one feedback text per prompt, fit to show a member (content.py).

    With the LLM gate off, transient errors (connection, timeout, 408/409/429/5xx) are retried
    by the client itself, `max_retries` times with exponential backoff and jitter, honouring
    `Retry-After`; with it on, `max_retries` is 0 and the failure says whether it closes the gate.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        temperature: float,
        max_tokens: int,
        rules: ContentRules,
        stop: Sequence[str] = (),
        priority: int | None = None,
    ) -> None:
        self._client = client
        self._model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._rules = rules
        self._stop = list(stop)
        for kind in TokenType:  # from 0, as the deliveries (delivery/attempt.py)
            metrics.WORKER_LLM_TOKENS.labels(model, kind)
        # vLLM's own field, beside the OpenAI ones: the client passes it through as it is.
        self._extra_body = None if priority is None else {"priority": priority}

    @classmethod
    def from_settings(
        cls, settings: WorkerSettings, replicas: Replicas | None = None
    ) -> "FeedbackWriter":
        """Calls balanced over `replicas` when given (LLM_REPLICAS), else to LLM_BASE_URL."""
        client = AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value() or NO_API_KEY,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.client_retries,
            # Calls never exceed WORKER_CONCURRENCY; redirects followed as the openai
            # client's own default does.
            http_client=bounded_client(
                settings.llm_timeout_seconds,
                settings.worker_concurrency,
                follow_redirects=True,
                attempts=metrics.WORKER_LLM_ATTEMPTS,
                max_age_seconds=settings.llm_connection_max_age_seconds,
                replicas=replicas,
            ),
        )
        rules = content_rules(settings)
        return cls(
            client,
            settings.llm_model,
            settings.llm_temperature,
            settings.llm_max_tokens,
            rules,
            settings.llm_stop,
            settings.llm_priority,
        )

    async def write(self, prompt: Prompt) -> Feedback:
        """The first draft that passes the content checks, of two at most; UnfitContent, with
        each draft's reason, when the second fails too (a model that drifts once usually does
        not twice)."""
        drafts = await self.drafts(prompt)
        final = drafts.reviews[-1]
        if final.failed is None:
            return Feedback(_fit(final, self._max_tokens), drafts.usage)
        reasons = dict.fromkeys(self._rules.reason(d.failed) for d in drafts.reviews if d.failed)
        raise UnfitContent(f"feedback unfit to show after {DRAFTS} drafts: {'; '.join(reasons)}")

    async def drafts(self, prompt: Prompt) -> Drafts:
        """The drafts written for `prompt`, each judged: up to DRAFTS, the last one the first
        that passes (what `write` delivers) unless every one failed."""
        debug_text(log, "prompt", prompt.user)
        reviews: list[Review] = []
        usage = NO_USAGE
        for draft in range(1, DRAFTS + 1):
            verdict, spent = await self._draft(prompt)
            reviews.append(verdict)
            usage += spent
            if verdict.failed is None:
                break
            last = draft == DRAFTS
            _count(verdict.failed, ContentOutcome.FAILED if last else ContentOutcome.REGENERATED)
            reason = self._rules.reason(verdict.failed)
            log.warning("draft %d of %d unfit to show: %s", draft, DRAFTS, reason)
            debug_text(log, "unfit draft", verdict.text)
        return Drafts(reviews, usage)

    async def _draft(self, prompt: Prompt) -> tuple[Review, Usage]:
        try:
            completion, spent = await self._complete(prompt)
        except openai.APIError as error:
            # Every API error is transient for the message: a 4xx here means the server or its
            # configuration is wrong (model name, key), which a fix repairs for every message.
            raise LlmUnavailable(
                f"LLM call failed: {_describe(error)}", gate_reason=gate_reason(error)
            ) from error
        choice = completion.choices[0]
        content = choice.message.content or ""
        return review(content, choice.finish_reason, self._rules, prompt), spent

    async def _complete(self, prompt: Prompt) -> tuple[ChatCompletion, Usage]:
        """The call as a GenAI `chat {model}` span; its latency, tokens and retries counted, and
        what it cost the request."""
        with chat_span(
            self._model,
            max_tokens=self._max_tokens,
            temperature=self._temperature,
            base_url=str(self._client.base_url),
        ) as span:
            started = time.perf_counter()
            try:
                # The raw response says how many retries the client took before this answer.
                response = await self._client.chat.completions.with_raw_response.create(
                    model=self._model,
                    messages=[
                        {"role": "system", "content": prompt.system},
                        {"role": "user", "content": prompt.user},
                    ],
                    temperature=self._temperature,
                    max_tokens=self._max_tokens,
                    # Sent only when set: an OpenAI-compatible server may refuse an empty list.
                    stop=self._stop or omit,
                    stream=False,
                    extra_body=self._extra_body,
                )
            except openai.APIError:
                self._observe(Outcome.ERROR, started)
                raise
            completion = response.parse()
            choices = getattr(completion, "choices", None)  # absent from an error object
            if not isinstance(choices, list) or not choices:
                # A server that answers 200 with an error object is failing, not answering.
                self._observe(Outcome.ERROR, started)
                raise openai.APIResponseValidationError(
                    response.http_response,
                    None,
                    message=f"HTTP 200 without a completion: {response.http_response.text[:200]}",
                )
            seconds = self._observe(Outcome.OK, started)
            record_chat_completion(span, completion)
        self._count(completion, response.retries_taken)
        counted = completion.usage
        if counted is None:
            return completion, Usage(0, 0, seconds)
        return completion, Usage(counted.prompt_tokens, counted.completion_tokens, seconds)

    def _observe(self, outcome: Outcome, started: float) -> float:
        """The call's seconds, into feedback_worker_llm_duration_seconds."""
        duration = time.perf_counter() - started
        metrics.WORKER_LLM_DURATION.labels(self._model, outcome).observe(duration)
        return duration

    def _count(self, completion: ChatCompletion, retries: int) -> None:
        if retries:
            metrics.WORKER_RETRIES.labels(RetryOperation.LLM).inc(retries)
        if completion.usage is not None:
            tokens = metrics.WORKER_LLM_TOKENS
            tokens.labels(self._model, TokenType.INPUT).inc(completion.usage.prompt_tokens)
            tokens.labels(self._model, TokenType.OUTPUT).inc(completion.usage.completion_tokens)

    async def served_models(self) -> list[str]:
        """The model ids the server lists on /models (start-up checks LLM_MODEL against them)."""
        return [model.id async for model in self._client.models.list()]

    async def close(self) -> None:
        await self._client.close()


def content_rules(settings: WorkerSettings) -> ContentRules:
    """The content checks' bounds (CONTENT_*)."""
    return ContentRules(
        settings.content_min_chars, settings.content_max_chars, settings.content_min_korean_ratio
    )


GATE_STATUSES = {
    429: GateReason.OVERLOADED,
    503: GateReason.OVERLOADED,
    # vLLM's EngineDeadError: its engine is gone (a shutdown's calls hang instead: llm_gate.py).
    500: GateReason.FAILING,
    502: GateReason.FAILING,
    504: GateReason.FAILING,
}


def gate_reason(error: openai.APIError) -> GateReason | None:
    """Why this failure says the LLM cannot take calls now; None for one that says nothing
    about it (a 400 for this prompt, a 401 from a wrong key: retrying elsewhere is no help)."""
    if isinstance(error, openai.APITimeoutError):
        return GateReason.TIMEOUT
    if isinstance(error, openai.APIConnectionError):
        return GateReason.UNREACHABLE
    if isinstance(error, openai.APIResponseValidationError):
        return GateReason.MALFORMED
    if isinstance(error, openai.APIStatusError):
        return GATE_STATUSES.get(error.status_code)
    return None


def _fit(verdict: Review, max_tokens: int) -> str:
    if verdict.trimmed:
        log.info(
            "the LLM hit LLM_MAX_TOKENS=%d: the feedback ends at its last complete sentence",
            max_tokens,
        )
        _count(ContentCheck.INCOMPLETE, ContentOutcome.TRIMMED)
    else:
        _count(ContentCheck.ALL, ContentOutcome.PASSED)
    return verdict.text


def _count(check: ContentCheck, outcome: ContentOutcome) -> None:
    metrics.WORKER_CONTENT_CHECKS.labels(check, outcome).inc()


def _describe(error: openai.APIError) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    if isinstance(error, openai.APIResponseValidationError):
        return error.message
    return type(error).__name__
