# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Monitor for the azure provider: platform metrics of VMs and container groups, metric alerts with an
action group for their notifications (azure-mgmt-monitor, one more client made on first use).

AzureProvider (provider.py) keeps it as its monitoring (metrics(), find_alarm(), list_alarms(), put_alarm(),
delete_alarm(); validate_alarm() below); every call goes through the provider's retry policy, the
resources' ARM ids and container groups come from the backends (vms.py, containers.py).

Metrics: one metrics.list per resource with all its metric names (comma separated) and aggregations
`average,total` (VMs) or `average` (container groups); resources in parallel (provider.each, bounded pool).
interval = the period when Azure has that time grain (PT1M PT5M PT15M PT30M PT1H PT6H PT12H P1D), else PT1M
resampled here. Portable metric <- native metric (unit, aggregation asked), conversion:

  kind       portable     native metric                      native unit       conversion
  vm         cpu          Percentage CPU                     Percent           as is (Average)
  vm         memory       Available Memory Percentage        Percent           100 - value (Average)
  vm         network_in   Network In Total                   Bytes             Total per period
  vm         network_out  Network Out Total                  Bytes             Total per period
  vm         disk_read    Disk Read Bytes                    Bytes             Total per period
  vm         disk_write   Disk Write Bytes                   Bytes             Total per period
  container  cpu          CpuUsage                           MilliCores        / (requested cores x 1000) x 100
  container  memory       MemoryUsage                        Bytes             / requested memoryInGB bytes x 100
  container  network_in   NetworkBytesReceivedPerSecond      BytesPerSecond    Average x period seconds
  container  network_out  NetworkBytesTransmittedPerSecond   BytesPerSecond    Average x period seconds

Missing: `requests` (no request count on VMs or container groups), disk_* on container groups. Memory is
the guest's Available Memory Percentage (no VM-size lookup needed; Available Memory Bytes would need one).
The API labels CpuUsage `Count` and the network rates `Bytes`; the table gives what the numbers are.

Alarms: one metric alert (location global) named as the alarm, with its action group `<name>-notify`
(short name: the first 12 characters of the name; an email receiver per address, a webhook receiver per
URL, common alert schema) when notify names anyone; no action group otherwise. Both live in the resource
group `azure.resource_group` when it is set, else `lxcri-alarms-<region>`, created on demand and managed
like a deployment's group (tag lxcri-deployment=alarms-<region>): it is deleted with its last alarm when
it holds nothing else. A group of their own per region, because an alarm spans deployments (each in its
own group) and must outlive none of them, and so that one name can be an alarm in two regions; in a
shared azure.resource_group a name is an alarm in one region only.

  portable            native
  metric, kind        criteria.allOf[0].metricName / metricNamespace (the table above)
  comparison          operator GreaterThan / LessThan (swapped for vm memory: used = 100 - available)
  threshold           threshold in the native unit: vm cpu as is, vm memory 100 - t, vm bytes t x
                      evaluation_periods (Total over the window) or t x 60 / period (Average, Maximum,
                      Minimum of the per-minute values), container cpu t x cores x 10 (millicores), memory
                      t / 100 x bytes, network t / period (bytes per second)
  statistic           timeAggregation Average / Maximum / Minimum / Total (max and min swapped for vm memory)
  period              evaluationFrequency (PT1M PT5M PT15M PT30M PT1H)
  evaluation_periods  windowSize / evaluationFrequency (windowSize one of PT1M ... P1D)
  deployments         tag lxcri-deployments (comma separated)
  targets             scopes (VM ARM ids, read back as the VMs' vmId; container group ARM ids): one scope
                      is SingleResourceMultipleMetricCriteria, several VMs MultipleResourceMultipleMetricCriteria
                      with targetResourceType and targetResourceRegion
  notify              the action group's email and webhook receivers
  tags, description   tags (plus lxcri-alarm=<name>, lxcri-region, lxcri-deployments, lxcri-capacity), description
  state               metricAlerts status (native): any Unhealthy -> alarm, all Healthy -> ok, else
                      insufficient_data

Container thresholds are converted with the group's requested cores or memory at the time of reading (kept
in lxcri-capacity for when the group is gone), so a group recreated with another size shows a changed
threshold and the next run converts it again. Azure evaluates the aggregation over the whole window
(period x evaluation_periods), not each period on its own.
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
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, iso_utc
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.arm import TAG_VALUE_MAX, doc, split_id, user_tags
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.containers import CONTAINER_GROUP
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.errors import error_text
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.vms import VM_TYPE
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SERVICE_KINDS, SpecError

