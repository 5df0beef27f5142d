# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DigitalOcean monitoring: droplet and App Platform metrics, and alarms as alert policies.

Part of the digitalocean provider: DigitalOceanProvider (provider.py) keeps a Monitoring as its monitoring; the
functions here make every call through the provider's retry policy (provider.call, provider.answer), listings
(provider.pages) and bounded pool (provider.each).

Metrics: one call per (resource, native metric), all in parallel; every answer is resampled to the period.

  portable     droplet (kind vm)                                    app (kind container)
  cpu          droplet/cpu, per-mode CPU-seconds counters:          apps/cpu_percentage (percent; the mean of
               100 x (1 - idle delta / all-modes delta)             the component's instances)
  memory       droplet/memory_available and memory_total (bytes):   apps/memory_percentage (percent)
               100 x (1 - available / total)
  network_in   droplet/bandwidth public inbound (Mbps):             none
               Mbps x 10^6 / 8 x period = bytes per period
  network_out  droplet/bandwidth public outbound (Mbps), the same   none
  disk_*       none: the API has no droplet disk I/O metric         none
  requests     none                                                 none

Alarms are alert policies (/v2/monitoring/alerts) on droplets: type from the metric, compare GreaterThan or
LessThan, value in the type's unit (percent, Mbps, MBps), window = period x evaluation_periods (5m, 10m, 30m
or 1h only), entities = the target droplet ids, alerts.email = notify.emails, enabled. Policies have no name,
labels or region, and their `tags` select droplets, so the collection keeps its own settings in the
description, which DigitalOcean shows in the alert:

  lxcri-alarm <name> (region=<region> kind=vm deployments=<a>,<b> period=<seconds>s evaluation_periods=<n>): <text>

(": <text>" only with a user description). A policy is the collection's when its description parses so.
DigitalOcean keeps no alert state: the state is evaluated from the metrics (provider.evaluated_state).
"""

from __future__ import annotations

import re

from ansible_collections.lxcri.cloud.plugins.module_utils.monitoring import (
    ALARM_TAG,
    alarm_record,
    missing,
    resample,
    series,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError

MBPS = 1e6 / 8  # bytes per second in one megabit per second
MBYTES = 1e6  # bytes per second in one megabyte per second (alert policies' disk I/O unit)

# Native metric -> (pydo monitoring method, its fixed arguments). Droplets are named by host_id, apps by
# app_id and app_component (the service, named after the deployment).
CALLS = {
    "droplet/cpu": ("get_droplet_cpu_metrics", {}),
    "droplet/memory_available": ("get_droplet_memory_available_metrics", {}),
    "droplet/memory_total": ("get_droplet_memory_total_metrics", {}),
    "droplet/bandwidth public inbound": ("get_droplet_bandwidth_metrics", {"interface": "public", "direction": "inbound"}),
    "droplet/bandwidth public outbound": ("get_droplet_bandwidth_metrics", {"interface": "public", "direction": "outbound"}),
    "apps/cpu_percentage": ("get_app_cpu_percentage_metrics", {}),
    "apps/memory_percentage": ("get_app_memory_percentage_metrics", {}),
}

NO_DISK = ("DigitalOcean's monitoring API has no droplet disk I/O metric (only filesystem_free and filesystem_size); "
           "an alarm on it still works (alert policy v1/insights/droplet/{0}), or read it inside the droplet")
NO_REQUESTS = ("droplets have no request count on DigitalOcean: put a load balancer in front (its "
               "frontend_http_requests_per_second metric) or count requests in the application")
APP_ONLY = "DigitalOcean's monitoring API has only cpu_percentage, memory_percentage and restart_count for an app: {}"

# Alert policy type per portable metric and the bytes per second of one native unit (None: percent as is).
ALARM_TYPES = {
    "cpu": ("v1/insights/droplet/cpu", None),
    "memory": ("v1/insights/droplet/memory_utilization_percent", None),
    "network_in": ("v1/insights/droplet/public_inbound_bandwidth", MBPS),
    "network_out": ("v1/insights/droplet/public_outbound_bandwidth", MBPS),
    "disk_read": ("v1/insights/droplet/disk_read", MBYTES),
    "disk_write": ("v1/insights/droplet/disk_write", MBYTES),
}
METRIC_OF_TYPE = {kind: metric for metric, (kind, _unit) in ALARM_TYPES.items()}
WINDOWS = {300: "5m", 600: "10m", 1800: "30m", 3600: "1h"}
WINDOW_SECONDS = {text: seconds for seconds, text in WINDOWS.items()}
MARKER = re.compile(r"^" + ALARM_TAG + r" (?P<name>[a-z][-a-z0-9]*) \((?P<fields>[^()]*)\)(?:: (?P<text>.*))?$", re.S)


# -- metrics -----------------------------------------------------------------------------------------

def _cpu(answers, start, end, period):
    """Percent busy per period from per-mode CPU-seconds counters: 1 - the idle share of each interval's deltas."""
    by_mode = {}
    for labels, samples in answers["droplet/cpu"]:
        by_mode.setdefault(labels.get("mode"), {}).update(samples)
    idle = by_mode.get("idle") or {}
    times = sorted(t for t in idle if all(t in samples for samples in by_mode.values()))
    rates = []
    for before, after in zip(times, times[1:]):
        total = sum(samples[after] - samples[before] for samples in by_mode.values())
        idle_delta = idle[after] - idle[before]
        if total > 0 and 0 <= idle_delta <= total:  # a counter reset (reboot) leaves a gap
            rates.append((before, 100.0 * (1 - idle_delta / total)))
    return resample(rates, start, end, period)


