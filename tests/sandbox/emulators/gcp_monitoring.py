"""Cloud Monitoring API v3 (REST) service of the GCP emulator: time series of the emulator's own VMs and
Cloud Run services, alert policies and notification channels.

What a client (REST, e.g. google-auth's AuthorizedSession) sees, as Cloud Monitoring does it:

* ``GET /v3/projects/P/timeSeries``: ``filter`` with exactly one ``metric.type``, ``interval.endTime``
  (``interval.startTime``), ``aggregation.alignmentPeriod`` / ``perSeriesAligner`` / ``crossSeriesReducer``
  / ``groupByFields``, ``view``, ``pageSize`` (points) and ``pageToken``. Points come newest first with
  ``interval.endTime`` at the end of each alignment period; values are ``doubleValue`` or ``int64Value``
  (a decimal string). The filter language understood is the part of Monitoring's that the collection
  writes: restrictions joined by ``AND``, each ``FIELD = "value"`` or ``FIELD = one_of("a", "b", ...)``
  (at most 100 values) on ``metric.type``, ``resource.type``, ``resource.labels.KEY`` and
  ``metric.labels.KEY``. Anything else is refused with a 400 that says so.
* The data: every native metric below is served from tests/sandbox/metrics.py ``level(key, metric, t)``,
  one sample a minute, keyed by the record ``id`` the collection shows (the GCE instance id, the Cloud
  Run service uid), for instances that are RUNNING and services that have a ready revision and are not
  scaled to zero, over the whole window asked for up to now (the sandbox backfills history, so that a
  resource made a moment ago already has a window of data); a metric pinned to NaN
  (``/_sandbox/alarm-state insufficient_data``) has no samples at all.

  ====================================================  =====  ============  ================  ======
  metric type                                           kind   value         per-minute sample  level
  ====================================================  =====  ============  ================  ======
  compute.googleapis.com/instance/cpu/utilization        GAUGE  DOUBLE        level / 100       cpu
  compute.googleapis.com/instance/network/received_...   DELTA  INT64 By      level x 60        network_in
  compute.googleapis.com/instance/network/sent_bytes_..  DELTA  INT64 By      level x 60        network_out
  compute.googleapis.com/instance/disk/read_bytes_count  DELTA  INT64 By      level x 60        disk_read
  compute.googleapis.com/instance/disk/write_bytes_count DELTA  INT64 By      level x 60        disk_write
  agent.googleapis.com/memory/percent_used               GAUGE  DOUBLE %      (no Ops Agent: no data)
  run.googleapis.com/container/cpu/utilizations         DELTA  DISTRIBUTION  level / 100       cpu
  run.googleapis.com/container/memory/utilizations      DELTA  DISTRIBUTION  level / 100       memory
  run.googleapis.com/container/network/received_bytes_.. DELTA  INT64 By      level x 60        network_in
  run.googleapis.com/container/network/sent_bytes_count  DELTA  INT64 By      level x 60        network_out
  run.googleapis.com/request_count                      DELTA  INT64 1       level x 60        requests
  ====================================================  =====  ============  ================  ======

  Distributions are served aligned only (ALIGN_MEAN, ALIGN_PERCENTILE_*), as DOUBLE.
* ``alertPolicies`` and ``notificationChannels``: create, get, list (``filter``: ``FIELD = "value"``
  joined by ``AND`` on ``display_name``, ``type`` and ``user_labels.KEY``), patch (``updateMask``, or the
  whole resource without one) and delete. Policies take ``conditionThreshold`` conditions whose filter
  and aggregations are checked as a time series query; their notification channels must exist; a
  channel used by a policy is deleted only with ``force=true``. Channel types: email (email_address),
  webhook_tokenauth (url), pubsub (topic). Labels follow the GCP label rules.
* ``POST /_sandbox/alarm-state {"name", "state"}``: Cloud Monitoring keeps no alarm state in this API,
  so the watched metric of the policy's targets is pinned: ``alarm`` past the threshold, ``ok`` within
  it (metrics.breaching), ``insufficient_data`` to NaN (no samples); deleting the policy unpins what it
  pinned. ``/_sandbox/reset`` clears policies, channels and pins; ``/_sandbox/state`` lists ``alert_policies`` and ``notification_channels``
  when there are any.
* Errors are google.rpc.Status JSON: ``{"error": {"code", "message", "status", "details"}}``.
"""
import base64
import collections
import copy
import datetime
import json
import math
import re
import threading
import time

from .. import metrics
from .gcp_common import ApiError, check_labels, compile_routes, new_id, operation_of
from .gcp_compute import ComputeService
from .gcp_run import RunError, RunService, bad_request, rfc3339

