"""AWS in the sandbox: moto's server (with CloudWatch metrics of what runs), how to name its requests, shape
its faults and list what lives in it."""
import calendar
import datetime
import json
import os
import re
import secrets
import string
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from http import HTTPStatus

from tests.sandbox import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
AMIS = os.path.join(HERE, "data", "amis.json")
SOURCES = ("tests/sandbox/aws.py", "tests/sandbox/metrics.py", "tests/sandbox/data/amis.json")
HEALTH_PATH = "/moto-api/config"
DEFAULT_REGION = "us-east-1"
# runningCount of a new ECS service: moto reads one global MOTO_ECS_SERVICE_RUNNING at service creation, so
# a service created with another desiredCount would never be stable. serve() makes every new service run
# its desired count (this number stays as the fallback of plain moto); update_service sets
# runningCount = desiredCount by itself.
ECS_SERVICE_RUNNING = "1"
MOTO_CONFIG = {"lambda": {"use_docker": False}}  # Invoke echoes its payload instead of needing docker

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_ACTION = re.compile(rb"(?:^|&)Action=([^&]*)")
# SigV4 signing names -> the names people know (and IAM action prefixes use)
_LABEL = {"monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions", "execute-api": "apigateway"}


# ------------------------------------------------------------------ process


def command(ctx):
    argv = [sys.executable, "-c", "from tests.sandbox.aws import serve; serve()",
            "-H", "127.0.0.1", "-p", str(ctx.backend_port("aws"))]
    return argv, {"MOTO_AMIS_PATH": AMIS, "MOTO_ECS_SERVICE_RUNNING": ECS_SERVICE_RUNNING}


def serve():
    """moto's server, whose new ECS services reach their desired count (all tasks running, the deployment
    COMPLETED) like real ones do once their tasks start; moto alone starts MOTO_ECS_SERVICE_RUNNING of them.
    CloudWatch holds the synthetic metrics of what runs (_patch_cloudwatch)."""
    from moto.ecs import models
    from moto.server import main

    created = models.Service.__init__

    def init(service, *args, **kwargs):
        created(service, *args, **kwargs)
        service.running_count, service.pending_count = service.desired_count, 0
        for deployment in service.deployments:
            deployment.update(runningCount=service.desired_count, pendingCount=0, rolloutState="COMPLETED",
                              rolloutStateReason=f"ECS deployment {deployment['id']} completed.")

    models.Service.__init__ = init
    _patch_cloudwatch()
    main(sys.argv[1:])


