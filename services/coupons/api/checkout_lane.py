"""The checkout lane: `POST /v1/validations` and `POST /v1/redemptions`, the two calls every
order makes, served as plain ASGI in front of FastAPI.

FastAPI's routing, dependency solving, request and response validation and middleware took
three quarters of a validation's CPU (py-spy, `bench/checkout.py`); the domain decision took a
tenth. So these two operations skip them, and Starlette's `Request` too: the lane matches the
path, picks the five headers it reads from the scope, binds the correlation id and refuses a
body over the limit as `Correlated` and `BodyLimit` do for every other path (with their
functions, in the same pass over the headers: two more ASGI layers cost a served validation
a tenth of its CPU), authorises the key, reads the body from `receive`, parses it with the
same pydantic models in one pass from bytes, calls the same use cases
(`service.checkout.validate`, `service.checkout.redeem`) with a `Call` of its own and answers
with the same error shape, the answer serialised in one call. FastAPI still declares them (in
`checkout.py`), which is what documents them in `/openapi.json` and answers `405` to their
other methods; every other path goes to the app behind (`Correlated(BodyLimit(FastAPI))`)
untouched.
"""

import re
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.datastructures import State
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.coupons.api.auth import actor_of, carrying, key_of
from services.coupons.api.body_limit import announced, too_large
from services.coupons.api.checkout import redemption_location, shopper_address
from services.coupons.api.correlation import HEADER, RequestLog, correlation_id
from services.coupons.api.errors import ApiError, invalid_request, refusal_response, unavailable
from services.coupons.api.params import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from services.coupons.service import checkout
from services.coupons.service.calls import Call
from services.coupons.service.checkout_models import RedemptionRequest, ValidationRequest
from services.coupons.service.refusals import Refused

IDEMPOTENCY_KEY = "idempotency-key"
JSON = ((b"content-type", b"application/json"),)
READ = frozenset(
    {
        b"authorization",
        b"idempotency-key",
        b"x-shopper-address",
        b"x-correlation-id",
        b"content-length",
    }
)
"""The only headers the lane reads."""
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_Answer = tuple[int, BaseModel | Mapping[str, object], list[tuple[bytes, bytes]]]
"""The status, the body (a model, or a model's plain data: `service.checkout.validate`) and
any more headers."""
_Operation = Callable[[Call, dict[str, str], bytes], Awaitable[_Answer]]


class CheckoutLane:
    """The two operations, in front of `app` (every other path: FastAPI behind `Correlated`
    and `BodyLimit`); `state` is the FastAPI app's (the runtime, the key cache)."""

    def __init__(self, app: ASGIApp, state: State, max_body_bytes: int) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = max_body_bytes
        self._requests = RequestLog()
        self._operations: dict[str, _Operation] = {
            "/v1/validations": _validate,
            "/v1/redemptions": _redeem,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = self._operations.get(scope["path"]) if scope["type"] == "http" else None
        if operation is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        correlated = correlation_id(headers.get("x-correlation-id"))
        # each request is a task of its own: its context holds nothing of another request's,
        # and the token puts back what a caller running the app in its own task had bound
        tokens = structlog.contextvars.bind_contextvars(correlation_id=correlated)
        started = time.perf_counter() if self._requests.enabled else 0.0
        status = 500
        try:
            status = await self._answer(operation, headers, correlated, scope, receive, send)
        finally:
            if self._requests.enabled:
                self._requests.write(scope, status, started)
            structlog.contextvars.reset_contextvars(**tokens)

    async def _answer(
        self,
        operation: _Operation,
        headers: dict[str, str],
        correlated: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> int:
        """Answer the request; its status."""
        refusal: Response
        try:
            length = announced(headers.get("content-length"))
            if length is not None and length > self.max_body_bytes:
                raise too_large(self.max_body_bytes)  # refused with nothing read
            body = await _body(receive, self.max_body_bytes)
            state = self.state
            key = carrying(await key_of(state, headers.get("authorization")), "checkout")
            call = Call(state.runtime, actor_of(key), correlated)
            status, answer, more = await operation(call, headers, body)
        except Refused as refused:
            refusal = refusal_response(refused)
        except ValidationError as error:
            refusal = invalid_request(error.errors())
        except Exception as error:
            down = unavailable(error)
            if down is None:
                raise
            refusal = down
        else:  # the two messages, without building a Starlette response
            content = to_json(answer)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        *JSON,
                        (b"content-length", str(len(content)).encode()),
                        (HEADER, correlated.encode("latin-1")),
                        *more,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": content})
            return status
        refusal.raw_headers.append((HEADER, correlated.encode("latin-1")))
        await refusal(scope, receive, send)
        return refusal.status_code


def _headers(scope: Scope) -> dict[str, str]:
    """The headers the operations read, each by its first occurrence (as Starlette's
    `Headers.get`), without building the request's whole header map."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in READ:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


async def _body(receive: Receive, max_bytes: int) -> bytes:
    """The whole request body, refused (`too_large`) as soon as it passes `max_bytes`, so no
    body of unknown length (chunked) makes the process hold more (the server reads no more
    than a `Content-Length` announces)."""
    chunks, read = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        read += len(chunk)
        if read > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _validate(call: Call, headers: dict[str, str], body: bytes) -> _Answer:
    request = ValidationRequest.model_validate_json(body)
    address = shopper_address(headers)
    return 200, await checkout.validate(call, request, address), []


async def _redeem(call: Call, headers: dict[str, str], body: bytes) -> _Answer:
    key = _idempotency_key(headers)
    request = RedemptionRequest.model_validate_json(body)
    address = shopper_address(headers)
    redeemed = await checkout.redeem(call, request, key, address)
    return 201, redeemed, [(b"location", redemption_location(redeemed).encode("latin-1"))]


def _idempotency_key(headers: dict[str, str]) -> str:
    """The `Idempotency-Key` header, refused as FastAPI refuses a header parameter."""
    key = headers.get(IDEMPOTENCY_KEY)
    field = f"header.{IDEMPOTENCY_KEY}"
    if key is None:
        raise ApiError(422, "invalid_request", f"{field}: Field required", field=field)
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX and _IDEMPOTENCY_KEY.match(key)):
        message = f"{field}: 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, no spaces"
        raise ApiError(422, "invalid_request", message, field=field)
    return key
