"""Monitoring of the DigitalOcean emulator: droplet and App Platform metrics, and alert policies.

Metrics (Prometheus-style matrices, ``{"status": "success", "data": {"resultType": "matrix", "result": [...]}}``,
values ``[epoch, "text"]``) are derived from tests/sandbox/metrics.level(key, portable metric, t), keyed by the
droplet id or the app id, one sample per step over the whole window asked for (the sandbox backfills history,
so that a resource made a moment ago already has a window of data), and only while the droplet is active or the
app has an active deployment and is not archived:

* ``droplet/cpu``: per-mode CPU-seconds counters (idle, user, system, ...) since creation; over any interval
  the busy share (every mode but idle) of the counter deltas is level(cpu)/100 of each minute;
* ``droplet/memory_total`` (the size's memory, bytes) and ``droplet/memory_available`` (bytes):
  1 - available/total = level(memory)/100;
* ``droplet/bandwidth`` (Mbps): public inbound/outbound = level(network_in|network_out) bytes/s x 8 / 10^6
  (private: the same signal under the key ``<id>/private``);
* ``apps/cpu_percentage`` and ``apps/memory_percentage`` (percent): one series per instance of the component,
  each level(cpu|memory) of the app id.

The step is a whole number of minutes, the smallest that keeps a series at 1,440 samples or fewer.

Alert policies (``/v2/monitoring/alerts``) are stored as given (validated against the official schema);
droplet policies must name existing droplets in ``entities``. DigitalOcean keeps no alert state, so
``POST /_sandbox/alarm-state {"name", "state"}`` acts on the metric instead, for every policy whose
description starts ``lxcri-alarm <name> `` (the collection's marker): ``alarm`` pins the watched metric of
the policy's droplets past its value (metrics.breaching), ``ok`` pins it within, ``insufficient_data``
stops serving that metric for them. Deleting the policy ends its pins and silences; ``/_sandbox/reset`` forgets policies, pins and
silences.
"""
import calendar
import math
import re
import time
import uuid

from tests.sandbox import metrics
from tests.sandbox.emulators.digitalocean_apps import advance as advance_apps
from tests.sandbox.emulators.digitalocean_core import ApiError, Response, Route, bad_request, not_found, paginate

MAX_SAMPLES = 1440
# Shares of the busy CPU time per mode (they sum to 1); idle is the rest.
BUSY_MODES = {"user": 0.70, "system": 0.18, "iowait": 0.04, "steal": 0.03, "nice": 0.02, "softirq": 0.02,
              "irq": 0.01}
MIB = 1024 * 1024
# Alert policy type -> (portable metric, factor from its native unit to the portable unit per second).
DROPLET_TYPES = {
    "v1/insights/droplet/cpu": ("cpu", 1.0),
    "v1/insights/droplet/memory_utilization_percent": ("memory", 1.0),
    "v1/insights/droplet/public_inbound_bandwidth": ("network_in", 1e6 / 8),  # Mbps -> bytes/s
    "v1/insights/droplet/public_outbound_bandwidth": ("network_out", 1e6 / 8),
    "v1/insights/droplet/disk_read": ("disk_read", 1e6),  # MBps -> bytes/s
    "v1/insights/droplet/disk_write": ("disk_write", 1e6),
}
OTHER_DROPLET_TYPES = ("v1/insights/droplet/load_1", "v1/insights/droplet/load_5", "v1/insights/droplet/load_15",
                       "v1/insights/droplet/disk_utilization_percent", "v1/insights/droplet/private_inbound_bandwidth",
                       "v1/insights/droplet/private_outbound_bandwidth")
COMPARES = ("GreaterThan", "LessThan")
WINDOWS = ("5m", "10m", "30m", "1h")
MARKER = re.compile(r"^lxcri-alarm (\S+) ")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FORCE_STATES = ("alarm", "ok", "insufficient_data")


def setup(state):
    state.data["alert_policies"] = {}  # uuid -> policy
    state.data["metric_silenced"] = set()  # (key, portable metric) served as no data
    state.data["metric_pinned"] = set()  # (key, portable metric) pinned by alarm-state: served over the whole window
    metrics.reset()


def live_ids(state):
    return {"alert_policies": sorted(state.data["alert_policies"])}


