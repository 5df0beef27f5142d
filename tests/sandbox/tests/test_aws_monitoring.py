"""CloudWatch in the sandbox (tests/sandbox/aws.py): moto holds the synthetic metrics of what runs, keeps
alarm state as CloudWatch does, and the collection's AWS provider reads metrics in batches and manages
alarms with their SNS topic; all through boto3 and the sandbox's proxy (`scripts/sandbox requests`)."""
import datetime
import io
import json
import time
import zipfile

import boto3
import pytest

from tests.sandbox import aws, metrics
from tests.sandbox.tests.test_cli import cloud, leaks, sandbox, sdk_env, state  # noqa: F401 - a sandbox per module

REGION = "us-east-1"
EC2_METRICS = ("CPUUtilization", "NetworkIn", "NetworkOut", "EBSReadBytes", "EBSWriteBytes")


def _collection():
    """lxcri.cloud from this checkout: tests/unit/conftest.py makes it importable."""
    import tests.unit.conftest  # noqa: F401
    from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
    from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, load
    from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
    return monitoring, load("aws"), ProviderError, SpecError


def _provider(cloud):  # noqa: F811 - the fixture's value
    _, provider_class, _, _ = _collection()
    return provider_class({"access_key": cloud["AWS_ACCESS_KEY_ID"], "secret_key": cloud["AWS_SECRET_ACCESS_KEY"],
                           "endpoint": cloud["LXCRI_AWS_ENDPOINT"], "region": REGION})


@pytest.fixture
def fresh(sandbox, sdk_env):  # noqa: F811
    """A sandbox with nothing in it, and nothing left behind."""
    sandbox("reset")
    yield sdk_env
    sandbox("reset")


def _time(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)


def _window(minutes=10):
    """(start, end) in epoch seconds: the last `minutes` minutes up to the end of the current one."""
    end = (int(time.time()) // 60 + 1) * 60
    return end - minutes * 60, end


def _instances(count=1, deployment=None):
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "lxcri-deployment", "Value": deployment},
                                                   {"Key": "lxcri-kind", "Value": "vm"}]}] if deployment else []
    found = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, InstanceType="t3.micro", TagSpecifications=tags)
    return [i["InstanceId"] for i in found["Instances"]]


def _service(name, desired=1):
    """An ECS Fargate service as the collection makes one (cluster lxcri, its tags): its ARN."""
    ec2, ecs = boto3.client("ec2"), boto3.client("ecs")
    subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    group = ec2.create_security_group(GroupName=f"lxcri-{name}", Description=name, VpcId=subnet["VpcId"])["GroupId"]
    ecs.create_cluster(clusterName="lxcri")
    taskdef = ecs.register_task_definition(
        family=f"lxcri-{name}", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": name, "image": "nginx:1.27", "portMappings": [{"containerPort": 80}]}],
    )["taskDefinition"]["taskDefinitionArn"]
    return ecs.create_service(
        cluster="lxcri", serviceName=name, taskDefinition=taskdef, desiredCount=desired, launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": [group]}},
        tags=[{"key": "lxcri-deployment", "value": name}, {"key": "lxcri-kind", "value": "container"}],
    )["service"]["serviceArn"]


def _function(name):
    """A Lambda function as the collection makes one (its tags): its ARN."""
    role = boto3.client("iam").create_role(RoleName=f"lxcri-lambda-{name}", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return boto3.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=role, Code={"ZipFile": code.getvalue()},
        Tags={"lxcri-deployment": name, "lxcri-kind": "function"})["FunctionArn"]


def _query(n, namespace, name, dims, stat="Average", period=60):
    return {"Id": f"q{n}", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims},
                                          "Period": period, "Stat": stat}}


def _series(queries, start, end):
    answer = boto3.client("cloudwatch").get_metric_data(MetricDataQueries=queries, StartTime=_time(start),
                                                        EndTime=_time(end), ScanBy="TimestampAscending")
    return {r["Id"]: [(int(t.timestamp()), v) for t, v in zip(r["Timestamps"], r["Values"])]
            for r in answer["MetricDataResults"]}


# ------------------------------------------------------------------ the emulator, through boto3