_BASE = r"^/v3/projects/(?P<project>[^/:]+)/"
_ROUTES = [  # (method, path after projects/{project}/, discovery method id, handler)
    ("GET", "timeSeries", "monitoring.projects.timeSeries.list", "series_list"),
    ("POST", "alertPolicies", "monitoring.projects.alertPolicies.create", "policies_create"),
    ("GET", "alertPolicies", "monitoring.projects.alertPolicies.list", "policies_list"),
    ("GET", "alertPolicies/{resource_id}", "monitoring.projects.alertPolicies.get", "policies_get"),
    ("PATCH", "alertPolicies/{resource_id}", "monitoring.projects.alertPolicies.patch", "policies_patch"),
    ("DELETE", "alertPolicies/{resource_id}", "monitoring.projects.alertPolicies.delete", "policies_delete"),
    ("POST", "notificationChannels", "monitoring.projects.notificationChannels.create", "channels_create"),
    ("GET", "notificationChannels", "monitoring.projects.notificationChannels.list", "channels_list"),
    ("GET", "notificationChannels/{resource_id}", "monitoring.projects.notificationChannels.get", "channels_get"),
    ("PATCH", "notificationChannels/{resource_id}", "monitoring.projects.notificationChannels.patch", "channels_patch"),
    ("DELETE", "notificationChannels/{resource_id}", "monitoring.projects.notificationChannels.delete", "channels_delete"),
]
COMPILED = compile_routes(_BASE, _ROUTES)
PREFIX = "/v3/"

Native = collections.namedtuple("Native", "resource kind value unit level factor labels")
_VM, _RUN = "gce_instance", "cloud_run_revision"
# Metric labels; "{...}" are filled in from the resource (Resource.metric_labels).
_NAMED = {"instance_name": "{instance_name}"}
_DISK = {**_NAMED, "device_name": "{device_name}", "storage_type": "pd-standard", "device_type": "permanent"}
CATALOG = {
    "compute.googleapis.com/instance/cpu/utilization": Native(_VM, "GAUGE", "DOUBLE", "10^2.%", "cpu", 0.01, _NAMED),
    "compute.googleapis.com/instance/network/received_bytes_count":
        Native(_VM, "DELTA", "INT64", "By", "network_in", 60, {**_NAMED, "loadbalanced": "false"}),
    "compute.googleapis.com/instance/network/sent_bytes_count":
        Native(_VM, "DELTA", "INT64", "By", "network_out", 60, {**_NAMED, "loadbalanced": "false"}),
    "compute.googleapis.com/instance/disk/read_bytes_count":
        Native(_VM, "DELTA", "INT64", "By", "disk_read", 60, _DISK),
    "compute.googleapis.com/instance/disk/write_bytes_count":
        Native(_VM, "DELTA", "INT64", "By", "disk_write", 60, _DISK),
    "agent.googleapis.com/memory/percent_used": Native(_VM, "GAUGE", "DOUBLE", "%", None, 1, {"state": "used"}),
    "run.googleapis.com/container/cpu/utilizations": Native(_RUN, "DELTA", "DISTRIBUTION", "10^2.%", "cpu", 0.01, {}),
    "run.googleapis.com/container/memory/utilizations":
        Native(_RUN, "DELTA", "DISTRIBUTION", "10^2.%", "memory", 0.01, {}),
    "run.googleapis.com/container/network/received_bytes_count":
        Native(_RUN, "DELTA", "INT64", "By", "network_in", 60, {"kind": "internet"}),
    "run.googleapis.com/container/network/sent_bytes_count":
        Native(_RUN, "DELTA", "INT64", "By", "network_out", 60, {"kind": "internet"}),
    "run.googleapis.com/request_count":
        Native(_RUN, "DELTA", "INT64", "1", "requests", 60, {"response_code": "200", "response_code_class": "2xx",
                                                             "route_type": "default"}),
}
# Aligners: (what they take: "numeric" | "distribution" | "delta", how a bucket becomes one value)
ALIGNERS = {
    "ALIGN_MEAN": ("any", lambda v, p: sum(v) / len(v)),
    "ALIGN_SUM": ("numeric", lambda v, p: sum(v)),
    "ALIGN_DELTA": ("delta", lambda v, p: sum(v)),
    "ALIGN_RATE": ("delta", lambda v, p: sum(v) / p),
    "ALIGN_MAX": ("numeric", lambda v, p: max(v)),
    "ALIGN_MIN": ("numeric", lambda v, p: min(v)),
    "ALIGN_COUNT": ("any", lambda v, p: len(v)),
    "ALIGN_PERCENTILE_99": ("distribution", lambda v, p: _percentile(v, 99)),
    "ALIGN_PERCENTILE_95": ("distribution", lambda v, p: _percentile(v, 95)),
    "ALIGN_PERCENTILE_50": ("distribution", lambda v, p: _percentile(v, 50)),
    "ALIGN_PERCENTILE_05": ("distribution", lambda v, p: _percentile(v, 5)),
}
REDUCERS = {"REDUCE_MEAN": lambda v: sum(v) / len(v), "REDUCE_SUM": sum, "REDUCE_MAX": max, "REDUCE_MIN": min,
            "REDUCE_COUNT": len}
COMPARISONS = ("COMPARISON_GT", "COMPARISON_GE", "COMPARISON_LT", "COMPARISON_LE", "COMPARISON_EQ", "COMPARISON_NE")
COMBINERS = ("AND", "OR", "AND_WITH_MATCHING_RESOURCE")
CHANNEL_TYPES = {"email": {"email_address"}, "webhook_tokenauth": {"url"}, "pubsub": {"topic"}}
POLICY_FIELDS = ("displayName", "documentation", "userLabels", "conditions", "combiner", "enabled",
                 "notificationChannels", "severity", "alertStrategy")
CHANNEL_FIELDS = ("displayName", "description", "labels", "userLabels", "enabled")
MAX_ONE_OF = 100
MAX_CONDITION_SECONDS = 86400
DEFAULT_PAGE_POINTS = 100000
SAMPLE = 60  # seconds between two samples of every metric here


