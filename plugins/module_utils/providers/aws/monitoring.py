# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS monitoring: CloudWatch metrics of EC2 instances, ECS services and Lambda functions, and CloudWatch
alarms that notify through an SNS topic. AwsProvider keeps it as its monitoring; every call goes through the provider.

Metrics: GetMetricData, up to 500 queries a call (one call per region per 500 series, pages followed by
NextToken), each query a MetricStat over the period. The values are the portable units already, so no
conversion: percentages as they are, bytes and counts summed over the period (EC2 sends NetworkIn and
EBS*Bytes per monitoring interval: their Sum over a period is the bytes of that period).

  kind       namespace    dimensions                   portable -> metric (statistic)
  vm         AWS/EC2      InstanceId                   cpu CPUUtilization (Average), network_in / _out
                                                       NetworkIn / NetworkOut (Sum), disk_read / _write
                                                       EBSReadBytes / EBSWriteBytes (Sum)
  container  AWS/ECS      ClusterName, ServiceName     cpu CPUUtilization, memory MemoryUtilization (Average)
  function   AWS/Lambda   FunctionName                 requests Invocations (Sum)

The rest is missing, with the reason and what to use instead (MISSING).

Alarm `<name>`: the CloudWatch metric alarm `<name>` (Statistic, ComparisonOperator GreaterThanThreshold or
LessThanThreshold, Threshold, Period, EvaluationPeriods) on the metric of its one target, or, for several
targets (at most 10: CloudWatch's limit for metric math), on the metric math expression MAX([m0, m1, ...])
(above) or MIN(...) (below) over theirs: it fires when any target breaches. It notifies the SNS topic
`lxcri-alarm-<name>` (AlarmActions and OKActions, so recovery is told too) whose subscriptions are the
emails (protocol email) and webhooks (protocol http or https); new ones stay pending until confirmed, and
a pending one cannot be unsubscribed: removing it from notify recreates the topic (the remaining ones
then need confirming again). Tags: the user's, plus `lxcri-alarm=<name>` (how list_alarms finds the
collection's alarms, through the Resource Groups Tagging API) and `lxcri-deployments[-N]` (the target
deployments, space-separated, six a tag). The kind, metric, statistic, period and targets are read back
from the alarm's own metric (targets as the ids of the records: instance id, service or function ARN).
State is CloudWatch's StateValue and StateReason.
"""

from __future__ import annotations

import datetime
import re
import urllib.parse

from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, undo
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.containers import CLUSTER
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import TAG_PREFIX, SpecError

QUERIES_PER_CALL = 500  # GetMetricData
ALARM_METRICS_MAX = 10  # metrics one metric math alarm may watch (a hard limit)
DESCRIBE_NAMES_MAX = 100  # DescribeAlarms AlarmNames
DEPLOYMENTS_TAG = "lxcri-deployments"
DEPLOYMENTS_PER_TAG = 6  # six names of at most 40 characters, space-separated, fit a 256-character value
TOPIC_PREFIX = "lxcri-alarm-"
TAG_TEXT = re.compile(r"^[\w\s.:/=+\-@]*$")  # what CloudWatch takes in tag keys and values
MAX_TAGS = 50
NAMESPACES = {"vm": "AWS/EC2", "container": "AWS/ECS", "function": "AWS/Lambda"}
KINDS = {namespace: kind for kind, namespace in NAMESPACES.items()}
# (kind, portable metric) -> (CloudWatch metric, its unit, the statistic that gives the portable unit per period)
NATIVE = {
    ("vm", "cpu"): ("CPUUtilization", "Percent", "Average"),
    ("vm", "network_in"): ("NetworkIn", "Bytes", "Sum"),
    ("vm", "network_out"): ("NetworkOut", "Bytes", "Sum"),
    ("vm", "disk_read"): ("EBSReadBytes", "Bytes", "Sum"),
    ("vm", "disk_write"): ("EBSWriteBytes", "Bytes", "Sum"),
    ("container", "cpu"): ("CPUUtilization", "Percent", "Average"),
    ("container", "memory"): ("MemoryUtilization", "Percent", "Average"),
    ("function", "requests"): ("Invocations", "Count", "Sum"),
}
PORTABLE = {(kind, native[0]): metric for (kind, metric), native in NATIVE.items()}
_INSIGHTS = "ECS publishes CPU and memory per service only: {} need Container Insights ({})"
_LAMBDA = "Lambda publishes no {} metric: Lambda Insights has {} (namespace LambdaInsights){}"
_NO_REQUESTS = "{} has no request count of its own: a load balancer in front of it has one (AWS/ApplicationELB RequestCount)"
# (kind, portable metric) -> (why it is missing and what to use instead, that native metric)
MISSING = {
    ("vm", "memory"): ("EC2 does not see memory use inside an instance: the CloudWatch agent publishes it "
                       "(mem_used_percent in the CWAgent namespace)", "CWAgent mem_used_percent"),
    ("vm", "requests"): (_NO_REQUESTS.format("an EC2 instance"), None),
    ("container", "network_in"): (_INSIGHTS.format("network bytes", "ECS/ContainerInsights NetworkRxBytes"), None),
    ("container", "network_out"): (_INSIGHTS.format("network bytes", "ECS/ContainerInsights NetworkTxBytes"), None),
    ("container", "disk_read"): (_INSIGHTS.format("storage bytes", "ECS/ContainerInsights StorageReadBytes"), None),
    ("container", "disk_write"): (_INSIGHTS.format("storage bytes", "ECS/ContainerInsights StorageWriteBytes"), None),
    ("container", "requests"): (_NO_REQUESTS.format("an ECS service"), None),
    ("function", "cpu"): (_LAMBDA.format("CPU", "cpu_total_time", "; AWS/Lambda Duration says how long invocations run"), None),
    ("function", "memory"): (_LAMBDA.format("memory", "memory_utilization", ""), None),
    ("function", "network_in"): (_LAMBDA.format("network", "rx_bytes", ""), None),
    ("function", "network_out"): (_LAMBDA.format("network", "tx_bytes", ""), None),
    ("function", "disk_read"): ("Lambda publishes no disk I/O metric (a function has only its ephemeral /tmp): "
                                "there is none to use instead", None),
    ("function", "disk_write"): ("Lambda publishes no disk I/O metric (a function has only its ephemeral /tmp): "
                                 "there is none to use instead", None),
}
STATISTICS = {"average": "Average", "max": "Maximum", "min": "Minimum", "sum": "Sum"}
COMPARISONS = {"above": "GreaterThanThreshold", "below": "LessThanThreshold"}
STATES = {"OK": "ok", "ALARM": "alarm", "INSUFFICIENT_DATA": "insufficient_data"}


def _reverse(mapping):
    return {native: portable for portable, native in mapping.items()}


def _tag_dict(tags):
    return {t["Key"]: t["Value"] for t in tags or []}


def _tag_list(tags):
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _epoch_time(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


def validate_alarm(alarm):
    """What CloudWatch would refuse, said before any call (state absent needs the name only)."""
    if alarm.get("metric") is None:
        return
    kind, metric = alarm["kind"], alarm["metric"]
    if (kind, metric) not in NATIVE:
        reason = MISSING.get((kind, metric), (f"aws has no {kind} kind",))[0]
        usable = ", ".join(m for k, m in NATIVE if k == kind)
        raise SpecError(f"metric {metric} has no CloudWatch metric for an aws {kind} ({reason}): an alarm on a {kind} "
                        f"can watch {usable}")
    total, limit = alarm["period"] * alarm["evaluation_periods"], 86400 if alarm["period"] < 3600 else 604800
    if total > limit:
        raise SpecError(f"period x evaluation_periods is {total} s, more than CloudWatch evaluates ({limit} s: one day "
                        "with a period under an hour, seven days with longer ones): lower one of them")
    if len(alarm["description"]) > 1024:
        raise SpecError(f"description has {len(alarm['description'])} characters: CloudWatch takes at most 1024")
    if len(alarm["tags"]) > MAX_TAGS - 3:
        raise SpecError(f"tags: {len(alarm['tags'])} tags; a CloudWatch alarm takes {MAX_TAGS - 3} besides the collection's own")
    for key, value in alarm["tags"].items():
        if not (0 < len(key) <= 128 and len(value) <= 256 and TAG_TEXT.match(key) and TAG_TEXT.match(value)):
            raise SpecError(f"tags: '{key}' is not a CloudWatch tag: keys of 1 to 128 and values of up to 256 letters, "
                            "digits, spaces and _ . : / = + - @")


def dimensions(rec):
    """The CloudWatch dimensions of a record's metrics."""
    if rec["kind"] == "container":
        return [{"Name": "ClusterName", "Value": CLUSTER}, {"Name": "ServiceName", "Value": rec["deployment"]}]
    if rec["kind"] == "function":
        return [{"Name": "FunctionName", "Value": rec["deployment"]}]
    return [{"Name": "InstanceId", "Value": rec["id"]}]


