import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.retry import (
    FATAL,
    THROTTLED,
    TRANSIENT,
    RetryPolicy,
    parse_retry_after,
)
from clock import FakeClock


class Boom(Exception):
    def __init__(self, kind, retry_after=None):
        super().__init__(kind)
        self.kind, self.retry_after = kind, retry_after


def classify(exc):
    return (exc.kind, exc.retry_after) if isinstance(exc, Boom) else (FATAL, None)


def flaky(failures):
    calls = []

    def func():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    return func, calls


def policy(clock, **kw):
    return RetryPolicy(sleep=clock.sleep, clock=clock, **kw)


def test_throttling_and_transient_errors_are_retried_until_success():
    clock = FakeClock()
    func, calls = flaky([Boom(THROTTLED), Boom(TRANSIENT), Boom(THROTTLED)])
    assert policy(clock).call(func, classify) == "ok"
    assert len(calls) == 4 and len(clock.sleeps) == 3


def test_fatal_errors_are_not_retried():
    clock = FakeClock()
    func, calls = flaky([Boom(FATAL)])
    with pytest.raises(Boom):
        policy(clock).call(func, classify)
    assert len(calls) == 1 and clock.sleeps == []


def test_retry_after_is_honoured():
    clock = FakeClock()
    func, _calls = flaky([Boom(THROTTLED, retry_after=3.0)])
    policy(clock, base=0.1).call(func, classify)
    assert 3.0 <= clock.sleeps[0] <= 3.1


def test_full_jitter_stays_within_the_exponential_cap():
    p = RetryPolicy(base=0.5, cap=4.0)
    for attempt in range(1, 10):
        for _sample in range(50):
            assert 0 <= p.delay(attempt) <= min(4.0, 0.5 * 2 ** attempt)


def test_attempts_are_bounded():
    clock = FakeClock()
    func, calls = flaky([Boom(TRANSIENT)] * 20)
    with pytest.raises(Boom):
        policy(clock, attempts=4).call(func, classify)
    assert len(calls) == 4


def test_time_budget_is_bounded():
    clock = FakeClock()
    func, calls = flaky([Boom(THROTTLED, retry_after=30)] * 20)
    with pytest.raises(Boom):
        policy(clock, budget=60).call(func, classify)
    assert sum(clock.sleeps) <= 60 and len(calls) == 2


@pytest.mark.parametrize("value, seconds", [("5", 5.0), ("0.5", 0.5), (None, None), ("soon", None), ("-3", 0.0)])
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


def test_exception_chain_finds_the_cause_behind_wrappers():
    from ansible_collections.lxcri.cloud.plugins.module_utils.retry import exception_chain

    refused = ConnectionRefusedError("refused")
    wrapped = RuntimeError("SDK wrapper")
    wrapped.__cause__ = refused
    outer = ValueError("transport", wrapped)
    found = list(exception_chain(outer))
    assert found[0] is outer and wrapped in found and refused in found