def test_running_resources_have_the_synthetic_signal_in_native_units(fresh):
    instance = _instances()[0]
    service = _service("web")
    function = _function("fn")
    start, end = _window()
    ec2 = [{"Name": "InstanceId", "Value": instance}]
    ecs = [{"Name": "ClusterName", "Value": "lxcri"}, {"Name": "ServiceName", "Value": "web"}]
    lam = [{"Name": "FunctionName", "Value": "fn"}]
    queries = [_query(n, "AWS/EC2", name, ec2, "Sum" if "Bytes" in name or "Network" in name else "Average")
               for n, name in enumerate(EC2_METRICS)]
    queries += [_query(5, "AWS/ECS", "CPUUtilization", ecs), _query(6, "AWS/ECS", "MemoryUtilization", ecs),
                _query(7, "AWS/Lambda", "Invocations", lam, "Sum")]
    found = _series(queries, start, end)
    # key, portable metric, factor (CloudWatch's per-minute value = level x factor) of each query
    expected = [(instance, "cpu", 1), (instance, "network_in", 60), (instance, "network_out", 60),
                (instance, "disk_read", 60), (instance, "disk_write", 60), (service, "cpu", 1), (service, "memory", 1),
                (function, "requests", 60)]
    for n, (key, metric, factor) in enumerate(expected):
        points = found[f"q{n}"]
        # backfilled: every minute of the window, though the resource was made just now
        assert [t for t, _ in points] == list(range(start, end, 60)), (metric, points)
        for t, value in points:
            want = metrics.level(key, metric, t) * factor
            assert value == pytest.approx(round(want) if metric == "requests" else want), (metric, t)
            low, high = metrics.RANGES[metric]
            assert low * factor <= value <= high * factor
    units = {name: boto3.client("cloudwatch").get_metric_statistics(
        Namespace=namespace, MetricName=name, Dimensions=dims, StartTime=_time(start), EndTime=_time(end), Period=60,
        Statistics=["Sum"])["Datapoints"][0]["Unit"]
        for namespace, name, dims in [("AWS/EC2", "CPUUtilization", ec2), ("AWS/EC2", "NetworkIn", ec2),
                                      ("AWS/ECS", "MemoryUtilization", ecs), ("AWS/Lambda", "Invocations", lam)]}
    assert units == {"CPUUtilization": "Percent", "NetworkIn": "Bytes", "MemoryUtilization": "Percent",
                     "Invocations": "Count"}
    listed = boto3.client("cloudwatch").list_metrics(Namespace="AWS/EC2", Dimensions=ec2)["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == sorted(EC2_METRICS)


def test_nothing_for_what_is_stopped_scaled_to_zero_throttled_or_absent(fresh):
    stopped, terminated = _instances(2)
    boto3.client("ec2").stop_instances(InstanceIds=[stopped])
    boto3.client("ec2").terminate_instances(InstanceIds=[terminated])
    _service("idle", desired=0)
    _function("off")
    boto3.client("lambda").put_function_concurrency(FunctionName="off", ReservedConcurrentExecutions=0)
    start, end = _window()
    queries = [_query(0, "AWS/EC2", "CPUUtilization", [{"Name": "InstanceId", "Value": stopped}]),
               _query(1, "AWS/EC2", "CPUUtilization", [{"Name": "InstanceId", "Value": terminated}]),
               _query(2, "AWS/EC2", "CPUUtilization", [{"Name": "InstanceId", "Value": "i-0123456789abcdef0"}]),
               _query(3, "AWS/ECS", "CPUUtilization", [{"Name": "ClusterName", "Value": "lxcri"},
                                                       {"Name": "ServiceName", "Value": "idle"}]),
               _query(4, "AWS/Lambda", "Invocations", [{"Name": "FunctionName", "Value": "off"}], "Sum")]
    assert _series(queries, start, end) == {f"q{n}": [] for n in range(5)}
    assert boto3.client("cloudwatch").list_metrics()["Metrics"] == []


def test_alarm_state_is_kept_as_cloudwatch_keeps_it_and_reset_clears_everything(sandbox, fresh):  # noqa: F811
    cw, sns = boto3.client("cloudwatch"), boto3.client("sns")
    instances = _instances(2)
    topic = sns.create_topic(Name="lxcri-alarm-high")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@example.com")
    math = [dict(_query(n, "AWS/EC2", "CPUUtilization", [{"Name": "InstanceId", "Value": i}]), Id=f"m{n}", ReturnData=False)
            for n, i in enumerate(instances)] + [{"Id": "e", "Expression": "MAX([m0, m1])", "ReturnData": True}]

    def put(threshold):
        cw.put_metric_alarm(AlarmName="high", Metrics=math, ComparisonOperator="GreaterThanThreshold", EvaluationPeriods=1,
                            Threshold=threshold, AlarmActions=[topic], OKActions=[topic], Tags=[{"Key": "lxcri-alarm", "Value": "high"}])
        return cw.describe_alarms(AlarmNames=["high"])["MetricAlarms"][0]

    assert put(80)["StateValue"] == "INSUFFICIENT_DATA"  # as CloudWatch sets a new alarm (moto: OK)
    assert json.loads(sandbox("alarm-state", "aws", "high", "alarm"))["regions"] == [REGION]
    updated = put(90)
    assert (updated["StateValue"], updated["Threshold"]) == ("ALARM", 90.0)  # an update leaves the state alone
    assert [m.get("Expression") for m in updated["Metrics"]] == [None, None, "MAX([m0, m1])"]
    with pytest.raises(AssertionError, match="no CloudWatch alarm 'nope'"):
        sandbox("alarm-state", "aws", "nope", "ok")
    before = leaks(state(sandbox))["aws"]
    assert (before["cloudwatch_alarms"], before["sns_topics"]) == ([updated["AlarmArn"]], [topic])
    start, end = _window()
    watched = [dict(math[0], ReturnData=True)]
    assert _series(watched, start, end)["m0"]
    sandbox("reset")
    assert leaks(state(sandbox)) == {}
    assert cw.describe_alarms()["MetricAlarms"] == [] and sns.list_subscriptions()["Subscriptions"] == []
    assert _series(watched, start, end)["m0"] == []  # the instance and its fed datapoints are gone too


# ------------------------------------------------------------------ the collection's provider


def test_provider_reads_50_instances_x_4_metrics_in_one_get_metric_data(sandbox, fresh, cloud):  # noqa: F811
    monitoring, _, _, _ = _collection()
    provider = _provider(cloud)
    _instances(50, "many")
    service, function = _service("web"), _function("fn")
    members = provider.find("many", REGION, "vm")
    assert len(members) == 50
    start, end = _window(60)
    sandbox("requests", "--reset")
    answers = provider.metrics(members, ["cpu", "network_in", "network_out", "disk_read"], start, end, 60)
    assert json.loads(sandbox("requests"))["aws"] == {"cloudwatch.GetMetricData": 1}
    for rec, answer in zip(members, answers):
        cpu, net = answer["cpu"], answer["network_in"]
        assert (cpu["native_name"], cpu["native_unit"], net["native_name"], net["native_unit"]) == (
            "CPUUtilization", "Percent", "NetworkIn", "Bytes")
        assert cpu["points"] and [v for _, v in cpu["points"]] == [metrics.level(rec["id"], "cpu", t) for t, _ in cpu["points"]]
        assert [v for _, v in net["points"]] == pytest.approx([metrics.level(rec["id"], "network_in", t) * 60
                                                               for t, _ in net["points"]])
    services = provider.find("web", REGION, "container") + provider.find("fn", REGION, "function")
    assert [rec["id"] for rec in services] == [service, function]
    container, lam = provider.metrics(services, list(monitoring.METRICS), start, end, 60)
    assert container["memory"]["native_unit"] == "Percent" and container["memory"]["points"]
    assert container["network_in"]["points"] is None and "Container Insights" in container["network_in"]["reason"]
    assert lam["requests"]["native_name"] == "Invocations" and lam["requests"]["points"]
    assert lam["cpu"]["points"] is None and "Lambda Insights" in lam["cpu"]["reason"]
    memory = provider.metrics(members[:1], ["memory"], start, end, 60)[0]["memory"]
    assert memory["points"] is None and "CloudWatch agent" in memory["reason"]


def _alarm(**changes):
    alarm = {"name": "cpu-high", "metric": "cpu", "comparison": "above", "threshold": 80.0, "period": 300,
             "evaluation_periods": 2, "statistic": "average", "kind": "vm", "deployments": ["many"],
             "notify": {"emails": ["ops@example.com"], "webhooks": ["https://hooks.example.com/T0/B1?token=s3cr3t"]},
             "tags": {"env": "test"}, "description": "cpu of many"}
    return dict(alarm, **changes)


def test_provider_alarm_lifecycle(sandbox, fresh, cloud):  # noqa: F811
    monitoring, provider_class, provider_error, _ = _collection()
    provider = _provider(cloud)
    _instances(11, "many")
    members = sorted(provider.find("many", REGION, "vm"), key=lambda rec: rec["id"])

    def config(alarm, targets):
        return monitoring.alarm_config(dict(alarm, targets=sorted(rec["id"] for rec in targets)))

    alarm = _alarm()
    provider_class.validate_alarm(alarm)
    created = provider.put_alarm(alarm, REGION, members[:3], None)
    assert monitoring.alarm_config(created) == config(alarm, members[:3])
    assert (created["state"], created["state_source"]) == ("insufficient_data", "native")
    assert created["native"]["topic"].endswith(":lxcri-alarm-cpu-high")
    found = provider.find_alarm("cpu-high", REGION)
    assert monitoring.alarm_config(found) == monitoring.alarm_config(created)
    assert [rec["name"] for rec in provider.list_alarms(REGION)] == ["cpu-high"]

    one = _alarm(threshold=90.0, statistic="max", notify={"emails": ["b@example.com"], "webhooks": []}, tags={"team": "x"})
    updated = provider.put_alarm(one, REGION, members[:1], found)
    assert updated["id"] == created["id"] and updated["native"] == created["native"]
    assert monitoring.alarm_config(updated) == config(one, members[:1])
    subscriptions = boto3.client("sns").list_subscriptions_by_topic(TopicArn=updated["native"]["topic"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", "b@example.com")]

    sandbox("alarm-state", "aws", "cpu-high", "alarm")
    forced = provider.find_alarm("cpu-high", REGION)
    assert (forced["state"], forced["state_reason"]) == ("alarm", "forced by scripts/sandbox alarm-state")

    with pytest.raises(provider_error, match="at most 10 metrics"):
        provider.put_alarm(alarm, REGION, members, None)
    boto3.client("cloudwatch").put_metric_alarm(AlarmName="theirs", Namespace="AWS/EC2", MetricName="CPUUtilization",
                                                Statistic="Average", Period=60, EvaluationPeriods=1, Threshold=1,
                                                ComparisonOperator="GreaterThanThreshold")
    assert provider.find_alarm("theirs", REGION) is None
    assert [rec["name"] for rec in provider.list_alarms(REGION)] == ["cpu-high"]
    with pytest.raises(provider_error, match="lxcri.cloud did not make it"):
        provider.put_alarm(_alarm(name="theirs"), REGION, members[:1], None)

    provider.delete_alarm(forced)
    assert provider.find_alarm("cpu-high", REGION) is None
    left = leaks(state(sandbox))["aws"]
    assert left.get("sns_topics") is None and [a.rsplit(":", 1)[-1] for a in left["cloudwatch_alarms"]] == ["theirs"]


def test_a_failed_put_removes_what_it_made_and_says_so_without_the_webhook(sandbox, fresh, cloud, monkeypatch):  # noqa: F811
    _, _, provider_error, _ = _collection()
    provider = _provider(cloud)
    _instances(1, "many")
    members = provider.find("many", REGION, "vm")
    args = type(provider.monitoring)._alarm_args
    monkeypatch.setattr(type(provider.monitoring), "_alarm_args",
                        lambda self, *a: dict(args(self, *a), EvaluationPeriods="not a number"))
    with pytest.raises(provider_error) as failed:
        provider.put_alarm(_alarm(), REGION, members, None)
    message = str(failed.value)
    assert "creating the alarm cpu-high in us-east-1 failed (removed" in message and "SNS topic lxcri-alarm-cpu-high" in message
    assert "s3cr3t" not in message
    assert leaks(state(sandbox)) == {"aws": {"instances": [members[0]["id"]]}}


def test_a_pending_subscription_to_drop_means_a_new_topic(fresh, cloud, monkeypatch):
    """SNS lists an unconfirmed subscription as PendingConfirmation and cannot unsubscribe it (moto confirms at
    once, so the provider is shown one): the topic is made again with what notify wants."""
    provider = _provider(cloud)
    _instances(1, "many")
    members = provider.find("many", REGION, "vm")
    current = provider.put_alarm(_alarm(), REGION, members, None)
    listed = type(provider.monitoring)._subscriptions
    monkeypatch.setattr(type(provider.monitoring), "_subscriptions", lambda self, region, topic: {
        key: ("PendingConfirmation" if key[0] == "email" else arn) for key, arn in listed(self, region, topic).items()})
    provider.put_alarm(_alarm(notify={"emails": [], "webhooks": current["notify"]["webhooks"]}), REGION, members, current)
    subscriptions = boto3.client("sns").list_subscriptions_by_topic(TopicArn=current["native"]["topic"])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("https", current["notify"]["webhooks"][0])]


@pytest.mark.parametrize("changes, message", [
    ({"metric": "memory"}, "metric memory has no CloudWatch metric for an aws vm (EC2 does not see memory"),
    ({"kind": "function", "metric": "cpu"}, "an alarm on a function can watch requests"),
    ({"period": 600, "evaluation_periods": 145}, "period x evaluation_periods is 87000 s"),
    ({"tags": {"bad": "a,b"}}, "tags: 'bad' is not a CloudWatch tag"),
])
def test_validate_alarm_says_what_cloudwatch_would_refuse(changes, message):
    _, provider_class, _, spec_error = _collection()
    with pytest.raises(spec_error, match=message.replace("(", r"\(")):
        provider_class.validate_alarm(_alarm(**changes))
    provider_class.validate_alarm({"name": "x", "kind": "vm", "tags": {}, "metric": None})  # state absent


def test_the_sandbox_feeds_the_metrics_the_provider_maps():
    _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws import monitoring as aws_monitoring

    served = {(namespace, name): (metric, unit) for (namespace, name), (metric, unit, _) in aws.NATIVE_METRICS.items()}
    mapped = {(aws_monitoring.NAMESPACES[kind], name): (metric, unit)
              for (kind, metric), (name, unit, _) in aws_monitoring.NATIVE.items()}
    assert served == mapped
