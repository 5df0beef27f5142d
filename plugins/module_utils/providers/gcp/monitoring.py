# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCP monitoring: Cloud Monitoring API v3 over REST. GcpProvider keeps it as its monitoring; every call goes
through the provider.

google-cloud-monitoring speaks gRPC only, so the calls go through google-auth's AuthorizedSession with
the provider's credentials, to gcp.endpoint when it is set (the sandbox serves every API there) and to
https://monitoring.googleapis.com otherwise, verifying TLS as the provider does (tls_verify). Every call runs
under the provider's retry policy: HTTP errors become google.api_core exceptions (429 throttled, 5xx
transient, as for Compute); a list is paged through the provider's paginate, and what is already gone when
it is deleted is the provider's gone().

Metrics (docs/cloud_monitoring.md has the table): one projects.timeSeries.list per (metric, resource
type) with a filter over up to 100 resources (`one_of` takes at most 100 values; more resources take
more calls), aligned to the period and reduced to one series per resource (a VM's disks, a service's
revisions and response codes add up):

* vm (gce_instance, by instance_id = the record id): cpu instance/cpu/utilization (a ratio, x 100,
  ALIGN_MEAN); network_in/out instance/network/received_bytes_count / sent_bytes_count and
  disk_read/write instance/disk/read_bytes_count / write_bytes_count (DELTA bytes, ALIGN_SUM per
  period). No memory without the Ops Agent, no requests.
