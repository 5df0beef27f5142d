"""Microsoft.Insights of the Azure emulator: platform metrics, metric alerts (+ their status) and action groups.

* ``GET {resourceId}/providers/Microsoft.Insights/metrics`` (``metrics.list``): the platform metrics of a
  VM or a container group, several names per call (``metricnames`` comma separated), every aggregation
  asked for (``average,minimum,maximum,total,count``), in buckets of ``interval`` (PT1M ... P1D) from the
  start of ``timespan``. Values come from tests/sandbox/metrics.py: one sample per minute of
  ``level(key, metric, minute)`` in the native unit, keyed by what the collection's record ``id`` is (a
  VM's vmId, a container group's ARM id). Only while the resource runs, and then over the whole timespan
  (the sandbox backfills history, so that a resource made a moment ago already has a window of data); a
  stopped one's buckets carry their timeStamp only, as Azure answers for minutes without data. A resource
  that does not exist: 404.
* ``metricAlerts`` (api 2018-03-01): PUT answers 200 for create and update (the SDK accepts nothing else),
  DELETE 200 (204 when already gone), PATCH merges, lists by resource group and subscription. The scopes
  must exist. ``GET .../metricAlerts/{name}/status`` (``metricAlerts.status``) evaluates the criteria over
  the last ``windowSize`` of the same signal per scope: ``Unhealthy`` (firing), ``Healthy``, or ``Unknown``
  (no data); one ``currentStatus`` row for a single resource, one row per ``resourceId`` dimension for
  several. ``POST /_sandbox/alarm-state`` (force_state) pins that status until the alert is deleted.
* ``actionGroups`` (api 2023-01-01): PUT 201 / 200, DELETE 200, PATCH merges, lists.
"""
import base64
import copy
import datetime
import math
import time

from .. import metrics as signal
from .azure_arm import ArmError, Response, now_iso
from .azure_routes import ResourceType, register, register_extension

NS = "Microsoft.Insights"
VM = "microsoft.compute/virtualmachines"
GROUP = "microsoft.containerinstance/containergroups"
GRAINS = {"PT1M": 60, "PT5M": 300, "PT15M": 900, "PT30M": 1800, "PT1H": 3600, "PT6H": 21600, "PT12H": 43200,
          "P1D": 86400}
FREQUENCIES = ("PT1M", "PT5M", "PT15M", "PT30M", "PT1H")
AGGREGATIONS = {"average": "average", "minimum": "minimum", "maximum": "maximum", "total": "total",
                "count": "count"}
OPERATORS = {"GreaterThan": lambda v, t: v > t, "GreaterThanOrEqual": lambda v, t: v >= t,
             "LessThan": lambda v, t: v < t, "LessThanOrEqual": lambda v, t: v <= t,
             "Equals": lambda v, t: v == t}
CRITERIA = ("Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
            "Microsoft.Azure.Monitor.MultipleResourceMultipleMetricCriteria",
            "Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria")
# alarm-state of the sandbox CLI -> the status Azure reports
FORCED = {"alarm": "Unhealthy", "ok": "Healthy", "insufficient_data": "Unknown"}


def _cores(res):
    return sum(float(((c.get("properties") or {}).get("resources") or {}).get("requests", {}).get("cpu") or 0)
               for c in res.props.get("containers") or [])


def _memory_bytes(res):
    return sum(float(((c.get("properties") or {}).get("resources") or {}).get("requests", {}).get("memoryInGB") or 0)
               for c in res.props.get("containers") or []) * 1024 ** 3


# native metric -> (unit, primary aggregation, value at minute t of resource res keyed `key`)
CATALOG = {
    VM: {
        "Percentage CPU": ("Percent", "average", lambda key, res, t: signal.level(key, "cpu", t)),
        "Available Memory Percentage": ("Percent", "average", lambda key, res, t: 100 - signal.level(key, "memory", t)),
        "Network In Total": ("Bytes", "total", lambda key, res, t: signal.level(key, "network_in", t) * 60),
        "Network Out Total": ("Bytes", "total", lambda key, res, t: signal.level(key, "network_out", t) * 60),
        "Disk Read Bytes": ("Bytes", "total", lambda key, res, t: signal.level(key, "disk_read", t) * 60),
        "Disk Write Bytes": ("Bytes", "total", lambda key, res, t: signal.level(key, "disk_write", t) * 60),
    },
    GROUP: {
        "CpuUsage": ("Count", "average", lambda key, res, t: signal.level(key, "cpu", t) / 100 * _cores(res) * 1000),
        "MemoryUsage": ("Bytes", "average",
                        lambda key, res, t: signal.level(key, "memory", t) / 100 * _memory_bytes(res)),
        "NetworkBytesReceivedPerSecond": ("Bytes", "average", lambda key, res, t: signal.level(key, "network_in", t)),
        "NetworkBytesTransmittedPerSecond": ("Bytes", "average",
                                             lambda key, res, t: signal.level(key, "network_out", t)),
    },
}