def operation(method, path):
    return operation_of(COMPILED, method, path)


def _percentile(values, rank):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(rank / 100 * len(ordered)) - 1))]


def _not_found(what):
    return RunError(404, f"{what} does not exist.", "NOT_FOUND")


# ------------------------------------------------------------------------------------------ filters
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<punct>[(),=])|(?P<word>[A-Za-z_][-A-Za-z0-9_.]*))')


def _tokens(text, field):
    pos, out, text = 0, [], text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise bad_request(f"The filter '{text}' could not be parsed near '{text[pos:pos + 20]}' (the lxcri sandbox "
                              "understands FIELD = \"value\" and FIELD = one_of(\"a\", ...) joined by AND).", field)
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        out.append((kind, json.loads(value) if kind == "str" else value))
    return out


def parse_filter(text, fields, field="filter"):
    """{field path: set of accepted values} of a filter made of `FIELD = "v"` / `FIELD = one_of(...)`
    restrictions joined by AND; `fields(path)` says whether a path may be filtered on."""
    tokens, pos, out = _tokens(text or "", field), 0, {}

    def take(kind=None, value=None):
        nonlocal pos
        tok = tokens[pos] if pos < len(tokens) else (None, None)
        if (kind and tok[0] != kind) or (value and tok[1] != value):
            raise bad_request(f"The filter '{text}' is not understood by the lxcri sandbox at token {pos + 1} "
                              f"({tok[1]!r}): it takes FIELD = \"value\" and FIELD = one_of(\"a\", ...) joined by "
                              "AND.", field)
        pos += 1
        return tok[1]

    while True:
        path = take("word")
        if path in ("AND", "OR", "NOT") or not fields(path):
            raise bad_request(f"The filter '{text}' restricts '{path}', which cannot be filtered on here.", field)
        take("punct", "=")
        if pos < len(tokens) and tokens[pos] == ("word", "one_of"):
            take()
            take("punct", "(")
            values = [take("str")]
            while pos < len(tokens) and tokens[pos] == ("punct", ","):
                take()
                values.append(take("str"))
            take("punct", ")")
            if len(values) > MAX_ONE_OF:
                raise bad_request(f"one_of takes at most {MAX_ONE_OF} values, got {len(values)}.", field)
        else:
            values = [take("str")]
        if path in out:
            raise bad_request(f"The filter '{text}' restricts '{path}' twice.", field)
        out[path] = set(values)
        if pos == len(tokens):
            return out
        take("word", "AND")


def _series_field(path):
    return path in ("metric.type", "resource.type") or re.match(r"(resource|metric)\.labels?\.[a-z][a-z0-9_]*\Z", path)


def _canonical(path):
    return re.sub(r"^(resource|metric)\.label\.", r"\1.labels.", path)


def series_filter(text, field="filter"):
    """(metric type, its Native, {resource.labels.K / metric.labels.K / resource.type: values})."""
    wanted = {_canonical(path): values for path, values in parse_filter(text, _series_field, field).items()}
    types = wanted.pop("metric.type", None)
    if not types or len(types) != 1:
        raise bad_request("A time series filter must name exactly one metric type: metric.type = \"...\".", field)
    metric_type = next(iter(types))
    if metric_type not in CATALOG:
        raise RunError(404, f"Cannot find metric(s) that match type = \"{metric_type}\" (the lxcri sandbox serves "
                       f"{', '.join(sorted(CATALOG))}).", "NOT_FOUND")
    return metric_type, CATALOG[metric_type], wanted


def _list_field(path):
    return path in ("display_name", "type") or re.match(r"user_labels\.[a-z][-a-z0-9_]*\Z", path)


def list_predicate(text):
    """A predicate over alert policies / notification channels for the sorting-and-filtering language
    subset `display_name|type|user_labels.KEY = "value"` joined by AND."""
    if not (text or "").strip():
        return lambda item: True
    wanted = parse_filter(text, _list_field)

    def value(item, path):
        if path.startswith("user_labels."):
            return (item.get("userLabels") or {}).get(path.split(".", 1)[1])
        return item.get({"display_name": "displayName"}.get(path, path))
    return lambda item: all(value(item, path) in values for path, values in wanted.items())


# --------------------------------------------------------------------------------------- times
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z")
_DURATION = re.compile(r"(\d+(?:\.\d{1,9})?)s\Z")


def parse_time(text, field):
    match = _TIME.match(text or "")
    if not match:
        raise bad_request(f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Timestamp), \"{text}\"",
                          field)
    zone = "+00:00" if match.group(3) in "Zz" else match.group(3)
    moment = datetime.datetime.fromisoformat(match.group(1).replace("t", "T") + zone)
    return moment.timestamp() + float(match.group(2) or 0)


def parse_duration(text, field):
    match = _DURATION.match(text or "")
    if not match:
        raise bad_request(f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), \"{text}\"",
                          field)
    return float(match.group(1))


