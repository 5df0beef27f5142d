"""Synthetic metrics for the sandbox: one deterministic signal per (resource, portable metric, minute).

Every emulator serves its native metrics from level() so that the same resource shows the same numbers
through every API, a test can predict the range, and nothing depends on wall-clock luck:

  cpu, memory           percent, between 5 and 70
  network_*, disk_*     bytes per second, between 1,000 and 60,000
  requests              requests per second, between 0.5 and 6

pin() holds a (resource, metric) at a fixed value (how `scripts/sandbox alarm-state` makes an alarm fire);
unpin() lets it follow the signal again. Pins live in the emulator process that serves the metric.
"""
import hashlib
import math
import threading

RANGES = {
    "cpu": (5.0, 70.0),
    "memory": (5.0, 70.0),
    "network_in": (1000.0, 60000.0),
    "network_out": (1000.0, 60000.0),
    "disk_read": (1000.0, 60000.0),
    "disk_write": (1000.0, 60000.0),
    "requests": (0.5, 6.0),
}
_pins = {}
_lock = threading.Lock()


def _unit(key, metric, salt=""):
    digest = hashlib.sha256(f"{key}|{metric}|{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def level(key, metric, t):
    """The value of `metric` (a portable name, in the units above) for resource `key` at epoch second t."""
    with _lock:
        pinned = _pins.get((str(key), metric))
    if pinned is not None:
        return pinned
    low, high = RANGES[metric]
    minute = int(t) // 60
    base = 0.2 + 0.5 * _unit(key, metric)  # where this resource sits in the range
    wave = 0.15 * math.sin(minute / 7.0 + 6.28 * _unit(key, metric, "phase"))  # slow and smooth
    jitter = 0.05 * (_unit(key, metric, minute) - 0.5)
    return round(low + (high - low) * min(max(base + wave + jitter, 0.0), 1.0), 3)


def points(key, metric, start, end, step=60):
    """[(t, level)] every `step` seconds in [start, end)."""
    first = int(start) // step * step
    return [(t, level(key, metric, t)) for t in range(first, int(end), step) if t >= start]


def pin(key, metric, value):
    with _lock:
        _pins[(str(key), metric)] = float(value)


def unpin(key, metric=None):
    with _lock:
        for pinned in [k for k in _pins if k[0] == str(key) and metric in (None, k[1])]:
            del _pins[pinned]


def reset():
    with _lock:
        _pins.clear()


def breaching(comparison, threshold, metric):
    """A value that is clearly past `threshold` in the direction of `comparison` (above|below), and one
    clearly within it: (firing, quiet), kept inside the metric's range where the threshold allows."""
    low, high = RANGES[metric]
    margin = max(abs(threshold) * 0.2, (high - low) * 0.05)
    if comparison == "above":
        return threshold + margin, max(threshold - margin, 0.0)
    return max(threshold - margin, 0.0), threshold + margin
