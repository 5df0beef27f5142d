# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS containers: ECS services on Fargate.

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
`absent` waits for the service to drain (whatever `wait` says, within wait_timeout) before it deletes the
security group and, when no other service is left in it, the cluster: otherwise they would be left behind.
"""

from __future__ import annotations

import uuid

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, iso_utc, record
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.errors import error_code
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws.services import Service, identity, scrub, user_tags
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, KIND_TAG, SpecError, secret_fingerprint

CLUSTER = "lxcri"
REPLICAS_TAG = "lxcri-replicas"
SECRET_TAG = "lxcri-secret"
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


class Containers(Service):
    kind = "container"

    def __init__(self, provider):
        super().__init__(provider)
        self.taskdefs = {}  # task definition ARN -> the definition: a revision never changes

    @classmethod
    def validate(cls, spec):
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

    # -- reading ------------------------------------------------------------------------------------

    def _describe(self, region, names):
        return [s for s in self._services(region, names) if s.get("status") == "ACTIVE"
                and _tags(s).get(KIND_TAG) == self.kind and _tags(s).get(DEPLOYMENT_TAG) == s["serviceName"]]

    def _services(self, region, names):
        """The cluster's services of these names, with their tags, ten a call ([] without the cluster)."""
        ecs = self.client("ecs", region)
        found = []
        for start in range(0, len(names), 10):
            answer = self.p.unless_gone(ecs.describe_services, cluster=CLUSTER, services=names[start:start + 10],
                                        include=["TAGS"])
            if answer is None:  # no cluster: no services
                return []
            found += answer["services"]
        return found

    def _service_names(self, region):
        """Names of every service of the cluster ([] without the cluster)."""
        try:
            arns = self.p.pages(self.client("ecs", region), "list_services", "serviceArns", cluster=CLUSTER)
        except Exception as exc:
            if not self.p.gone(exc):
                raise
            return []
        return [arn.rsplit("/", 1)[-1] for arn in arns]

    def _taskdef(self, region, arn):
        if arn not in self.taskdefs:
            self.taskdefs[arn] = self.call(self.client("ecs", region).describe_task_definition,
                                           taskDefinition=arn)["taskDefinition"]
        return self.taskdefs[arn]

    def find(self, name, region):
        return [self._record(s, region) for s in self._describe(region, [name])]

    def list(self, region, tags):
        return [self._record(s, region) for s in self._describe(region, self._service_names(region))]

    def _record(self, service, region):
        taskdef = self._taskdef(region, service["taskDefinition"])
        container = taskdef["containerDefinitions"][0]
        native = {"service": service, "taskdef": taskdef}
        config = self.settings(native)
        public_ip, private_ip = self._address(region, service) if config["public"] and service["desiredCount"] else (None, None)
        port = config["port"]
        return record(
            self.p.name, native=native, kind=self.kind, name=service["serviceName"], deployment=service["serviceName"],
            id=service["serviceArn"], state=_ecs_state(service), region=region,
            native_size=f"{config['cpu']:g} vCPU / {config['memory']} MiB", image=container["image"],
            public_ip=public_ip, private_ip=private_ip,
            url=f"http://{public_ip}{'' if port == 80 else f':{port}'}" if public_ip else None,
            tags=user_tags(_tags(service)), created_at=iso_utc(service.get("createdAt")),
        )

    def settings(self, native):
        service, taskdef = native["service"], native["taskdef"]
        container = taskdef["containerDefinitions"][0]
        tags = _tags(service)
        network = service.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
        return {
            "image": container["image"],
            "port": (container.get("portMappings") or [{}])[0].get("containerPort", 80),
            "env": {e["name"]: e["value"] for e in container.get("environment") or []},
            "secret_env": tags.get(SECRET_TAG, ""),
            "cpu": int(taskdef["cpu"]) / 1024,
            "memory": int(taskdef["memory"]),
            "command": list(container.get("command") or []),
            "public": network.get("assignPublicIp") == "ENABLED",
            "replicas": service["desiredCount"] or int(tags.get(REPLICAS_TAG) or 0),
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
            tags = [{"Key": k, "Value": v} for k, v in identity(name, self.kind).items()]
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
                          Tags=[{"Key": k, "Value": v} for k, v in identity(name, self.kind).items()])
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
            "tags": [{"key": k, "value": v} for k, v in identity(name, self.kind).items()],
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

    def create(self, spec, region, names):
        name, container = spec["name"], spec["container"]
        secret = secret_fingerprint(container["secret_env"])
        tags = {**spec["tags"], **identity(name, self.kind, {REPLICAS_TAG: str(spec["count"])})}
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
        return [self._record(service, region)]

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
                                f"{scrub(str(exc), container['secret_env'])}") from None
        return self.find(name, region)[0], False

    def retag(self, rec, add, remove):
        ecs = self.client("ecs", rec["region"])
        if add:
            self.call(ecs.tag_resource, resourceArn=rec["id"], tags=[{"key": k, "value": v} for k, v in add.items()])
        if remove:
            self.call(ecs.untag_resource, resourceArn=rec["id"], tagKeys=list(remove))

    def _scale(self, rec, **kwargs):
        self.call(self.client("ecs", rec["region"]).update_service, cluster=CLUSTER, service=rec["deployment"], **kwargs)

    def stop_one(self, rec):
        self._scale(rec, desiredCount=0)

    def start_one(self, rec):
        services = self._describe(rec["region"], [rec["deployment"]])
        replicas = int(_tags(services[0]).get(REPLICAS_TAG) or 1) if services else 1
        self._scale(rec, desiredCount=max(replicas, 1))

    def restart_one(self, rec):
        self._scale(rec, forceNewDeployment=True)

    def remove(self, name, region):
        """Everything of container `name`: service, task definitions, secrets, role, group, maybe the cluster."""
        ecs = self.client("ecs", region)
        if self._describe(region, [name]):
            self.p.unless_gone(ecs.delete_service, cluster=CLUSTER, service=name, force=True)
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
        names = [n for n in self._service_names(region) if name is None or n == name]
        return [s for s in self._services(region, names) if s.get("status") in ("ACTIVE", "DRAINING")
                and (name is None or _tags(s).get(DEPLOYMENT_TAG) == name)]

    def _wait_drained(self, region, name):
        self.p.wait(lambda: self._all_services(region, name), lambda found: not found,
                    f"the ECS service {name} to drain",
                    describe=lambda found: ", ".join(f"{s['serviceName']}={s['status']}" for s in found))

    def _delete_group(self, region, group_id):
        ec2 = self.client("ec2", region)

        def attempt():
            try:
                self.p.unless_gone(ec2.delete_security_group, GroupId=group_id)
                return True
            except Exception as exc:
                if error_code(exc) != "DependencyViolation":  # task network interfaces still being released
                    raise
                return False

        self.p.wait(attempt, bool, f"the security group {group_id} to be free to delete")

    def _delete_cluster_if_empty(self, region):
        ecs = self.client("ecs", region)
        clusters = self.call(ecs.describe_clusters, clusters=[CLUSTER])["clusters"]
        if not any(c.get("status") == "ACTIVE" for c in clusters) or self._all_services(region):
            return
        try:
            self.p.unless_gone(ecs.delete_cluster, cluster=CLUSTER)
        except Exception as exc:
            # another deployment started a service meanwhile: the cluster is in use again
            if error_code(exc) not in ("ClusterContainsServicesException", "ClusterContainsTasksException"):
                raise
