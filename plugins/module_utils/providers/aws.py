# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS: VMs are EC2 instances, found by the tag lxcri-deployment and named by the tag Name; containers are
ECS services on Fargate and functions are Lambda functions (aws_services.py, documented there); metrics and
alarms are CloudWatch's, alarms notify through SNS (aws_monitoring.py, documented there)."""

from __future__ import annotations

import hashlib
import re

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, Provider, ProviderError, iso_utc, record
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, parse_retry_after
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws_monitoring import Monitoring, validate_alarm
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws_services import (
    Containers,
    Functions,
    validate_container,
    validate_function,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, IMAGE_TAG, KIND_TAG, TAG_PREFIX, member_index

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:
    boto3 = None

STATES = {
    "pending": "pending", "running": "running", "stopping": "pending", "stopped": "stopped",
    "shutting-down": "terminated", "terminated": "terminated",
}
LIVE = ["pending", "running", "stopping", "stopped"]
THROTTLE_CODES = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "SlowDown", "PriorRequestNotComplete",
}
TRANSIENT_CODES = {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "RequestTimeout"}

# (request token, response token) of the paginated operations the services use
PAGE_TOKENS = {
    "list_services": ("nextToken", "nextToken"), "list_task_definitions": ("nextToken", "nextToken"),
    "describe_parameters": ("NextToken", "NextToken"), "list_functions": ("Marker", "NextMarker"),
    "get_metric_data": ("NextToken", "NextToken"), "describe_alarms": ("NextToken", "NextToken"),
    "list_subscriptions_by_topic": ("NextToken", "NextToken"), "get_resources": ("PaginationToken", "PaginationToken"),
}


def _tags(instance):
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


