"""The LLM call as a span with the OpenTelemetry GenAI semantic-convention attributes.

The attribute names are written out here: the Python semantic-conventions package has deprecated
its GenAI constants in favour of the separate GenAI conventions, which ship no Python module.
The client is typed structurally so this package needs no `openai` dependency; an `openai`
`ChatCompletion` fits `ChatCompletionLike`.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

__all__ = ["ChatCompletionLike", "chat_span", "record_chat_completion"]

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

_CHAT = "chat"


class _Usage(Protocol):
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...


class _Choice(Protocol):
    @property
    def finish_reason(self) -> str: ...


class ChatCompletionLike(Protocol):
    """What this module reads from an OpenAI-compatible chat completion."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def choices(self) -> Sequence[_Choice]: ...
    @property
    def usage(self) -> _Usage | None: ...


@contextmanager
def chat_span(
    model: str,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    base_url: str | None = None,
    provider: str = "openai",
) -> Iterator[Span]:
    """A client span `chat {model}` around one chat completion call.

    `provider` is `openai` for any OpenAI-compatible server (vLLM, llama.cpp), as the conventions
    advise; `base_url` gives `server.address`/`server.port`, which tell those servers apart.
    An exception leaves the span with status ERROR, the exception event and `error.type`.
    """
    tracer = trace.get_tracer(__name__)
    attributes = _request_attributes(model, max_tokens, temperature, base_url, provider)
    with tracer.start_as_current_span(
        f"{_CHAT} {model}", kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        try:
            yield span
        except Exception as error:
            span.set_attribute(ERROR_TYPE, type(error).__qualname__)
            raise


def record_chat_completion(span: Span, completion: ChatCompletionLike) -> None:
    """Set the response attributes (model, id, finish reasons, token usage) on `span`."""
    span.set_attribute(RESPONSE_ID, completion.id)
    span.set_attribute(RESPONSE_MODEL, completion.model)
    # Some OpenAI-compatible servers leave finish_reason null; the client does not validate it.
    reasons = [choice.finish_reason for choice in completion.choices if choice.finish_reason]
    span.set_attribute(RESPONSE_FINISH_REASONS, reasons)
    if completion.usage is not None:
        span.set_attribute(USAGE_INPUT_TOKENS, completion.usage.prompt_tokens)
        span.set_attribute(USAGE_OUTPUT_TOKENS, completion.usage.completion_tokens)


def _request_attributes(
    model: str,
    max_tokens: int | None,
    temperature: float | None,
    base_url: str | None,
    provider: str,
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        OPERATION_NAME: _CHAT,
        PROVIDER_NAME: provider,  # not the deprecated gen_ai.system
        REQUEST_MODEL: model,
    }
    if max_tokens is not None:
        attributes[REQUEST_MAX_TOKENS] = max_tokens
    if temperature is not None:
        attributes[REQUEST_TEMPERATURE] = temperature
    if base_url:
        url = urlsplit(base_url)
        if url.hostname:
            attributes[SERVER_ADDRESS] = url.hostname
        if url.port is not None:
            attributes[SERVER_PORT] = url.port
    return attributes