def _post(ctx, path, payload=None):
    data = json.dumps(payload).encode() if payload is not None else b""
    request = urllib.request.Request(ctx.backend_url("aws") + path, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def configure(ctx):
    _post(ctx, "/moto-api/config", MOTO_CONFIG)


def reset(ctx):
    _post(ctx, "/moto-api/reset")  # also forgets the config: the CLI calls configure() after it


def make_secrets(ctx):
    alphabet = string.ascii_uppercase + string.digits
    return {
        "access_key_id": "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
        "secret_access_key": secrets.token_urlsafe(30)[:40],
    }


def env(ctx):
    endpoint = ctx.public_url("aws")
    return {
        "AWS_ACCESS_KEY_ID": ctx.secrets["aws"]["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": ctx.secrets["aws"]["secret_access_key"],
        "AWS_DEFAULT_REGION": DEFAULT_REGION,
        "AWS_ENDPOINT_URL": endpoint,  # plain boto3 (tests, ad-hoc scripts) lands in the sandbox too
        "LXCRI_AWS_ENDPOINT": endpoint,
    }


# ------------------------------------------------------------------ CloudWatch (inside moto's process)

# (namespace, metric name) -> (portable metric of tests/sandbox/metrics.py, CloudWatch unit, factor): what
# CloudWatch publishes for running EC2 instances, ECS services and Lambda functions, one datapoint a minute
# (EC2 detailed monitoring). Percentages as they are; bytes and invocations per minute = level/s x 60.
NATIVE_METRICS = {
    ("AWS/EC2", "CPUUtilization"): ("cpu", "Percent", 1),
    ("AWS/EC2", "NetworkIn"): ("network_in", "Bytes", 60),
    ("AWS/EC2", "NetworkOut"): ("network_out", "Bytes", 60),
    ("AWS/EC2", "EBSReadBytes"): ("disk_read", "Bytes", 60),
    ("AWS/EC2", "EBSWriteBytes"): ("disk_write", "Bytes", 60),
    ("AWS/ECS", "CPUUtilization"): ("cpu", "Percent", 1),
    ("AWS/ECS", "MemoryUtilization"): ("memory", "Percent", 1),
    ("AWS/Lambda", "Invocations"): ("requests", "Count", 60),
}
_fed_lock = threading.Lock()
_narrow = threading.local()  # .series: the one series get_all_metrics answers with while set


def _epoch(moment):
    """moto's naive UTC datetimes (and the request's) in epoch seconds."""
    return calendar.timegm(moment.utctimetuple())


def _dimensions(pairs):
    """A series' dimensions as a key: ((name, value), ...) sorted, whatever order a client sent them in."""
    return tuple(sorted((d["Name"], d["Value"]) if isinstance(d, dict) else (d.name, d.value) for d in pairs))


def _running(account, region):
    """{(namespace, dimensions): metrics key} of what runs now: EC2 instances that are
    running, ECS services that are ACTIVE with tasks wanted, Lambda functions not throttled to 0. The key is
    the id the collection gives the resource's record (instance id, service ARN, function ARN)."""
    from moto.awslambda.utils import get_backend as lambda_backend  # docker or not (MOTO_CONFIG), as moto does
    from moto.ec2.models import ec2_backends
    from moto.ecs.models import ecs_backends

    out = {}
    for instance in ec2_backends[account][region].all_instances():
        if instance.state == "running":
            out[("AWS/EC2", (("InstanceId", instance.id),))] = instance.id
    for service in ecs_backends[account][region].services.values():
        if service.status == "ACTIVE" and service.desired_count > 0:
            dims = (("ClusterName", service.cluster_name), ("ServiceName", service.name))
            out[("AWS/ECS", dims)] = service.arn
    for function in lambda_backend(account, region).list_functions():
        if str(function.reserved_concurrency) != "0":
            out[("AWS/Lambda", (("FunctionName", function.function_name),))] = function.function_arn
    return out


def _feed(backend, running, namespace, name, dims, start, end):
    """Put the datapoints of one series into the backend for every minute of [start, end) that has begun, once
    (a later request reuses them, like stored data). History before the resource was made is backfilled, so
    that a resource made a moment ago already has a window of data."""
    from moto.cloudwatch.models import MetricDatum

    native, key = NATIVE_METRICS.get((namespace, name)), running.get((namespace, dims))
    if not native or not key:
        return
    portable, unit, factor = native
    first = -(-int(start) // 60) * 60
    last = min(int(end) - 1, int(time.time()))
    dimensions = [{"Name": n, "Value": v} for n, v in dims]
    with _fed_lock:
        series = backend.__dict__.setdefault("lxcri_series", {}).setdefault((namespace, name, dims), {})
        for t in range(first, last + 1, 60):
            if t not in series:
                value = metrics.level(key, portable, t) * factor
                stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).replace(tzinfo=None)
                series[t] = MetricDatum(namespace, name, round(value) if unit == "Count" else value, dimensions,
                                        stamp, unit)


def _patch_cloudwatch():
    """Synthetic metrics fed before GetMetricData, GetMetricStatistics and ListMetrics answer; GetMetricData
    answers each query from its own series (moto scans every datapoint of the window for every query and
    period: 200 series over an hour took seconds); alarm state as CloudWatch keeps it (INSUFFICIENT_DATA
    when created, unchanged by an update; moto starts every put at OK)."""
    from moto.cloudwatch.models import CloudWatchBackend

    all_metrics, get_data = CloudWatchBackend.get_all_metrics, CloudWatchBackend.get_metric_data
    get_statistics, list_metrics = CloudWatchBackend.get_metric_statistics, CloudWatchBackend.list_metrics
    put_alarm = CloudWatchBackend.put_metric_alarm

    def get_all_metrics(self):
        only = getattr(_narrow, "series", None)
        stored = all_metrics(self)
        with _fed_lock:
            fed = self.__dict__.get("lxcri_series", {})
            if only is None:
                return stored + [datum for series in fed.values() for datum in series.values()]
            own = [d for d in stored if (d.namespace, d.name, _dimensions(d.dimensions)) == only]
            return own + list(fed.get(only, {}).values())

    def get_metric_data(self, queries, start_time, end_time, scan_by="TimestampAscending"):
        running = _running(self.account_id, self.region_name)
        for query in queries:
            metric = query.get("MetricStat", {}).get("Metric")
            if metric:
                _feed(self, running, metric["Namespace"], metric["MetricName"],
                      _dimensions(metric.get("Dimensions") or []), _epoch(start_time), _epoch(end_time))
        if any("MetricStat" not in query for query in queries):  # metric math needs every series at hand
            return get_data(self, queries, start_time, end_time, scan_by)
        results = []
        for query in queries:
            metric = query["MetricStat"]["Metric"]
            _narrow.series = (metric["Namespace"], metric["MetricName"], _dimensions(metric.get("Dimensions") or []))
            try:
                results += get_data(self, [query], start_time, end_time, scan_by)
            finally:
                _narrow.series = None
        return results

    def get_metric_statistics(self, namespace, metric_name, start_time, end_time, period, stats, dimensions, unit=None):
        _feed(self, _running(self.account_id, self.region_name), namespace, metric_name, _dimensions(dimensions or []),
              _epoch(start_time), _epoch(end_time))
        return get_statistics(self, namespace, metric_name, start_time, end_time, period, stats, dimensions, unit)

    def list_metrics_fed(self, next_token, namespace, metric_name, dimensions):
        if not next_token:  # the metrics of what runs now: its current minute makes each one exist
            now = time.time()
            running = _running(self.account_id, self.region_name)
            for ns, name in NATIVE_METRICS:
                for series_ns, dims in running:
                    if series_ns == ns:
                        _feed(self, running, ns, name, dims, now - 60, now + 1)
        return list_metrics(self, next_token, namespace, metric_name, dimensions)

    def put_metric_alarm(self, *args, **kwargs):
        name = kwargs.get("name", args[0] if args else None)
        before = self.alarms.get(name)
        alarm = put_alarm(self, *args, **kwargs)
        if before is None:
            alarm.state_value = "INSUFFICIENT_DATA"
        else:
            for field in ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp"):
                setattr(alarm, field, getattr(before, field))
        return alarm

    CloudWatchBackend.get_all_metrics = get_all_metrics
    CloudWatchBackend.get_metric_data = get_metric_data
    CloudWatchBackend.get_metric_statistics = get_metric_statistics
    CloudWatchBackend.list_metrics = list_metrics_fed
    CloudWatchBackend.put_metric_alarm = put_metric_alarm


# ------------------------------------------------------------------ requests


def _scope(headers):
    """(region, signing name) from the SigV4 Authorization header, or (None, None) if unsigned."""
    match = _SCOPE.search(headers.get("Authorization", ""))
    return match.groups() if match else (None, None)


def region(req):
    return _scope(req.headers)[0]


def _action(req):
    query = urllib.parse.urlsplit(req.path).query
    if "Action=" in query:
        return urllib.parse.parse_qs(query).get("Action", [""])[0]
    match = _ACTION.search(req.body or b"")
    return urllib.parse.unquote_plus(match.group(1).decode()) if match else None


def _protocol(req, service):
    if req.headers.get("X-Amz-Target"):
        return "json"
    if req.headers.get("smithy-protocol"):
        return "cbor"
    if _action(req):
        return "ec2" if service == "ec2" else "query"
    return "rest-json"


@lru_cache(maxsize=None)
def _rest_routes(service):
    """[(method, regex, required query keys, operation)] of a REST service, most specific first."""
    import botocore.loaders  # only REST services (Lambda, ...) pay for this, once

    loader = botocore.loaders.create_loader()
    names = [service] + [name for name, label in _LABEL.items() if label == service]
    for name in names + [_LABEL.get(service, service)]:
        try:
            model = loader.load_service_model(name, "service-2")
            break
        except Exception:  # noqa: BLE001 - not a botocore service name; try the next spelling
            continue
    else:
        return []
    routes = []
    for operation, spec in model["operations"].items():
        http = spec.get("http", {})
        uri, _, query = http.get("requestUri", "/").partition("?")
        pattern = re.sub(r"\\\{[^}]+?\\\+\\\}", ".+", re.escape(uri))
        pattern = re.sub(r"\\\{[^}]+?\\\}", "[^/]+", pattern)
        keys = tuple(k.split("=")[0] for k in query.split("&") if k)
        literal = len(re.sub(r"\{[^}]+\}", "", uri))
        routes.append((literal, len(keys), http.get("method", "GET"), re.compile(pattern + "$"), keys, operation))
    routes.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [r[2:] for r in routes]


def _rest_operation(service, method, path):
    parts = urllib.parse.urlsplit(path)
    keys = set(urllib.parse.parse_qs(parts.query, keep_blank_values=True))
    for route_method, regex, required, operation in _rest_routes(service):
        if route_method == method and regex.match(parts.path) and keys.issuperset(required):
            return operation
    return f"{method} {parts.path}"


def classify(req):
    """"ec2.RunInstances", "ecs.CreateService", "lambda.Invoke", "cloudwatch.PutMetricData", ..."""
    _, service = _scope(req.headers)
    if service is None:  # unsigned: moto's own API
        return f"{req.method} {urllib.parse.urlsplit(req.path).path}"
    label = _LABEL.get(service, service)
    target = req.headers.get("X-Amz-Target")
    if target:
        return f"{label}.{target.rsplit('.', 1)[-1]}"
    if req.headers.get("smithy-protocol"):  # rpc-v2-cbor: /service/<Service>/operation/<Operation>
        return f"{label}.{req.path.split('?')[0].rstrip('/').rsplit('/', 1)[-1]}"
    action = _action(req)
    if action:
        return f"{label}.{action}"
    return f"{label}.{_rest_operation(label, req.method, req.path)}"


# ------------------------------------------------------------------ faults

# (throttle, 500, 503) error codes botocore classifies as throttling / transient, per wire protocol
_CODES = {
    "ec2": ("RequestLimitExceeded", "InternalError", "Unavailable"),
    "query": ("Throttling", "InternalFailure", "ServiceUnavailable"),
    "cbor": ("Throttling", "InternalFailure", "ServiceUnavailable"),
    "json": ("ThrottlingException", "InternalFailure", "ServiceUnavailableException"),
    "rest-json": ("TooManyRequestsException", "ServiceException", "ServiceException"),
}
_MESSAGES = {"throttle": "Rate exceeded", 500: "We encountered an internal error. Please try again.",
             503: "The service is unavailable. Please try again shortly."}


def _cbor(value):
    """The few CBOR items an error body needs: maps of text and small integers."""

    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for extra, size in ((24, 1), (25, 2), (26, 4)):
            if n < 256 ** size:
                return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
        raise ValueError("too large")

    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(_cbor(k) + _cbor(v) for k, v in value.items())
    if isinstance(value, int):
        return head(0, value)
    data = str(value).encode()
    return head(3, len(data)) + data


def shape(kind, status, req, retry_after):
    """A throttling (429) or server error (500/503) body as the request's AWS protocol carries it."""
    _, service = _scope(req.headers)
    protocol = _protocol(req, service)
    throttle, internal, unavailable = _CODES[protocol]
    code = throttle if kind == "throttle" else internal if status == 500 else unavailable
    message = _MESSAGES["throttle" if kind == "throttle" else status]
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "ec2":
        headers["Content-Type"] = "text/xml;charset=UTF-8"
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
    elif protocol == "query":
        fault = "Sender" if kind == "throttle" else "Receiver"
        headers["Content-Type"] = "text/xml"
        body = (f"<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message>"
                f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    elif protocol == "cbor":
        headers.update({"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor",
                        "x-amzn-query-error": f"{code};{'Sender' if kind == 'throttle' else 'Receiver'}"})
        body = _cbor({"__type": code, "message": message})
    elif protocol == "json":
        headers["Content-Type"] = "application/x-amz-json-1.1"
        body = json.dumps({"__type": code, "message": message})
    else:
        headers.update({"Content-Type": "application/json", "x-amzn-ErrorType": code})
        body = json.dumps({"Type": "User" if kind == "throttle" else "Service", "message": message})
    if kind == "throttle" or status == 503:
        headers["Retry-After"] = str(retry_after)
    body = body.encode() if isinstance(body, str) else body
    return status, HTTPStatus(status).phrase, headers, body


# ------------------------------------------------------------------ state

_TYPES = ("instances", "security_groups", "key_pairs", "volumes", "addresses", "ecs_clusters", "ecs_services",
          "ecs_task_definitions", "lambda_functions", "ssm_parameters", "cloudwatch_alarms", "sns_topics",
          "cloudformation_stacks", "iam_roles")


def _all(client, operation, key, **kwargs):
    if client.can_paginate(operation):
        return client.get_paginator(operation).paginate(**kwargs).build_full_result().get(key, [])
    return getattr(client, operation)(**kwargs).get(key, [])


def _batches(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def _region_state(clients):
    ec2, ecs, lam, cw, sns, cfn, ssm = clients
    out = {}
    reservations = _all(ec2, "describe_instances", "Reservations")
    out["instances"] = [i["InstanceId"] for r in reservations for i in r["Instances"]
                        if i["State"]["Name"] != "terminated"]
    out["security_groups"] = [g["GroupId"] for g in _all(ec2, "describe_security_groups", "SecurityGroups")
                              if g["GroupName"] != "default"]
    out["key_pairs"] = [k.get("KeyPairId") or k["KeyName"] for k in _all(ec2, "describe_key_pairs", "KeyPairs")]
    # attached volumes go with their instance; an available one is a leak of its own
    out["volumes"] = [v["VolumeId"] for v in _all(ec2, "describe_volumes", "Volumes") if v["State"] == "available"]
    out["addresses"] = [a.get("AllocationId") or a["PublicIp"] for a in _all(ec2, "describe_addresses", "Addresses")]
    # moto lists deleted (INACTIVE) clusters and services for ever; live ones are ACTIVE (services also DRAINING)
    clusters = [c["clusterArn"] for batch in _batches(_all(ecs, "list_clusters", "clusterArns"), 100)
                for c in ecs.describe_clusters(clusters=batch)["clusters"] if c["status"] == "ACTIVE"]
    out["ecs_clusters"] = clusters
    out["ecs_services"] = [s["serviceArn"] for c in clusters
                           for batch in _batches(_all(ecs, "list_services", "serviceArns", cluster=c), 10)
                           for s in ecs.describe_services(cluster=c, services=batch)["services"]
                           if s["status"] in ("ACTIVE", "DRAINING")]
    out["ecs_task_definitions"] = _all(ecs, "list_task_definitions", "taskDefinitionArns", status="ACTIVE")
    out["lambda_functions"] = [f["FunctionArn"] for f in _all(lam, "list_functions", "Functions")]
    out["ssm_parameters"] = [p["Name"] for p in _all(ssm, "describe_parameters", "Parameters")]
    alarms = cw.describe_alarms()
    out["cloudwatch_alarms"] = [a["AlarmArn"] for a in alarms["MetricAlarms"] + alarms.get("CompositeAlarms", [])]
    out["sns_topics"] = [t["TopicArn"] for t in _all(sns, "list_topics", "Topics")]
    out["cloudformation_stacks"] = [s["StackId"] for s in _all(cfn, "describe_stacks", "Stacks")
                                    if s["StackStatus"] != "DELETE_COMPLETE"]
    return out


def _session(ctx):
    import boto3

    return boto3.session.Session(aws_access_key_id=ctx.secrets["aws"]["access_key_id"],
                                 aws_secret_access_key=ctx.secrets["aws"]["secret_access_key"])


def force_alarm(ctx, name, state):
    """CloudWatch keeps alarm state itself (moto never evaluates): set it, in every region the alarm is in."""
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
    regions = sorted(set(ctx.scopes("aws")) | {DEFAULT_REGION})
    changed = []
    for region in regions:
        cw = _session(ctx).client("cloudwatch", region_name=region, endpoint_url=ctx.backend_url("aws"), config=config)
        if cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]:
            cw.set_alarm_state(AlarmName=name, StateValue=state.upper(), StateReason="forced by scripts/sandbox alarm-state")
            changed.append(region)
    if not changed:
        raise RuntimeError(f"no CloudWatch alarm {name!r} in {', '.join(regions)}")
    return {"alarm": name, "state": state, "regions": changed}


def state(ctx):
    """Live resources in every region a client has used through the proxy (and the default region)."""
    from botocore.config import Config

    session = _session(ctx)
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60)
    kw = {"endpoint_url": ctx.backend_url("aws"), "config": config}
    regions = sorted(set(ctx.scopes("aws")) | {DEFAULT_REGION})
    clients = [[session.client(s, region_name=r, **kw) for s in ("ec2", "ecs", "lambda", "cloudwatch", "sns",
                                                                  "cloudformation", "ssm")] for r in regions]
    iam = session.client("iam", region_name=DEFAULT_REGION, **kw)
    with ThreadPoolExecutor(max_workers=8) as pool:
        per_region = list(pool.map(_region_state, clients))
    out = {kind: sorted(i for found in per_region for i in found.get(kind, [])) for kind in _TYPES}
    out["iam_roles"] = sorted(r["Arn"] for r in _all(iam, "list_roles", "Roles")
                              if not r["Path"].startswith("/aws-service-role/"))
    return out
