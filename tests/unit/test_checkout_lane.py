"""The checkout lane in process, over the whole ASGI stack (correlation ids, the body limit,
the lane) with the runtime's ports faked: the campaign view, the throttle, the key cache. The
same calls against the real service are in tests/integration/test_checkout.py."""

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from starlette.requests import ClientDisconnect

from contracts.commands import DefineCampaign
from contracts.money import AmountOff
from services.coupons import logs
from services.coupons.api.checkout_lane import _body, _headers
from services.coupons.app import create_app
from services.coupons.domain import campaign as aggregate
from services.coupons.service.checkout_models import ValidationResult
from services.coupons.settings import Settings
from services.coupons.store.api_keys import ApiKey

NOW = datetime.now(UTC)
CART = {"currency": "EUR", "amount": 4900}


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """These tests configure logging (as a served app does): put back what the others use,
    not a captured stream that closes with the test."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    aiokafka = logging.getLogger("aiokafka").level
    yield
    structlog.configure(**saved)
    root.handlers[:], root.level = handlers, level
    logging.getLogger("aiokafka").setLevel(aiokafka)


def _campaign() -> aggregate.Campaign:
    define = DefineCampaign(
        campaign_id="c1",
        name="Lane",
        code="LANE",
        discount=AmountOff(amount_off=100, currency="EUR"),
    )
    state = None
    for event in aggregate.decide(None, define, NOW):
        state = aggregate.evolve(state, event, NOW)
    assert state is not None
    return state


class _View:
    def __init__(self) -> None:
        self.state = _campaign()

    def campaign_of(self, code: str) -> aggregate.Campaign | None:
        return self.state if code == "LANE" else None


class _Throttle:
    def __init__(self) -> None:
        self.failed_guesses = 0

    def wait_s(self, *_: Any) -> None:
        return None

    async def failed(self, *_: Any, guesses: int = 0) -> None:
        self.failed_guesses += 1


def _app(level: str = "WARNING") -> tuple[Any, Any]:
    logs.configure(level, "json")
    settings = Settings(  # never reached; given here, not in os.environ, which later tests read
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9", DATABASE_URL="postgresql://127.0.0.1:9/none"
    )
    asgi = create_app(settings)
    app: Any = asgi
    while not hasattr(app, "openapi"):  # the FastAPI app inside the ASGI wrappers
        app = app.app
    app.state.runtime = SimpleNamespace(
        view=_View(), throttle=_Throttle(), settings=settings, pool=None
    )
    app.state.key_cache.put("secret", ApiKey(id="k1", name="shop", scope="checkout"))
    app.state.key_cache.put("reader", ApiKey(id="k2", name="bi", scope="analyst"))
    return asgi, app


async def _call(
    asgi: Any, path: str, body: bytes, headers: dict[str, str], chunks: int = 1
) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    """POST `body` (in `chunks` messages); the status, headers and JSON answer."""
    size = -(-len(body) // chunks)
    messages = [
        {"type": "http.request", "body": body[i : i + size], "more_body": i + size < len(body)}
        for i in range(0, len(body), size)
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    start, *bodies = sent
    content = b"".join(m.get("body", b"") for m in bodies)
    return start["status"], dict(start["headers"]), json.loads(content)


def _validation(code: str = "lane") -> bytes:
    return json.dumps({"code": code, "customer": {"contact_id": "c_1"}, "cart": CART}).encode()


AUTH = {"Authorization": "Bearer secret", "Content-Type": "application/json"}


async def test_a_validation_is_answered_with_its_price() -> None:
    asgi, _ = _app()
    status, headers, answer = await _call(asgi, "/v1/validations", _validation(), AUTH, chunks=3)
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-correlation-id"]
    assert answer == {
        "valid": True,
        "code": "LANE",
        "campaign_id": "c1",
        "amount": 4900,
        "discount": 100,
        "total": 4800,
        "refusal": None,
        "codes": [
            {"code": "LANE", "campaign_id": "c1", "valid": True, "discount": 100, "refusal": None}
        ],
    }


async def test_an_unknown_code_is_answered_invalid_and_counted_as_a_guess() -> None:
    asgi, app = _app()
    unknown = _validation("no")  # too short for a code: not looked up in the registry
    status, _, answer = await _call(asgi, "/v1/validations", unknown, AUTH)
    assert status == 200
    assert answer["valid"] is False and answer["campaign_id"] is None
    assert answer["refusal"] == {"code": "unknown_code", "message": "no such code", "field": None}
    assert app.state.runtime.throttle.failed_guesses == 1


@pytest.mark.parametrize(
    "body",
    [
        _validation(),
        _validation("no"),  # refused: with a refusal
        json.dumps({"codes": ["lane", "no"], "customer": {"contact_id": "c_1"}, "cart": CART}),
    ],
    ids=["valid", "refused", "two codes"],
)
async def test_a_validation_answers_exactly_the_documented_model(body: bytes | str) -> None:
    """The use case answers plain data (not the model, for speed): it must have the fields
    `/openapi.json` documents, each of its type, and no other."""
    asgi, _ = _app()
    raw = body.encode() if isinstance(body, str) else body
    status, _, answer = await _call(asgi, "/v1/validations", raw, AUTH)
    assert status == 200
    documented = ValidationResult.model_validate(answer, strict=True)
    assert documented.model_dump(mode="json") == answer
    assert len(answer["codes"]) == len(json.loads(raw).get("codes", [None]))


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Basic secret"}, 401, "unauthenticated"),
        ({"Authorization": "Bearer reader"}, 403, "forbidden"),
    ],
)
async def test_a_call_without_a_checkout_key_is_refused(
    headers: dict[str, str], status: int, code: str
) -> None:
    asgi, _ = _app()
    found, _, answer = await _call(asgi, "/v1/validations", _validation(), headers)
    assert (found, answer["error"]["code"]) == (status, code)


async def test_bad_input_is_a_422_naming_the_field() -> None:
    asgi, _ = _app()
    body = json.dumps({"code": "lane", "customer": {"contact_id": "c_1"}, "cart": {}}).encode()
    status, _, answer = await _call(asgi, "/v1/validations", body, AUTH)
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    assert answer["error"]["field"] == "cart.currency"
    bad_address = {**AUTH, "X-Shopper-Address": "not-an-address"}
    status, _, answer = await _call(asgi, "/v1/validations", _validation(), bad_address)
    assert (status, answer["error"]["field"]) == (422, "header.x-shopper-address")
    status, _, answer = await _call(asgi, "/v1/redemptions", _validation(), AUTH)
    assert (status, answer["error"]["field"]) == (422, "header.idempotency-key")


def test_the_lane_reads_only_its_five_headers_each_by_its_first_occurrence() -> None:
    scope = {
        "headers": [
            (b"authorization", b"Bearer one"),
            (b"authorization", b"Bearer two"),
            (b"x-shopper-address", b"203.0.113.7"),
            (b"cookie", b"session=abc"),
            (b"idempotency-key", b"k-1"),
            (b"x-correlation-id", b"trace-1"),
            (b"content-length", b"42"),
            (b"x-correlation-id", b"trace-2"),
        ]
    }
    assert _headers(scope) == {
        "authorization": "Bearer one",
        "x-shopper-address": "203.0.113.7",
        "idempotency-key": "k-1",
        "x-correlation-id": "trace-1",
        "content-length": "42",
    }


async def test_a_client_gone_before_its_body_is_read_is_not_answered() -> None:
    messages = [{"type": "http.request", "body": b"{", "more_body": True}]
    messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    with pytest.raises(ClientDisconnect):
        await _body(receive, 1000)


async def test_the_request_line_is_logged_at_info_only(capsys: pytest.CaptureFixture[str]) -> None:
    for level, logged in (("WARNING", False), ("INFO", True)):
        asgi, _ = _app(level)
        await _call(asgi, "/v1/validations", _validation(), AUTH)
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        requests = [line for line in lines if line.get("event") == "http.request"]
        assert bool(requests) is logged, level
        if logged:
            assert requests[0]["status"] == 200 and requests[0]["path"] == "/v1/validations"


@pytest.mark.parametrize("chunks", [1, 4], ids=["announced", "chunked"])
async def test_a_body_over_the_limit_is_refused_on_the_lane(chunks: int) -> None:
    """The lane's paths get the body limit of every other path: a `Content-Length` over it is
    refused before anything is read or authorised, a body of unknown length once it passes."""
    asgi, app = _app()
    limit = app.state.runtime.settings.max_body_bytes
    big = json.dumps({"code": "lane", "customer": {"contact_id": "c_1"}, "cart": CART})
    big = big[:-1] + ', "padding": "' + "x" * limit + '"}'
    headers = {"Authorization": "Bearer unknown"}  # refused for its size first: no 401
    if chunks == 1:
        headers["Content-Length"] = str(len(big))
    status, sent, answer = await _call(asgi, "/v1/validations", big.encode(), headers, chunks)
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (
        413,
        "request_too_large",
        "body",
    )
    assert sent[b"x-correlation-id"]
    just_under = _validation()
    status, _, _ = await _call(asgi, "/v1/validations", just_under, {**AUTH}, chunks=2)
    assert status == 200


async def test_the_callers_correlation_id_is_echoed_and_on_every_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Kept when it is printable ASCII, replaced when not; on the answer, a refusal and the
    request line; bound only for the request."""
    asgi, _ = _app("INFO")
    traced = {**AUTH, "X-Correlation-Id": "trace-me-7"}
    status, headers, _ = await _call(asgi, "/v1/validations", _validation(), traced)
    assert (status, headers[b"x-correlation-id"]) == (200, b"trace-me-7")
    refused = {"X-Correlation-Id": "trace-me-8"}
    status, headers, _ = await _call(asgi, "/v1/validations", _validation(), refused)
    assert (status, headers[b"x-correlation-id"]) == (401, b"trace-me-8")
    _, headers, _ = await _call(
        asgi, "/v1/validations", _validation(), {**AUTH, "X-Correlation-Id": "a b"}
    )
    assert headers[b"x-correlation-id"] not in (b"a b", b"")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    requests = [line for line in lines if line.get("event") == "http.request"]
    assert [(r["correlation_id"], r["status"]) for r in requests[:2]] == [
        ("trace-me-7", 200),
        ("trace-me-8", 401),
    ]
    assert "correlation_id" not in structlog.contextvars.get_contextvars()


async def test_every_other_path_keeps_its_correlation_id_and_body_limit() -> None:
    """Behind the lane, FastAPI's paths get both from `Correlated` and `BodyLimit`."""
    asgi, app = _app()
    limit = app.state.runtime.settings.max_body_bytes
    traced = {"X-Correlation-Id": "trace-other", "Content-Length": str(limit + 1)}
    status, headers, answer = await _call(asgi, "/v1/campaigns", b"{}", traced)
    assert (status, answer["error"]["code"]) == (413, "request_too_large")
    assert headers[b"x-correlation-id"] == b"trace-other"
    scope = {"type": "http", "method": "GET", "path": "/healthz", "raw_path": b"/healthz"}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi({**scope, "query_string": b"", "headers": []}, receive, send)
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"x-correlation-id"]
