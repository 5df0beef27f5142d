# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Polling with a monotonic deadline. A timeout fails, naming what it was waiting for."""

from __future__ import annotations

import time


class WaitTimeout(Exception):
    pass


def wait_for(fetch, done, what, timeout, first=0.1, maximum=5.0, describe=None, sleep=time.sleep, clock=time.monotonic):
    """Call fetch() until done(result) is true; return that result.

    The interval starts at `first` seconds and grows by half each poll up to `maximum`, the provider's
    own pace: quick answers are seen quickly and slow ones are not hammered. describe(result) says what
    was last seen, for the timeout message.
    """
    deadline = clock() + timeout
    interval = first
    while True:
        result = fetch()
        if done(result):
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            seen = f" (last seen: {describe(result)})" if describe else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{seen}")
        sleep(min(interval, remaining))
        interval = min(maximum, interval * 1.5)
