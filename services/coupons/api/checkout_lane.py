"""The checkout lane: `POST /v1/validations` and `POST /v1/redemptions`, the two calls every
order makes, served as plain ASGI in front of FastAPI.

FastAPI's routing, dependency solving, request and response validation and middleware took
three quarters of a validation's CPU (py-spy, `bench/checkout.py`); the domain decision took a
tenth. So these two operations skip them: the lane matches the path, authorises the key,
parses the body with the same pydantic models in one pass from bytes, calls the same use
cases (`service.checkout.validate`, `service.checkout.redeem`) and answers with the same error
shape. FastAPI still declares them (in `checkout.py`), which is what documents them in
`/openapi.json` and answers `405` to their other methods; every other path goes to FastAPI
untouched.
"""

import re
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from services.coupons.api.auth import authorised
from services.coupons.api.checkout import redemption_location, shopper_address
from services.coupons.api.commands import call_of
from services.coupons.api.errors import ApiError, invalid_request, refusal_response, unavailable
from services.coupons.api.params import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from services.coupons.service import checkout
from services.coupons.service.checkout_models import RedemptionRequest, ValidationRequest
from services.coupons.service.refusals import Refused

IDEMPOTENCY_KEY = "idempotency-key"
JSON = ((b"content-type", b"application/json"),)
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_Answer = tuple[int, BaseModel, list[tuple[bytes, bytes]]]  # status, body, more headers


class CheckoutLane:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._operations: dict[str, Callable[[Request], Awaitable[_Answer]]] = {
            "/v1/validations": _validate,
            "/v1/redemptions": _redeem,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = self._operations.get(scope["path"]) if scope["type"] == "http" else None
        if operation is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # what FastAPI sets: handlers reach the runtime through it
        request = Request(scope, receive)
        try:
            status, body, headers = await operation(request)
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
            content = body.model_dump_json().encode()
            length = str(len(content)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [*JSON, (b"content-length", length), *headers],
                }
            )
            await send({"type": "http.response.body", "body": content})
            return
        await refusal(scope, receive, send)


async def _validate(request: Request) -> _Answer:
    await authorised(request, request.headers.get("authorization"), "checkout")
    body = ValidationRequest.model_validate_json(await request.body())
    address = shopper_address(request.headers)
    return 200, await checkout.validate(call_of(request), body, address), []


async def _redeem(request: Request) -> _Answer:
    await authorised(request, request.headers.get("authorization"), "checkout")
    key = _idempotency_key(request)
    body = RedemptionRequest.model_validate_json(await request.body())
    address = shopper_address(request.headers)
    redeemed = await checkout.redeem(call_of(request), body, key, address)
    return 201, redeemed, [(b"location", redemption_location(redeemed).encode("latin-1"))]


def _idempotency_key(request: Request) -> str:
    """The `Idempotency-Key` header, refused as FastAPI refuses a header parameter."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    field = f"header.{IDEMPOTENCY_KEY}"
    if key is None:
        raise ApiError(422, "invalid_request", f"{field}: Field required", field=field)
    if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX and _IDEMPOTENCY_KEY.match(key)):
        message = f"{field}: 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, no spaces"
        raise ApiError(422, "invalid_request", message, field=field)
    return key
