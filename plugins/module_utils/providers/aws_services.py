# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS containers (ECS on Fargate) and functions (Lambda): the service kinds behind AwsProvider.

Only aws.py uses this file; AwsProvider stays the single entry point. Every API call goes through the
provider (its clients and its retry policy).

Container `<name>`: the ECS service `<name>` in the cluster `lxcri` (created when missing, removed with
the last service), launch type FARGATE, awsvpc networking in the default VPC's default subnets with the
security group `lxcri-<name>` (the container port, from anywhere when public, else from the VPC) and a
public IP when public. Its task definition family is `lxcri-<name>`: every change registers a new
revision; `absent` deregisters (and deletes) every revision. secret_env values are SSM Parameter Store
SecureStrings `/lxcri/<name>/<KEY>` that the task definition references as `secrets`, read by the task
execution role `lxcri-ecs-<name>`; the service carries only their digest (tag `lxcri-secret`).
`stopped` scales the service to 0 tasks; the configured count stays in the tag `lxcri-replicas`.
`restarted` forces a new deployment. The url is `http://<public IP>[:port]` of the service's first
running task when it is public (ECS gives no address of its own without a load balancer), else null.
`absent` waits for the service to drain (whatever `wait` says) before it deletes the security group and,
when no other service is left in it, the cluster: otherwise they would be left behind.

