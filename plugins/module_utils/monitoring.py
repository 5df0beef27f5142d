# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Portable metrics and alarms: names, units, time windows, the series shape and the alarm spec.

Providers map these names to their native metrics (docs/cloud_monitoring.md) and hand back series built
with series() or missing(); summarize() gives every series the same shape whatever the provider.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import urllib.parse

from ansible_collections.lxcri.cloud.plugins.module_utils import registry
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError, validate_name, validate_tags

# Portable metric -> portable unit. Bytes are per period (a sum), percent and count as named.
METRICS = {
    "cpu": "percent",
    "memory": "percent",
    "network_in": "bytes",
    "network_out": "bytes",
    "disk_read": "bytes",
    "disk_write": "bytes",
    "requests": "count",
}
DEFAULT_METRICS = ("cpu", "memory", "network_in", "network_out", "disk_read", "disk_write")
# The providers with metric alerting (Proxmox VE has none: its INFO.cannot["alarms"] says what to use instead).
ALARM_PROVIDERS = registry.alarm_providers()
STATISTICS = ("average", "max", "min", "sum")
COMPARISONS = ("above", "below")
ALARM_STATES = ("ok", "alarm", "insufficient_data", "unknown")
ALARM_TAG = "lxcri-alarm"
ALARM_FIELDS = (
    "provider", "name", "id", "region", "metric", "comparison", "threshold", "period", "evaluation_periods",
    "statistic", "kind", "deployments", "targets", "notify", "tags", "description", "state", "state_reason",
    "state_source", "native",
)
# The settings compared to decide whether an alarm must be updated.
ALARM_CONFIG = (
    "metric", "comparison", "threshold", "period", "evaluation_periods", "statistic", "kind", "deployments",
    "targets", "notify", "tags", "description",
)
MAX_POINTS = 1440
DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def duration(option, value):
    """Seconds from 300, '300s', '5m', '1h' or '1d'; SpecError naming the option otherwise."""
    match = DURATION.match(str(value).strip().lower()) if value is not None else None
    if not match or int(match.group(1)) <= 0:
        raise SpecError(f"{option} '{value}' is not a duration: use seconds (300) or a number with s, m, h or d (5m, 1h)")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def validate_metrics(names):
    names = list(names or DEFAULT_METRICS)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise SpecError(f"metrics: unknown metric {', '.join(map(str, unknown))}: use one of {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


def time_range(window, period, now=None):
    """(start, end, period) in epoch seconds: `window` back from now, aligned to whole periods."""
    period = duration("period", period)
    window = duration("window", window)
    if period < 60 or period % 60:
        raise SpecError(f"period must be a whole number of minutes (60 s or more), got {period} s")
    if window < period:
        raise SpecError(f"window ({window} s) must be at least one period ({period} s)")
    if window // period > MAX_POINTS:
        raise SpecError(f"window / period gives {window // period} points; at most {MAX_POINTS}: widen the period")
    end = int(now if now is not None else time.time()) // period * period
    return end - window // period * period, end, period


def series(native_name, native_unit, points, statistic="average"):
    """A provider's answer for one metric of one resource: [(epoch, value in the portable unit)]."""
    return {"native_name": native_name, "native_unit": native_unit, "statistic": statistic, "points": points}


def missing(reason, native_name=None):
    """A provider's answer for a metric it does not have for this resource, saying why."""
    return {"native_name": native_name, "native_unit": None, "statistic": None, "points": None, "reason": reason}


def summarize(metric, answer):
    """The portable shape of one metric: unit, native name/unit, points and latest/average/max (or null + reason)."""
    result = {"unit": METRICS[metric], "native_name": answer.get("native_name"), "native_unit": answer.get("native_unit"),
              "statistic": answer.get("statistic"), "points": [], "latest": None, "average": None, "max": None,
              "reason": answer.get("reason")}
    if answer.get("points") is None:
        result["points"] = None
        return result
    points = sorted((int(t), float(v)) for t, v in answer["points"] if v is not None and not math.isnan(float(v)))
    result["points"] = [{"time": _iso(t), "value": round(v, 4)} for t, v in points]
    if points:
        values = [value for _time, value in points]
        result["latest"] = round(values[-1], 4)
        result["average"] = round(sum(values) / len(values), 4)
        result["max"] = round(max(values), 4)
    else:
        result["reason"] = result["reason"] or "no data points in the window"
    return result


def resample(samples, start, end, period, how="average"):
    """Points at period boundaries from finer (time, value) samples: the average or the sum of each bucket."""
    buckets = {}
    for t, value in samples:
        if value is None or not start <= t < end:
            continue
        buckets.setdefault(start + (int(t) - start) // period * period, []).append(float(value))
    combine = sum if how == "sum" else (lambda values: sum(values) / len(values))
    return [(t, combine(values)) for t, values in sorted(buckets.items())]


def _iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def validate_alarm(params, provider_class):
    """The portable alarm spec, normalized; SpecError before anything is created."""
    alarm = {key: params.get(key) for key in ("name", "state", "metric", "comparison", "statistic", "kind", "description")}
    alarm["name"] = params["name"]
    validate_name(alarm["name"])
    alarm["kind"] = alarm["kind"] or "vm"
    alarm["tags"] = validate_tags(params.get("tags") or {})
    if params.get("state") == "absent":  # removing needs the name only: the rest is not checked then
        alarm = {key: alarm[key] for key in ("name", "state", "kind", "tags")}
        provider_class.validate_alarm(alarm)
        return alarm
    if alarm["metric"] not in METRICS:
        raise SpecError(f"metric '{alarm['metric']}' is not a portable metric: use one of {', '.join(METRICS)}")
    try:
        alarm["threshold"] = float(params.get("threshold"))
    except (TypeError, ValueError):
        raise SpecError(f"threshold must be a number, got {params.get('threshold')!r}") from None
    if math.isnan(alarm["threshold"]) or math.isinf(alarm["threshold"]):
        raise SpecError(f"threshold must be a finite number, got {params.get('threshold')!r}")
    alarm["period"] = duration("period", params.get("period"))
    if alarm["period"] < 60 or alarm["period"] % 60:
        raise SpecError(f"period must be a whole number of minutes (60 s or more), got {alarm['period']} s")
    alarm["evaluation_periods"] = int(params.get("evaluation_periods") or 0)
    if alarm["evaluation_periods"] < 1:
        raise SpecError(f"evaluation_periods must be 1 or more, got {params.get('evaluation_periods')}")
    deployments = list(params.get("deployments") or [])
    if not deployments:
        raise SpecError("deployments is required with state present: the deployments whose metric the alarm watches")
    for name in deployments:
        validate_name(name, "deployments")
    alarm["deployments"] = sorted(set(deployments))
    alarm["notify"] = validate_notify(params.get("notify") or {})
    alarm["description"] = alarm["description"] or ""
    provider_class.validate_alarm(alarm)
    return alarm


def validate_notify(notify):
    emails = [str(e).strip() for e in notify.get("emails") or []]
    webhooks = [str(w).strip() for w in notify.get("webhooks") or []]
    for email in emails:
        if not EMAIL.match(email):
            raise SpecError(f"notify.emails: '{email}' is not an email address")
    for url in webhooks:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise SpecError(f"notify.webhooks: {redact_webhook(url)} is not an http(s) URL")
    return {"emails": sorted(set(emails)), "webhooks": sorted(set(webhooks))}


def redact_webhook(url):
    """A webhook URL as it may be shown: its origin and a digest, since paths and queries often carry tokens."""
    parts = urllib.parse.urlsplit(str(url))
    digest = hashlib.sha256(str(url).encode()).hexdigest()[:8]
    return f"{parts.scheme}://{parts.hostname or '?'}/...#{digest}"


def alarm_record(provider, **fields):
    """A normalized alarm record: every field present."""
    unknown = set(fields) - set(ALARM_FIELDS)
    if unknown:
        raise ValueError(f"not alarm fields: {sorted(unknown)}")
    rec = {field: None for field in ALARM_FIELDS}
    rec.update(fields)
    rec["provider"] = provider
    rec["tags"] = dict(rec["tags"] or {})
    rec["notify"] = {"emails": sorted((rec["notify"] or {}).get("emails") or []),
                     "webhooks": sorted((rec["notify"] or {}).get("webhooks") or [])}
    rec["deployments"] = sorted(rec["deployments"] or [])
    rec["targets"] = sorted(rec["targets"] or [])
    rec["description"] = rec["description"] or ""
    if rec["threshold"] is not None:
        rec["threshold"] = float(rec["threshold"])
    if rec["state"] not in ALARM_STATES:
        rec["state"] = "unknown"
    rec["native"] = dict(rec["native"] or {})
    return rec


def alarm_config(alarm):
    """The settings of an alarm (a spec with its targets, or a record) that decide whether to update it."""
    config = {key: alarm.get(key) for key in ALARM_CONFIG}
    if config["threshold"] is not None:  # read back through unit conversions: compare 6 significant digits
        config["threshold"] = float(f"{float(config['threshold']):.6g}")
    return config


def shown(rec):
    """An alarm record as a module returns it: webhook URLs redacted."""
    rec = dict(rec)
    rec["notify"] = {"emails": rec["notify"]["emails"], "webhooks": [redact_webhook(url) for url in rec["notify"]["webhooks"]]}
    return rec


def breaches(comparison, threshold, value):
    return value > threshold if comparison == "above" else value < threshold


def evaluate(alarm, answers):
    """(state, reason) of an alarm from its targets' series, for providers whose API keeps no alarm state:
    `alarm` when any target breaches the threshold in each of the last evaluation_periods points."""
    needed = alarm["evaluation_periods"]
    seen = 0
    for target, answer in answers.items():
        points = [value for _time, value in sorted(answer.get("points") or [])][-needed:]
        if len(points) < needed:
            continue
        seen += 1
        if all(breaches(alarm["comparison"], alarm["threshold"], v) for v in points):
            return "alarm", (f"{alarm['metric']} of {target} was {alarm['comparison']} {alarm['threshold']:g} "
                             f"in the last {needed} period(s): {', '.join(f'{v:g}' for v in points)}")
    if not seen:
        return "insufficient_data", f"fewer than {needed} data point(s) of {alarm['metric']} for any target"
    return "ok", f"{alarm['metric']} within the threshold for {seen} target(s)"
