"""Every answer of the service is the platform's envelope, errors included (design.md §3)."""

from llm_common.envelope import envelope_response

__all__ = ["envelope_response"]
