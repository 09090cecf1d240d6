"""Every code a use case refuses with has an HTTP status, so no refusal becomes a 500."""

import ast
from pathlib import Path

from services.coupons.api.errors import STATUS, refusal_response
from services.coupons.service.refusals import Refused

SERVICE = Path(__file__).parents[2] / "services" / "coupons" / "service"


def refused_codes() -> set[str]:
    """The literal codes of every `Refused(...)` in the service layer."""
    found = set()
    for module in SERVICE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Refused":
                first = node.args[0]
                if isinstance(first, ast.Constant):
                    found.add(first.value)
    return found


def test_every_code_the_service_refuses_with_has_a_status() -> None:
    codes = refused_codes()
    assert {"invalid_request", "code_taken", "too_many_failures"} <= codes  # the scan works
    assert codes <= STATUS.keys()


def test_a_refusal_carries_its_retry_hints_as_headers() -> None:
    response = refusal_response(
        Refused("decision_pending", "queued", retry_after_s=1, idempotency_key="k1")
    )
    assert response.status_code == 503
    assert (response.headers["retry-after"], response.headers["idempotency-key"]) == ("1", "k1")


def test_segment_contact_and_webhook_refusals_keep_their_statuses() -> None:
    expected = {
        "invalid_condition": 422,
        "invalid_csv": 422,
        "segment_not_found": 404,
        "segment_exists": 409,
        "segment_not_static": 409,
        "contact_not_found": 404,
        "signature_missing": 400,
        "signature_invalid": 400,
        "signature_expired": 400,
        "invalid_payload": 400,
        "stripe_not_configured": 503,
    }
    found = {code: refusal_response(Refused(code, "no")).status_code for code in expected}
    assert found == expected
