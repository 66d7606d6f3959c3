"""Every answer of the service is the platform's envelope, errors included.

The envelope is defined in docs/backend-contract.md (Envelope).
"""

from llm_common.envelope import envelope_response

__all__ = ["envelope_response"]