def _memory(answers, start, end, period):
    total = {t: v for _labels, samples in answers["droplet/memory_total"] for t, v in samples.items()}
    used = [(t, 100.0 * (1 - v / total[t])) for _labels, samples in answers["droplet/memory_available"]
            for t, v in samples.items() if total.get(t)]
    return resample(used, start, end, period)


def _bandwidth(native):
    def convert(answers, start, end, period):
        samples = [(t, v * MBPS) for _labels, values in answers[native] for t, v in values.items()]
        return [(t, rate * period) for t, rate in resample(samples, start, end, period)]
    return convert


def _percent(native):
    def convert(answers, start, end, period):  # every instance's samples: the period's mean over instances
        return resample([(t, v) for _labels, values in answers[native] for t, v in values.items()], start, end, period)
    return convert


# Portable metric -> (native name shown, native unit, native metrics fetched, conversion) or a reason it is missing.
DROPLET_METRICS = {
    "cpu": ("droplet/cpu", "CPU seconds per mode (counters)", ("droplet/cpu",), _cpu),
    "memory": ("droplet/memory_available, droplet/memory_total", "bytes",
               ("droplet/memory_available", "droplet/memory_total"), _memory),
    "network_in": ("droplet/bandwidth public inbound", "Mbps", ("droplet/bandwidth public inbound",),
                   _bandwidth("droplet/bandwidth public inbound")),
    "network_out": ("droplet/bandwidth public outbound", "Mbps", ("droplet/bandwidth public outbound",),
                    _bandwidth("droplet/bandwidth public outbound")),
    "disk_read": NO_DISK.format("disk_read"),
    "disk_write": NO_DISK.format("disk_write"),
    "requests": NO_REQUESTS,
}
APP_METRICS = {
    "cpu": ("apps/cpu_percentage", "percent", ("apps/cpu_percentage",), _percent("apps/cpu_percentage")),
    "memory": ("apps/memory_percentage", "percent", ("apps/memory_percentage",), _percent("apps/memory_percentage")),
    "network_in": APP_ONLY.format("measure traffic in the application, or deploy kind vm (droplets have bandwidth)"),
    "network_out": APP_ONLY.format("measure traffic in the application, or deploy kind vm (droplets have bandwidth)"),
    "disk_read": APP_ONLY.format("no disk I/O (App Platform containers have ephemeral disks only)"),
    "disk_write": APP_ONLY.format("no disk I/O (App Platform containers have ephemeral disks only)"),
    "requests": APP_ONLY.format("count requests in the application"),
}


TABLES = {"vm": DROPLET_METRICS, "container": APP_METRICS}


def _table(rec):
    return TABLES[rec.get("kind") or "vm"]


def _fetch(provider, rec, native, start, end):
    """[(labels, {epoch: value})] of one native metric of one resource."""
    method, fixed = CALLS[native]
    who = {"app_id": rec["id"], "app_component": rec["name"]} if native.startswith("apps/") else {"host_id": rec["id"]}
    answer = provider.call(getattr(provider.client.monitoring, method), start=str(start), end=str(end), **who, **fixed)
    if not isinstance(answer, dict) or answer.get("status") != "success":
        detail = answer.get("message") or answer.get("error") if isinstance(answer, dict) else answer
        raise ProviderError(f"reading {native} of {rec['name']} ({rec['id']}): DigitalOcean answered {detail}")
    return [(item.get("metric") or {}, {int(float(t)): float(v) for t, v in item.get("values") or []})
            for item in (answer.get("data") or {}).get("result") or []]


