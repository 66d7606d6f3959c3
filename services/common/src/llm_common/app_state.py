"""The HTTP services' typed dependencies: what a route needs, taken from `app.state`, where
the service's app factory put it (ingest's `create_app`, qa-sync's). The route's parameter type
comes from its `Annotated[...]` alias; a test replaces one through
`app.dependency_overrides[get_...]`.
"""

from collections.abc import Callable
from typing import Any

from fastapi import Request


def app_state(name: str) -> Callable[[Request], Any]:
    """A dependency returning `request.app.state.<name>`."""

    def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    get.__name__ = get.__qualname__ = f"get_{name}"
    return get
