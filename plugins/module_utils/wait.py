# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Polling with a monotonic deadline. A timeout fails, naming what it was waiting for.

A task has one Deadline (its wait_timeout): every wait it makes, the providers' own included (operations,
tasks, actions), polls until that deadline, so wait_timeout bounds the whole task's waiting.
"""

from __future__ import annotations

import time


class WaitTimeout(Exception):
    pass


class Deadline:
    """The time left for every wait of one task; `option` names where its length came from (wait_timeout)."""

    def __init__(self, seconds, option=None, clock=time.monotonic):
        self.seconds = seconds
        self.option = option
        self.clock = clock
        self.end = clock() + seconds

    def left(self):
        return max(0.0, self.end - self.clock())

    def within(self, seconds):
        """A deadline `seconds` from now, or this one when it comes first (a wait with a bound of its own)."""
        if self.clock() + seconds >= self.end:
            return self
        return Deadline(seconds, clock=self.clock)

    def timeout(self, what, seen=""):
        """The WaitTimeout of a wait for `what` that ran out of this deadline."""
        source = f" ({self.option})" if self.option else ""
        return WaitTimeout(f"timed out after {self.seconds:g}s{source} waiting for {what}{seen}")


def wait_for(fetch, done, what, timeout, first=0.1, maximum=5.0, describe=None, sleep=time.sleep, clock=time.monotonic):
    """Call fetch() until done(result) is true; return that result.

    `timeout` is seconds from now or a Deadline. The interval starts at `first` seconds and grows by half each
    poll up to `maximum`, the provider's own pace: quick answers are seen quickly and slow ones are not
    hammered. describe(result) says what was last seen, for the timeout message.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout, clock=clock)
    interval = first
    while True:
        result = fetch()
        if done(result):
            return result
        remaining = deadline.left()
        if remaining <= 0:
            raise deadline.timeout(what, f" (last seen: {describe(result)})" if describe else "")
        sleep(min(interval, remaining))
        interval = min(maximum, interval * 1.5)