def metrics(provider, records, names, start, end, period):
    """[{metric: series or missing}] aligned with `records`: one call per (resource, native metric), in parallel."""
    jobs = sorted({(index, native) for index, rec in enumerate(records) for name in names
                   if not isinstance(_table(rec)[name], str) for native in _table(rec)[name][2]})
    fetched = dict(zip(jobs, provider.each(
        lambda job: _fetch(provider, records[job[0]], job[1], start, end), jobs)))
    results = []
    for index, rec in enumerate(records):
        answers = {}
        for name in names:
            entry = _table(rec)[name]
            if isinstance(entry, str):
                answers[name] = missing(entry)
                continue
            native_name, unit, natives, convert = entry
            points = convert({native: fetched[(index, native)] for native in natives}, start, end, period)
            answers[name] = series(native_name, unit, points, "average")
        results.append(answers)
    return results


# -- alarms: validation and the policy ---------------------------------------------------------------

def validate_alarm(alarm):
    """What an alert policy cannot express, as SpecError, before any call."""
    if alarm.get("state") == "absent":
        return  # removing needs the name only
    kind = alarm["kind"]
    if kind == "container":
        raise SpecError("kind container: DigitalOcean alert policies watch droplets only; App Platform alerts "
                        "(CPU_UTILIZATION, MEM_UTILIZATION, RESTART_COUNT, ...) are part of the app spec (its "
                        "`alerts`), which lxcri.cloud.alarm does not manage: set them in the app spec")
    if kind != "vm":
        raise SpecError(f"kind {kind}: digitalocean deploys vm and container, and alerts on vm (droplets) only")
    if alarm["metric"] not in ALARM_TYPES:
        raise SpecError(f"metric {alarm['metric']}: DigitalOcean alert policies have no {alarm['metric']} for droplets; "
                        f"use one of {', '.join(ALARM_TYPES)}")
    window = alarm["period"] * alarm["evaluation_periods"]
    if window not in WINDOWS:
        raise SpecError(
            f"period x evaluation_periods is {window} s: a DigitalOcean alert policy's window is 5m, 10m, 30m or 1h "
            "(300, 600, 1800 or 3600 s), e.g. period 5m with evaluation_periods 1, 2 or 6, or period 1m with 5 or 10"
        )
    if alarm["statistic"] != "average":
        raise SpecError(f"statistic {alarm['statistic']}: DigitalOcean alert policies compare the average over their "
                        "window, so statistic must be average")
    if alarm["notify"]["webhooks"]:
        raise SpecError("notify.webhooks: DigitalOcean alert policies notify by email and Slack only (a Slack "
                        "channel needs the DigitalOcean Slack app), not webhooks: use notify.emails")
    if not alarm["notify"]["emails"]:
        raise SpecError("notify.emails: a DigitalOcean alert policy must notify someone (the API refuses a policy "
                        "without email or Slack): give at least one address, of a member of the DigitalOcean team")
    if alarm["tags"]:
        raise SpecError("tags: DigitalOcean alert policies have no labels (their `tags` field selects the droplets "
                        "to watch): leave tags empty and use description to say what the alarm is for")


def describe(alarm, region):
    """The policy description: the collection's marker and settings, then the user's text."""
    head = (f"{ALARM_TAG} {alarm['name']} (region={region} kind={alarm['kind']} "
            f"deployments={','.join(alarm['deployments'])} period={alarm['period']}s "
            f"evaluation_periods={alarm['evaluation_periods']})")
    return f"{head}: {alarm['description']}" if alarm["description"] else head


def parse_description(text):
    """{name, region, kind, deployments, period, evaluation_periods, description} of a collection's policy, or None."""
    match = MARKER.match(text or "")
    if not match:
        return None
    fields = dict(item.split("=", 1) for item in match.group("fields").split() if "=" in item)
    try:
        period = int(fields.get("period", "").rstrip("s"))
        periods = int(fields.get("evaluation_periods", ""))
    except ValueError:
        period, periods = None, None
    return {"name": match.group("name"), "region": fields.get("region"), "kind": fields.get("kind") or "vm",
            "deployments": [name for name in fields.get("deployments", "").split(",") if name],
            "period": period, "evaluation_periods": periods, "description": match.group("text") or ""}


def policy_body(alarm, region, targets):
    kind, unit = ALARM_TYPES[alarm["metric"]]
    period = alarm["period"]
    value = alarm["threshold"] if unit is None else alarm["threshold"] / period / unit
    return {
        "type": kind, "description": describe(alarm, region),
        "compare": "GreaterThan" if alarm["comparison"] == "above" else "LessThan",
        "value": value, "window": WINDOWS[period * alarm["evaluation_periods"]],
        "entities": sorted(str(rec["id"]) for rec in targets), "tags": [],
        "alerts": {"email": list(alarm["notify"]["emails"]), "slack": []}, "enabled": True,
    }


# -- alarms: reading back ----------------------------------------------------------------------------

def _policies(provider):
    """Every alert policy of the account."""
    return provider.pages(provider.client.monitoring.list_alert_policy, "policies", "listing alert policies")