class AwsProvider(Provider):
    name = "aws"
    title = "AWS"
    NATIVE_SIZE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
    NATIVE_SIZE_EXAMPLE = "t3.micro"
    NATIVE_IMAGE = re.compile(r"^ami-[0-9a-f]{8,17}$")
    NATIVE_IMAGE_EXAMPLE = "ami-0123456789abcdef0"
    POLL_MAX = 5.0

    def __init__(self, connection, policy=None):
        super().__init__(connection, **({"policy": policy} if policy else {}))
        if boto3 is None:
            raise MissingSDK("the aws provider needs boto3: pip install -r requirements.txt")
        conn = self.connection
        self.session = boto3.session.Session(
            aws_access_key_id=conn.get("access_key"),
            aws_secret_access_key=conn.get("secret_key"),
            aws_session_token=conn.get("session_token"),
            profile_name=conn.get("profile"),
        )
        if self.session.get_credentials() is None:
            raise ProviderError(
                "no AWS credentials: set aws.access_key and aws.secret_key (or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY), or aws.profile"
            )
        self._clients = {}
        self._amis = {}
        self._accounts = {}
        self.services = {"container": Containers(self), "function": Functions(self)}
        self.monitoring = Monitoring(self)

    @classmethod
    def validate(cls, spec):
        if spec.get("state") == "absent":  # removing needs the name and kind only
            return
        if spec.get("kind") == "container":
            validate_container(spec)
        elif spec.get("kind") == "function":
            validate_function(spec)

    @classmethod
    def validate_alarm(cls, alarm):
        validate_alarm(alarm)

    def client(self, service, region):
        key = (service, region)
        if key not in self._clients:
            conn = self.connection
            verify = conn.get("ca_bundle") or conn.get("validate_certs", True)
            # Retries are ours (retry.py), so botocore makes exactly one attempt per call.
            config = botocore.config.Config(
                retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60, user_agent_extra="lxcri.cloud"
            )
            self._clients[key] = self.session.client(
                service, region_name=region, endpoint_url=conn.get("endpoint"), verify=verify, config=config
            )
        return self._clients[key]

    def classify(self, exc):
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            meta = exc.response.get("ResponseMetadata", {})
            status = meta.get("HTTPStatusCode", 0)
            retry_after = parse_retry_after(meta.get("HTTPHeaders", {}).get("retry-after"))
            if error.get("Code") in THROTTLE_CODES or status == 429:
                return THROTTLED, retry_after
            if error.get("Code") in TRANSIENT_CODES or status >= 500:
                return TRANSIENT, retry_after
            return FATAL, None
        if self.unreachable(exc):
            return FATAL, None
        if isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
            return TRANSIENT, None
        return FATAL, None

    def pages(self, client, operation, key, **kwargs):
        """Every item under `key` of a paginated operation, each page under the retry policy."""
        items, token = [], None
        token_key, out_key = PAGE_TOKENS[operation]
        while True:
            page = self.call(getattr(client, operation), **kwargs, **({token_key: token} if token else {}))
            items += page.get(key, [])
            token = page.get(out_key)
            if not token:
                return items

    def partition(self, region):
        return self.session.get_partition_for_region(region)

    def account(self, region):
        if region not in self._accounts:
            self._accounts[region] = self.call(self.client("sts", region).get_caller_identity)["Account"]
        return self._accounts[region]

    def unreachable(self, exc):
        return isinstance(exc, botocore.exceptions.EndpointConnectionError) and not isinstance(
            exc, botocore.exceptions.ConnectionClosedError
        )

    # -- reading ---------------------------------------------------------------------------------

    def _describe(self, region, filters):
        ec2 = self.client("ec2", region)
        instances, token = [], None
        while True:
            kwargs = {"Filters": filters, "MaxResults": 1000}
            if token:
                kwargs["NextToken"] = token
            page = self.call(ec2.describe_instances, **kwargs)
            for reservation in page.get("Reservations", []):
                instances.extend(reservation.get("Instances", []))
            token = page.get("NextToken")
            if not token:
                return instances

    def _record(self, instance, region):
        tags = _tags(instance)
        return record(
            self.name,
            kind=tags.get(KIND_TAG, "vm"),
            name=tags.get("Name"),
            deployment=tags.get(DEPLOYMENT_TAG),
            id=instance["InstanceId"],
            state=STATES.get(instance["State"]["Name"], "unknown"),
            region=region,
            zone=instance.get("Placement", {}).get("AvailabilityZone"),
            native_size=instance.get("InstanceType"),
            image=tags.get(IMAGE_TAG) or instance.get("ImageId"),
            public_ip=instance.get("PublicIpAddress"),
            private_ip=instance.get("PrivateIpAddress"),
            tags={key: value for key, value in tags.items() if key != "Name" and not key.startswith(TAG_PREFIX)},
            created_at=iso_utc(instance.get("LaunchTime")),
        )

    def find_members(self, name, region, kind="vm"):
        instances = self._describe(
            region, [{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [name]}, {"Name": "instance-state-name", "Values": LIVE}]
        )
        records = [self._record(instance, region) for instance in instances]
        self._adopt_unnamed(name, records, region)
        return records

    def _adopt_unnamed(self, name, records, region):
        """Give a member name to instances that a run stopped before naming (RunInstances then CreateTags)."""
        taken = {rec["name"] for rec in records}
        free = (f"{name}-{index}" for index in range(1, 10 ** 6) if f"{name}-{index}" not in taken)
        seen = set()
        for rec in records:
            if member_index(name, rec["name"]) is None or rec["name"] in seen:
                rec["name"] = next(free)
                self.call(self.client("ec2", region).create_tags, Resources=[rec["id"]], Tags=[{"Key": "Name", "Value": rec["name"]}])
            seen.add(rec["name"])

    def find_service(self, name, region, kind):
        return self.services[kind].find(name, region)

    def service_config(self, rec):
        return self.services[rec["kind"]].config(rec)

    def list(self, region, tags=None):
        filters = [{"Name": "tag-key", "Values": [DEPLOYMENT_TAG]}, {"Name": "instance-state-name", "Values": LIVE}]
        filters += [{"Name": f"tag:{key}", "Values": [value]} for key, value in (tags or {}).items()]
        records = [self._record(instance, region) for instance in self._describe(region, filters)]
        for handler in self.services.values():
            records += [rec for rec in handler.list(region) if all(rec["tags"].get(k) == v for k, v in (tags or {}).items())]
        return records

    def _split(self, records):
        """(VM records, [(service handler, record)])"""
        vms, services = self.split(records)
        return vms, [(self.services[rec["kind"]], rec) for rec in services]

    def refresh(self, records):
        records, services = self._split(records)
        fresh = [new for handler, rec in services for new in handler.refresh([rec])]
        by_region = {}
        for rec in records:
            by_region.setdefault(rec["region"], []).append(rec["id"])
        for region, ids in by_region.items():
            fresh += [self._record(i, region) for i in self._describe(region, [{"Name": "instance-id", "Values": ids}])]
        return fresh

    # -- changing --------------------------------------------------------------------------------

    def resolve_image(self, image, region):
        wanted = catalog.native_image(self.name, image)
        if isinstance(wanted, str):
            return wanted
        key = (region, image)
        if key not in self._amis:
            images = self.call(
                self.client("ec2", region).describe_images,
                Owners=[wanted["owner"]],
                Filters=[{"Name": "name", "Values": [wanted["name"]]}, {"Name": "state", "Values": ["available"]}],
            )["Images"]
            if not images:
                raise ProviderError(f"image '{image}': no AMI named {wanted['name']} from owner {wanted['owner']} in {region}")
            self._amis[key] = max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"]
        return self._amis[key]

    def _client_token(self, spec, region, members):
        """Derived from the deployment's identity, so that a retried RunInstances can never duplicate.

        It also covers every instance this deployment ever had (terminated ones stay visible for a while),
        so that a deployment recreated after `absent` does not get the old, terminated answer back.
        """
        history = sorted(i["InstanceId"] for i in self._describe(region, [{"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [spec["name"]]}]))
        identity = "|".join([region, spec["name"], ",".join(members), ",".join(history)])
        return hashlib.sha256(identity.encode()).hexdigest()[:64]

    def create(self, spec, region, members):
        if spec["kind"] in self.services:
            return [self.services[spec["kind"]].create(spec, region)]
        ec2 = self.client("ec2", region)
        tags = {**spec["tags"], DEPLOYMENT_TAG: spec["name"], KIND_TAG: spec["kind"], IMAGE_TAG: spec["image"]}
        if len(members) == 1:
            tags["Name"] = members[0]
        tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
        kwargs = {
            "ImageId": self.resolve_image(spec["image"], region),
            "InstanceType": self.native_size(spec),
            "MinCount": len(members),
            "MaxCount": len(members),
            "ClientToken": self._client_token(spec, region, members),
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        if spec.get("cloud_init"):
            kwargs["UserData"] = spec["cloud_init"]
        instances = sorted(self.call(ec2.run_instances, **kwargs)["Instances"], key=lambda i: i.get("AmiLaunchIndex", 0))
        if len(members) > 1:
            for instance, member in zip(instances, members):
                self.call(ec2.create_tags, Resources=[instance["InstanceId"]], Tags=[{"Key": "Name", "Value": member}])
                instance.setdefault("Tags", []).append({"Key": "Name", "Value": member})
        return [self._record(instance, region) for instance in instances]

    def update_service(self, rec, spec, changes):
        return self.services[rec["kind"]].update(rec, spec, changes)

    def _each_region(self, records, action, **kwargs):
        records, services = self._split(records)
        for handler, rec in services:
            getattr(handler, {"terminate_instances": "delete", "start_instances": "start", "stop_instances": "stop",
                              "reboot_instances": "restart"}[action])(rec)
        by_region = {}
        for rec in records:
            by_region.setdefault(rec["region"], []).append(rec["id"])
        for region, ids in by_region.items():
            self.call(getattr(self.client("ec2", region), action), InstanceIds=ids, **kwargs)

    def delete(self, records):
        self._each_region(records, "terminate_instances")

    def start(self, records):
        self._each_region(records, "start_instances")

    def stop(self, records):
        self._each_region(records, "stop_instances")

    def restart(self, records):
        self._each_region(records, "reboot_instances")

    def update_tags(self, records, tags, purge):
        # Instances with the same change share one call each for CreateTags and DeleteTags.
        records, services = self._split(records)
        for handler, rec in services:
            handler.tag(rec, tags, purge)
        changes = {}
        for rec in records:
            add = tuple(sorted((k, v) for k, v in tags.items() if rec["tags"].get(k) != v))
            remove = tuple(sorted(k for k in rec["tags"] if purge and k not in tags))
            changes.setdefault((rec["region"], add, remove), []).append(rec["id"])
        for (region, add, remove), ids in changes.items():
            ec2 = self.client("ec2", region)
            if add:
                self.call(ec2.create_tags, Resources=ids, Tags=[{"Key": k, "Value": v} for k, v in add])
            if remove:
                self.call(ec2.delete_tags, Resources=ids, Tags=[{"Key": k} for k in remove])
