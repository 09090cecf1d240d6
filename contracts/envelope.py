"""The one envelope every command and event travels in."""

from datetime import UTC, datetime
from typing import Generic, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, computed_field

Payload = TypeVar("Payload", bound=BaseModel)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel, Generic[Payload]):
    """Metadata shared by every message, around one typed payload.

    - `id`: unique per message; an event's `causation_id` is the id of the command it answers.
    - `key`: the aggregate key (campaign id); Kafka partitions by it, so one writer sees one
      campaign's commands in order.
    - `correlation_id`: follows one user action across HTTP, Kafka and the projections.
    - `idempotency_key`: the client's key (or one the API made); the decider gives a command
      with a key it has already seen the outcome of the first.
    - `request_hash`: on an event, the hash of the command it answers, so a reused key with a
      different request is told apart from a retry.
    - `actor`: who asked (API key identity), for the audit trail.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID = Field(default_factory=uuid4)
    key: str
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    causation_id: UUID | None = None
    correlation_id: str
    idempotency_key: str | None = None
    request_hash: str | None = None
    actor: str | None = None
    data: Payload

    @computed_field  # type: ignore[prop-decorator]
    @property
    def type(self) -> str:
        """The payload's literal, versioned type name, repeated here for routing."""
        return str(getattr(self.data, "type"))  # noqa: B009 - every payload has a literal type

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
