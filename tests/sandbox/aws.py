"""AWS in the sandbox: moto's server, how to name its requests, shape its faults and list what lives in it."""
import json
import os
import re
import secrets
import string
import sys
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from http import HTTPStatus

HERE = os.path.dirname(os.path.abspath(__file__))
AMIS = os.path.join(HERE, "data", "amis.json")
SOURCES = ("tests/sandbox/aws.py", "tests/sandbox/data/amis.json")
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
    COMPLETED) like real ones do once their tasks start; moto alone starts MOTO_ECS_SERVICE_RUNNING of them."""
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


def state(ctx):
    """Live resources in every region a client has used through the proxy (and the default region)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=ctx.secrets["aws"]["access_key_id"],
                                    aws_secret_access_key=ctx.secrets["aws"]["secret_access_key"])
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