GROUP_TYPE = CONTAINER_GROUP
REGION_TAG = "lxcri-region"
DEPLOYMENTS_TAG = "lxcri-deployments"
CAPACITY_TAG = "lxcri-capacity"
ALARM_OWN_TAGS = 4  # lxcri-alarm, lxcri-region, lxcri-deployments, lxcri-capacity
SEVERITY = 2  # Warning
# seconds -> ISO 8601 duration, for the time grains (metrics) and window sizes (alerts) Azure has
DURATIONS = {60: "PT1M", 300: "PT5M", 900: "PT15M", 1800: "PT30M", 3600: "PT1H", 21600: "PT6H", 43200: "PT12H",
             86400: "P1D"}
FREQUENCIES = (60, 300, 900, 1800, 3600)
ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.I)
AGGREGATIONS = {"average": "Average", "max": "Maximum", "min": "Minimum", "sum": "Total"}
OPERATORS = {"above": "GreaterThan", "below": "LessThan"}
FLIPPED = {"above": "below", "below": "above", "max": "min", "min": "max", "average": "average", "sum": "sum"}
STATES = {"unhealthy": "alarm", "healthy": "ok"}

# kind -> portable metric -> (native name, native unit, aggregation asked of metrics.list, statistic)
METRICS = {
    "vm": {
        "cpu": ("Percentage CPU", "Percent", "average", "average"),
        "memory": ("Available Memory Percentage", "Percent", "average", "average"),
        "network_in": ("Network In Total", "Bytes", "total", "sum"),
        "network_out": ("Network Out Total", "Bytes", "total", "sum"),
        "disk_read": ("Disk Read Bytes", "Bytes", "total", "sum"),
        "disk_write": ("Disk Write Bytes", "Bytes", "total", "sum"),
    },
    "container": {
        "cpu": ("CpuUsage", "MilliCores", "average", "average"),
        "memory": ("MemoryUsage", "Bytes", "average", "average"),
        "network_in": ("NetworkBytesReceivedPerSecond", "BytesPerSecond", "average", "average"),
        "network_out": ("NetworkBytesTransmittedPerSecond", "BytesPerSecond", "average", "average"),
    },
}
NAMESPACES = {"vm": VM_TYPE, "container": GROUP_TYPE}
MISSING = {
    "vm": {"requests": "Azure VMs have no request count metric: count requests at a load balancer or "
                       "Application Gateway in front of them (its metrics), or in the application"},
    "container": {
        "disk_read": "Azure Container Instances reports no disk metrics for a container group: use a vm "
                     "deployment, or measure it in the container",
        "disk_write": "Azure Container Instances reports no disk metrics for a container group: use a vm "
                      "deployment, or measure it in the container",
        "requests": "Azure Container Instances has no request count metric: count requests in the application "
                    "or at an Application Gateway in front of the group",
    },
}


def _kind(kind):
    return "container" if kind in SERVICE_KINDS else "vm"


def _seconds(text):
    """Seconds of an ISO 8601 duration (PT5M, P1D), or None."""
    match = ISO_DURATION.match(str(text or ""))
    if not match or not any(match.groups()):
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _name(arm_id):
    return str(arm_id or "").rstrip("/").rsplit("/", 1)[-1]