def _ours(provider, region, name=None):
    """{alarm name: [policies]} of the collection's policies in `region` (a name has one unless a create was
    repeated after a lost answer; the extras are removed by the next put or delete)."""
    found = {}
    for policy in _policies(provider):
        parsed = parse_description(policy.get("description"))
        if parsed and parsed["region"] == region and name in (None, parsed["name"]):
            found.setdefault(parsed["name"], []).append(policy)
    return found


def _record(provider, policy, duplicates=()):
    parsed = parse_description(policy["description"])
    metric = METRIC_OF_TYPE.get(policy.get("type"))
    window = WINDOW_SECONDS.get(policy.get("window"))
    period, periods = parsed["period"], parsed["evaluation_periods"]
    if not period or not periods or period * periods != window:
        period, periods = window, 1  # the window was changed elsewhere: report what DigitalOcean evaluates
    threshold = policy.get("value")
    if metric is not None and threshold is not None and ALARM_TYPES[metric][1] is not None and period:
        threshold = float(threshold) * ALARM_TYPES[metric][1] * period
    alerts = policy.get("alerts") or {}
    native = {"alarm": policy["uuid"], "type": policy.get("type"), "window": policy.get("window")}
    if duplicates:
        native["duplicates"] = sorted(duplicates)
    rec = alarm_record(
        provider.name, name=parsed["name"], id=policy["uuid"], region=parsed["region"], metric=metric,
        comparison={"GreaterThan": "above", "LessThan": "below"}.get(policy.get("compare")), threshold=threshold,
        period=period, evaluation_periods=periods, statistic="average", kind=parsed["kind"],
        deployments=parsed["deployments"],
        # tags on a policy widen it to every droplet carrying them: shown as targets, so that a re-run drops them
        targets=[str(e) for e in policy.get("entities") or []] + [f"tag:{t}" for t in policy.get("tags") or []],
        notify={"emails": alerts.get("email") or [], "webhooks": [s.get("url") for s in alerts.get("slack") or []]},
        tags={}, description=parsed["description"], state_source="evaluated", native=native,
    )
    rec["state"], rec["state_reason"] = _state(provider, rec, policy)
    return rec


def _state(provider, rec, policy):
    if not policy.get("enabled"):
        return "unknown", "the alert policy is disabled on DigitalOcean"
    if rec["metric"] not in ("cpu", "memory", "network_in", "network_out") or not rec["period"]:
        return "unknown", ("DigitalOcean keeps no alert state and has no metric to evaluate this policy from; the "
                           "policy itself still notifies")
    try:
        return provider.evaluated_state(rec)
    except ProviderError as exc:
        return "unknown", f"evaluating the metric failed: {exc}"


def find_alarm(provider, name, region):
    policies = _ours(provider, region, name).get(name)
    if not policies:
        return None
    return _record(provider, policies[0], [p["uuid"] for p in policies[1:]])


def list_alarms(provider, region):
    found = _ours(provider, region)
    return provider.each(lambda policies: _record(provider, policies[0], [p["uuid"] for p in policies[1:]]),
                         list(found.values()))


# -- alarms: changing --------------------------------------------------------------------------------

def put_alarm(provider, alarm, region, targets, current):
    """Create the policy (one call: nothing to undo when it fails) or update it in place, dropping duplicates."""
    body = policy_body(alarm, region, targets)
    api = provider.client.monitoring
    if current is None:
        policy = provider.answer(api.create_alert_policy, body=body, key="policy",
                                 what=f"creating alert policy {alarm['name']}")
    else:
        policy = provider.answer(api.update_alert_policy, current["id"], body=body, key="policy",
                                 what=f"updating alert policy {alarm['name']} ({current['id']})")
        _delete(provider, current["native"].get("duplicates") or [])
    return _record(provider, policy)


def delete_alarm(provider, current):
    """The policy (and any duplicate of it); DigitalOcean makes no separate notification resources."""
    _delete(provider, [current["id"]] + list(current["native"].get("duplicates") or []))


def _delete(provider, uuids):
    # A policy that is gone already is fine.
    delete = provider.checked(provider.client.monitoring.delete_alert_policy)
    provider.each(lambda uuid: provider.unless_gone(delete, uuid), uuids)


class Monitoring:
    """The provider's monitoring half (Provider.monitoring): the functions above, for one provider."""

    def __init__(self, provider):
        self.provider = provider

    def metrics(self, records, names, start, end, period):
        return metrics(self.provider, records, names, start, end, period)

    def find_alarm(self, name, region):
        return find_alarm(self.provider, name, region)

    def list_alarms(self, region):
        return list_alarms(self.provider, region)

    def put_alarm(self, alarm, region, targets, current):
        return put_alarm(self.provider, alarm, region, targets, current)

    def delete_alarm(self, current):
        delete_alarm(self.provider, current)
