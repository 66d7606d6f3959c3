"""The response body every HTTP answer of the platform carries."""

from typing import Generic, TypeVar

from pydantic import BaseModel

DataT = TypeVar("DataT")


class Envelope(BaseModel, Generic[DataT]):
    """`{"status": <int>, "message": <text>, "data": <object|null>}` (docs/backend-contract.md).

    `Envelope[Model]` documents an answer whose data has a shape (a route's `responses`);
    unparametrised, the data is any object."""

    status: int
    message: str
    data: DataT | None = None