def validate_alarm(alarm):
    """What Azure Monitor cannot do with a portable alarm; SpecError before any API call."""
    kind = alarm.get("kind") or "vm"
    if kind not in METRICS:
        raise SpecError(f"kind '{kind}' has no alarms on azure: azure deploys and watches kind vm and container")
    if alarm.get("metric") is None:
        return  # state absent: the name is all it takes
    metric, statistic, period = alarm["metric"], alarm["statistic"] or "average", alarm["period"]
    if metric not in METRICS[kind]:
        raise SpecError(f"metric '{metric}' cannot be alarmed on azure {kind}s: {MISSING[kind][metric]}; "
                        f"use one of {', '.join(METRICS[kind])}")
    if statistic not in AGGREGATIONS:
        raise SpecError(f"statistic '{statistic}' is not portable: use one of {', '.join(AGGREGATIONS)}")
    if statistic == "sum" and (metric in ("cpu", "memory") or kind == "container"):
        raise SpecError(f"statistic sum of {metric} on azure {kind}s is not available (Azure has no Total for it): "
                        "use average, max or min")
    if period not in FREQUENCIES:
        raise SpecError(f"period {period} s is not an Azure Monitor evaluation frequency: use one of "
                        f"{', '.join(f'{s} ({DURATIONS[s]})' for s in FREQUENCIES)}")
    window = period * alarm["evaluation_periods"]
    if window not in DURATIONS:
        fits = [f"{s // period}" for s in DURATIONS if s >= period and s % period == 0]
        raise SpecError(f"period x evaluation_periods is {window} s, not an Azure Monitor window size (one of "
                        f"{', '.join(DURATIONS.values())}): with period {period} use evaluation_periods "
                        f"{', '.join(fits)}")
    if kind == "container" and len(alarm["deployments"]) > 1:
        raise SpecError("an Azure metric alert watches several resources only for VMs: give one container "
                        "deployment per alarm")
    if len(",".join(alarm["deployments"])) > TAG_VALUE_MAX:
        raise SpecError(f"deployments: the names joined by commas are longer than the {TAG_VALUE_MAX} characters "
                        "of the Azure tag that keeps them: split the alarm")


def _scale(kind, metric, statistic, period, evaluation_periods, capacity):
    """(scale, offset): native threshold = portable x scale + offset. A negative scale turns the comparison
    (and max/min) around: VM memory is watched as the available percentage."""
    if kind == "vm":
        if metric == "cpu":
            return 1.0, 0.0
        if metric == "memory":
            return -1.0, 100.0
        # bytes per period from per-minute totals: Total over the window, or an average/extreme minute
        return (float(evaluation_periods), 0.0) if statistic == "sum" else (60.0 / period, 0.0)
    if metric == "cpu":
        return capacity * 10.0, 0.0  # percent of the requested cores -> millicores
    if metric == "memory":
        return capacity / 100.0, 0.0  # percent of the requested memory -> bytes
    return 1.0 / period, 0.0  # bytes per period -> bytes per second


