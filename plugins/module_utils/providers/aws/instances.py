# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS VMs: EC2 instances, found by the tag lxcri-deployment and named by the tag Name.

One RunInstances makes all the members of a create, with a ClientToken derived from the deployment's
identity (a retried call can never duplicate); instances that share a tag change share one CreateTags or
DeleteTags call; power actions take every instance of a region in one call.
"""

from __future__ import annotations

import hashlib

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import Backend, ProviderError, iso_utc, record, tag_changes
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, IMAGE_TAG, KIND_TAG, TAG_PREFIX, member_index

STATES = {
    "pending": "pending", "running": "running", "stopping": "pending", "stopped": "stopped",
    "shutting-down": "terminated", "terminated": "terminated",
}
LIVE = ["pending", "running", "stopping", "stopped"]


def _tags(instance):
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def _by_region(records):
    by_region = {}
    for rec in records:
        by_region.setdefault(rec["region"], []).append(rec["id"])
    return by_region.items()


class Instances(Backend):
    kind = "vm"

    def __init__(self, provider):
        super().__init__(provider)
        self._amis = {}  # (region, portable image) -> AMI id: looked up once per task

    def ec2(self, region):
        return self.p.client("ec2", region)

    # -- reading ---------------------------------------------------------------------------------

    def _describe(self, region, filters):
        reservations = self.p.pages(self.ec2(region), "describe_instances", "Reservations", Filters=filters, MaxResults=1000)
        return [instance for reservation in reservations for instance in reservation.get("Instances", [])]

    def _record(self, instance, region):
        tags = _tags(instance)
        return record(
            self.p.name,
            native=instance,
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

    def find(self, name, region):
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
                self.p.call(self.ec2(region).create_tags, Resources=[rec["id"]], Tags=[{"Key": "Name", "Value": rec["name"]}])
            seen.add(rec["name"])

    def list(self, region, tags):
        filters = [{"Name": "tag-key", "Values": [DEPLOYMENT_TAG]}, {"Name": "instance-state-name", "Values": LIVE}]
        filters += [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
        return [self._record(instance, region) for instance in self._describe(region, filters)]

    def refresh(self, records):
        return [self._record(instance, region) for region, ids in _by_region(records)
                for instance in self._describe(region, [{"Name": "instance-id", "Values": ids}])]

    # -- changing --------------------------------------------------------------------------------

    def resolve_image(self, image, region):
        wanted = catalog.native_image(self.p.name, image)
        if isinstance(wanted, str):
            return wanted
        key = (region, image)
        if key not in self._amis:
            images = self.p.call(
                self.ec2(region).describe_images,
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

    def create(self, spec, region, names):
        ec2 = self.ec2(region)
        tags = {**spec["tags"], DEPLOYMENT_TAG: spec["name"], KIND_TAG: spec["kind"], IMAGE_TAG: spec["image"]}
        if len(names) == 1:
            tags["Name"] = names[0]
        tag_list = [{"Key": key, "Value": value} for key, value in tags.items()]
        kwargs = {
            "ImageId": self.resolve_image(spec["image"], region),
            "InstanceType": self.native_size(spec),
            "MinCount": len(names),
            "MaxCount": len(names),
            "ClientToken": self._client_token(spec, region, names),
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tag_list},
                {"ResourceType": "volume", "Tags": tag_list},
            ],
        }
        if spec.get("cloud_init"):
            kwargs["UserData"] = spec["cloud_init"]
        instances = sorted(self.p.call(ec2.run_instances, **kwargs)["Instances"], key=lambda i: i.get("AmiLaunchIndex", 0))
        if len(names) > 1:
            for instance, member in zip(instances, names):
                self.p.call(ec2.create_tags, Resources=[instance["InstanceId"]], Tags=[{"Key": "Name", "Value": member}])
                instance.setdefault("Tags", []).append({"Key": "Name", "Value": member})
        return [self._record(instance, region) for instance in instances]

    def _each_region(self, records, action):
        for region, ids in _by_region(records):
            self.p.call(getattr(self.ec2(region), action), InstanceIds=ids)

    def delete(self, records):
        self._each_region(records, "terminate_instances")

    def start(self, records):
        self._each_region(records, "start_instances")

    def stop(self, records):
        self._each_region(records, "stop_instances")

    def restart(self, records):
        self._each_region(records, "reboot_instances")

    def tag(self, records, tags, purge):
        # Instances with the same change share one call each for CreateTags and DeleteTags.
        changes = {}
        for rec in records:
            add, remove = tag_changes(rec["tags"], tags, purge)
            changes.setdefault((rec["region"], tuple(sorted(add.items())), tuple(sorted(remove))), []).append(rec["id"])
        for (region, add, remove), ids in changes.items():
            if add:
                self.p.call(self.ec2(region).create_tags, Resources=ids, Tags=[{"Key": k, "Value": v} for k, v in add])
            if remove:
                self.p.call(self.ec2(region).delete_tags, Resources=ids, Tags=[{"Key": k} for k in remove])
