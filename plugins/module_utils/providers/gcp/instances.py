# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCP VMs: Compute Engine instances in one zone, found by the label lxcri-deployment.

Labels: `lxcri-deployment`, `lxcri-kind` and `lxcri-image` identify a member; the member name is the
instance name. Label values allow only lower-case letters, digits, '_' and '-': a portable image is
written with '.' as '_' (ubuntu-24.04 -> ubuntu-24_04, read back exactly, as portable names have no
'_'); a native image gets a readable label and its exact text in the instance metadata key
`lxcri-image`. User tags become labels as they are (labels.py).

Every change is a zonal operation: `*_unary` calls, awaited with our own ZoneOperationsClient (the SDK's
ExtendedOperation would poll compute.googleapis.com whatever the endpoint) until the task's deadline.
Mutations carry a requestId, so a retry of a call whose answer was lost cannot act twice. A record's native
is the compute_v1.Instance it was read from: start and stop go by its status (a SUSPENDED one is resumed),
and read the instance again for a record without one.
"""

from __future__ import annotations

import re
import uuid

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    Backend,
    PartialFailure,
    ProviderError,
    iso_utc,
    native_of,
    record,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.errors import cleanup
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.labels import (
    label_ok,
    labelable,
    relabelled,
    user_tags,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.places import last_segment, zone_region
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, IMAGE_TAG, KIND_TAG

try:
    from google.api_core import exceptions as api_exceptions
    from google.cloud import compute_v1
except ImportError:
    compute_v1 = None

STATES = {
    "PROVISIONING": "pending", "STAGING": "pending", "RUNNING": "running", "STOPPING": "pending",
    "SUSPENDING": "pending", "TERMINATED": "stopped", "SUSPENDED": "stopped", "STOPPED": "stopped",
    "REPAIRING": "error",
}
# Native states that move on by themselves: a stop or start waits for them to end first.
CHANGING = {"PROVISIONING", "STAGING", "STOPPING", "SUSPENDING"}
IMAGE_METADATA = "lxcri-image"
USER_DATA_METADATA = "user-data"
# operations.wait answers when the operation is DONE or after about two minutes; allow for that. Closer to the
# deadline than that, the operation is polled with operations.get, which answers at once.
WAIT_CALL_TIMEOUT = 150.0
# At most 20 names in one `name = ... OR name = ...` filter, to stay far from the filter length limit.
REFRESH_CHUNK = 20
LABEL_ATTEMPTS = 3


def encode_image(image):
    """The lxcri-image label value of an image.

    Portable names ('ubuntu-24.04') turn '.' into '_' and come back exactly with decode_image. A native
    image reference gets a readable, label-safe form of its last path segment; its exact text is kept in
    the instance metadata instead (see image_metadata).
    """
    if image in catalog.PORTABLE_IMAGES:
        return image.replace(".", "_")
    last = image.rstrip("/").rsplit("/", 1)[-1].lower().replace(".", "_")
    return re.sub(r"[^a-z0-9_-]", "-", last)[:63]


def decode_image(value):
    """The portable image name of an lxcri-image label value."""
    return value.replace("_", ".") if value else None


def image_metadata(image):
    """Metadata items that keep a native image's exact reference (none for portable images)."""
    return {} if image in catalog.PORTABLE_IMAGES else {IMAGE_METADATA: image}


def identity_labels(spec):
    return {DEPLOYMENT_TAG: spec["name"], KIND_TAG: spec["kind"], IMAGE_TAG: encode_image(spec["image"])}


def tag_filter(tags):
    """Server-side label conditions for the tags that a label can hold and that are not empty."""
    return " ".join(
        f'(labels.{key} = "{value}")' for key, value in sorted(tags.items()) if label_ok(key, key=True) and label_ok(value) and value
    )