def _zulu(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------ aggregation
Aggregation = collections.namedtuple("Aggregation", "period aligner reducer group_by")


def parse_aggregation(get, native, where):
    """The Aggregation of a query (`get(name)` reads alignmentPeriod, perSeriesAligner, crossSeriesReducer,
    groupByFields), checked against the metric as Cloud Monitoring checks it."""
    aligner = get("perSeriesAligner") or "ALIGN_NONE"
    reducer = get("crossSeriesReducer") or "REDUCE_NONE"
    group_by = [_canonical(path) for path in get("groupByFields") or []]
    period = get("alignmentPeriod")
    if aligner == "ALIGN_NONE":
        if reducer != "REDUCE_NONE":
            raise bad_request("A cross-series reducer needs a per-series aligner other than ALIGN_NONE.",
                              f"{where}.perSeriesAligner")
        if native.value == "DISTRIBUTION":
            raise bad_request("The lxcri sandbox serves distribution metrics aligned only (ALIGN_MEAN or "
                              "ALIGN_PERCENTILE_*).", f"{where}.perSeriesAligner")
        return Aggregation(None, None, None, [])
    if aligner not in ALIGNERS:
        raise bad_request(f"The aligner {aligner} is not emulated by the lxcri sandbox (it has "
                          f"{', '.join(ALIGNERS)}).", f"{where}.perSeriesAligner")
    takes = ALIGNERS[aligner][0]
    distribution = native.value == "DISTRIBUTION"
    if (takes == "numeric" and distribution) or (takes == "distribution" and not distribution) or (
            takes == "delta" and native.kind != "DELTA") or (aligner in ("ALIGN_SUM", "ALIGN_DELTA") and distribution):
        raise bad_request(f"The aligner {aligner} is not valid for the {native.kind} {native.value} metric in "
                          f"'{where}'.", f"{where}.perSeriesAligner")
    if not period:
        raise bad_request("The alignment period is required when an aligner is set.", f"{where}.alignmentPeriod")
    seconds = parse_duration(period, f"{where}.alignmentPeriod")
    if seconds < 60 or seconds % 60:
        raise bad_request(f"The alignment period must be a whole number of minutes, at least 60s, got {period}.",
                          f"{where}.alignmentPeriod")
    if reducer != "REDUCE_NONE" and reducer not in REDUCERS:
        raise bad_request(f"The reducer {reducer} is not emulated by the lxcri sandbox (it has "
                          f"{', '.join(REDUCERS)}).", f"{where}.crossSeriesReducer")
    for path in group_by:
        if not re.match(r"(resource|metric)\.labels\.[a-z][a-z0-9_]*\Z", path):
            raise bad_request(f"Cannot group by '{path}': use resource.labels.KEY or metric.labels.KEY.",
                              f"{where}.groupByFields")
    return Aggregation(int(seconds), aligner, None if reducer == "REDUCE_NONE" else reducer, group_by)


def _out_value(native, aggregation):
    """(valueType, metricKind) of the aligned (and reduced) points."""
    if aggregation.aligner is None:
        return native.value, native.kind
    if aggregation.aligner in ("ALIGN_MEAN", "ALIGN_RATE") or aggregation.aligner.startswith("ALIGN_PERCENTILE") or (
            aggregation.reducer == "REDUCE_MEAN"):
        value = "DOUBLE"
    elif aggregation.aligner == "ALIGN_COUNT" or aggregation.reducer == "REDUCE_COUNT":
        value = "INT64"
    else:
        value = native.value
    return value, "GAUGE" if aggregation.aligner == "ALIGN_RATE" else native.kind


def level_threshold(native, aggregation, threshold):
    """The metrics.level value (per second units) at which an aligned point of this native metric equals
    `threshold`: how /_sandbox/alarm-state pins a metric past or within a policy's threshold."""
    per_sample = threshold / native.factor
    if aggregation.aligner in ("ALIGN_SUM", "ALIGN_DELTA"):
        return per_sample * SAMPLE / aggregation.period
    if aggregation.aligner == "ALIGN_RATE":
        return per_sample * SAMPLE
    return per_sample


# ------------------------------------------------------------------------------------- the service
Resource = collections.namedtuple("Resource", "type key labels metric_labels")


class MonitoringService:
    routes = COMPILED
    prefix = PREFIX

    def __init__(self, provision_seconds=0.0, wait_seconds=2.0, link_base=None, clock=time.time):
        self.clock = clock
        self.lock = threading.RLock()
        self.compute = self.run = None
        self.policies, self.channels, self.forced = {}, {}, {}

    def watch(self, services):
        """The sibling services whose instances and Cloud Run services have metrics here."""
        for service in services:
            if isinstance(service, ComputeService):
                self.compute = service
            elif isinstance(service, RunService):
                self.run = service

    # ------------------------------------------------------------------------------ sandbox hooks
    def reset(self):
        """Forget policies and channels, and every pin of this (emulator) process."""
        with self.lock:
            self.policies = {}  # full name -> AlertPolicy
            self.channels = {}  # full name -> NotificationChannel
            self.forced = {}  # (key, level metric) pinned by force_alarm -> the policies that pinned it
            metrics.reset()

    def state(self):
        with self.lock:
            out = {"alert_policies": sorted(self.policies), "notification_channels": sorted(self.channels)}
        return {kind: names for kind, names in out.items() if names}  # absent while none: Compute's contract

    def handle(self, ctx, handler, groups):
        with self.lock:
            body = getattr(self, handler)(ctx, groups.pop("project"), **groups)
        return 200, body

    # ---------------------------------------------------------------------------------- resources
    def resources(self, project, resource_type):
        """The live resources of a type that have metrics now: running instances, serving services."""
        found = []
        if resource_type == _VM and self.compute is not None:
            with self.compute.lock:
                self.compute.tick()
                proj = self.compute.projects.get(project)
                for res in list(proj.instances.values()) if proj else []:
                    if res["status"] == "RUNNING" and not res.get("_deleting"):
                        device = res["disks"][0]["deviceName"] if res.get("disks") else "persistent-disk-0"
                        found.append(Resource(_VM, res["id"], {"project_id": project, "instance_id": res["id"],
                                                               "zone": res["_zone"]},
                                              {"instance_name": res["name"], "device_name": device}))
        if resource_type == _RUN and self.run is not None:
            with self.run.lock:
                self.run.tick()
                for (proj, location, name), svc in list(self.run.services.items()):
                    scaling = svc.get("scaling") or {}
                    stopped = scaling.get("scalingMode") == "MANUAL" and not scaling.get("manualInstanceCount")
                    if proj != project or svc.get("_deleted") or not svc.get("latestReadyRevision") or stopped:
                        continue
                    found.append(Resource(_RUN, svc["uid"], {
                        "project_id": project, "service_name": name, "location": location,
                        "revision_name": svc["latestReadyRevision"].rsplit("/", 1)[-1], "configuration_name": name},
                        {}))
        return found

    def matching(self, project, native, wanted):
        """(resource, metric labels) of every series the filter selects."""
        out = []
        for res in self.resources(project, native.resource):
            labels = {key: value.format(**res.metric_labels) for key, value in native.labels.items()}
            fields = {"resource.type": res.type, **{f"resource.labels.{k}": v for k, v in res.labels.items()},
                      **{f"metric.labels.{k}": v for k, v in labels.items()}}
            if all(fields.get(path) in values for path, values in wanted.items()):
                out.append((res, labels))
        return out

    def samples(self, res, native, start, end):
        """[(minute, native value)] of one resource in [start, end): none in the future, none while the level
        is NaN; history before the resource was made is backfilled."""
        if native.level is None:
            return []
        now = self.clock()
        out = []
        for minute in range(int(start) // SAMPLE * SAMPLE, int(math.ceil(end)), SAMPLE):
            if minute > now:
                continue
            level = metrics.level(res.key, native.level, minute)
            if not math.isnan(level):
                value = level * native.factor
                out.append((minute, round(value) if native.value == "INT64" else value))
        return out

    # -------------------------------------------------------------------------------- timeSeries
    def series_list(self, ctx, project):
        query = {key: values[0] for key, values in ctx.query.items() if values}
        metric_type, native, wanted = series_filter(query.get("filter"))
        if "interval.endTime" not in query:
            raise bad_request("interval.endTime is required.", "interval.end_time")
        end = parse_time(query["interval.endTime"], "interval.end_time")
        start = parse_time(query.get("interval.startTime") or query["interval.endTime"], "interval.start_time")
        if start > end:
            raise bad_request("The start time must be before the end time.", "interval.start_time")
        if query.get("orderBy"):
            raise bad_request("orderBy is not supported: it must be left blank.", "order_by")
        if query.get("secondaryAggregation.perSeriesAligner") or query.get("secondaryAggregation.crossSeriesReducer"):
            raise bad_request("secondaryAggregation is not emulated by the lxcri sandbox.", "secondary_aggregation")
        view = query.get("view", "FULL")
        if view not in ("FULL", "HEADERS"):
            raise bad_request(f"Invalid value at 'view' (google.monitoring.v3.ListTimeSeriesRequest.TimeSeriesView), "
                              f"\"{view}\"", "view")
        aggregation = parse_aggregation(
            lambda name: ctx.query.get(f"aggregation.{name}") if name == "groupByFields" else query.get(
                f"aggregation.{name}"), native, "aggregation")
        series = [self.one_series(res, labels, metric_type, native, aggregation, start, end)
                  for res, labels in self.matching(project, native, wanted)]
        series = self.reduce(series, native, aggregation) if aggregation.reducer else series
        series = [s for s in series if s["points"]]
        if view == "HEADERS":
            for item in series:
                del item["points"]
        return self.series_page(query, series, view)

    def one_series(self, res, labels, metric_type, native, aggregation, start, end):
        value_type, kind = _out_value(native, aggregation)
        samples = self.samples(res, native, start - (aggregation.period or 0), end)  # the first window reaches back
        points = []
        if aggregation.aligner is None:
            for minute, value in samples:  # a DELTA sample covers its minute, a GAUGE one is taken at its start
                stamp = minute + SAMPLE if kind == "DELTA" else minute
                if start <= stamp <= end:
                    points.append((minute, stamp, value))
        else:
            period, combine = aggregation.period, ALIGNERS[aggregation.aligner][1]
            t_end = end
            while t_end > start:  # windows (t_end - period, t_end], newest first
                bucket = [value for minute, value in samples if t_end - period <= minute < t_end]
                if bucket:
                    points.append((t_end - period if kind == "DELTA" else t_end, t_end, combine(bucket, period)))
                t_end -= period
        points.sort(key=lambda p: -p[1])
        return {"metric": {"type": metric_type, "labels": labels}, "resource": {"type": res.type, "labels": res.labels},
                "metricKind": kind, "valueType": value_type, "unit": native.unit,
                "points": points}

    @staticmethod
    def reduce(series, native, aggregation):
        groups = {}
        for item in series:
            fields = {f"resource.labels.{k}": v for k, v in item["resource"]["labels"].items()}
            fields.update({f"metric.labels.{k}": v for k, v in item["metric"]["labels"].items()})
            key = tuple((path, fields.get(path, "")) for path in aggregation.group_by)
            groups.setdefault(key, []).append(item)
        out = []
        combine = REDUCERS[aggregation.reducer]
        value_type, _kind = _out_value(native, aggregation)
        for key, members in groups.items():
            by_end = {}
            for item in members:
                for start, end, value in item["points"]:
                    by_end.setdefault((start, end), []).append(value)
            first = members[0]
            resource = {k.split(".", 2)[2]: v for k, v in key if k.startswith("resource.")}
            metric = {k.split(".", 2)[2]: v for k, v in key if k.startswith("metric.")}
            out.append(dict(first, resource={"type": first["resource"]["type"], "labels": resource},
                            metric={"type": first["metric"]["type"], "labels": metric}, valueType=value_type,
                            points=sorted(((s, e, combine(v)) for (s, e), v in by_end.items()), key=lambda p: -p[1])))
        return out

    @staticmethod
    def series_page(query, series, view):
        try:
            size = int(query.get("pageSize") or 0) or DEFAULT_PAGE_POINTS
            offset = json.loads(base64.urlsafe_b64decode(query["pageToken"]))["offset"] if query.get("pageToken") else 0
        except (ValueError, KeyError, TypeError):
            raise bad_request("The page size or page token is not valid.", "page_token") from None
        if size < 0:
            raise bad_request("page_size must not be negative.", "page_size")
        chunk, used = [], 0
        for item in series[offset:]:
            cost = len(item.get("points", [])) if view == "FULL" else 1
            if chunk and used + cost > size:
                break
            chunk.append(item)
            used += cost
        body = {"timeSeries": [_wire(item) for item in chunk]} if chunk else {}
        if offset + len(chunk) < len(series):
            body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps({"offset": offset + len(chunk)}).encode()).decode()
        if chunk:
            body["unit"] = chunk[0]["unit"]
        return body

    # ----------------------------------------------------------------------------- alert policies
    @staticmethod
    def _list(ctx, project, store, key):
        """A list answer of policies or channels: the filter applied, in pages, with totalSize."""
        predicate = list_predicate((ctx.query.get("filter") or [""])[0])
        if (ctx.query.get("orderBy") or [""])[0]:
            raise bad_request("orderBy is not emulated by the lxcri sandbox.", "order_by")
        items = [item for name, item in sorted(store.items()) if name.startswith(f"projects/{project}/")
                 and predicate(item)]
        chunk, token = RunService.page(ctx, items, lambda item: item["name"])
        body = {key: copy.deepcopy(chunk)} if chunk else {}
        body["totalSize"] = len(items)
        if token:
            body["nextPageToken"] = token
        return body

    def _policy(self, project, policy_id):
        name = f"projects/{project}/alertPolicies/{policy_id}"
        if name not in self.policies:
            raise _not_found(f"Alerting policy {name}")
        return name

    def check_policy(self, project, policy):
        if not isinstance(policy, dict):
            raise bad_request("The request has no AlertPolicy in its body.", "alert_policy")
        if not policy.get("displayName"):
            raise bad_request("Field alert_policy.display_name is required.", "alert_policy.display_name")
        if len(policy["displayName"]) > 512:
            raise bad_request("Field alert_policy.display_name is longer than 512 characters.",
                              "alert_policy.display_name")
        _labels(policy.get("userLabels"), "alert_policy.user_labels")
        conditions = policy.get("conditions") or []
        if not 1 <= len(conditions) <= 6:
            raise bad_request("An alerting policy has from one to six conditions.", "alert_policy.conditions")
        combiner = policy.get("combiner", "COMBINE_UNSPECIFIED")
        if combiner not in COMBINERS and (combiner != "COMBINE_UNSPECIFIED" or len(conditions) > 1):
            raise bad_request(f"Field alert_policy.combiner had an invalid value of {combiner}: must be one of "
                              f"{', '.join(COMBINERS)} when there is more than one condition.", "alert_policy.combiner")
        for index, condition in enumerate(conditions):
            self.check_condition(condition, f"alert_policy.conditions[{index}]")
        for channel in policy.get("notificationChannels") or []:
            if channel not in self.channels or not channel.startswith(f"projects/{project}/"):
                raise _not_found(f"Notification channel {channel}")

    @staticmethod
    def check_condition(condition, where):
        if not condition.get("displayName"):
            raise bad_request(f"Field {where}.display_name is required.", f"{where}.display_name")
        kinds = [key for key in condition if key.startswith("condition")]
        if kinds != ["conditionThreshold"]:
            raise bad_request(f"{where} must have exactly one condition; the lxcri sandbox emulates conditionThreshold "
                              f"only (got {', '.join(kinds) or 'none'}).", where)
        threshold = condition["conditionThreshold"]
        _metric_type, native, _wanted = series_filter(threshold.get("filter"), f"{where}.condition_threshold.filter")
        if threshold.get("comparison") not in COMPARISONS:
            raise bad_request(f"Field {where}.condition_threshold.comparison must be one of {', '.join(COMPARISONS)}.",
                              f"{where}.condition_threshold.comparison")
        if not isinstance(threshold.get("thresholdValue", 0), (int, float)) or isinstance(threshold.get("thresholdValue"),
                                                                                            bool):
            raise bad_request(f"Field {where}.condition_threshold.threshold_value must be a number.",
                              f"{where}.condition_threshold.threshold_value")
        duration = parse_duration(threshold.get("duration", "0s"), f"{where}.condition_threshold.duration")
        if duration % 60 or duration > MAX_CONDITION_SECONDS:
            raise bad_request(f"Field {where}.condition_threshold.duration must be a multiple of 60s, at most "
                              f"{MAX_CONDITION_SECONDS}s.", f"{where}.condition_threshold.duration")
        aggregations = threshold.get("aggregations") or []
        if len(aggregations) > 1:
            raise bad_request("The lxcri sandbox emulates one aggregation per condition.",
                              f"{where}.condition_threshold.aggregations")
        for aggregation in aggregations:
            parsed = parse_aggregation(aggregation.get, native, f"{where}.condition_threshold.aggregations[0]")
            if parsed.period and parsed.period > MAX_CONDITION_SECONDS:
                raise bad_request(f"The alignment period of a condition is at most {MAX_CONDITION_SECONDS}s.",
                                  f"{where}.condition_threshold.aggregations[0].alignment_period")

    def _stamp(self, ctx):
        return {"mutateTime": rfc3339(self.clock()), "mutatedBy": ctx.principal}

    def _name_conditions(self, name, policy):
        for condition in policy["conditions"]:
            if not str(condition.get("name", "")).startswith(name + "/conditions/"):
                condition["name"] = f"{name}/conditions/{new_id()}"

    def policies_create(self, ctx, project):
        policy = copy.deepcopy(ctx.body)
        self.check_policy(project, policy)
        name = f"projects/{project}/alertPolicies/{new_id()}"
        policy = {key: policy[key] for key in POLICY_FIELDS if key in policy}
        policy.update({"name": name, "combiner": policy.get("combiner", "OR"), "enabled": policy.get("enabled", True),
                       "creationRecord": self._stamp(ctx), "mutationRecord": self._stamp(ctx)})
        self._name_conditions(name, policy)
        self.policies[name] = policy
        return copy.deepcopy(policy)

    def policies_get(self, ctx, project, resource_id):
        return copy.deepcopy(self.policies[self._policy(project, resource_id)])

    def policies_list(self, ctx, project):
        return self._list(ctx, project, self.policies, "alertPolicies")

    def policies_patch(self, ctx, project, resource_id):
        name = self._policy(project, resource_id)
        merged = _patched(self.policies[name], ctx, POLICY_FIELDS, "alert_policy")
        self.check_policy(project, merged)
        merged.update({"name": name, "creationRecord": self.policies[name]["creationRecord"],
                       "mutationRecord": self._stamp(ctx)})
        self._name_conditions(name, merged)
        self.policies[name] = merged
        return copy.deepcopy(merged)

    def policies_delete(self, ctx, project, resource_id):
        name = self._policy(project, resource_id)
        del self.policies[name]
        for (key, metric), owners in list(self.forced.items()):  # what it forced goes with it
            owners.discard(name)
            if not owners:
                metrics.unpin(key, metric)
                del self.forced[(key, metric)]
        return {}

    # ------------------------------------------------------------------------ notification channels
    def _channel(self, project, channel_id):
        name = f"projects/{project}/notificationChannels/{channel_id}"
        if name not in self.channels:
            raise _not_found(f"Notification channel {name}")
        return name

    @staticmethod
    def check_channel(channel):
        if not isinstance(channel, dict):
            raise bad_request("The request has no NotificationChannel in its body.", "notification_channel")
        kind = channel.get("type")
        if kind not in CHANNEL_TYPES:
            raise bad_request(f"Unknown notification channel type '{kind}' (the lxcri sandbox knows "
                              f"{', '.join(CHANNEL_TYPES)}).", "notification_channel.type")
        labels = channel.get("labels") or {}
        if set(labels) != CHANNEL_TYPES[kind]:
            raise bad_request(f"A {kind} channel takes the labels {', '.join(sorted(CHANNEL_TYPES[kind]))}, got "
                              f"{', '.join(sorted(labels)) or 'none'}.", "notification_channel.labels")
        if kind == "email" and not re.match(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z", labels["email_address"]):
            raise bad_request(f"'{labels['email_address']}' is not an email address.", "notification_channel.labels")
        if kind == "webhook_tokenauth" and not re.match(r"https?://[^/\s]+", labels["url"]):
            raise bad_request("The webhook url must be an http(s) URL.", "notification_channel.labels")
        _labels(channel.get("userLabels"), "notification_channel.user_labels")
        if len(channel.get("displayName") or "") > 512 or len(channel.get("description") or "") > 1024:
            raise bad_request("The display name is limited to 512 characters and the description to 1024.",
                              "notification_channel")

    def channels_create(self, ctx, project):
        channel = copy.deepcopy(ctx.body)
        self.check_channel(channel)
        name = f"projects/{project}/notificationChannels/{new_id()}"
        channel = {key: channel[key] for key in ("type",) + CHANNEL_FIELDS if key in channel}
        channel.update({"name": name, "enabled": channel.get("enabled", True), "creationRecord": self._stamp(ctx),
                        "mutationRecords": [self._stamp(ctx)]})
        self.channels[name] = channel
        return copy.deepcopy(channel)

    def channels_get(self, ctx, project, resource_id):
        return copy.deepcopy(self.channels[self._channel(project, resource_id)])

    def channels_list(self, ctx, project):
        return self._list(ctx, project, self.channels, "notificationChannels")

    def channels_patch(self, ctx, project, resource_id):
        name = self._channel(project, resource_id)
        current = self.channels[name]
        merged = _patched(current, ctx, CHANNEL_FIELDS, "notification_channel")
        if (ctx.body or {}).get("type", current["type"]) != current["type"]:
            raise bad_request("The type of a notification channel cannot be changed.", "notification_channel.type")
        merged["type"] = current["type"]
        self.check_channel(merged)
        merged.update({"name": name, "creationRecord": current["creationRecord"],
                       "mutationRecords": current["mutationRecords"] + [self._stamp(ctx)]})
        self.channels[name] = merged
        return copy.deepcopy(merged)

    def channels_delete(self, ctx, project, resource_id):
        name = self._channel(project, resource_id)
        users = [p["name"] for p in self.policies.values() if name in (p.get("notificationChannels") or [])]
        if users and (ctx.query.get("force") or ["false"])[0].lower() != "true":
            raise RunError(400, f"Notification channel {name} is used by the alerting policies {', '.join(users)}: "
                           "remove it from them first, or delete with force=true.", "FAILED_PRECONDITION")
        for policy in users:
            self.policies[policy]["notificationChannels"].remove(name)
        del self.channels[name]
        return {}

    # ---------------------------------------------------------------------------- forced states
    def force_alarm(self, name, state):
        """Pin the watched metric of every target of the policies named `name` (display name or the
        collection's lxcri-alarm label): past the threshold (alarm), within it (ok), or NaN
        (insufficient_data: no samples)."""
        if state not in ("alarm", "ok", "insufficient_data"):
            raise bad_request(f"state must be alarm, ok or insufficient_data, got {state!r}.", "state")
        with self.lock:
            found = [p for p in self.policies.values()
                     if name in (p.get("displayName"), (p.get("userLabels") or {}).get("lxcri-alarm"))]
            if not found:
                raise _not_found(f"An alerting policy named {name!r}")
            pinned = {}
            for policy in found:
                project = policy["name"].split("/")[1]
                for condition in policy["conditions"]:
                    mine = self._force(project, condition["conditionThreshold"], state)
                    for key, (metric, _value) in mine.items():
                        self.forced.setdefault((key, metric), set()).add(policy["name"])
                    pinned.update(mine)
        return 200, {"alarm": name, "state": state, "policies": [p["name"] for p in found],
                     "pinned": {key: {"metric": metric, "value": None if math.isnan(value) else value}
                                for key, (metric, value) in pinned.items()}}

    def _force(self, project, threshold, state):
        metric_type, native, wanted = series_filter(threshold["filter"])
        if native.level is None:
            raise RunError(400, f"The lxcri sandbox has no data for {metric_type} (no Ops Agent runs there): there "
                           "is nothing to pin.", "FAILED_PRECONDITION")
        aggregations = threshold.get("aggregations") or [{}]
        aggregation = parse_aggregation(aggregations[0].get, native, "aggregations[0]")
        level = level_threshold(native, aggregation, float(threshold.get("thresholdValue", 0)))
        above = threshold["comparison"] in ("COMPARISON_GT", "COMPARISON_GE", "COMPARISON_NE")
        firing, quiet = metrics.breaching("above" if above else "below", level, native.level)
        value = {"alarm": firing, "ok": quiet, "insufficient_data": float("nan")}[state]
        out = {}
        for res, _labels in self.matching(project, native, wanted):
            metrics.pin(res.key, native.level, value)
            out[res.key] = (native.level, value)
        return out


def _labels(labels, field):
    try:
        check_labels(labels, field)
    except ApiError as err:  # Compute's error shape -> google.rpc.Status
        raise bad_request(err.message, field) from None


def _snake(path):
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def _patched(current, ctx, fields, what):
    """The resource after a PATCH: the fields of updateMask taken from the body, or the whole body."""
    body = ctx.body if isinstance(ctx.body, dict) else {}
    mask = [_snake(path.strip()) for path in (ctx.query.get("updateMask") or [""])[0].split(",") if path.strip()]
    if not mask:
        return {key: copy.deepcopy(body[key]) for key in fields if key in body}
    merged = {key: copy.deepcopy(current[key]) for key in fields if key in current}
    for path in mask:
        if path not in fields:
            raise bad_request(f"The field '{path}' in update_mask cannot be updated.", "update_mask")
        if path in body:
            merged[path] = copy.deepcopy(body[path])
        else:
            merged.pop(path, None)
    return merged


def _wire(item):
    """A TimeSeries as the API writes it: points newest first, int64 values as decimal strings."""
    out = {key: value for key, value in item.items() if key != "points"}
    if "points" not in item:
        return out
    points = []
    for start, end, value in item["points"]:
        typed = {"int64Value": str(int(value))} if item["valueType"] == "INT64" else {"doubleValue": float(value)}
        points.append({"interval": {"startTime": _zulu(start), "endTime": _zulu(end)}, "value": typed})
    out["points"] = points
    return out
