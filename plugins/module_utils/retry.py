# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One retry policy for every provider: full jitter, Retry-After honoured, a bounded budget.

Each provider passes a classifier that sorts its SDK's exceptions into THROTTLED, TRANSIENT or FATAL
and reads a Retry-After hint when the response carried one. The SDKs' own retries are switched off by
the providers, so that this is the only policy at work and its budget is the real one.
"""

from __future__ import annotations

import random
import time

THROTTLED = "throttled"
TRANSIENT = "transient"
FATAL = "fatal"


class RetryPolicy:
    """Retry a call on throttling and transient errors, at most `attempts` times and `budget` seconds."""

    def __init__(self, attempts=10, base=0.2, cap=20.0, budget=120.0, sleep=time.sleep, clock=time.monotonic):
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.budget = budget
        self.sleep = sleep
        self.clock = clock

    def delay(self, attempt, retry_after=None):
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None:
            # The server knows best; a little jitter keeps parallel callers from returning together.
            return retry_after + random.uniform(0, self.base)
        return random.uniform(0, min(self.cap, self.base * 2 ** attempt))

    def call(self, func, classify, *args, **kwargs):
        """Run func(*args, **kwargs); classify(exc) -> (kind, retry_after_seconds_or_None)."""
        deadline = self.clock() + self.budget
        attempt = 0
        while True:
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # the classifier decides; FATAL re-raises unchanged
                kind, retry_after = classify(exc)
                attempt += 1
                if kind == FATAL or attempt >= self.attempts:
                    raise
                pause = self.delay(attempt, retry_after)
                if self.clock() + pause > deadline:
                    raise
                self.sleep(pause)


def parse_retry_after(value):
    """Seconds from a Retry-After header (delta-seconds form), or None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def exception_chain(exc, depth=0):
    """exc and every exception it wraps (SDK -> HTTP library -> socket), so a classifier can find the cause."""
    if exc is None or depth > 8:
        return
    yield exc
    for inner in (getattr(exc, "inner_exception", None), getattr(exc, "reason", None), exc.__cause__, exc.__context__,
                  *[arg for arg in getattr(exc, "args", ()) if isinstance(arg, BaseException)]):
        if isinstance(inner, BaseException) and inner is not exc:
            yield from exception_chain(inner, depth + 1)


DEFAULT_POLICY = RetryPolicy()
