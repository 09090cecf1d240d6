"""`Refused`: the one way a use case says no; `ErrorBody`, a refusal as data."""

from pydantic import BaseModel


class Refused(Exception):
    """A refusal with a stable, machine-readable `code` (a `contracts.reasons.Reason` value or
    one of the service's own codes, each in docs/errors.md), a message for people, the
    `field` at fault if one is, and the retry hints a caller needs: `retry_after_s` when
    trying again later may succeed, `idempotency_key` when the retry must reuse it. The HTTP
    status of each code is the adapter's business (`api/errors.py`)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field
        self.retry_after_s, self.idempotency_key = retry_after_s, idempotency_key


class ErrorBody(BaseModel):
    """A refusal as data: in an error response, or inside an answer (a code that does not
    apply, a contact not served)."""

    code: str
    message: str
    field: str | None = None