Function `<name>`: the Lambda function `<name>` with the execution role `lxcri-lambda-<name>` (logs
only), its code from function.code, and a function URL (AuthType NONE) when function.url. `stopped` sets
its reserved concurrency to 0 (every invocation is throttled), `running` removes it; `restarted` updates
its description, which makes Lambda start fresh execution environments. Lambda keeps no creation time:
the tag `lxcri-created` holds it. `absent` also deletes the log group /aws/lambda/<name>.
"""

from __future__ import annotations

import datetime
import json
import uuid

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, iso_utc, record
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, KIND_TAG, TAG_PREFIX, SpecError, secret_fingerprint
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import wait_for

try:
    import botocore.exceptions
except ImportError:
    botocore = None

CLUSTER = "lxcri"
REPLICAS_TAG = "lxcri-replicas"
SECRET_TAG = "lxcri-secret"
CREATED_TAG = "lxcri-created"
URL_STATEMENTS = ("lxcri-url", "lxcri-url-invoke")
# Fargate: vCPU units and the memory (MiB) each accepts.
FARGATE = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4097, 1024)),
    1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)),
    4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)),
    16384: list(range(32768, 122881, 8192)),
}
ZIP_MAX = 50 * 1024 * 1024  # Lambda's limit for a zip uploaded in the request
# How long absent waits for an ECS service to drain before removing what it used.
DELETE_TIMEOUT = 600.0
ROLE_PROPAGATION = 60.0


def _code(exc):
    if botocore is not None and isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def _scrub(text, secrets):
    for value in secrets.values():
        if value:
            text = text.replace(value, "***")
    return text


def _identity(name, kind, extra=None):
    return {DEPLOYMENT_TAG: name, KIND_TAG: kind, **(extra or {})}


def _user_tags(tags):
    return {k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)}


def _trust(service):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def validate_container(spec):
    container = spec["container"]
    units = round(container["cpu"] * 1024)
    if units not in FARGATE or abs(units / 1024 - container["cpu"]) > 1e-9:
        raise SpecError(f"container.cpu {container['cpu']:g} is not a Fargate size on aws: use one of "
                        f"{', '.join(f'{u / 1024:g}' for u in FARGATE)} (vCPUs)")
    allowed = FARGATE[units]
    if container["memory"] not in allowed:
        choices = ", ".join(map(str, allowed)) if len(allowed) <= 4 else \
            f"{allowed[0]} to {allowed[-1]} in steps of {allowed[1] - allowed[0]}"
        raise SpecError(f"container.memory {container['memory']} does not go with cpu {container['cpu']:g} on Fargate: "
                        f"use {choices} (MiB)")
    for key in container["secret_env"]:
        if not key.replace("_", "a").isalnum() or not key.isascii() or key[0].isdigit():
            raise SpecError(f"container.secret_env: '{key}' is not a valid variable name on aws "
                            "(letters, digits and '_', not starting with a digit)")
    if spec["count"] > 5000:
        raise SpecError(f"count {spec['count']} is more tasks than an ECS service runs (5000)")


def validate_function(spec):
    function = spec["function"]
    if not 128 <= function["memory"] <= 10240:
        raise SpecError(f"function.memory must be between 128 and 10240 (MiB) on aws Lambda, got {function['memory']}")
    if not 1 <= function["timeout"] <= 900:
        raise SpecError(f"function.timeout must be between 1 and 900 (seconds) on aws Lambda, got {function['timeout']}")
    if len(function["zip"]) > ZIP_MAX:
        raise SpecError(f"function.code zips to {len(function['zip']) // 2 ** 20} MiB: Lambda takes at most 50 MiB "
                        "uploaded directly")


class _Service:
    """What containers and functions share: the provider's clients and calls, waits, roles."""

    kind = ""

    def __init__(self, provider):
        self.p = provider
        self.configs = {}  # record id -> the portable settings read with it

    def client(self, service, region):
        return self.p.client(service, region)

    def call(self, func, **kwargs):
        return self.p.call(func, **kwargs)

    def wait(self, fetch, done, what, timeout, describe=None):
        return wait_for(fetch, done, what, timeout, maximum=self.p.POLL_MAX, describe=describe)

    def ensure_role(self, role, name, trusted, policy, region):
        """The ARN of the IAM role `role` (created when missing) with one inline policy."""
        iam = self.client("iam", region)
        tags = [{"Key": k, "Value": v} for k, v in _identity(name, self.kind).items()]
        try:
            arn = self.call(iam.create_role, RoleName=role, AssumeRolePolicyDocument=_trust(trusted), Tags=tags,
                            Description=f"lxcri.cloud {self.kind} {name}")["Role"]["Arn"]
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "EntityAlreadyExists":
                raise
            arn = self.call(iam.get_role, RoleName=role)["Role"]["Arn"]
        self.call(iam.put_role_policy, RoleName=role, PolicyName="lxcri", PolicyDocument=json.dumps(policy))
        return arn

    def delete_role(self, role, region):
        iam = self.client("iam", region)
        try:
            for policy in self.call(iam.list_role_policies, RoleName=role).get("PolicyNames", []):
                self.call(iam.delete_role_policy, RoleName=role, PolicyName=policy)
            for policy in self.call(iam.list_attached_role_policies, RoleName=role).get("AttachedPolicies", []):
                self.call(iam.detach_role_policy, RoleName=role, PolicyArn=policy["PolicyArn"])
            self.call(iam.delete_role, RoleName=role)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise

    def tag(self, rec, tags, purge):
        add = {k: v for k, v in tags.items() if rec["tags"].get(k) != v}
        remove = [k for k in rec["tags"] if purge and k not in tags]
        self.retag(rec, add, remove)

    def config(self, rec):
        if rec["id"] not in self.configs:
            self.find(rec["deployment"], rec["region"])
        return dict(self.configs[rec["id"]])

    def refresh(self, records):
        fresh = []
        for rec in records:
            fresh += self.find(rec["deployment"], rec["region"])
        return fresh

    def failed(self, what, name, region, exc, secrets=None):
        """Remove what a failed create made; the error to raise says so (never with a secret value in it)."""
        try:
            self.remove(name, region)
            left = "what it had created was removed"
        except Exception as cleanup:  # report both; the first failure is the one to fix
            left = f"removing what it had created failed too ({_scrub(str(cleanup), secrets or {})}): run state=absent"
        return ProviderError(f"creating the {what} {name} in {region} failed, {left}: {_scrub(str(exc), secrets or {})}")