class Monitoring:
    """Monitoring operations of an AzureProvider (its clients, retry policy, resource groups, backends)."""

    def __init__(self, provider):
        self.p = provider

    @property
    def monitor(self):
        """The azure-mgmt-monitor client."""
        return self.p.optional_client("azure.mgmt.monitor", "MonitorManagementClient", "monitoring")

    # -- resources -------------------------------------------------------------------------------

    def _uri(self, rec):
        """The ARM id of a record's resource (a VM record's id is its vmId)."""
        return self.p.backend(_kind(rec.get("kind"))).arm_id(rec)

    @property
    def _groups(self):
        return self.p.backend("container")

    @staticmethod
    def _capacity(metric, group):
        """Requested cores (cpu) or memory bytes (memory) of a container group, None for other metrics."""
        if metric not in ("cpu", "memory") or not group:
            return None
        requests = [((c.get("properties") or {}).get("resources") or {}).get("requests") or {}
                    for c in (group.get("properties") or {}).get("containers") or []]
        if metric == "cpu":
            return sum(float(r.get("cpu") or 0) for r in requests) or None
        return sum(float(r.get("memoryInGB") or 0) for r in requests) * 1024 ** 3 or None

    # -- metrics ---------------------------------------------------------------------------------

    def metrics(self, records, names, start, end, period):
        return self.p.each(lambda rec: self._metrics_of(rec, names, start, end, period), records)

    def _metrics_of(self, rec, names, start, end, period):
        kind = _kind(rec.get("kind"))
        table = METRICS[kind]
        answers = {name: missing(MISSING[kind][name]) for name in names if name not in table}
        wanted = [name for name in names if name in table]
        if not wanted:
            return answers
        uri = self._uri(rec)
        sized = kind == "container" and any(name in ("cpu", "memory") for name in wanted)
        group = self._groups.document(rec) if sized else None  # percent of the requested cores / memory
        grain = DURATIONS.get(period, "PT1M")  # other periods: minutes, summed or averaged here
        response = self.p.unless_gone(
            self.monitor.metrics.list, uri, timespan=f"{iso_utc(start)}/{iso_utc(end)}", interval=grain,
            metricnames=",".join(table[name][0] for name in wanted),
            aggregation=",".join(sorted({table[name][2] for name in wanted})))
        if response is None:
            gone = f"{rec['name']} no longer exists ({uri})"
            return dict(answers, **{name: missing(gone, table[name][0]) for name in wanted})
        native = {metric.name.value: metric for metric in response.value or []}
        for name in wanted:
            native_name, unit, aggregation, statistic = table[name]
            metric = native.get(native_name)
            if metric is None:
                answers[name] = missing(f"Azure Monitor answered no {native_name} for {rec['name']}", native_name)
                continue
            convert = self._converter(kind, name, period, group)
            if convert is None:
                answers[name] = missing(f"container group {rec['name']} reports no requested {name}: no percent "
                                        f"of it to give", native_name)
                continue
            data = [point for ts in metric.timeseries or [] for point in ts.data or []]
            points = [(int(point.time_stamp.timestamp()), getattr(point, aggregation)) for point in data
                      if getattr(point, aggregation) is not None]
            if grain != DURATIONS.get(period):
                points = resample(points, start, end, period, "sum" if aggregation == "total" else "average")
            answers[name] = series(native_name, unit, [(t, convert(v)) for t, v in points], statistic)
        return {name: answers[name] for name in names}

    def _converter(self, kind, metric, period, group):
        """native value of one period -> portable value; None when the group's size is unknown."""
        if kind == "vm":
            return (lambda v: 100.0 - v) if metric == "memory" else float
        if metric in ("cpu", "memory"):
            capacity = self._capacity(metric, group)
            scale = _scale(kind, metric, "average", period, 1, capacity)[0] if capacity else None
            return (lambda v: v / scale) if scale else None
        return lambda v: v * period  # bytes per second -> bytes per period

    # -- alarms: reading -------------------------------------------------------------------------

    def _alarm_group(self, region):
        return self.p.group(f"alarms-{region}")

    @staticmethod
    def _ours(alert, name=None, region=None):
        tags = alert.get("tags") or {}
        return bool(tags.get(ALARM_TAG) and tags[ALARM_TAG] == alert.get("name") and (name is None or alert["name"] == name)
                    and (region is None or tags.get(REGION_TAG) == region))

    def find_alarm(self, name, region):
        alert = self.p.get(self.monitor.metric_alerts.get, self._alarm_group(region), name)
        if not alert or not self._ours(alert, name, region):
            return None
        return self._read(alert)

    def list_alarms(self, region):
        group = self._alarm_group(region)
        try:
            alerts = self.p.listing(lambda: self.monitor.metric_alerts.list_by_resource_group(group))
        except Exception as exc:
            if not self.p.gone(exc):
                raise
            return []  # no alarm group in this region: no alarms
        return self.p.each(self._read, [alert for alert in alerts if self._ours(alert, region=region)])

    def _read(self, alert, action_group=None, capacity=None, known=None):
        """The alarm record of a metric alert: its action group and status read alongside. known: {ARM id
        (lower case): record id} of the targets at hand."""
        group = split_id(alert["id"])[0]
        props = alert.get("properties") or {}
        actions = [a.get("actionGroupId") for a in props.get("actions") or [] if a.get("actionGroupId")]
        fetch_group = action_group is None and actions
        action_group, status = self.p.each(lambda job: job(), [
            lambda: (self.p.get(self.monitor.action_groups.get, group, _name(actions[0])) if fetch_group
                     else action_group),
            lambda: self.p.get(self.monitor.metric_alerts_status.list, group, alert["name"]),
        ], workers=2)
        return self._record(alert, action_group or {}, (status or {}).get("value") or [], capacity, known)

    def _targets(self, kind, scopes, known=None):
        """Record ids of the scopes: container group ARM ids as they are, VMs by their vmId (VMs not among the
        targets at hand are listed once per resource group; a gone VM stays as its ARM id)."""
        if kind == "container":
            return list(scopes)
        known = dict(known or {})
        for group in sorted({split_id(s)[0] for s in scopes if s.lower() not in known}):
            known.update(self.p.backend("vm").vm_ids(group))
        return [known.get(s.lower()) or s for s in scopes]

    def _record(self, alert, action_group, rows, capacity=None, known=None):
        props = alert.get("properties") or {}
        tags = alert.get("tags") or {}
        criterion = ((props.get("criteria") or {}).get("allOf") or [{}])[0]
        namespace = str(criterion.get("metricNamespace") or "").lower()
        kind = next((k for k, ns in NAMESPACES.items() if ns.lower() == namespace), "vm")
        metric = next((m for m, row in METRICS[kind].items() if row[0] == criterion.get("metricName")), None)
        period = _seconds(props.get("evaluationFrequency"))
        window = _seconds(props.get("windowSize"))
        periods = window // period if period and window else None
        statistic = next((s for s, a in AGGREGATIONS.items() if a == criterion.get("timeAggregation")), None)
        comparison = next((c for c, o in OPERATORS.items() if o == criterion.get("operator")), None)
        scopes = props.get("scopes") or []
        if kind == "container" and capacity is None and metric in ("cpu", "memory"):
            capacity = self._capacity(metric, self._groups.read(scopes[0]) if scopes else None)
            if capacity is None and str(tags.get(CAPACITY_TAG) or "").replace(".", "", 1).isdigit():
                capacity = float(tags[CAPACITY_TAG])  # the group is gone: what the threshold was made with
        threshold = None
        if metric and period and periods and statistic and criterion.get("threshold") is not None:
            scale, offset = _scale(kind, metric, statistic, period, periods, capacity or 0)
            if scale:
                threshold = (float(criterion["threshold"]) - offset) / scale
                if scale < 0:
                    comparison, statistic = FLIPPED.get(comparison), FLIPPED[statistic]
        state, reason = self._state(rows)
        aprops = action_group.get("properties") or {}
        return alarm_record(
            self.p.name,
            name=alert.get("name"),
            id=alert.get("id"),
            region=tags.get(REGION_TAG),
            metric=metric,
            comparison=comparison,
            threshold=threshold,
            period=period,
            evaluation_periods=periods,
            statistic=statistic,
            kind=kind,
            deployments=[d for d in str(tags.get(DEPLOYMENTS_TAG) or "").split(",") if d],
            targets=self._targets(kind, scopes, known),
            notify={"emails": [r.get("emailAddress") for r in aprops.get("emailReceivers") or []],
                    "webhooks": [r.get("serviceUri") for r in aprops.get("webhookReceivers") or []]},
            tags=user_tags(tags),
            description=props.get("description") or "",
            state=state,
            state_reason=reason,
            state_source="native",
            native={"alarm": alert.get("id"), "action_group": action_group.get("id"),
                    "resource_group": split_id(alert["id"])[0]},
        )

    @staticmethod
    def _state(rows):
        """(state, reason) from the metric alert's status rows (one per watched resource when several)."""
        by_status = {}
        for row in rows:
            props = row.get("properties") or {}
            where = (props.get("dimensions") or {}).get("resourceId")
            by_status.setdefault(str(props.get("status") or "Unknown"), []).extend([_name(where)] if where else [])
        if not by_status:
            return "insufficient_data", "Azure Monitor has no status for the alert yet"
        states = {STATES.get(status.lower(), "insufficient_data") for status in by_status}
        state = "alarm" if "alarm" in states else "ok" if states == {"ok"} else "insufficient_data"
        parts = []
        for status, names in sorted(by_status.items()):
            names = sorted(names)
            more = f" and {len(names) - 5} more" if len(names) > 5 else ""
            parts.append(f"{status} for {', '.join(names[:5])}{more}" if names else status)
        return state, "Azure Monitor alert status: " + "; ".join(parts)

    # -- alarms: changing ------------------------------------------------------------------------

    def _alert_body(self, alarm, region, scopes, action_group_id, capacity):
        kind = _kind(alarm["kind"])
        native_name = METRICS[kind][alarm["metric"]][0]
        scale, offset = _scale(kind, alarm["metric"], alarm["statistic"] or "average", alarm["period"],
                               alarm["evaluation_periods"], capacity or 0)
        comparison, statistic = alarm["comparison"], alarm["statistic"] or "average"
        if scale < 0:
            comparison, statistic = FLIPPED[comparison], FLIPPED[statistic]
        tags = {**alarm["tags"], ALARM_TAG: alarm["name"], REGION_TAG: region,
                DEPLOYMENTS_TAG: ",".join(alarm["deployments"])}
        if capacity:
            tags[CAPACITY_TAG] = f"{capacity:g}"
        single = len(scopes) == 1
        props = {
            "description": alarm["description"],
            "severity": SEVERITY,
            "enabled": True,
            "scopes": scopes,
            "evaluationFrequency": DURATIONS[alarm["period"]],
            "windowSize": DURATIONS[alarm["period"] * alarm["evaluation_periods"]],
            "autoMitigate": True,
            "criteria": {
                "odata.type": "Microsoft.Azure.Monitor." + ("Single" if single else "Multiple")
                              + "ResourceMultipleMetricCriteria",
                "allOf": [{
                    "criterionType": "StaticThresholdCriterion", "name": alarm["metric"],
                    "metricName": native_name, "metricNamespace": NAMESPACES[kind],
                    "operator": OPERATORS[comparison], "threshold": alarm["threshold"] * scale + offset,
                    "timeAggregation": AGGREGATIONS[statistic], "dimensions": [],
                }],
            },
            "actions": [{"actionGroupId": action_group_id}] if action_group_id else [],
        }
        if not single:
            props.update(targetResourceType=NAMESPACES[kind], targetResourceRegion=region)
        return {"location": "global", "tags": tags, "properties": props}

    @staticmethod
    def _action_group_body(alarm):
        notify = alarm["notify"]
        return {"location": "Global", "tags": {**alarm["tags"], ALARM_TAG: alarm["name"]}, "properties": {
            "groupShortName": alarm["name"][:12],
            "enabled": True,
            "emailReceivers": [{"name": f"email-{i}", "emailAddress": email, "useCommonAlertSchema": True}
                               for i, email in enumerate(notify["emails"], 1)],
            "webhookReceivers": [{"name": f"webhook-{i}", "serviceUri": url, "useCommonAlertSchema": True}
                                 for i, url in enumerate(notify["webhooks"], 1)],
        }}

    def put_alarm(self, alarm, region, targets, current):
        kind, name = _kind(alarm["kind"]), alarm["name"]
        scopes = [self._uri(rec) for rec in targets]
        capacity = self._capacity(alarm["metric"], self._groups.document(targets[0])) if kind == "container" else None
        if kind == "container" and alarm["metric"] in ("cpu", "memory") and not capacity:
            raise ProviderError(f"container group {targets[0]['name']} reports no requested cpu/memory: cannot "
                                f"convert the {alarm['metric']} threshold to Azure's unit")
        if current is None:
            group = self.p.ensure_group(f"alarms-{region}", region)
            self._refuse_taken(group, name, region)
        else:
            group = current["native"]["resource_group"]
        wants_group = bool(alarm["notify"]["emails"] or alarm["notify"]["webhooks"])
        had_group = bool(current and current["native"].get("action_group"))
        action_group = None
        made = []
        try:
            if wants_group:
                action_group = doc(self.p.call(self.monitor.action_groups.create_or_update, group,
                                               f"{name}-notify", self._action_group_body(alarm)))
                if not had_group:
                    made.append(f"action group {name}-notify")
            body = self._alert_body(alarm, region, scopes, action_group and action_group["id"], capacity)
            alert = doc(self.p.call(self.monitor.metric_alerts.create_or_update, group, name, body))
        except Exception as exc:
            undone = self._undo(group, name, region, made, current is None)
            verb = "creating" if current is None else "updating"
            raise ProviderError(f"{verb} alarm {name} (metric alert in resource group {group}) failed: "
                                f"{error_text(exc).rstrip('.')}; {undone}") from exc
        if had_group and not wants_group:
            self.p.call(self.monitor.action_groups.delete, group, _name(current["native"]["action_group"]))
        known = {str(uri).lower(): rec["id"] for uri, rec in zip(scopes, targets)}
        return self._read(alert, action_group or {}, capacity, known)

    def _refuse_taken(self, group, name, region):
        """A metric alert of this name that find_alarm did not report: another region's, or not ours."""
        taken = self.p.get(self.monitor.metric_alerts.get, group, name)
        if not taken:
            return
        if self._ours(taken, name):
            raise ProviderError(f"alarm {name} already lives in region {(taken.get('tags') or {}).get(REGION_TAG)} "
                                f"(resource group {group}); an alarm name is unique per resource group: use that "
                                "region, another name, or another azure.resource_group")
        raise ProviderError(f"a metric alert named {name} already exists in resource group {group} without the tag "
                            f"{ALARM_TAG}={name}: rename or delete it, or choose another alarm name")

    def _undo(self, group, name, region, made, created):
        """Remove what a failed put_alarm made (its new action group; the alarm group when it is empty)."""
        try:
            if made:
                self.p.call(self.monitor.action_groups.delete, group, f"{name}-notify")
            dropped = created and self.p.drop_group(group, f"alarms-{region}")
        except Exception as exc:  # say what is left, whatever went wrong
            return (f"what this run made could not be removed ({error_text(exc)}): delete "
                    f"{', '.join(made) or 'nothing else'} in resource group {group} by hand")
        removed = made + ([f"resource group {group}"] if dropped else [])
        return f"removed again what this run had made ({', '.join(removed)})" if removed else "nothing was left behind"

    def delete_alarm(self, current):
        group, name = current["native"]["resource_group"], current["name"]
        self.p.call(self.monitor.metric_alerts.delete, group, name)
        if current["native"].get("action_group"):
            self.p.call(self.monitor.action_groups.delete, group, _name(current["native"]["action_group"]))
        self.p.drop_group(group, f"alarms-{current['region']}")