def _epoch(text):
    return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def _stamp():
    """Now as Azure Monitor writes it, to the millisecond (msrest models give back the same text)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _bad(message, code="BadRequest"):
    return ArmError(400, code, message)


def source(res):
    """The metrics key of a resource whose metrics are served now (a running VM or container group), else None."""
    kind = res.rtype.full_type.lower()
    if kind == VM:
        return res.props.get("vmId") if res.private.get("power", "running") == "running" else None
    if kind == GROUP:
        return res.id if res.private.get("state") == "Running" and res.private.get("started") else None
    return None


def samples(res, metric, start, end):
    """[per-minute values of a native metric] in [start, end), only where the resource has data."""
    key = source(res)
    if key is None:
        return []
    value = CATALOG[res.rtype.full_type.lower()][metric][2]
    first = int(start) // 60 * 60
    last = min(end, time.time())
    return [value(key, res, t) for t in range(first, int(math.ceil(last)), 60) if t >= start]


def aggregate(values, how):
    if not values:
        return None
    return {"average": sum(values) / len(values), "minimum": min(values), "maximum": max(values),
            "total": sum(values), "count": float(len(values))}[how]


# ------------------------------------------------------------------ metrics


def _duration(text, allowed, what):
    seconds = GRAINS.get(str(text or "").upper())
    if seconds is None or str(text).upper() not in allowed:
        raise _bad(f"Invalid {what} '{text}'. Supported values: {', '.join(allowed)}.")
    return seconds


def metrics_list(arm, req, route):
    if req.method != "GET" or len(route.extra[2]) != 2:
        raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported for {req.path}.")
    if route.rg is None:
        raise _bad("Metrics are served for resources only in the sandbox: give a resource id.")
    rid = f"/subscriptions/{route.sub}/resourceGroups/{route.rg}/providers/{route.ns}/{'/'.join(route.extra[1])}"
    res = arm.get(rid)
    if res is None:
        raise ArmError(404, "ResourceNotFound", f"The Resource '{route.ns}/{'/'.join(route.extra[1])}' under resource "
                                                f"group '{route.rg}' was not found.")
    catalog = CATALOG.get(res.rtype.full_type.lower(), {})
    names = [n.strip() for n in (req.param("metricnames") or next(iter(catalog), "")).split(",") if n.strip()]
    unknown = [n for n in names if n not in catalog]
    if unknown or not names:
        raise _bad(f"Failed to find metric configuration for provider: {res.rtype.namespace}, resource Type: "
                   f"{res.rtype.type_path}, metric: {', '.join(unknown)}, Valid metrics: {', '.join(catalog)}")
    interval = str(req.param("interval") or "PT1M").upper()
    step = _duration(interval, tuple(GRAINS), "interval")
    try:
        start_text, end_text = (req.param("timespan") or "").split("/")
        start, end = _epoch(start_text), _epoch(end_text)
    except ValueError:
        end = time.time() // 60 * 60
        start = end - 3600
        start_text, end_text = now_iso(start), now_iso(end)
    if end <= start:
        raise _bad(f"Invalid timespan '{req.param('timespan')}': the end must come after the start.")
    asked = [a.strip().lower() for a in (req.param("aggregation") or "").split(",") if a.strip()]
    bad = [a for a in asked if a not in AGGREGATIONS]
    if bad:
        raise _bad(f"Invalid aggregation '{', '.join(bad)}'. Supported values: {', '.join(AGGREGATIONS)}.")
    value = []
    for name in names:
        unit, primary, _ = catalog[name]
        data = []
        for bucket in range(int(start), int(end), step):
            point = {"timeStamp": now_iso(bucket).replace("+00:00", "Z")}
            values = samples(res, name, bucket, min(bucket + step, end))
            for how in asked or [primary]:
                if values:
                    point[AGGREGATIONS[how]] = aggregate(values, how)
            data.append(point)
        value.append({"id": f"{rid}/providers/Microsoft.Insights/metrics/{name}", "type": "Microsoft.Insights/metrics",
                      "name": {"value": name, "localizedValue": name}, "displayDescription": "", "unit": unit,
                      "timeseries": [{"metadatavalues": [], "data": data}], "errorCode": "Success"})
    return Response(200, {"cost": len(names) * max(1, int(end - start) // 60), "timespan": f"{start_text}/{end_text}",
                          "interval": interval, "namespace": res.rtype.full_type, "resourceregion": res.location,
                          "value": value})


register_extension(NS, "metrics", metrics_list, {"GET": "list"})


# ------------------------------------------------------------------ metric alerts


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _criteria(body_props):
    criteria = body_props.get("criteria")
    if not isinstance(criteria, dict) or criteria.get("odata.type") not in CRITERIA:
        raise _bad(f"criteria.odata.type must be one of {', '.join(CRITERIA)}.")
    items = criteria.get("allOf")
    if not isinstance(items, list) or not items:
        raise _bad("criteria.allOf must list at least one criterion.")
    for item in items:
        if item.get("criterionType") == "StaticThresholdCriterion":
            if item.get("operator") not in OPERATORS:
                raise _bad(f"Invalid operator '{item.get('operator')}'. Supported values: {', '.join(OPERATORS)}.")
            if not isinstance(item.get("threshold"), (int, float)) or isinstance(item.get("threshold"), bool):
                raise _bad(f"The threshold of criterion '{item.get('name')}' must be a number.")
        elif item.get("criterionType") != "DynamicThresholdCriterion":
            raise _bad(f"Invalid criterionType '{item.get('criterionType')}'.")
        aggregation = item.get("timeAggregation")
        if str(aggregation).lower() not in AGGREGATIONS:
            raise _bad(f"Invalid timeAggregation '{aggregation}'. Supported values: Average, Count, Minimum, Maximum, "
                       "Total.")
        if not item.get("name") or not item.get("metricName"):
            raise _bad("Every criterion needs a name and a metricName.")
    return criteria


def _evaluate(arm, alert, scope):
    """Healthy / Unhealthy / Unknown of one scope of an alert from the sandbox signal over its window."""
    res = arm.get(scope)
    catalog = CATALOG.get(res.rtype.full_type.lower(), {}) if res is not None else {}
    window = GRAINS.get(str(alert.props.get("windowSize")).upper(), 300)
    now = time.time() // 60 * 60
    firing = []
    for item in alert.props["criteria"]["allOf"]:
        if item.get("criterionType") != "StaticThresholdCriterion" or item.get("metricName") not in catalog:
            return "Unknown"
        value = aggregate(samples(res, item["metricName"], now - window, now), str(item["timeAggregation"]).lower())
        if value is None:
            return "Unknown"
        firing.append(OPERATORS[item["operator"]](value, item["threshold"]))
    return "Unhealthy" if all(firing) else "Healthy"


class MetricAlerts(ResourceType):
    namespace, type_path, op, state_key = NS, "metricAlerts", "metricAlerts", "metricAlerts"
    put_async, create_status, update_status = False, 200, 200  # the SDK accepts 200 only
    delete_async, provisioning_state = False, False
    patch_mode, patch_op = "merge", "update"
    list_ops = ("listByResourceGroup", "listBySubscription")
    views = {"status": ("status", "status")}

    def build(self, arm, req, rid, existing, body):
        if body["location"] != "global":
            raise _bad(f"The location '{body['location']}' is invalid: metric alerts live in location 'global'.",
                       "LocationNotAvailableForResourceType")
        props = copy.deepcopy(body.get("properties") or {})
        for key, kind in (("severity", int), ("enabled", bool), ("scopes", list), ("evaluationFrequency", str),
                          ("windowSize", str)):
            if not isinstance(props.get(key), kind):
                raise _bad(f"The property '{key}' is required ({kind.__name__}).")
        if not 0 <= props["severity"] <= 4:
            raise _bad(f"Invalid severity {props['severity']}: use 0 to 4.")
        frequency = _duration(props["evaluationFrequency"], FREQUENCIES, "evaluationFrequency")
        if _duration(props["windowSize"], tuple(GRAINS), "windowSize") < frequency:
            raise _bad("The windowSize must be at least the evaluationFrequency.")
        criteria = _criteria(props)
        scopes = props["scopes"]
        if not scopes:
            raise _bad("The scopes of a metric alert cannot be empty.")
        for scope in scopes:
            if arm.get(scope) is None:
                raise _bad(f"The scope '{scope}' of the alert rule does not exist.", "ScopeNotFound")
        if len(scopes) > 1:
            if criteria["odata.type"].endswith("SingleResourceMultipleMetricCriteria"):
                raise _bad("Alerts on several resources need MultipleResourceMultipleMetricCriteria.")
            if not props.get("targetResourceType") or not props.get("targetResourceRegion"):
                raise _bad("Alerts on several resources need targetResourceType and targetResourceRegion.")
        props.setdefault("autoMitigate", True)
        props.setdefault("actions", [])
        props["lastUpdatedTime"] = _stamp()
        props["isMigrated"] = False
        doc = {"id": rid, "name": rid.rsplit("/", 1)[-1], "type": "Microsoft.Insights/metricAlerts",
               "location": "global", "tags": copy.deepcopy(body.get("tags") or {}), "properties": props}
        return doc, None

    def status(self, arm, req, res):
        scopes = res.props.get("scopes") or []
        single = len(scopes) == 1 and res.props["criteria"]["odata.type"].endswith("SingleResourceMultipleMetricCriteria")
        stamp = _stamp()
        rows = []
        for scope in scopes:
            status = res.private.get("forced") or _evaluate(arm, res, scope)
            name, dimensions = ("currentStatus", {}) if single else (f"resourceId={scope}", {"resourceId": scope})
            rows.append({"id": res.id, "name": _b64(name), "type": "Microsoft.Insights/metricAlerts/status",
                         "properties": {"dimensions": dimensions, "status": status, "timestamp": stamp}})
        return Response(200, {"value": rows})


METRIC_ALERTS = register(MetricAlerts())


def force_state(arm, body):
    """POST /_sandbox/alarm-state {"name", "state": alarm|ok|insufficient_data}: every metric alert of that
    name reports that status (Unhealthy / Healthy / Unknown) until it is deleted."""
    name, state = (body or {}).get("name"), (body or {}).get("state")
    if state not in FORCED:
        return 400, {"error": {"code": "BadRequest", "message": f"state must be one of {', '.join(FORCED)}"}}
    with arm.lock:
        alerts = [res for res in arm.of_type(NS, "metricAlerts") if res.name == name]
        for res in alerts:
            res.private["forced"] = FORCED[state]
    if not alerts:
        return 404, {"error": {"code": "ResourceNotFound", "message": f"no metric alert named {name!r}"}}
    return 200, {"alarm": name, "state": state, "status": FORCED[state], "ids": [res.id for res in alerts]}


# ------------------------------------------------------------------ action groups


class ActionGroups(ResourceType):
    namespace, type_path, op, state_key = NS, "actionGroups", "actionGroups", "actionGroups"
    put_async, create_status, update_status = False, 201, 200
    delete_async, provisioning_state = False, False
    patch_mode, patch_op = "merge", "update"
    list_ops = ("listByResourceGroup", "listBySubscriptionId")
    RECEIVERS = ("emailReceivers", "smsReceivers", "webhookReceivers", "itsmReceivers", "azureAppPushReceivers",
                 "automationRunbookReceivers", "voiceReceivers", "logicAppReceivers", "azureFunctionReceivers",
                 "armRoleReceivers", "eventHubReceivers")

    def build(self, arm, req, rid, existing, body):
        props = copy.deepcopy(body.get("properties") or {})
        short = props.get("groupShortName")
        if not isinstance(short, str) or not 1 <= len(short) <= 12:
            raise _bad(f"The groupShortName '{short}' is invalid: 1 to 12 characters.")
        if not isinstance(props.get("enabled"), bool):
            raise _bad("The property 'enabled' is required (bool).")
        seen = set()
        for kind in self.RECEIVERS:
            receivers = props.setdefault(kind, [])
            for receiver in receivers:
                name = receiver.get("name")
                if not name or name.lower() in seen:
                    raise _bad(f"Receiver names must be given and unique in an action group: '{name}'.")
                seen.add(name.lower())
                if kind == "emailReceivers":
                    if "@" not in str(receiver.get("emailAddress") or ""):
                        raise _bad(f"The email address of receiver '{name}' is invalid.")
                    receiver["status"] = "Enabled"
                if kind == "webhookReceivers" and not str(receiver.get("serviceUri") or "").startswith(("http://",
                                                                                                       "https://")):
                    raise _bad(f"The serviceUri of receiver '{name}' must be an http(s) URL.")
        doc = {"id": rid, "name": rid.rsplit("/", 1)[-1], "type": "Microsoft.Insights/ActionGroups",
               "location": body["location"], "tags": copy.deepcopy(body.get("tags") or {}), "properties": props}
        return doc, None


register(ActionGroups())