class Instances(Backend):
    kind = "vm"

    def __init__(self, provider):
        super().__init__(provider)
        self._zones = {}  # region -> its first zone: looked up once, never changes

    def api(self, method, request, **kwargs):
        return self.p.rpc(method, request, **kwargs)

    def locate(self, region):
        """The zone of a deployment given a region: its first zone in alphabetical order."""
        if region not in self._zones:
            found = self.api(self.p.regions.get, compute_v1.GetRegionRequest(project=self.p.project, region=region),
                             missing_ok=True)
            if found is None:
                raise ProviderError(
                    f"region '{region}' is not a Compute Engine region of project {self.p.project}: use a zone such as "
                    "us-central1-a or a region such as us-central1"
                )
            zones = sorted(last_segment(link) for link in found.zones)
            if not zones:
                raise ProviderError(f"region '{region}' has no zones: set region to one of its zones")
            self._zones[region] = zones[0]
        return self._zones[region]

    # -- reading ---------------------------------------------------------------------------------

    def _list(self, zone, filter_text):
        """Every instance of the zone matching the filter, all pages (each page one retried call)."""
        request = compute_v1.ListInstancesRequest(project=self.p.project, zone=zone, filter=filter_text, max_results=500)

        def explain(exc):
            if isinstance(exc, api_exceptions.BadRequest) and "zone" in str(exc).lower():
                return ProviderError(
                    f"zone '{zone}' is not valid for project {self.p.project}: set region (or gcp.region) to a zone "
                    f"such as us-central1-a ({exc})"
                )
            return self.p.rejected(exc)

        return self.p.listing(self.p.instances.list, request, "items", explain=explain)

    def _record(self, inst):
        labels = dict(inst.labels)
        metadata = {item.key: item.value for item in inst.metadata.items}
        zone = last_segment(inst.zone)
        nic = inst.network_interfaces[0] if inst.network_interfaces else None
        public = [access.nat_i_p for access in (nic.access_configs if nic else []) if access.nat_i_p]
        return record(
            self.p.name,
            native=inst,
            kind=labels.get(KIND_TAG, "vm"),
            name=inst.name,
            deployment=labels.get(DEPLOYMENT_TAG),
            id=str(inst.id),
            state=STATES.get(inst.status, "unknown"),
            region=zone_region(zone),
            zone=zone,
            native_size=last_segment(inst.machine_type),
            image=metadata.get(IMAGE_METADATA) or decode_image(labels.get(IMAGE_TAG)),
            public_ip=public[0] if public else None,
            private_ip=(nic.network_i_p or None) if nic else None,
            tags=user_tags(labels),
            created_at=iso_utc(inst.creation_timestamp or None),
        )

    def find(self, name, region):
        return [self._record(inst) for inst in self._list(region, f'labels.{DEPLOYMENT_TAG} = "{name}"')]

    def list(self, region, tags):
        if not labelable(tags):
            return []  # no label can hold such a tag, so no instance carries it
        found = self._list(region, f"(labels.{DEPLOYMENT_TAG}:*) {tag_filter(tags)}".strip())
        return [self._record(inst) for inst in found]

    def refresh(self, records):
        by_zone = {}
        for rec in records:
            by_zone.setdefault(rec["zone"], []).append(rec)
        fresh = []
        for zone, recs in by_zone.items():
            for start in range(0, len(recs), REFRESH_CHUNK):
                chunk = recs[start:start + REFRESH_CHUNK]
                ids = {rec["id"] for rec in chunk if rec.get("id")}
                text = " OR ".join(f'(name = "{rec["name"]}")' for rec in chunk)
                # A name matches only the same instance: one deleted and made again is someone else.
                fresh += [self._record(inst) for inst in self._list(zone, text) if not ids or str(inst.id) in ids]
        return fresh

    def _get(self, zone, name, missing_ok=False):
        request = compute_v1.GetInstanceRequest(project=self.p.project, zone=zone, instance=name)
        return self.api(self.p.instances.get, request, missing_ok=missing_ok)

    # -- operations ------------------------------------------------------------------------------

    def _poll(self, operation, zone):
        """The operation again: operations.wait (answers once DONE, or after about two minutes), or, closer
        to the deadline than that, operations.get (answers at once), so that the deadline stays the bound."""
        if self.p.deadline.left() >= WAIT_CALL_TIMEOUT:
            request = compute_v1.WaitZoneOperationRequest(project=self.p.project, zone=zone, operation=operation.name)
            return self.api(self.p.zone_operations.wait, request, timeout=WAIT_CALL_TIMEOUT)
        request = compute_v1.GetZoneOperationRequest(project=self.p.project, zone=zone, operation=operation.name)
        return self.api(self.p.zone_operations.get, request)

    def _wait(self, operation, zone, what):
        """Wait for a zonal operation to be DONE; an operation that ends in errors raises them."""
        done = compute_v1.Operation.Status.DONE
        if operation.status != done:
            operation = self.p.wait(
                lambda: self._poll(operation, zone), lambda op: op.status == done,
                f"GCP operation {operation.name} ({what})", first=0.05,
                describe=lambda op: getattr(op.status, "name", op.status),
            )
        errors = list(operation.error.errors) if "error" in operation else []
        if errors:
            detail = "; ".join(f"{error.code}: {error.message}" for error in errors)
            raise ProviderError(f"GCP operation {what} failed: {detail}")
        return operation

    def _act(self, rec, action, missing_ok=False):
        """instances.<action> on one member, awaited; with missing_ok, nothing for a member that is not there."""
        methods = {
            "start": (self.p.instances.start_unary, compute_v1.StartInstanceRequest),
            "resume": (self.p.instances.resume_unary, compute_v1.ResumeInstanceRequest),
            "stop": (self.p.instances.stop_unary, compute_v1.StopInstanceRequest),
            "reset": (self.p.instances.reset_unary, compute_v1.ResetInstanceRequest),
            "delete": (self.p.instances.delete_unary, compute_v1.DeleteInstanceRequest),
        }
        method, request_class = methods[action]
        request = request_class(project=self.p.project, zone=rec["zone"], instance=rec["name"], request_id=str(uuid.uuid4()))
        operation = self.api(method, request, missing_ok=missing_ok)
        if operation is not None:
            self._wait(operation, rec["zone"], f"{action} of {rec['name']}")

    def _steady(self, rec):
        """The member's GCE status once it is no longer on its way somewhere (provisioning, stopping ...): the
        status the record was read with, or the instance read again (and awaited while it changes)."""
        inst = native_of(rec)
        status = inst.status if inst is not None else None
        if status in CHANGING or status is None:
            inst = self.p.wait(
                lambda: self._get(rec["zone"], rec["name"]), lambda i: i.status not in CHANGING,
                f"{rec['name']} to finish {str(status).lower()}", describe=lambda i: i.status,
            )
            status = inst.status
        return status

    def _power(self, rec, action):
        status = self._steady(rec)
        if action == "stop" and status in ("TERMINATED", "STOPPED", "SUSPENDED"):
            return
        if action == "start" and status == "RUNNING":
            return
        self._act(rec, "resume" if action == "start" and status == "SUSPENDED" else action)

    # -- changing --------------------------------------------------------------------------------

    def _instance(self, spec, zone, member):
        labels = {**spec["tags"], **identity_labels(spec)}
        metadata = dict(image_metadata(spec["image"]))
        if spec.get("cloud_init"):
            metadata[USER_DATA_METADATA] = spec["cloud_init"]
        return compute_v1.Instance(
            name=member,
            machine_type=f"zones/{zone}/machineTypes/{self.native_size(spec)}",
            labels=labels,
            disks=[
                compute_v1.AttachedDisk(
                    boot=True,
                    auto_delete=True,  # the disk goes with the instance: `absent` leaves nothing behind
                    initialize_params=compute_v1.AttachedDiskInitializeParams(
                        source_image=catalog.native_image(self.p.name, spec["image"]), labels=labels
                    ),
                )
            ],
            network_interfaces=[
                compute_v1.NetworkInterface(
                    network="global/networks/default",
                    access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
                )
            ],
            metadata=compute_v1.Metadata(items=[compute_v1.Items(key=k, value=v) for k, v in metadata.items()]),
        )

    def create(self, spec, region, names):
        made, failures = self.p.each_settled(lambda member: self._create_one(spec, region, member), names)
        if failures:
            raise PartialFailure("; ".join(str(exc) for _member, exc in failures), made)
        return made

    def _create_one(self, spec, zone, member):
        # One requestId for every retry of this insert: GCE answers a repeat with the first operation.
        request = compute_v1.InsertInstanceRequest(
            project=self.p.project, zone=zone, instance_resource=self._instance(spec, zone, member), request_id=str(uuid.uuid4())
        )
        try:
            operation = self.api(self.p.instances.insert_unary, request)
        except api_exceptions.Conflict:
            raise ProviderError(
                f"creating {member} failed: an instance named {member} already exists in {zone} without the label "
                f"{DEPLOYMENT_TAG}={spec['name']}: delete or rename it, or choose another deployment name"
            ) from None
        except api_exceptions.GoogleAPICallError as exc:
            raise ProviderError(f"creating {member} in {zone} failed: {exc}") from exc
        try:
            self._wait(operation, zone, f"insert of {member}")
        except ProviderError as exc:
            # A failed insert must not leave the instance behind (its boot disk goes with it).
            left = cleanup(f"instance {member}", "", lambda: self._get(zone, member, missing_ok=True),
                           lambda: self._act({"zone": zone, "name": member}, "delete", missing_ok=True))
            raise ProviderError(f"{exc}; {left}") from exc
        return self._record(self._get(zone, member))

    def delete_one(self, rec):
        self._act(rec, "delete", missing_ok=True)  # already gone: that is what was asked

    def start_one(self, rec):
        self._power(rec, "start")

    def stop_one(self, rec):
        self._power(rec, "stop")

    def restart_one(self, rec):
        self._act(rec, "reset")

    def tag_one(self, rec, tags, purge):
        """setLabels with the instance's current labelFingerprint; the lxcri-* and goog-* labels stay."""
        for _attempt in range(LABEL_ATTEMPTS):
            inst = self._get(rec["zone"], rec["name"])
            labels = dict(inst.labels)
            wanted = relabelled(labels, tags, purge)
            if wanted == labels:
                return
            request = compute_v1.SetLabelsInstanceRequest(
                project=self.p.project, zone=rec["zone"], instance=rec["name"], request_id=str(uuid.uuid4()),
                instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                    labels=wanted, label_fingerprint=inst.label_fingerprint
                ),
            )
            try:
                operation = self.api(self.p.instances.set_labels_unary, request)
            except api_exceptions.PreconditionFailed:
                continue  # someone else changed the labels in between: read them again
            self._wait(operation, rec["zone"], f"setLabels of {rec['name']}")
            return
        raise ProviderError(f"the labels of {rec['name']} kept changing while they were being set: try again")
