"""Refuse a request body over the limit before reading it: `413 request_too_large`.

A `Content-Length` over the limit is refused at once, with nothing read. A body of unknown
length (chunked) is read up to the limit and refused past it, so no request can make the
process hold more than the limit; under it, it is handed on unchanged. Plain ASGI, in front of
FastAPI; the checkout lane, in front of both, applies the same rule on its own two paths with
`announced` and `too_large` (`checkout_lane._body`)."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.coupons.api.errors import ApiError, refusal_response


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None:
            if length > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server reads no more than announced
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        body, messages = 0, []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += len(message.get("body", b""))
            if body > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(messages, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refusal_response(too_large(self.max_bytes))(scope, receive, send)


def too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "request_too_large", f"the request body is over {max_bytes} bytes", field="body"
    )


def announced(content_length: bytes | str | None) -> int | None:
    """The length a `Content-Length` value announces (None: none, or not a number)."""
    if content_length is None:
        return None
    try:
        return int(content_length)
    except ValueError:
        return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return announced(value)
    return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
