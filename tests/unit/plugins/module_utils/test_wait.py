import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.wait import WaitTimeout, wait_for
from clock import FakeClock


def test_returns_the_first_result_that_is_done():
    clock = FakeClock()
    states = iter(["pending", "pending", "running"])
    assert wait_for(lambda: next(states), lambda s: s == "running", "vm", 60, sleep=clock.sleep, clock=clock) == "running"
    assert len(clock.sleeps) == 2


def test_interval_grows_to_the_provider_maximum():
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        wait_for(lambda: "pending", lambda s: False, "vm", 100, first=1, maximum=5, sleep=clock.sleep, clock=clock)
    assert clock.sleeps[:4] == [1, 1.5, 2.25, 3.375]
    assert max(clock.sleeps) == 5


def test_timeout_fails_and_says_what_it_waited_for():
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as err:
        wait_for(lambda: "pending", lambda s: False, "web-1 to be running", 10, describe=lambda s: f"web-1={s}",
                 sleep=clock.sleep, clock=clock)
    assert "timed out after 10s waiting for web-1 to be running (last seen: web-1=pending)" == str(err.value)
    assert clock.now == pytest.approx(10)