# -- series -------------------------------------------------------------------------------------------
def _epoch(iso):
    return calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def _window(request):
    """(start, end) of a metrics query: the UNIX seconds it names, end capped at now."""
    try:
        start, end = int(request.arg("start", "")), int(request.arg("end", ""))
    except ValueError:
        raise bad_request("start and end must be UNIX timestamps (whole seconds)")
    if end < start:
        raise bad_request("end must not be before start")
    return start, min(end, int(time.time()))


def _times(start, end):
    """Sample times: multiples of the step in [start, end]."""
    step = 60 * max(1, math.ceil((end - start) / 60 / MAX_SAMPLES))
    first = -(-start // step) * step
    return list(range(first, end + 1, step))


def _level(key, metric, t):
    """The signal as served: percentages stay within 0..100 even when pinned past them."""
    value = metrics.level(key, metric, t)
    return min(max(value, 0.0), 100.0) if metric in ("cpu", "memory") else value


def _silenced(state, key, metric):
    return (str(key), metric) in state.data["metric_silenced"]


def _matrix(result):
    return Response(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})


def _text(value):
    return format(value, ".15g")


def _droplet(state, request):
    """The active droplet named by host_id, or None (absent, not active)."""
    host = request.arg("host_id", "")
    droplet = state.data["droplets"].get(int(host)) if host.isdigit() else None
    return droplet if droplet is not None and droplet["status"] == "active" else None


def _samples(state, request, metric):
    """(droplet, sample times) of a droplet query, or (None, []) when nothing is served for it."""
    start, end = _window(request)
    droplet = _droplet(state, request)
    if droplet is None or _silenced(state, droplet["id"], metric):
        return None, []
    return droplet, _times(start, end)


def _droplet_series(state, request, metric, labels, value):
    """One series of a droplet: value(droplet, t) at each sample time, or none when nothing is served."""
    droplet, times = _samples(state, request, metric)
    if not times:
        return _matrix([])
    values = [[t, _text(value(droplet, t))] for t in times]
    return _matrix([{"metric": {"host_id": str(droplet["id"]), **labels}, "values": values}])


def droplet_cpu(state, request):
    droplet, times = _samples(state, request, "cpu")
    if not times:
        return _matrix([])
    origin = min(times[0], _epoch(droplet["created_at"]))  # where the counters start from 0
    busy = _busy_seconds(droplet, origin, times)
    result = []
    for mode in ["idle"] + sorted(BUSY_MODES):
        values = []
        for t, seconds in zip(times, busy):
            counter = droplet["vcpus"] * (t - origin) - seconds if mode == "idle" else seconds * BUSY_MODES[mode]
            values.append([t, _text(round(counter, 3))])
        result.append({"metric": {"host_id": str(droplet["id"]), "mode": mode}, "values": values})
    return _matrix(result)


