from contracts.reasons import Reason
from services.coupons.api.errors import REFUSAL_STATUS


def test_every_reason_has_an_http_status_and_none_is_a_server_error() -> None:
    assert set(REFUSAL_STATUS) == set(Reason)
    assert all(400 <= status < 500 for status in REFUSAL_STATUS.values())