def target_id(kind, dims, alarm_arn):
    """The record id a metric's dimensions stand for (ARNs in the alarm's partition, region and account)."""
    parts = alarm_arn.split(":")  # arn:partition:cloudwatch:region:account:alarm:name
    partition, region, account = parts[1], parts[3], parts[4]
    if kind == "container":
        return f"arn:{partition}:ecs:{region}:{account}:service/{dims.get('ClusterName')}/{dims.get('ServiceName')}"
    if kind == "function":
        return f"arn:{partition}:lambda:{region}:{account}:function:{dims.get('FunctionName')}"
    return dims.get("InstanceId")


def deployment_tags(names):
    chunks = [names[i:i + DEPLOYMENTS_PER_TAG] for i in range(0, len(names), DEPLOYMENTS_PER_TAG)]
    return {DEPLOYMENTS_TAG + (f"-{n + 1}" if n else ""): " ".join(chunk) for n, chunk in enumerate(chunks)}


def read_deployments(tags):
    return [name for key, value in tags.items() if key == DEPLOYMENTS_TAG or key.startswith(DEPLOYMENTS_TAG + "-")
            for name in value.split()]


def subscription_key(url):
    return urllib.parse.urlsplit(url).scheme, url


def scrub(text, notify):
    """A message without the webhook URLs in it (their paths and queries often carry tokens)."""
    for url in notify.get("webhooks") or []:
        text = text.replace(url, monitoring.redact_webhook(url))
    return text