def _busy_seconds(droplet, origin, times):
    """Busy CPU-seconds (all vCPUs) from origin to each sample time: level(cpu)% of each minute, per vCPU."""
    key = str(droplet["id"])
    out, busy, cursor = [], 0.0, origin
    for t in times:
        while cursor < t:
            minute_end = min((cursor // 60 + 1) * 60, t)
            busy += droplet["vcpus"] * (minute_end - cursor) * _level(key, "cpu", cursor) / 100.0
            cursor = minute_end
        out.append(busy)
    return out


def droplet_memory_total(state, request):
    return _droplet_series(state, request, "memory", {}, lambda d, t: d["memory"] * MIB)


def droplet_memory_available(state, request):
    def available(droplet, t):
        return round(droplet["memory"] * MIB * (1 - _level(str(droplet["id"]), "memory", t) / 100.0))
    return _droplet_series(state, request, "memory", {}, available)


def droplet_bandwidth(state, request):
    interface, direction = request.arg("interface"), request.arg("direction")
    if interface not in ("public", "private") or direction not in ("inbound", "outbound"):
        raise bad_request("interface must be public or private and direction inbound or outbound")
    metric = "network_in" if direction == "inbound" else "network_out"

    def mbps(droplet, t):
        key = str(droplet["id"]) if interface == "public" else f"{droplet['id']}/private"
        return _level(key, metric, t) * 8 / 1e6

    return _droplet_series(state, request, metric, {"interface": interface, "direction": direction}, mbps)


def _app_series(metric):
    def handler(state, request):
        start, end = _window(request)
        advance_apps(state)
        app = state.data["apps"].get(request.arg("app_id", ""))
        active = state.data["app_deployments"].get(app.get("_active")) if app else None
        if active is None or (active["spec"].get("maintenance") or {}).get("archive"):
            return _matrix([])  # not deployed, or archived (its components are stopped)
        component = request.arg("app_component")
        services = [s for s in active["spec"].get("services", []) if component in (None, s["name"])]
        times = _times(start, end)
        result = []
        for service in services if times else []:
            values = [[t, _text(_level(app["id"], metric, t))] for t in times]
            for index in range(service.get("instance_count") or 1):
                labels = {"app_component": service["name"], "app_component_instance": f"{service['name']}-{index}",
                          "app_uuid": app["id"]}
                result.append({"metric": labels, "values": values})
        return _matrix(result)
    return handler


# -- alert policies -----------------------------------------------------------------------------------
def _invalid(message):
    return ApiError(400, "bad_request", message)


def _validated_policy(state, body):
    """The policy a create or update body describes, or ApiError as the API answers."""
    required = ("type", "description", "compare", "value", "window", "entities", "tags", "alerts", "enabled")
    absent = [field for field in required if field not in body]
    if absent:
        raise _invalid(f"missing required field(s): {', '.join(absent)}")
    kind = body["type"]
    if kind not in DROPLET_TYPES and kind not in OTHER_DROPLET_TYPES:
        raise ApiError(422, "unprocessable_entity", f"alert policy type {kind!r} is not emulated by the sandbox "
                                                    "(droplet insights types only)")
    if body["compare"] not in COMPARES:
        raise _invalid(f"compare must be one of {', '.join(COMPARES)}")
    if isinstance(body["value"], bool) or not isinstance(body["value"], (int, float)):
        raise _invalid("value must be a number")
    if body["window"] not in WINDOWS:
        raise _invalid(f"window must be one of {', '.join(WINDOWS)}")
    if not isinstance(body["description"], str) or not isinstance(body["enabled"], bool):
        raise _invalid("description must be a string and enabled a boolean")
    for field in ("entities", "tags"):
        if not isinstance(body[field], list) or not all(isinstance(item, str) for item in body[field]):
            raise _invalid(f"{field} must be an array of strings")
    unknown = [e for e in body["entities"] if not e.isdigit() or int(e) not in state.data["droplets"]]
    if unknown:
        raise ApiError(422, "unprocessable_entity", f"entities: no droplet {', '.join(unknown)} in this account")
    alerts = body["alerts"]
    if not isinstance(alerts, dict) or not isinstance(alerts.get("email"), list) \
            or not isinstance(alerts.get("slack"), list):
        raise _invalid("alerts must hold the arrays email and slack")
    if not alerts["email"] and not alerts["slack"]:
        raise _invalid("alerts needs at least one email or slack destination")
    if not all(isinstance(e, str) and EMAIL.match(e) for e in alerts["email"]):
        raise _invalid("alerts.email must hold email addresses")
    for slack in alerts["slack"]:
        if not isinstance(slack, dict) or not isinstance(slack.get("url"), str) \
                or not isinstance(slack.get("channel"), str):
            raise _invalid("alerts.slack items need url and channel")
    return {"type": kind, "description": body["description"], "compare": body["compare"], "value": body["value"],
            "window": body["window"], "entities": list(body["entities"]), "tags": list(body["tags"]),
            "alerts": {"email": list(alerts["email"]),
                       "slack": [{"url": s["url"], "channel": s["channel"]} for s in alerts["slack"]]},
            "enabled": body["enabled"]}


def _policy(state, request):
    policy = state.data["alert_policies"].get(request.params["alert_uuid"])
    if policy is None:
        raise not_found()
    return policy


def list_policies(state, request):
    return paginate(request, list(state.data["alert_policies"].values()), "policies")


def create_policy(state, request):
    policy = dict(_validated_policy(state, request.json_object()), uuid=str(uuid.uuid4()))
    state.data["alert_policies"][policy["uuid"]] = policy
    return Response(200, {"policy": policy})


def get_policy(state, request):
    return Response(200, {"policy": _policy(state, request)})


def update_policy(state, request):
    policy = _policy(state, request)
    policy.update(_validated_policy(state, request.json_object()))
    return Response(200, {"policy": policy})


def delete_policy(state, request):
    policy = state.data["alert_policies"].pop(_policy(state, request)["uuid"])
    metric = DROPLET_TYPES.get(policy["type"], (None,))[0]
    for entity in policy["entities"]:  # what alarm-state did for it ends with it
        state.data["metric_silenced"].discard((entity, metric))
        state.data["metric_pinned"].discard((entity, metric))
        metrics.unpin(entity, metric)
    return Response(204)


# -- /_sandbox/alarm-state ----------------------------------------------------------------------------
def force_alarm_state(state, body):
    """Make the collection's evaluation of alarm `name` show `state`, through the metric it watches."""
    name, wanted = (body or {}).get("name"), (body or {}).get("state")
    if wanted not in FORCE_STATES:
        raise bad_request(f"state must be one of {', '.join(FORCE_STATES)}")
    policies = [p for p in state.data["alert_policies"].values()
                if (MARKER.match(p["description"]) or [None, None])[1] == name]
    if not policies:
        raise ApiError(404, "not_found", f"no alert policy of the collection named {name!r} "
                                         f"(description starting 'lxcri-alarm {name} ')")
    pinned = []
    for policy in policies:
        metric, factor = DROPLET_TYPES.get(policy["type"], (None, None))
        if metric not in ("cpu", "memory", "network_in", "network_out"):
            raise ApiError(422, "unprocessable_entity", f"policy type {policy['type']} watches no metric the sandbox "
                                                        "serves (DigitalOcean has no droplet disk I/O metrics)")
        comparison = "above" if policy["compare"] == "GreaterThan" else "below"
        threshold = policy["value"] * factor  # the portable unit per second, as metrics.level
        value = metrics.breaching(comparison, threshold, metric)[0 if wanted == "alarm" else 1]
        served = min(max(value, 0.0), 100.0) if metric in ("cpu", "memory") else value
        past = served > threshold if comparison == "above" else served < threshold
        if wanted != "insufficient_data" and past != (wanted == "alarm"):
            raise ApiError(422, "unprocessable_entity", f"{metric} cannot be made {wanted} against {threshold:g} in "
                                                        "the sandbox: percentages stay within 0..100")
        for entity in policy["entities"]:
            if wanted == "insufficient_data":
                state.data["metric_silenced"].add((entity, metric))
                state.data["metric_pinned"].discard((entity, metric))
                metrics.unpin(entity, metric)
            else:
                state.data["metric_silenced"].discard((entity, metric))
                state.data["metric_pinned"].add((entity, metric))
                metrics.pin(entity, metric, value)
            pinned.append({"entity": entity, "metric": metric, "value": None if wanted == "insufficient_data" else value})
    return {"name": name, "state": wanted, "policies": sorted(p["uuid"] for p in policies), "pinned": pinned}


SANDBOX = {"alarm-state": force_alarm_state}

ROUTES = [
    Route("GET", "/v2/monitoring/metrics/droplet/cpu", "monitoring.get_DropletCpuMetrics", droplet_cpu),
    Route("GET", "/v2/monitoring/metrics/droplet/memory_total", "monitoring.get_dropletMemoryTotalMetrics",
          droplet_memory_total),
    Route("GET", "/v2/monitoring/metrics/droplet/memory_available", "monitoring.get_dropletMemoryAvailableMetrics",
          droplet_memory_available),
    Route("GET", "/v2/monitoring/metrics/droplet/bandwidth", "monitoring.get_dropletBandwidthMetrics",
          droplet_bandwidth),
    Route("GET", "/v2/monitoring/metrics/apps/cpu_percentage", "monitoring.get_appCPUPercentageMetrics",
          _app_series("cpu")),
    Route("GET", "/v2/monitoring/metrics/apps/memory_percentage", "monitoring.get_appMemoryPercentageMetrics",
          _app_series("memory")),
    Route("GET", "/v2/monitoring/alerts", "monitoring.list_alertPolicy", list_policies),
    Route("POST", "/v2/monitoring/alerts", "monitoring.create_alertPolicy", create_policy),
    Route("GET", "/v2/monitoring/alerts/{alert_uuid}", "monitoring.get_alertPolicy", get_policy),
    Route("PUT", "/v2/monitoring/alerts/{alert_uuid}", "monitoring.update_alertPolicy", update_policy),
    Route("DELETE", "/v2/monitoring/alerts/{alert_uuid}", "monitoring.delete_alertPolicy", delete_policy),
]
