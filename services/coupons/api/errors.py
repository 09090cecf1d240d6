"""One error shape for every refusal: `{"error": {"code", "message", "field"}}`.

`code` is stable and machine-readable; the table of codes and statuses is in docs/errors.md.
A use case's `Refused` gets its status here, from its code (`STATUS`); an `ApiError` is a
refusal of the HTTP layer itself (a header, a cursor, a path) and carries its own.
"""

from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.reasons import Reason
from projections.db import DATABASE_UNAVAILABLE
from services.coupons.domain.codes import PatternReason
from services.coupons.logs import RepeatLimiter
from services.coupons.service.refusals import ErrorBody, Refused

log = structlog.get_logger(__name__)

REFUSAL_STATUS: dict[Reason, int] = {
    Reason.CAMPAIGN_EXISTS: 409,
    Reason.CAMPAIGN_NOT_FOUND: 404,
    Reason.IDEMPOTENCY_KEY_REUSED: 422,
    Reason.INVALID_STATUS_TRANSITION: 409,
    Reason.INVALID_TERMS: 422,
    Reason.REDEMPTION_NOT_FOUND: 404,
    Reason.REDEMPTION_EXISTS: 409,
    Reason.ALREADY_REVERSED: 409,
    Reason.NO_CODE_AVAILABLE: 409,
    Reason.RESERVATION_NOT_FOUND: 404,
    Reason.RESERVATION_EXISTS: 409,
    Reason.RESERVATION_EXPIRED: 409,
    Reason.NOT_THIS_RESERVATION: 403,
    Reason.OUT_OF_RANGE: 422,
    Reason.UNPROCESSABLE: 422,
    Reason.UNKNOWN_CODE: 404,
    Reason.NOT_STARTED: 409,
    Reason.EXPIRED: 409,
    Reason.PAUSED: 409,
    Reason.ENDED: 409,
    Reason.EXHAUSTED: 409,
    Reason.CODE_EXHAUSTED: 409,
    Reason.PER_CONTACT_LIMIT: 409,
    Reason.BUDGET_EXHAUSTED: 409,
    Reason.BELOW_MINIMUM: 422,
    Reason.NOT_APPLICABLE: 422,
    Reason.FIRST_PURCHASE_ONLY: 422,
    Reason.EMAIL_DOMAIN_NOT_ALLOWED: 422,
    Reason.NOT_IN_SEGMENT: 422,
    Reason.EXCLUDED_SEGMENT: 422,
    Reason.BOUND_TO_ANOTHER_CONTACT: 403,
    Reason.CURRENCY_MISMATCH: 422,
    Reason.NOT_STACKABLE: 422,
}
"""HTTP status of each refusal: 404 the thing is unknown, 403 not yours, 409 the state of the
campaign forbids it now, 422 this request can never qualify as it is."""

STATUS: dict[str, int] = (
    {reason.value: status for reason, status in REFUSAL_STATUS.items()}
    | {
        "invalid_request": 422,
        "invalid_code": 422,
        "code_taken": 409,
        "too_many_failures": 429,
        "decision_pending": 503,
        "projection_lagging": 503,
        "stripe_not_configured": 503,
        "invalid_condition": 422,
        "segment_not_found": 404,
        "segment_exists": 409,
        "segment_not_static": 409,
        "invalid_csv": 422,
        "contact_not_found": 404,
        "signature_missing": 400,
        "signature_invalid": 400,
        "signature_expired": 400,
        "invalid_payload": 400,
    }
    | {reason.value: 422 for reason in PatternReason}
)
"""HTTP status of every code a use case refuses with (`services/coupons/service/`)."""


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Refused):
    """A refusal of the HTTP layer itself, with its status and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code, message, field=field)
        self.status, self.headers = status, headers or {}


def refusal_response(refused: Refused) -> JSONResponse:
    """The response to a refusal: its status, and the retry hints as headers."""
    if isinstance(refused, ApiError):
        status, headers = refused.status, refused.headers
    else:
        status, headers = STATUS[refused.code], {}
        if refused.idempotency_key is not None:
            headers["Idempotency-Key"] = refused.idempotency_key
        if refused.retry_after_s is not None:
            headers["Retry-After"] = str(refused.retry_after_s)
    return error_response(status, refused.code, refused.message, refused.field, headers)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, field=field))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


async def _refused(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Refused)
    return refusal_response(error)


def invalid_request(found: Sequence[Any]) -> JSONResponse:
    """The first of pydantic's errors as a 400 (unreadable JSON) or a 422 naming the field."""
    first = found[0]
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    where = _field(tuple(first.get("loc", ())))
    return error_response(422, "invalid_request", f"{where}: {first.get('msg')}", where)


async def _invalid(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return invalid_request(error.errors())


async def _http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return error_response(error.status_code, code, str(error.detail))


RETRY_AFTER_S = "2"
_REPEATS = RepeatLimiter()


def unavailable(error: Exception) -> JSONResponse | None:
    """`503` with a stable code and `Retry-After` when `error` means a dependency is down (a
    request that cannot be served now, never a bare 500); None for any other error."""
    if isinstance(error, KafkaError):
        code, what = "broker_unavailable", "Kafka"
    elif isinstance(error, DATABASE_UNAVAILABLE):
        code, what = "database_unavailable", "PostgreSQL"
    else:
        return None
    if (suppressed := _REPEATS.allow(code)) is not None:
        log.warning("http.dependency_unavailable", code=code, error=repr(error), like=suppressed)
    message = f"{what} is unavailable; retry after Retry-After s, with the same Idempotency-Key"
    return error_response(503, code, message, headers={"Retry-After": RETRY_AFTER_S})


async def _unavailable(_: Request, error: Exception) -> JSONResponse:
    refusal = unavailable(error)
    if refusal is not None:
        return refusal
    log.error("http.unhandled_error", error=repr(error))
    return error_response(500, "internal_error", "an unexpected error; it is logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(Refused, _refused)
    for dependency in (KafkaError, *DATABASE_UNAVAILABLE, Exception):
        app.add_exception_handler(dependency, _unavailable)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