class Monitoring:
    def __init__(self, provider):
        self.p = provider

    def call(self, func, **kwargs):
        return self.p.call(func, **kwargs)

    # -- metrics -----------------------------------------------------------------------------------

    def metrics(self, records, names, start, end, period):
        answers = [{} for rec in records]
        wanted = {}  # region -> [(record index, portable metric, NATIVE entry, query)]
        for index, rec in enumerate(records):
            for name in names:
                native = NATIVE.get((rec["kind"], name))
                if native is None:
                    answers[index][name] = monitoring.missing(*MISSING[(rec["kind"], name)])
                    continue
                metric = {"Namespace": NAMESPACES[rec["kind"]], "MetricName": native[0], "Dimensions": dimensions(rec)}
                query = {"MetricStat": {"Metric": metric, "Period": period, "Stat": native[2]}, "ReturnData": True}
                wanted.setdefault(rec["region"], []).append((index, name, native, query))
        batches = [(region, items[i:i + QUERIES_PER_CALL]) for region, items in wanted.items()
                   for i in range(0, len(items), QUERIES_PER_CALL)]
        fetched = self.p.each(lambda batch: self._fetch(batch[0], [item[3] for item in batch[1]], start, end), batches)
        for batch, results in zip(batches, fetched):
            for item, (points, error) in zip(batch[1], results):
                index, name, (native_name, unit, stat) = item[:3]
                answers[index][name] = (monitoring.missing(f"CloudWatch answered {error} for {native_name}", native_name)
                                        if error else monitoring.series(native_name, unit, points, stat.lower()))
        return answers

    def _fetch(self, region, queries, start, end):
        """One GetMetricData call (and its further pages) for up to 500 queries: [(points, error or None)]."""
        queries = [dict(query, Id=f"q{n}") for n, query in enumerate(queries)]
        results = self.p.pages(self.p.client("cloudwatch", region), "get_metric_data", "MetricDataResults",
                               MetricDataQueries=queries, StartTime=_epoch_time(start), EndTime=_epoch_time(end),
                               ScanBy="TimestampAscending")
        points, errors = {}, {}
        for result in results:  # a series longer than a page goes on in the next page, under the same Id
            points.setdefault(result["Id"], []).extend(
                (int(t.timestamp()), float(v)) for t, v in zip(result.get("Timestamps", []), result.get("Values", [])))
            if result.get("StatusCode") not in ("Complete", "PartialData", None):
                messages = "; ".join(m.get("Value", "") for m in result.get("Messages") or [])
                errors[result["Id"]] = f"{result['StatusCode']} {messages}".strip()
        return [(sorted(points.get(q["Id"], [])), errors.get(q["Id"])) for q in queries]

    # -- alarms: reading ---------------------------------------------------------------------------

    def find_alarm(self, name, region):
        cw = self.p.client("cloudwatch", region)
        found = self.call(cw.describe_alarms, AlarmNames=[name], AlarmTypes=["MetricAlarm"])["MetricAlarms"]
        if not found:
            return None
        tags = _tag_dict(self.call(cw.list_tags_for_resource, ResourceARN=found[0]["AlarmArn"]).get("Tags"))
        if tags.get(monitoring.ALARM_TAG) != name:  # someone else's alarm of that name
            return None
        return self._record(found[0], tags, region)

    def list_alarms(self, region):
        tagging = self.p.client("resourcegroupstaggingapi", region)
        mapped = self.p.pages(tagging, "get_resources", "ResourceTagMappingList",
                              TagFilters=[{"Key": monitoring.ALARM_TAG}], ResourceTypeFilters=["cloudwatch:alarm"])
        tags = {m["ResourceARN"]: _tag_dict(m.get("Tags")) for m in mapped}
        names = sorted({t[monitoring.ALARM_TAG] for t in tags.values() if t.get(monitoring.ALARM_TAG)})
        cw = self.p.client("cloudwatch", region)
        alarms = [alarm for i in range(0, len(names), DESCRIBE_NAMES_MAX)
                  for alarm in self.p.pages(cw, "describe_alarms", "MetricAlarms", AlarmNames=names[i:i + DESCRIBE_NAMES_MAX],
                                            AlarmTypes=["MetricAlarm"], MaxRecords=100)]
        ours = [a for a in alarms if tags.get(a["AlarmArn"], {}).get(monitoring.ALARM_TAG) == a["AlarmName"]]
        return self.p.each(lambda alarm: self._record(alarm, tags[alarm["AlarmArn"]], region), ours)

    def _topic(self, alarm):
        wanted = TOPIC_PREFIX + alarm["AlarmName"]
        return next((arn for arn in alarm.get("AlarmActions") or [] if arn.rsplit(":", 1)[-1] == wanted), None)

    def _subscriptions(self, region, topic):
        """{(protocol, endpoint): subscription ARN, or PendingConfirmation} of the topic; None when it is gone."""
        try:
            found = self.p.pages(self.p.client("sns", region), "list_subscriptions_by_topic", "Subscriptions", TopicArn=topic)
        except Exception as exc:
            if self.p.gone(exc):
                return None
            raise
        return {(s["Protocol"], s["Endpoint"]): s["SubscriptionArn"] for s in found if s["SubscriptionArn"] != "Deleted"}

    def _record(self, alarm, tags, region):
        stats = [q["MetricStat"] for q in alarm.get("Metrics") or [] if q.get("MetricStat")] or [{
            "Metric": {"Namespace": alarm.get("Namespace"), "MetricName": alarm.get("MetricName"),
                       "Dimensions": alarm.get("Dimensions") or []},
            "Period": alarm.get("Period"), "Stat": alarm.get("Statistic")}]
        kind = KINDS.get(stats[0]["Metric"].get("Namespace"))
        topic = self._topic(alarm)
        subscriptions = self._subscriptions(region, topic) if topic else None
        if subscriptions is None:  # no topic (any more): put_alarm makes it again
            topic, subscriptions = None, {}
        return monitoring.alarm_record(
            self.p.name, name=alarm["AlarmName"], id=alarm["AlarmArn"], region=region,
            metric=PORTABLE.get((kind, stats[0]["Metric"].get("MetricName"))),
            comparison=_reverse(COMPARISONS).get(alarm.get("ComparisonOperator")), threshold=alarm.get("Threshold"),
            period=stats[0].get("Period"), evaluation_periods=alarm.get("EvaluationPeriods"),
            statistic=_reverse(STATISTICS).get(stats[0].get("Stat")), kind=kind, deployments=read_deployments(tags),
            targets=[target_id(kind, {d["Name"]: d["Value"] for d in s["Metric"].get("Dimensions") or []}, alarm["AlarmArn"])
                     for s in stats],
            notify={"emails": [e for (protocol, e) in subscriptions if protocol == "email"],
                    "webhooks": [e for (protocol, e) in subscriptions if protocol in ("http", "https")]},
            tags={k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)},
            description=alarm.get("AlarmDescription") or "", state=STATES.get(alarm.get("StateValue"), "unknown"),
            state_reason=alarm.get("StateReason"), state_source="native",
            native={"alarm": alarm["AlarmArn"], "topic": topic},
        )

    # -- alarms: changing --------------------------------------------------------------------------

    def put_alarm(self, alarm, region, targets, current):
        name = alarm["name"]
        if len(targets) > ALARM_METRICS_MAX:
            raise ProviderError(
                f"alarm {name}: {', '.join(alarm['deployments'])} have {len(targets)} {alarm['kind']}s but a CloudWatch alarm "
                f"watches at most {ALARM_METRICS_MAX} metrics (the limit of metric math alarms): split them over several alarms")
        cw = self.p.client("cloudwatch", region)
        found = {} if current else self.call(cw.describe_alarms, AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
        if found.get("MetricAlarms") or found.get("CompositeAlarms"):
            raise ProviderError(f"a CloudWatch alarm named {name} exists in {region} and lxcri.cloud did not make it "
                                "(it has no lxcri-alarm tag): give the alarm another name")
        done = []  # (what, undo) for what this call created, undone in reverse if a later step fails
        try:
            topic = (current or {}).get("native", {}).get("topic")
            fresh = not topic
            if fresh:
                topic = self._make_topic(region, name, done)
            self._reconcile(region, topic, name, alarm["notify"], done, fresh)
            tags = {**alarm["tags"], monitoring.ALARM_TAG: name, **deployment_tags(alarm["deployments"])}
            args = self._alarm_args(alarm, targets, topic)
            if current is None:
                self.call(cw.put_metric_alarm, **args, Tags=_tag_list(tags))
                done.append((f"the alarm {name}", lambda: self.call(cw.delete_alarms, AlarmNames=[name])))
            else:  # Tags of PutMetricAlarm apply when it creates an alarm only
                self.call(cw.put_metric_alarm, **args)
                self._retag(cw, current["id"], tags)
        except Exception as exc:
            raise self._failed("creating" if current is None else "updating", name, region, done, exc, alarm["notify"]) from None
        return self.find_alarm(name, region)

    def _make_topic(self, region, name, done):
        sns = self.p.client("sns", region)
        topic = self.call(sns.create_topic, Name=TOPIC_PREFIX + name,
                          Tags=[{"Key": monitoring.ALARM_TAG, "Value": name}])["TopicArn"]
        done.append((f"the SNS topic {TOPIC_PREFIX + name}", lambda: self.call(sns.delete_topic, TopicArn=topic)))
        return topic

    def _reconcile(self, region, topic, name, notify, done, fresh):
        """Subscribe what notify has and the topic lacks (a topic made just now has nothing); unsubscribe the rest."""
        sns = self.p.client("sns", region)
        wanted = {("email", email) for email in notify["emails"]} | {subscription_key(url) for url in notify["webhooks"]}
        existing = {} if fresh else self._subscriptions(region, topic) or {}
        stale = [arn for key, arn in existing.items() if key not in wanted]
        if any(not arn.startswith("arn:") for arn in stale):
            # SNS gives a pending subscription no ARN to unsubscribe: only deleting the topic removes it
            self.call(sns.delete_topic, TopicArn=topic)
            self.call(sns.create_topic, Name=TOPIC_PREFIX + name, Tags=[{"Key": monitoring.ALARM_TAG, "Value": name}])
            existing, stale = {}, []
        for arn in stale:
            self.call(sns.unsubscribe, SubscriptionArn=arn)
        for protocol, endpoint in sorted(wanted - set(existing)):
            arn = self.call(sns.subscribe, TopicArn=topic, Protocol=protocol, Endpoint=endpoint,
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
            done.append((f"a {protocol} subscription", lambda arn=arn: self.call(sns.unsubscribe, SubscriptionArn=arn)))

    def _alarm_args(self, alarm, targets, topic):
        args = {"AlarmName": alarm["name"], "AlarmDescription": alarm["description"], "ActionsEnabled": True,
                "AlarmActions": [topic], "OKActions": [topic], "ComparisonOperator": COMPARISONS[alarm["comparison"]],
                "EvaluationPeriods": alarm["evaluation_periods"], "Threshold": alarm["threshold"]}
        stat = STATISTICS[alarm["statistic"]]
        metrics = [{"Namespace": NAMESPACES[alarm["kind"]], "MetricName": NATIVE[(alarm["kind"], alarm["metric"])][0],
                    "Dimensions": dimensions(rec)} for rec in sorted(targets, key=lambda rec: rec["id"])]
        if len(metrics) == 1:
            return dict(args, **metrics[0], Statistic=stat, Period=alarm["period"])
        queries = [{"Id": f"m{n}", "MetricStat": {"Metric": metric, "Period": alarm["period"], "Stat": stat},
                    "ReturnData": False} for n, metric in enumerate(metrics)]
        worst = "MAX" if alarm["comparison"] == "above" else "MIN"  # any one target breaching fires the alarm
        queries.append({"Id": "watched", "Expression": f"{worst}([{', '.join(q['Id'] for q in queries)}])",
                        "Label": f"{worst} {alarm['metric']} of {len(metrics)} {alarm['kind']}s", "ReturnData": True})
        return dict(args, Metrics=queries)

    def _retag(self, cw, arn, tags):
        have = _tag_dict(self.call(cw.list_tags_for_resource, ResourceARN=arn).get("Tags"))
        add = {k: v for k, v in tags.items() if have.get(k) != v}
        remove = [k for k in have if k not in tags]
        if add:
            self.call(cw.tag_resource, ResourceARN=arn, Tags=_tag_list(add))
        if remove:
            self.call(cw.untag_resource, ResourceARN=arn, TagKeys=remove)

    def _failed(self, doing, name, region, done, exc, notify):
        """The error to raise after removing what the failed call had created."""
        undone, left = undo(reversed(done))
        said = f"{'removed ' + ', '.join(undone) if undone else 'nothing to remove'}"
        if left:
            said += f"; could not remove {', '.join(left)}: run state=absent"
        return ProviderError(scrub(f"{doing} the alarm {name} in {region} failed ({said}): {exc}", notify))

    def delete_alarm(self, current):
        region = current["region"]
        self.call(self.p.client("cloudwatch", region).delete_alarms, AlarmNames=[current["name"]])
        if current["native"].get("topic"):  # deleting a topic removes its subscriptions too
            self.call(self.p.client("sns", region).delete_topic, TopicArn=current["native"]["topic"])