class Containers(_Service):
    kind = "container"

    def __init__(self, provider):
        super().__init__(provider)
        self.taskdefs = {}

    # -- reading ------------------------------------------------------------------------------------

    def _describe(self, region, names):
        return [s for s in self._services(region, names) if s.get("status") == "ACTIVE"
                and _tags(s).get(KIND_TAG) == self.kind and _tags(s).get(DEPLOYMENT_TAG) == s["serviceName"]]

    def _services(self, region, names):
        """The cluster's services of these names, with their tags, ten a call ([] without the cluster)."""
        ecs = self.client("ecs", region)
        found = []
        try:
            for start in range(0, len(names), 10):
                found += self.call(ecs.describe_services, cluster=CLUSTER, services=names[start:start + 10],
                                   include=["TAGS"])["services"]
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "ClusterNotFoundException":
                return []
            raise
        return found

    def _taskdef(self, region, arn):
        if arn not in self.taskdefs:  # a revision never changes
            self.taskdefs[arn] = self.call(self.client("ecs", region).describe_task_definition,
                                           taskDefinition=arn)["taskDefinition"]
        return self.taskdefs[arn]

    def find(self, name, region):
        return [self._record(s, region) for s in self._describe(region, [name])]

    def list(self, region):
        ecs = self.client("ecs", region)
        try:
            pages = self.p.pages(ecs, "list_services", "serviceArns", cluster=CLUSTER)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "ClusterNotFoundException":
                return []
            raise
        return [self._record(s, region) for s in self._describe(region, [arn.rsplit("/", 1)[-1] for arn in pages])]

    def _record(self, service, region):
        tags = _tags(service)
        taskdef = self._taskdef(region, service["taskDefinition"])
        container = taskdef["containerDefinitions"][0]
        config = self._config(service, taskdef)
        public_ip, private_ip = self._address(region, service) if config["public"] and service["desiredCount"] else (None, None)
        port = config["port"]
        rec = record(
            self.p.name, kind=self.kind, name=service["serviceName"], deployment=service["serviceName"],
            id=service["serviceArn"], state=_ecs_state(service), region=region,
            native_size=f"{config['cpu']:g} vCPU / {config['memory']} MiB", image=container["image"],
            public_ip=public_ip, private_ip=private_ip,
            url=f"http://{public_ip}{'' if port == 80 else f':{port}'}" if public_ip else None,
            tags=_user_tags(tags), created_at=iso_utc(service.get("createdAt")),
        )
        self.configs[rec["id"]] = config
        return rec

    def _config(self, service, taskdef):
        container = taskdef["containerDefinitions"][0]
        tags = _tags(service)
        network = service.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        replicas = service["desiredCount"] or int(tags.get(REPLICAS_TAG) or 0)
        return {
            "image": container["image"],
            "port": (container.get("portMappings") or [{}])[0].get("containerPort", 80),
            "env": {e["name"]: e["value"] for e in container.get("environment") or []},
            "secret_env": tags.get(SECRET_TAG, ""),
            "cpu": int(taskdef["cpu"]) / 1024,
            "memory": int(taskdef["memory"]),
            "command": list(container.get("command") or []),
            "public": network.get("assignPublicIp") == "ENABLED",
            "replicas": replicas,
        }

    def _address(self, region, service):
        """(public IP, private IP) of the service's first running task (by start time), or (None, None)."""
        ecs = self.client("ecs", region)
        name = service["serviceName"]
        arns = self.call(ecs.list_tasks, cluster=CLUSTER, serviceName=name, desiredStatus="RUNNING").get("taskArns", [])
        if not arns:
            return None, None
        tasks = self.call(ecs.describe_tasks, cluster=CLUSTER, tasks=arns[:100]).get("tasks", [])
        tasks = sorted((t for t in tasks if t.get("group") == f"service:{name}" and t.get("lastStatus") == "RUNNING"),
                       key=lambda t: (str(t.get("startedAt") or ""), t["taskArn"]))
        for task in tasks:
            details = {d["name"]: d["value"] for a in task.get("attachments", []) if a.get("type") == "ElasticNetworkInterface"
                       for d in a.get("details", [])}
            if details.get("networkInterfaceId"):
                enis = self.call(self.client("ec2", region).describe_network_interfaces,
                                 NetworkInterfaceIds=[details["networkInterfaceId"]])["NetworkInterfaces"]
                public = enis[0].get("Association", {}).get("PublicIp") if enis else None
                return public, details.get("privateIPv4Address")
        return None, None

    # -- changing -----------------------------------------------------------------------------------

    def _network(self, region):
        ec2 = self.client("ec2", region)
        vpcs = self.call(ec2.describe_vpcs, Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise ProviderError(f"no default VPC in {region}: containers run in the default VPC's subnets; "
                                f"create it with `aws ec2 create-default-vpc --region {region}`")
        vpc = vpcs[0]
        filters = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}, {"Name": "default-for-az", "Values": ["true"]}]
        subnets = self.call(ec2.describe_subnets, Filters=filters)["Subnets"]
        if not subnets:
            raise ProviderError(f"the default VPC {vpc['VpcId']} in {region} has no default subnets")
        return vpc, sorted(s["SubnetId"] for s in subnets)[:16]

    def _group(self, region, name):
        filters = [{"Name": "group-name", "Values": [f"lxcri-{name}"]}, {"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [name]}]
        groups = self.call(self.client("ec2", region).describe_security_groups, Filters=filters)["SecurityGroups"]
        return groups[0] if groups else None

    def _ensure_group(self, region, name, vpc, port, public):
        ec2 = self.client("ec2", region)
        group = self._group(region, name)
        if group is None:
            tags = [{"Key": k, "Value": v} for k, v in _identity(name, self.kind).items()]
            group_id = self.call(ec2.create_security_group, GroupName=f"lxcri-{name}", VpcId=vpc["VpcId"],
                                 Description=f"lxcri.cloud container {name}",
                                 TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
            group = {"GroupId": group_id, "IpPermissions": []}
        wanted = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                  "IpRanges": [{"CidrIp": "0.0.0.0/0" if public else vpc["CidrBlock"]}]}
        have = [{k: p[k] for k in ("IpProtocol", "FromPort", "ToPort", "IpRanges") if k in p} for p in group["IpPermissions"]]
        have = [dict(p, IpRanges=[{"CidrIp": r["CidrIp"]} for r in p.get("IpRanges", [])]) for p in have]
        if have != [wanted]:
            if group["IpPermissions"]:
                self.call(ec2.revoke_security_group_ingress, GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
            self.call(ec2.authorize_security_group_ingress, GroupId=group["GroupId"], IpPermissions=[wanted])
        return group["GroupId"]

    def _put_secrets(self, region, name, secret_env):
        """Store secret_env as SecureStrings, drop keys no longer there; the task definition's `secrets`."""
        ssm = self.client("ssm", region)
        prefix = f"/lxcri/{name}/"
        stored = self._secret_names(region, name)
        for key, value in sorted(secret_env.items()):
            self.call(ssm.put_parameter, Name=prefix + key, Value=value, Type="SecureString", Overwrite=True,
                      Description=f"lxcri.cloud container {name}")
            if prefix + key not in stored:
                self.call(ssm.add_tags_to_resource, ResourceType="Parameter", ResourceId=prefix + key,
                          Tags=[{"Key": k, "Value": v} for k, v in _identity(name, self.kind).items()])
        gone = [n for n in stored if n[len(prefix):] not in secret_env]
        for start in range(0, len(gone), 10):
            self.call(ssm.delete_parameters, Names=gone[start:start + 10])
        arn = f"arn:{self.p.partition(region)}:ssm:{region}:{self.p.account(region)}:parameter{prefix}"
        return [{"name": key, "valueFrom": arn + key} for key in sorted(secret_env)]

    def _secret_names(self, region, name):
        ssm = self.client("ssm", region)
        filters = [{"Key": "Path", "Option": "Recursive", "Values": [f"/lxcri/{name}"]}]
        return [p["Name"] for p in self.p.pages(ssm, "describe_parameters", "Parameters", ParameterFilters=filters)]

    def _execution_role(self, region, name):
        resource = f"arn:{self.p.partition(region)}:ssm:*:{self.p.account(region)}:parameter/lxcri/{name}/*"
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": resource}]}
        return self.ensure_role(f"lxcri-ecs-{name}", name, "ecs-tasks.amazonaws.com", policy, region)

    def _register(self, region, spec, secrets, role):
        name, container = spec["name"], spec["container"]
        definition = {
            "name": name, "image": container["image"], "essential": True,
            "portMappings": [{"containerPort": container["port"], "protocol": "tcp"}],
            "environment": [{"name": k, "value": v} for k, v in sorted(container["env"].items())],
        }
        if secrets:
            definition["secrets"] = secrets
        if container.get("command"):
            definition["command"] = list(container["command"])
        kwargs = {
            "family": f"lxcri-{name}", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc",
            "cpu": str(round(container["cpu"] * 1024)), "memory": str(container["memory"]),
            "containerDefinitions": [definition],
            "tags": [{"key": k, "value": v} for k, v in _identity(name, self.kind).items()],
        }
        if role:
            kwargs["executionRoleArn"] = role
        return self.call(self.client("ecs", region).register_task_definition, **kwargs)["taskDefinition"]["taskDefinitionArn"]

    def _ensure_cluster(self, region):
        ecs = self.client("ecs", region)
        clusters = self.call(ecs.describe_clusters, clusters=[CLUSTER])["clusters"]
        if not any(c.get("status") == "ACTIVE" for c in clusters):
            self.call(ecs.create_cluster, clusterName=CLUSTER, tags=[{"key": "lxcri-managed", "value": "true"}])

    def _definition(self, region, spec):
        """Secrets, their reading role and a new task definition revision for the spec."""
        secret_env = spec["container"]["secret_env"]
        secrets = self._put_secrets(region, spec["name"], secret_env)
        role = self._execution_role(region, spec["name"]) if secret_env else None
        return self._register(region, spec, secrets, role)

    def create(self, spec, region):
        name, container = spec["name"], spec["container"]
        secret = secret_fingerprint(container["secret_env"])
        tags = {**spec["tags"], **_identity(name, self.kind, {REPLICAS_TAG: str(spec["count"])})}
        if secret:
            tags[SECRET_TAG] = secret
        try:
            self._ensure_cluster(region)
            vpc, subnets = self._network(region)
            group = self._ensure_group(region, name, vpc, container["port"], container["public"])
            taskdef = self._definition(region, spec)
            service = self.call(
                self.client("ecs", region).create_service, cluster=CLUSTER, serviceName=name, taskDefinition=taskdef,
                desiredCount=spec["count"], launchType="FARGATE", clientToken=uuid.uuid4().hex,
                networkConfiguration=self._awsvpc(subnets, group, container["public"]),
                tags=[{"key": k, "value": v} for k, v in tags.items()], propagateTags="SERVICE",
            )["service"]
        except Exception as exc:
            raise self.failed("container service", name, region, exc, container["secret_env"]) from None
        return self._record(service, region)

    @staticmethod
    def _awsvpc(subnets, group, public):
        return {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [group],
                                        "assignPublicIp": "ENABLED" if public else "DISABLED"}}

    def update(self, rec, spec, changes):
        name, region, container = spec["name"], rec["region"], spec["container"]
        ecs = self.client("ecs", region)
        kwargs = {}
        try:
            if {"port", "public"} & set(changes):
                vpc, subnets = self._network(region)
                group = self._ensure_group(region, name, vpc, container["port"], container["public"])
                kwargs["networkConfiguration"] = self._awsvpc(subnets, group, container["public"])
            if {"image", "port", "env", "secret_env", "cpu", "memory", "command"} & set(changes):
                kwargs["taskDefinition"] = self._definition(region, spec)
            if "replicas" in changes and rec["state"] != "stopped":
                kwargs["desiredCount"] = spec["count"]
            if kwargs:
                self.call(ecs.update_service, cluster=CLUSTER, service=name, **kwargs)
            self.retag(rec, {REPLICAS_TAG: str(spec["count"])}, [])
            secret = secret_fingerprint(container["secret_env"])
            self.retag(rec, {SECRET_TAG: secret} if secret else {}, [] if secret else [SECRET_TAG])
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"updating the container service {name} in {region} failed: "
                                f"{_scrub(str(exc), container['secret_env'])}") from None
        return self.find(name, region)[0], False

    def retag(self, rec, add, remove):
        ecs = self.client("ecs", rec["region"])
        if add:
            self.call(ecs.tag_resource, resourceArn=rec["id"], tags=[{"key": k, "value": v} for k, v in add.items()])
        if remove:
            self.call(ecs.untag_resource, resourceArn=rec["id"], tagKeys=list(remove))

    def _scale(self, rec, **kwargs):
        self.call(self.client("ecs", rec["region"]).update_service, cluster=CLUSTER, service=rec["deployment"], **kwargs)

    def stop(self, rec):
        self._scale(rec, desiredCount=0)

    def start(self, rec):
        services = self._describe(rec["region"], [rec["deployment"]])
        replicas = int(_tags(services[0]).get(REPLICAS_TAG) or 1) if services else 1
        self._scale(rec, desiredCount=max(replicas, 1))

    def restart(self, rec):
        self._scale(rec, forceNewDeployment=True)

    def delete(self, rec):
        self.remove(rec["deployment"], rec["region"])

    def remove(self, name, region):
        """Everything of container `name`: service, task definitions, secrets, role, group, maybe the cluster."""
        ecs = self.client("ecs", region)
        if self._describe(region, [name]):
            self.call(ecs.delete_service, cluster=CLUSTER, service=name, force=True)
        self._deregister(region, name)
        ssm = self.client("ssm", region)
        stored = self._secret_names(region, name)
        for start in range(0, len(stored), 10):
            self.call(ssm.delete_parameters, Names=stored[start:start + 10])
        self.delete_role(f"lxcri-ecs-{name}", region)
        self._wait_drained(region, name)
        group = self._group(region, name)
        if group:
            self._delete_group(region, group["GroupId"])
        self._delete_cluster_if_empty(region)

    def _deregister(self, region, name):
        ecs = self.client("ecs", region)
        family = f"lxcri-{name}"

        def revisions(status):
            arns = self.p.pages(ecs, "list_task_definitions", "taskDefinitionArns", familyPrefix=family, status=status)
            return [arn for arn in arns if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]

        for arn in revisions("ACTIVE"):
            self.call(ecs.deregister_task_definition, taskDefinition=arn)
        inactive = revisions("INACTIVE")
        for start in range(0, len(inactive), 10):
            self.call(ecs.delete_task_definitions, taskDefinitions=inactive[start:start + 10])

    def _all_services(self, region, name=None):
        """The services of the cluster that are not gone yet (ACTIVE or DRAINING): all, or ours named `name`."""
        ecs = self.client("ecs", region)
        try:
            names = [arn.rsplit("/", 1)[-1] for arn in self.p.pages(ecs, "list_services", "serviceArns", cluster=CLUSTER)]
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "ClusterNotFoundException":
                return []
            raise
        found = self._services(region, [n for n in names if name is None or n == name])
        return [s for s in found if s.get("status") in ("ACTIVE", "DRAINING")
                and (name is None or _tags(s).get(DEPLOYMENT_TAG) == name)]

    def _wait_drained(self, region, name):
        self.wait(lambda: self._all_services(region, name), lambda found: not found,
                  f"the ECS service {name} to drain", DELETE_TIMEOUT,
                  describe=lambda found: ", ".join(f"{s['serviceName']}={s['status']}" for s in found))

    def _delete_group(self, region, group_id):
        ec2 = self.client("ec2", region)

        def attempt():
            try:
                self.call(ec2.delete_security_group, GroupId=group_id)
                return True
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == "InvalidGroup.NotFound":
                    return True
                if _code(exc) != "DependencyViolation":  # task network interfaces still being released
                    raise
                return False

        self.wait(attempt, bool, f"the security group {group_id} to be free to delete", DELETE_TIMEOUT)

    def _delete_cluster_if_empty(self, region):
        ecs = self.client("ecs", region)
        clusters = self.call(ecs.describe_clusters, clusters=[CLUSTER])["clusters"]
        if not any(c.get("status") == "ACTIVE" for c in clusters) or self._all_services(region):
            return
        try:
            self.call(ecs.delete_cluster, cluster=CLUSTER)
        except botocore.exceptions.ClientError as exc:
            # another deployment started a service meanwhile: the cluster is in use again
            if _code(exc) not in ("ClusterContainsServicesException", "ClusterContainsTasksException", "ClusterNotFoundException"):
                raise


def _tags(service):
    return {t["key"]: t["value"] for t in service.get("tags") or []}


def _ecs_state(service):
    if service.get("status") != "ACTIVE":
        return "terminated"
    deployments = service.get("deployments") or []
    if any(d.get("rolloutState") == "FAILED" for d in deployments if d.get("status") == "PRIMARY"):
        return "error"
    desired, running = service["desiredCount"], service["runningCount"]
    if desired == 0:
        return "stopped" if running == 0 else "pending"
    if running == desired and len(deployments) <= 1 and all(d.get("rolloutState", "COMPLETED") == "COMPLETED" for d in deployments):
        return "running"
    return "pending"


class Functions(_Service):
    kind = "function"

    def _fetch(self, name, region):
        lam = self.client("lambda", region)
        try:
            function = self.call(lam.get_function, FunctionName=name)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None
            raise
        tags = function.get("Tags") or {}
        if tags.get(DEPLOYMENT_TAG) != name or tags.get(KIND_TAG) != self.kind:
            return None
        return function

    def find(self, name, region):
        function = self._fetch(name, region)
        return [self._record(function, region)] if function else []

    def list(self, region):
        lam = self.client("lambda", region)
        names = [f["FunctionName"] for f in self.p.pages(lam, "list_functions", "Functions")]
        return [rec for found in self.p.each(lambda n: self.find(n, region), names) for rec in found]

    def _record(self, function, region):
        lam = self.client("lambda", region)
        cfg = function["Configuration"]
        name = cfg["FunctionName"]
        tags = function.get("Tags") or {}
        # get_function's Concurrency is left out by some implementations when it is 0: ask directly
        reserved = self.call(lam.get_function_concurrency, FunctionName=name).get("ReservedConcurrentExecutions")
        try:
            url = self.call(lam.get_function_url_config, FunctionName=name)["FunctionUrl"]
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
            url = None
        if cfg.get("State") == "Failed" or cfg.get("LastUpdateStatus") == "Failed":
            state = "error"
        elif cfg.get("State") == "Pending" or cfg.get("LastUpdateStatus") == "InProgress":
            state = "pending"
        else:
            state = "stopped" if reserved == 0 else "running"
        rec = record(
            self.p.name, kind=self.kind, name=name, deployment=name, id=cfg["FunctionArn"], state=state, region=region,
            native_size=f"{cfg.get('MemorySize')} MiB / {cfg.get('Timeout')} s", image=cfg.get("Runtime"), url=url,
            tags=_user_tags(tags), created_at=tags.get(CREATED_TAG) or iso_utc(cfg.get("LastModified")),
        )
        self.configs[rec["id"]] = {
            "runtime": cfg.get("Runtime"), "handler": cfg.get("Handler"), "code": cfg.get("CodeSha256"),
            "env": dict((cfg.get("Environment") or {}).get("Variables") or {}), "memory": cfg.get("MemorySize"),
            "timeout": cfg.get("Timeout"), "url": url is not None,
        }
        return rec

    def _settings(self, function):
        return {"Runtime": function["runtime"], "Handler": function["handler"], "MemorySize": function["memory"],
                "Timeout": function["timeout"], "Environment": {"Variables": dict(function["env"])}}

    def _ready(self, name, region, timeout):
        """Wait until the function is Active and no update is in progress; fail on a failed one."""
        lam = self.client("lambda", region)
        cfg = self.wait(
            lambda: self.call(lam.get_function_configuration, FunctionName=name),
            lambda c: c.get("State") != "Pending" and c.get("LastUpdateStatus") != "InProgress",
            f"the Lambda function {name} to be active", timeout,
            describe=lambda c: f"State={c.get('State')} LastUpdateStatus={c.get('LastUpdateStatus')}",
        )
        if cfg.get("State") == "Failed" or cfg.get("LastUpdateStatus") == "Failed":
            reason = cfg.get("LastUpdateStatusReason") or cfg.get("StateReason") or "no reason given"
            raise ProviderError(f"the Lambda function {name} in {region} failed: {reason}")
        return cfg

    def create(self, spec, region):
        name, function = spec["name"], spec["function"]
        lam = self.client("lambda", region)
        now = datetime.datetime.now(datetime.timezone.utc)
        tags = {**spec["tags"], **_identity(name, self.kind, {CREATED_TAG: iso_utc(now)})}
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
            "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]}]}
        try:
            role = self.ensure_role(f"lxcri-lambda-{name}", name, "lambda.amazonaws.com", policy, region)
            kwargs = dict(self._settings(function), FunctionName=name, Role=role, Code={"ZipFile": function["zip"]},
                          Tags=tags, Description="lxcri.cloud function", PackageType="Zip")
            self._create_function(lam, kwargs, spec["wait_timeout"])
            self._ready(name, region, spec["wait_timeout"])
            if function["url"]:
                self._url(name, region, True)
        except Exception as exc:
            raise self.failed("Lambda function", name, region, exc) from None
        return self.find(name, region)[0]

    def _create_function(self, lam, kwargs, timeout):
        """CreateFunction; a role created a moment ago may not be assumable yet (IAM is eventually consistent)."""

        def attempt():
            try:
                return self.call(lam.create_function, **kwargs)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) == "ResourceConflictException":  # a retried call that had worked
                    return self.call(lam.get_function_configuration, FunctionName=kwargs["FunctionName"])
                if _code(exc) == "InvalidParameterValueException" and "assume" in str(exc).lower():
                    return None
                raise

        return self.wait(attempt, bool, f"the new role of {kwargs['FunctionName']} to be usable by Lambda",
                         min(timeout, ROLE_PROPAGATION))

    def _url(self, name, region, wanted):
        lam = self.client("lambda", region)
        if wanted:
            try:
                self.call(lam.create_function_url_config, FunctionName=name, AuthType="NONE")
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "ResourceConflictException":
                    raise
            self._permission(lam, name, URL_STATEMENTS[0], Action="lambda:InvokeFunctionUrl", FunctionUrlAuthType="NONE")
            self._permission(lam, name, URL_STATEMENTS[1], Action="lambda:InvokeFunction", InvokedViaFunctionUrl=True)
            return
        for statement in URL_STATEMENTS:
            try:
                self.call(lam.remove_permission, FunctionName=name, StatementId=statement)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
        try:
            self.call(lam.delete_function_url_config, FunctionName=name)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise

    def _permission(self, lam, name, statement, **kwargs):
        try:
            self.call(lam.add_permission, FunctionName=name, StatementId=statement, Principal="*", **kwargs)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "ResourceConflictException":  # the statement is there already
                raise

    def update(self, rec, spec, changes):
        name, region, function = spec["name"], rec["region"], spec["function"]
        lam = self.client("lambda", region)
        timeout = spec["wait_timeout"]
        try:
            if "code" in changes:
                self._ready(name, region, timeout)
                self.call(lam.update_function_code, FunctionName=name, ZipFile=function["zip"])
            if {"runtime", "handler", "env", "memory", "timeout"} & set(changes):
                self._ready(name, region, timeout)
                self.call(lam.update_function_configuration, FunctionName=name, **self._settings(function))
            if "url" in changes:
                self._url(name, region, function["url"])
            self._ready(name, region, timeout)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(f"updating the Lambda function {name} in {region} failed: {exc}") from None
        return self.find(name, region)[0], False

    def retag(self, rec, add, remove):
        lam = self.client("lambda", rec["region"])
        if add:
            self.call(lam.tag_resource, Resource=rec["id"], Tags=dict(add))
        if remove:
            self.call(lam.untag_resource, Resource=rec["id"], TagKeys=list(remove))

    def stop(self, rec):
        self.call(self.client("lambda", rec["region"]).put_function_concurrency, FunctionName=rec["deployment"],
                  ReservedConcurrentExecutions=0)

    def start(self, rec):
        self.call(self.client("lambda", rec["region"]).delete_function_concurrency, FunctionName=rec["deployment"])

    def restart(self, rec):
        name, region = rec["deployment"], rec["region"]
        self._ready(name, region, DELETE_TIMEOUT)
        stamp = iso_utc(datetime.datetime.now(datetime.timezone.utc))
        self.call(self.client("lambda", region).update_function_configuration, FunctionName=name,
                  Description=f"lxcri.cloud function, restarted {stamp}")

    def delete(self, rec):
        self.remove(rec["deployment"], rec["region"])

    def remove(self, name, region):
        lam = self.client("lambda", region)
        if self._fetch(name, region):
            try:
                self.call(lam.delete_function, FunctionName=name)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
        self.delete_role(f"lxcri-lambda-{name}", region)
        logs = self.client("logs", region)
        try:
            self.call(logs.delete_log_group, logGroupName=f"/aws/lambda/{name}")
        except botocore.exceptions.ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
