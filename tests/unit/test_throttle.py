import time

from services.coupons.api.throttle import FailureThrottle


def test_refuses_after_the_limit_within_the_window_and_forgets_after_it() -> None:
    throttle = FailureThrottle(limit=3, window_s=0.2)
    caller = ("key_1", "127.0.0.1")
    for _ in range(3):
        assert throttle.retry_after(caller) is None
        throttle.failed(caller)
    assert throttle.retry_after(caller) == 1
    assert throttle.retry_after(("key_1", "10.0.0.9")) is None  # per address
    assert throttle.retry_after(("key_2", "127.0.0.1")) is None  # per key
    time.sleep(0.25)
    assert throttle.retry_after(caller) is None