* container (cloud_run_revision, by service_name and location): cpu and memory
  container/cpu/utilizations, container/memory/utilizations (distributions of ratios: ALIGN_MEAN, the
  mean utilization of the service's instances, x 100); network_in/out
  container/network/received_bytes_count / sent_bytes_count, requests request_count (ALIGN_SUM per
  period). No disk.

Alarms are alert policies. Cloud Monitoring policies belong to the project, not to a region: the alarm
name is the policy's displayName and is found again by the label lxcri-alarm=<name> wherever its targets
are. The region given is kept in the labels lxcri-region (us-central1: list_alarms filters by it, given
a zone or a region) and lxcri-zone (us-central1-a, when a zone was given: where the VM members are).
The policy has one threshold condition over the targets: the same filter and aggregation as the metrics
above, with the aligner of the statistic (average ALIGN_MEAN, max ALIGN_MAX, min ALIGN_MIN, sum
ALIGN_SUM; for Cloud Run's distributions max ALIGN_PERCENTILE_99 and min ALIGN_PERCENTILE_05, no sum),
COMPARISON_GT/LT, the threshold in the native unit (cpu and memory / 100; bytes and requests per period
as they are with sum, per 60 s sample with the other statistics), duration (evaluation_periods - 1) x
period (n consecutive aligned values) and trigger count 1 (any target). What the policy has no field for
is in its user labels: lxcri-deployment-<name> per target deployment (the value is the Cloud Run
service's uid for a container deployment, empty for a VM one); the description is the policy's
documentation. User tags are the other user labels: they must already be GCP labels (lower-case),
anything else is refused before any call. Notification channels (email: email_address;
webhook_tokenauth: url) carry the labels lxcri-alarm and lxcri-region, are made before the policy,
reconciled on update and removed with it. A create is not idempotent: when its answer is lost it is
looked for by those labels before it is tried again.

Cloud Monitoring's API keeps no alarm state: an alarm record's state is evaluated from the metrics
(Provider.evaluated_state, state_source "evaluated").
"""

from __future__ import annotations

import calendar
import datetime
import json
import re
from collections import namedtuple

from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, undo
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.errors import refusal
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.labels import GOOGLE_LABEL_PREFIX, MAX_LABELS
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.places import location_of
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, TRANSIENT
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import TAG_PREFIX, SpecError

try:
    from google.api_core import exceptions as api_exceptions
    from google.auth.transport.requests import AuthorizedSession
except ImportError:
    AuthorizedSession = None

DEFAULT_ENDPOINT = "https://monitoring.googleapis.com"
CALL_TIMEOUT = 60.0
REGION_TAG = "lxcri-region"
ZONE_TAG = "lxcri-zone"
DEPLOYMENT_PREFIX = "lxcri-deployment-"
MAX_ONE_OF = 100  # values in one one_of(...) of a filter
MAX_CONDITION_SECONDS = 86400  # alignment period and duration of a condition
SAMPLE_SECONDS = 60  # GCE and Cloud Run write these metrics once a minute

# type: the native metric; scale: portable = native x scale; per_period: bytes or a count per period
# (a sum), else a percentage (an average); distribution: Cloud Run's distribution-valued metrics.
Native = namedtuple("Native", "type unit scale per_period distribution")
NATIVE = {
    ("vm", "cpu"): Native("compute.googleapis.com/instance/cpu/utilization", "10^2.% (ratio)", 100.0, False, False),
    ("vm", "network_in"): Native("compute.googleapis.com/instance/network/received_bytes_count", "By", 1.0, True, False),
    ("vm", "network_out"): Native("compute.googleapis.com/instance/network/sent_bytes_count", "By", 1.0, True, False),
    ("vm", "disk_read"): Native("compute.googleapis.com/instance/disk/read_bytes_count", "By", 1.0, True, False),
    ("vm", "disk_write"): Native("compute.googleapis.com/instance/disk/write_bytes_count", "By", 1.0, True, False),
    ("container", "cpu"): Native("run.googleapis.com/container/cpu/utilizations", "10^2.% (ratio distribution)",
                                 100.0, False, True),
    ("container", "memory"): Native("run.googleapis.com/container/memory/utilizations",
                                    "10^2.% (ratio distribution)", 100.0, False, True),
    ("container", "network_in"): Native("run.googleapis.com/container/network/received_bytes_count", "By", 1.0, True,
                                        False),
    ("container", "network_out"): Native("run.googleapis.com/container/network/sent_bytes_count", "By", 1.0, True,
                                         False),
    ("container", "requests"): Native("run.googleapis.com/request_count", "1", 1.0, True, False),
}
MISSING = {
    ("vm", "memory"): (
        "Compute Engine reports VM memory only through the Ops Agent: install it on the VMs and read "
        "agent.googleapis.com/memory/percent_used in Cloud Monitoring", "agent.googleapis.com/memory/percent_used"),
    ("vm", "requests"): (
        "a Compute Engine VM has no request count: requests are counted where they are served, e.g. by a load "
        "balancer (loadbalancing.googleapis.com/https/request_count) or a Cloud Run service (kind container)", None),
    ("container", "disk_read"): (
        "Cloud Run containers have no disk (their file system is in memory: see memory), so there is no disk I/O", None),
    ("container", "disk_write"): (
        "Cloud Run containers have no disk (their file system is in memory: see memory), so there is no disk I/O", None),
}
# kind -> (monitored resource type, the resource labels that tell one resource from another)
RESOURCES = {
    "vm": ("gce_instance", ("instance_id",)),
    "container": ("cloud_run_revision", ("service_name", "location")),
}
ALIGNERS = {"average": "ALIGN_MEAN", "max": "ALIGN_MAX", "min": "ALIGN_MIN", "sum": "ALIGN_SUM"}
DISTRIBUTION_ALIGNERS = {"average": "ALIGN_MEAN", "max": "ALIGN_PERCENTILE_99", "min": "ALIGN_PERCENTILE_05"}
REDUCERS = {"average": "REDUCE_MEAN", "max": "REDUCE_MAX", "min": "REDUCE_MIN", "sum": "REDUCE_SUM"}
COMPARISONS = {"above": "COMPARISON_GT", "below": "COMPARISON_LT"}
READ_COMPARISONS = {"COMPARISON_GT": "above", "COMPARISON_GE": "above", "COMPARISON_LT": "below",
                    "COMPARISON_LE": "below"}
CHANNEL_TYPES = {"email": ("emails", "email_address"), "webhook_tokenauth": ("webhooks", "url")}
POLICY_MASK = "displayName,documentation,userLabels,combiner,enabled,conditions,notificationChannels"
_RESTRICTION = re.compile(r'([a-z_.]+) = (?:one_of\(((?:\s*"(?:[^"\\]|\\.)*"\s*,?)*)\)|("(?:[^"\\]|\\.)*"))')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def load_sdk():
    return AuthorizedSession is not None


# -- pure helpers ----------------------------------------------------------------------------------

def statistic_of(native, statistic):
    """The native (perSeriesAligner, crossSeriesReducer) for a portable statistic."""
    aligner = (DISTRIBUTION_ALIGNERS if native.distribution else ALIGNERS)[statistic]
    return aligner, "REDUCE_SUM" if native.per_period else REDUCERS[statistic]


def native_threshold(native, statistic, threshold, period):
    """The threshold of an alarm in the unit of the aligned native values."""
    value = threshold / native.scale
    if native.per_period and statistic != "sum":  # the other aligners see one sample (60 s), not a period
        value = value * SAMPLE_SECONDS / period
    return value


def portable_threshold(native, statistic, value, period):
    if native.per_period and statistic != "sum":
        value = value * period / SAMPLE_SECONDS
    return value * native.scale


def quoted(values):
    return ", ".join(json.dumps(str(value)) for value in values)


def series_filter(native, kind, keys):
    """The filter over these resources: keys are (instance_id,) or (service_name, location) tuples."""
    resource_type, labels = RESOURCES[kind]
    parts = [f"metric.type = {json.dumps(native.type)}", f"resource.type = {json.dumps(resource_type)}"]
    for index, label in enumerate(labels):
        parts.append(f"resource.labels.{label} = one_of({quoted(sorted({key[index] for key in keys}))})")
    return " AND ".join(parts)


def parse_filter(text):
    """{field: [values]} of a filter written by series_filter."""
    out = {}
    for field, many, one in _RESTRICTION.findall(text or ""):
        out[field] = [json.loads(value) for value in _STRING.findall(many)] if not one else [json.loads(one)]
    return out


def place_labels(region):
    """lxcri-region (always the region) and lxcri-zone (when a zone was given) of an alarm's resources."""
    location = location_of(region)
    return {REGION_TAG: location, **({ZONE_TAG: region} if region != location else {})}


def resource_key(kind, rec):
    return (rec["id"],) if kind == "vm" else (rec["name"], rec["region"])


def epoch(text):
    """Epoch seconds of an RFC 3339 time as the API writes it ('2025-01-10T11:04:00Z', fractions, offsets)."""
    match = _TIME.match(text or "")
    if not match:
        raise ProviderError(f"Cloud Monitoring answered a time the collection cannot read: {text!r}")
    moment = calendar.timegm(datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").timetuple())
    offset = match.group(3)
    if offset != "Z":
        sign = -1 if offset[0] == "+" else 1
        moment += sign * (int(offset[1:3]) * 3600 + int(offset[4:6]) * 60)
    return moment + float(match.group(2) or 0)


def zulu(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def typed_value(value):
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "int64Value" in value:
        return float(int(value["int64Value"]))
    return None  # a distribution or a bool: not asked for


def validate_alarm(alarm, label_ok):
    """What Cloud Monitoring cannot take, said before any call (SpecError)."""
    for key, value in (alarm.get("tags") or {}).items():
        if not label_ok(key, key=True) or key.startswith(GOOGLE_LABEL_PREFIX) or not label_ok(value):
            raise SpecError(
                f"tags: '{key}: {value}' cannot be a label of a GCP alert policy: keys and values take at most 63 "
                "lower-case letters, digits, '_' and '-', keys start with a lower-case letter and not with "
                f"'{GOOGLE_LABEL_PREFIX}' (write booleans as 'true' or 'false')"
            )
    if alarm.get("metric") is None:  # state absent: the name is all that is needed
        return
    kind, metric = alarm["kind"], alarm["metric"]
    if kind not in RESOURCES:
        raise SpecError(f"kind {kind}: gcp alarms watch vm (Compute Engine) or container (Cloud Run) deployments")
    if (kind, metric) in MISSING:
        raise SpecError(f"metric {metric} is not available for kind {kind} on gcp: {MISSING[(kind, metric)][0]}")
    native = NATIVE[(kind, metric)]
    if native.distribution and alarm["statistic"] not in DISTRIBUTION_ALIGNERS:
        raise SpecError(
            f"statistic {alarm['statistic']} of {metric} is not possible for a container on gcp: Cloud Run reports "
            f"{metric} as a distribution of utilizations; use average, max (99th percentile) or min (5th percentile)"
        )
    if alarm["period"] > MAX_CONDITION_SECONDS or (alarm["evaluation_periods"] - 1) * alarm["period"] > MAX_CONDITION_SECONDS:
        raise SpecError(
            f"period x (evaluation_periods - 1) must stay within {MAX_CONDITION_SECONDS} s on gcp (the longest "
            "alignment period and duration of an alert condition)"
        )
    if len(alarm["tags"]) + 3 + len(alarm["deployments"]) > MAX_LABELS:
        raise SpecError(
            f"tags: at most {MAX_LABELS - 3 - len(alarm['deployments'])} tags on this gcp alarm (an alert policy holds "
            f"{MAX_LABELS} labels; the collection uses 3 plus one per deployment)"
        )


class Monitoring:
    """Cloud Monitoring of a GcpProvider: metrics, alert policies and their notification channels."""

    def __init__(self, provider):
        self.p = provider
        self.project = provider.project
        endpoint = provider.connection.get("endpoint") or DEFAULT_ENDPOINT
        self.base = (endpoint if "://" in endpoint else "https://" + endpoint).rstrip("/")
        credentials = provider.credentials
        if hasattr(credentials, "with_always_use_jwt_access"):  # a service account signs its own JWT, as the
            credentials = credentials.with_always_use_jwt_access(True)  # gapic clients do: no token round trip
        self.session = AuthorizedSession(credentials)
        if provider.verify is not True:
            self.session.verify = provider.verify

    # -- calls -------------------------------------------------------------------------------------

    def explain(self, exc):
        return refusal(exc, f"Cloud Monitoring at {self.base}", self.project,
                       enable=("Cloud Monitoring API", "monitoring.googleapis.com"))

    def _send(self, method, path, params=None, body=None):
        """One REST request; an HTTP error becomes the api_core exception of its status (so the provider's
        classifier sees 429 as throttled and 5xx as transient, and its gone() a 404)."""
        response = self.session.request(method, f"{self.base}/v3/{path}", params=params, json=body, timeout=CALL_TIMEOUT)
        if response.status_code >= 400:
            raise api_exceptions.from_http_response(response)
        return response.json() if response.content else {}

    def _api(self, method, path, params=None, body=None, retry_transient=True, missing_ok=False):
        """One REST call under the provider's retry policy. retry_transient=False: only throttling is retried
        (it says the call did not happen), for calls that must not run twice; missing_ok: None when what the
        call is about is not there."""
        def throttled_only(exc):
            kind, retry_after = self.p.classify(exc)
            return (FATAL, None) if kind == TRANSIENT else (kind, retry_after)

        with self.p.explained(self.explain):
            if not retry_transient:
                return self.p.policy.call(self._send, throttled_only, method, path, params, body)
            return (self.p.unless_gone if missing_ok else self.p.call)(self._send, method, path, params, body)

    def _pages(self, path, params, key):
        """Every item of a list, page by page (each page one retried call)."""
        def page(token):
            answer = self._send("GET", path, dict(params, **({"pageToken": token} if token else {})))
            return answer.get(key) or [], answer.get("nextPageToken")

        with self.p.explained(self.explain):
            return self.p.paginate(page)

    def _create(self, collection, alarm_name, body, same=lambda item: True):
        """POST a policy or a channel of an alarm. A create is not idempotent: when its answer is lost (a reset,
        a timeout, a 5xx) it may still have happened, so look for it by its labels before trying again."""
        path = f"projects/{self.project}/{collection}"
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._api("POST", path, body=body, retry_transient=False)
            except Exception as exc:  # the classifier decides; anything but a transient error is final
                if self.p.classify(exc)[0] != TRANSIENT or attempt >= self.p.policy.attempts:
                    raise
            marker = f"user_labels.{monitoring.ALARM_TAG} = {json.dumps(alarm_name)}"
            made = [item for item in self._pages(path, {"filter": marker}, collection) if same(item)]
            if made:
                return made[0]
            self.p.policy.sleep(self.p.policy.delay(attempt))

    def _delete(self, name, **params):
        self._api("DELETE", name, params or None, missing_ok=True)  # already gone: that is what was asked

    # -- metrics -----------------------------------------------------------------------------------

    def metrics(self, records, names, start, end, period):
        answers = [{} for _rec in records]
        wanted = {}  # (kind, metric) -> indexes of the records that need it
        for index, rec in enumerate(records):
            for name in names:
                if (rec["kind"], name) in NATIVE:
                    wanted.setdefault((rec["kind"], name), []).append(index)
                elif (rec["kind"], name) in MISSING:
                    reason, native_name = MISSING[(rec["kind"], name)]
                    answers[index][name] = monitoring.missing(reason, native_name)
                else:
                    answers[index][name] = monitoring.missing(f"gcp has no {name} metric for kind {rec['kind']}")
        batches = []
        for (kind, name), indexes in wanted.items():
            keys = sorted({resource_key(kind, records[index]) for index in indexes})
            batches += [(kind, name, keys[at:at + MAX_ONE_OF]) for at in range(0, len(keys), MAX_ONE_OF)]
        found = {}
        for (kind, name, _keys), series in zip(batches, self.p.each(
                lambda batch: self._series(*batch, start=start, end=end, period=period), batches)):
            found.setdefault((kind, name), {}).update(series)
        for (kind, name), indexes in wanted.items():
            native = NATIVE[(kind, name)]
            for index in indexes:
                points = found[(kind, name)].get(resource_key(kind, records[index]), [])
                answers[index][name] = monitoring.series(native.type, native.unit, sorted(points),
                                                         "sum" if native.per_period else "average")
        return answers

    def _series(self, kind, name, keys, start, end, period):
        """{resource key: [(period start, portable value)]} of one timeSeries.list (all its pages)."""
        native = NATIVE[(kind, name)]
        aligner, reducer = statistic_of(native, "sum" if native.per_period else "average")
        group_by = [f"resource.labels.{label}" for label in RESOURCES[kind][1]]
        params = {
            "filter": series_filter(native, kind, keys), "interval.startTime": zulu(start), "interval.endTime": zulu(end),
            "aggregation.alignmentPeriod": f"{period}s", "aggregation.perSeriesAligner": aligner,
            "aggregation.crossSeriesReducer": reducer, "aggregation.groupByFields": group_by,
        }
        out = {}
        for series in self._pages(f"projects/{self.project}/timeSeries", params, "timeSeries"):
            labels = (series.get("resource") or {}).get("labels") or {}
            points = out.setdefault(tuple(labels.get(label) for label in RESOURCES[kind][1]), [])
            for point in series.get("points") or []:
                value = typed_value(point.get("value") or {})
                if value is not None:  # a point's interval ends with its period: the series is keyed by starts
                    points.append((int(epoch(point["interval"]["endTime"])) - period, value * native.scale))
        return out

    # -- alarms: reading ---------------------------------------------------------------------------

    def _channels(self, label, value):
        return self._pages(f"projects/{self.project}/notificationChannels",
                           {"filter": f"user_labels.{label} = {json.dumps(value)}"}, "notificationChannels")

    def find_alarm(self, name, region):
        policies = self._pages(f"projects/{self.project}/alertPolicies",
                               {"filter": f"user_labels.{monitoring.ALARM_TAG} = {json.dumps(name)}"}, "alertPolicies")
        policies = sorted((p for p in policies if (p.get("userLabels") or {}).get(monitoring.ALARM_TAG) == name),
                          key=lambda p: p["name"])
        if not policies:
            return None
        return self._record(policies[0], self._channels(monitoring.ALARM_TAG, name))

    def list_alarms(self, region):
        params = {"filter": f"user_labels.{REGION_TAG} = {json.dumps(location_of(region))}"} if region else {}
        policies = [p for p in self._pages(f"projects/{self.project}/alertPolicies", params, "alertPolicies")
                    if monitoring.ALARM_TAG in (p.get("userLabels") or {})]
        channels = {}
        for channel in self._pages(f"projects/{self.project}/notificationChannels", params, "notificationChannels"):
            channels.setdefault((channel.get("userLabels") or {}).get(monitoring.ALARM_TAG), []).append(channel)
        return self.p.each(
            lambda p: self._record(p, channels.get(p["userLabels"][monitoring.ALARM_TAG], [])), policies)

    def _record(self, policy, channels):
        """The alarm record of an alert policy and the channels labelled with its alarm."""
        labels = dict(policy.get("userLabels") or {})
        condition = ((policy.get("conditions") or [{}])[0]).get("conditionThreshold") or {}
        aggregation = (condition.get("aggregations") or [{}])[0]
        restrictions = parse_filter(condition.get("filter"))
        kind = next((k for k, (resource, _l) in RESOURCES.items() if [resource] == restrictions.get("resource.type")),
                    None)
        metric = next((m for (k, m), native in NATIVE.items() if k == kind and [native.type] ==
                       restrictions.get("metric.type")), None)
        native = NATIVE.get((kind, metric))
        statistics = DISTRIBUTION_ALIGNERS if native and native.distribution else ALIGNERS
        statistic = next((s for s, aligner in statistics.items() if aligner == aggregation.get("perSeriesAligner")), None)
        period = int(float(str(aggregation.get("alignmentPeriod", "0s")).rstrip("s") or 0)) or None
        duration = int(float(str(condition.get("duration", "0s")).rstrip("s") or 0))
        threshold = None
        if native and statistic and period:
            threshold = portable_threshold(native, statistic, float(condition.get("thresholdValue", 0.0)), period)
        deployments = {key[len(DEPLOYMENT_PREFIX):]: value for key, value in labels.items()
                       if key.startswith(DEPLOYMENT_PREFIX)}
        targets = restrictions.get("resource.labels.instance_id", []) if kind == "vm" else sorted(
            value for value in deployments.values() if value)
        used = set(policy.get("notificationChannels") or [])
        notify = {"emails": [], "webhooks": []}
        for channel in channels:
            if channel["name"] in used and channel.get("type") in CHANNEL_TYPES:
                field, label = CHANNEL_TYPES[channel["type"]]
                notify[field].append((channel.get("labels") or {}).get(label))
        record = monitoring.alarm_record(
            self.p.name, name=labels.get(monitoring.ALARM_TAG, policy.get("displayName")), id=policy["name"],
            region=labels.get(ZONE_TAG) or labels.get(REGION_TAG), metric=metric, comparison=READ_COMPARISONS.get(condition.get("comparison")),
            threshold=threshold, period=period, evaluation_periods=duration // period + 1 if period else None,
            statistic=statistic, kind=kind, deployments=sorted(deployments), targets=targets, notify=notify,
            tags={key: value for key, value in labels.items() if not key.startswith(TAG_PREFIX)},
            description=(policy.get("documentation") or {}).get("content", ""), state_source="evaluated",
            native={"alert_policy": policy["name"], "notification_channels": sorted(used)},
        )
        if None in (metric, statistic, period, record["comparison"], record["region"]) or not deployments:
            record["state"], record["state_reason"] = "unknown", "the policy's condition is not one the collection writes"
        else:
            record["state"], record["state_reason"] = self.p.evaluated_state(record)
        return record

    # -- alarms: changing --------------------------------------------------------------------------

    def _policy(self, alarm, region, targets, channels):
        native = NATIVE[(alarm["kind"], alarm["metric"])]
        aligner, reducer = statistic_of(native, alarm["statistic"])
        period = alarm["period"]
        marker = {} if alarm["kind"] == "vm" else {rec.get("deployment") or rec["name"]: rec["id"] for rec in targets}
        labels = {**alarm["tags"], **place_labels(region), monitoring.ALARM_TAG: alarm["name"],
                  **{DEPLOYMENT_PREFIX + name: marker.get(name, "") for name in alarm["deployments"]}}
        threshold = {
            "filter": series_filter(native, alarm["kind"], {resource_key(alarm["kind"], rec) for rec in targets}),
            "comparison": COMPARISONS[alarm["comparison"]],
            "thresholdValue": native_threshold(native, alarm["statistic"], alarm["threshold"], period),
            "duration": f"{(alarm['evaluation_periods'] - 1) * period}s",
            "trigger": {"count": 1},
            "aggregations": [{"alignmentPeriod": f"{period}s", "perSeriesAligner": aligner, "crossSeriesReducer": reducer,
                              "groupByFields": [f"resource.labels.{label}" for label in RESOURCES[alarm["kind"]][1]]}],
        }
        policy = {
            "displayName": alarm["name"], "userLabels": labels, "combiner": "OR", "enabled": True,
            "conditions": [{"displayName": f"{alarm['metric']} {alarm['comparison']} {alarm['threshold']:g} "
                                           f"({alarm['statistic']} of {period} s, {alarm['evaluation_periods']} period(s))",
                            "conditionThreshold": threshold}],
            "notificationChannels": channels,
        }
        if alarm["description"]:
            policy["documentation"] = {"content": alarm["description"], "mimeType": "text/markdown"}
        return policy

    def put_alarm(self, alarm, region, targets, current):
        if len(targets) > MAX_ONE_OF:
            raise ProviderError(
                f"alarm {alarm['name']}: {len(targets)} targets, but a GCP alert condition filters at most {MAX_ONE_OF} "
                "resources (one_of): split the deployments over several alarms"
            )
        wanted = [(kind, value) for kind, (field, _label) in CHANNEL_TYPES.items() for value in alarm["notify"][field]]
        kept, stale, created = {}, [], []
        # The alarm's channels from before (or left by a failed run): one per wanted target stays, the rest goes.
        for channel in self._channels(monitoring.ALARM_TAG, alarm["name"]):
            _field, label = CHANNEL_TYPES.get(channel.get("type"), (None, None))
            key = (channel.get("type"), (channel.get("labels") or {}).get(label))
            if key in wanted and key not in kept:
                kept[key] = channel
            else:
                stale.append(channel["name"])
        try:
            for key in wanted:
                if key not in kept:
                    kept[key] = self._create_channel(alarm["name"], region, *key)
                    created.append(kept[key]["name"])
            body = self._policy(alarm, region, targets, [kept[key]["name"] for key in wanted])
            if current is None:
                policy = self._create("alertPolicies", alarm["name"], body)
            else:
                policy = self._api("PATCH", current["id"], {"updateMask": POLICY_MASK}, body)
        except Exception as exc:  # what this call made goes again; say so
            raise ProviderError(f"{'updating' if current else 'creating'} the GCP alert policy {alarm['name']} "
                                f"failed: {getattr(exc, 'message', None) or exc}; {self._undo(created)}") from exc
        for name in stale:
            self._delete(name, force="true")
        return self._record(policy, list(kept.values()))

    def _create_channel(self, alarm_name, region, kind, value):
        field, label = CHANNEL_TYPES[kind]
        shown = monitoring.redact_webhook(value) if field == "webhooks" else value  # a webhook URL may hold a token
        body = {"type": kind, "displayName": f"{alarm_name}: {shown}", "labels": {label: value},
                "description": f"notifications of the lxcri.cloud alarm {alarm_name}",
                "userLabels": {monitoring.ALARM_TAG: alarm_name, **place_labels(region)}}
        return self._create("notificationChannels", alarm_name, body, lambda item: (item.get("type"), (
            item.get("labels") or {}).get(label)) == (kind, value))

    def _undo(self, created):
        if not created:
            return "nothing was left behind"
        _undone, left = undo((name, lambda name=name: self._delete(name, force="true")) for name in created)
        if left:
            return f"notification channels left behind, delete them by hand: {', '.join(left)}"
        return f"the {len(created)} notification channel(s) made for it were deleted again"

    def delete_alarm(self, current):
        self._delete(current["id"])
        for channel in self._channels(monitoring.ALARM_TAG, current["name"]):
            self._delete(channel["name"], force="true")
