# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCP: VMs are Compute Engine instances in one zone, found by the label lxcri-deployment.

Where a deployment lives: `region` is a zone (us-central1-a) or a region (us-central1). A region means
its first zone in alphabetical order, looked up once (us-central1 -> us-central1-a, europe-west1 ->
europe-west1-b), so the same spec always lands in the same zone. Records carry both: region
"us-central1", zone "us-central1-a".

Labels: `lxcri-deployment`, `lxcri-kind` and `lxcri-image` identify a member; the member name is the
instance name. Label values allow only lower-case letters, digits, '_' and '-': a portable image is
written with '.' as '_' (ubuntu-24.04 -> ubuntu-24_04, read back exactly, as portable names have no
'_'); a native image gets a readable label and its exact text in the instance metadata key
`lxcri-image`. User tags become labels as they are; a tag a label cannot hold is refused by validate()
rather than mangled. Labels starting with `goog-` belong to Google: they are kept and never shown as tags.

Every change is a zonal operation: `*_unary` calls, awaited with our own ZoneOperationsClient.wait
(the SDK's ExtendedOperation would poll compute.googleapis.com whatever the endpoint). Mutations carry a
requestId, so a retry of a call whose answer was lost cannot act twice.

Containers (kind container) are Cloud Run v2 services in the region of the zone: gcp_run.py says how
the portable container spec maps onto them (replicas, stopped, public, secrets). This class stays the
one entry point and hands service records to it by their kind. Metrics and alarms are Cloud Monitoring
v3 (REST): gcp_monitoring.py.
"""

from __future__ import annotations

import json
import re
import uuid

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, Provider, ProviderError, iso_utc, record
from ansible_collections.lxcri.cloud.plugins.module_utils.providers import gcp_monitoring, gcp_run
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, parse_retry_after
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    DEPLOYMENT_TAG,
    IMAGE_TAG,
    KIND_TAG,
    SERVICE_KINDS,
    TAG_PREFIX,
    SpecError,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import wait_for

try:
    import google.auth
    import google.auth.exceptions
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.api_core.client_options import ClientOptions
    from google.cloud import compute_v1
    from google.oauth2 import service_account
except ImportError:
    compute_v1 = None

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
STATES = {
    "PROVISIONING": "pending", "STAGING": "pending", "RUNNING": "running", "STOPPING": "pending",
    "SUSPENDING": "pending", "TERMINATED": "stopped", "SUSPENDED": "stopped", "STOPPED": "stopped",
    "REPAIRING": "error",
}
# Native states that move on by themselves: a stop or start waits for them to end first.
CHANGING = {"PROVISIONING", "STAGING", "STOPPING", "SUSPENDING"}
GOOGLE_LABEL_PREFIX = "goog-"
IMAGE_METADATA = "lxcri-image"
USER_DATA_METADATA = "user-data"
MAX_LABELS = 64
MAX_METADATA_VALUE = 256 * 1024
# GCE answers some rate limits with 403 and one of these reasons (a 403 quotaExceeded is a real quota: fatal).
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
CALL_TIMEOUT = 60.0
# operations.wait answers when the operation is DONE or after about two minutes; allow for that.
WAIT_CALL_TIMEOUT = 150.0
ZONE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-([a-z][a-z0-9]*)$")
REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
# At most 20 names in one `name = ... OR name = ...` filter, to stay far from the filter length limit.
REFRESH_CHUNK = 20


def label_ok(text, key=False):
    """GCE's label rule: lower-case letters (international ones too), digits, '_' and '-', at most 63.

    A key must also start with a lower-case letter; a value may be empty.
    """
    if not isinstance(text, str) or len(text) > 63 or (key and not text):
        return False
    if key and not (text[0].isalpha() and not text[0].isupper()):
        return False
    return all((ch.isalpha() and not ch.isupper()) or ch.isdigit() or ch in "_-" for ch in text)


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


def system_label(key):
    return key.startswith(TAG_PREFIX) or key.startswith(GOOGLE_LABEL_PREFIX)


def user_tags(labels):
    """The user's tags among an instance's labels: everything but lxcri-* and goog-*."""
    return {key: value for key, value in labels.items() if not system_label(key)}


def identity_labels(spec):
    return {DEPLOYMENT_TAG: spec["name"], KIND_TAG: spec["kind"], IMAGE_TAG: encode_image(spec["image"])}


def zone_region(zone):
    match = ZONE.match(zone or "")
    return match.group(1) if match else None


def last_segment(url):
    return url.rstrip("/").rsplit("/", 1)[-1] if url else None


def tag_filter(tags):
    """Server-side label conditions for the tags that a label can hold and that are not empty."""
    return " ".join(
        f'(labels.{key} = "{value}")' for key, value in sorted(tags.items()) if label_ok(key, key=True) and label_ok(value) and value
    )


class GcpProvider(Provider):
    name = "gcp"
    title = "GCP"
    # e2-small, n2-standard-4, c3-highmem-8-lssd, custom-2-4096, n2-custom-4-8192-ext ...
    NATIVE_SIZE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+){1,5}$")
    NATIVE_SIZE_EXAMPLE = "e2-standard-2 or custom-2-4096"
    NATIVE_IMAGE = re.compile(
        r"^(https://[a-z0-9.-]+(:[0-9]+)?/compute/(v1|beta)/)?"
        r"projects/[a-z][-a-z0-9.:]*[a-z0-9]/global/images/(family/)?[a-z]([-a-z0-9]*[a-z0-9])?$"
    )
    NATIVE_IMAGE_EXAMPLE = "projects/debian-cloud/global/images/family/debian-12"
    POLL_MAX = 2.0
    OPERATION_TIMEOUT = 600

    def __init__(self, connection, policy=None):
        super().__init__(connection, **({"policy": policy} if policy else {}))
        if compute_v1 is None:
            raise MissingSDK("the gcp provider needs google-cloud-compute and google-auth: pip install -r requirements.txt")
        conn = self.connection
        credentials, file_project = self._credentials(conn.get("credentials_file"))
        self._credentials_source = conn.get("credentials_file") or "Application Default Credentials"
        self.project = conn.get("project") or file_project
        if not self.project:
            raise ProviderError(
                "no GCP project: set gcp.project (or GOOGLE_CLOUD_PROJECT), or use a credentials file that names "
                "its project_id"
            )
        options = ClientOptions(api_endpoint=conn["endpoint"]) if conn.get("endpoint") else None
        verify = conn.get("ca_bundle") or conn.get("validate_certs", True)

        def client(cls):
            made = cls(credentials=credentials, transport="rest", client_options=options)
            # The REST transport talks through a requests session: TLS verification is set on it.
            session = getattr(getattr(made, "_transport", None), "_session", None)
            if session is not None and verify is not True:
                session.verify = verify
            return made

        self.instances = client(compute_v1.InstancesClient)
        self.operations = client(compute_v1.ZoneOperationsClient)
        self._regions = client(compute_v1.RegionsClient)
        self._zones = {}
        self._native = {}  # instance id -> GCE status last seen (start must resume a SUSPENDED one)
        self._client = client
        self._run = None
        self._auth = (credentials, verify)  # Cloud Monitoring is REST through google-auth (no gapic REST client)
        self._monitoring = None

    @property
    def run(self):
        """The Cloud Run half (gcp_run.CloudRun), made at first use: VM-only tasks never load google-cloud-run."""
        if self._run is None:
            if not gcp_run.load_sdk():
                raise MissingSDK("containers on gcp need google-cloud-run: pip install -r requirements.txt")
            self._run = gcp_run.CloudRun(self, self._client)
        return self._run

    @property
    def monitoring(self):
        """The Cloud Monitoring half (gcp_monitoring.Monitoring), made at first use."""
        if self._monitoring is None:
            if not gcp_monitoring.load_sdk():
                raise MissingSDK("metrics and alarms on gcp need google-auth with requests: pip install -r requirements.txt")
            credentials, verify = self._auth
            self._monitoring = gcp_monitoring.Monitoring(self, credentials, self.connection.get("endpoint"), verify)
        return self._monitoring

    @staticmethod
    def _credentials(path):
        """(credentials, project id or None) from the key file, or from Application Default Credentials."""
        hint = "set gcp.credentials_file (or GOOGLE_APPLICATION_CREDENTIALS) to a service-account key file"
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    info = json.load(handle)
            except OSError as exc:
                raise ProviderError(f"gcp.credentials_file '{path}' cannot be read ({exc.strerror}): {hint}") from None
            except ValueError:
                raise ProviderError(f"gcp.credentials_file '{path}' is not a JSON key file: {hint}") from None
            if not isinstance(info, dict):
                raise ProviderError(f"gcp.credentials_file '{path}' is not a JSON key file: {hint}")
            try:
                if info.get("type") == "service_account":
                    credentials = service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
                    return credentials, info.get("project_id")
                credentials, project = google.auth.load_credentials_from_file(path, scopes=SCOPES)
                return credentials, project or info.get("quota_project_id")
            except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError) as exc:
                raise ProviderError(f"gcp.credentials_file '{path}' is not a usable key file ({exc}): {hint}") from None
        try:
            return google.auth.default(scopes=SCOPES)
        except google.auth.exceptions.GoogleAuthError:
            raise ProviderError(
                f"no GCP credentials: {hint}, or run where Application Default Credentials are set up"
            ) from None

    @classmethod
    def validate(cls, spec):
        tags = spec.get("tags") or {}
        for key, value in tags.items():
            if not label_ok(key, key=True):
                raise SpecError(
                    f"tags: key '{key}' cannot be a GCP label key: use 1 to 63 lower-case letters, digits, '_' and "
                    "'-', starting with a lower-case letter"
                )
            if key.startswith(GOOGLE_LABEL_PREFIX):
                raise SpecError(f"tags: key '{key}' is reserved: GCP label keys starting with '{GOOGLE_LABEL_PREFIX}' belong to Google")
            if not label_ok(value):
                hint = " (write booleans as lower-case strings, e.g. 'true')" if value in ("True", "False") else ""
                raise SpecError(
                    f"tags: value '{value}' of '{key}' cannot be a GCP label value: use at most 63 lower-case letters, "
                    f"digits, '_' and '-'{hint}"
                )
        if len(tags) + len(identity_labels(spec)) > MAX_LABELS:
            raise SpecError(
                f"tags: at most {MAX_LABELS - 3} tags on gcp (a GCE instance holds {MAX_LABELS} labels, 3 are the collection's)"
            )
        if spec.get("cloud_init") and len(spec["cloud_init"].encode()) > MAX_METADATA_VALUE:
            raise SpecError(f"user_data is too long for gcp: at most {MAX_METADATA_VALUE} bytes of instance metadata")
        if spec.get("kind") == "container" and spec.get("state") != "absent" and spec.get("container"):
            gcp_run.validate_container(spec)

    # -- errors ----------------------------------------------------------------------------------

    def classify(self, exc):
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            response = getattr(exc, "response", None)
            headers = getattr(response, "headers", None) or {}
            retry_after = parse_retry_after(headers.get("Retry-After"))
            reasons = {error.get("reason") for error in (exc.errors or []) if isinstance(error, dict)}
            if isinstance(exc, (api_exceptions.TooManyRequests, api_exceptions.ResourceExhausted)):
                return THROTTLED, retry_after
            if isinstance(exc, api_exceptions.Forbidden) and reasons & RATE_LIMIT_REASONS:
                return THROTTLED, retry_after  # GCE's rate limits answer 403 rateLimitExceeded
            if exc.code in (500, 502, 503, 504) or isinstance(
                exc, (api_exceptions.InternalServerError, api_exceptions.BadGateway, api_exceptions.ServiceUnavailable,
                      api_exceptions.GatewayTimeout)
            ):
                return TRANSIENT, retry_after
            return FATAL, None
        if self.unreachable(exc):
            return FATAL, None
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.ChunkedEncodingError, google.auth.exceptions.TransportError)):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        if not isinstance(exc, requests.exceptions.ConnectionError) or isinstance(exc, requests.exceptions.Timeout):
            return False
        text = str(exc).lower()
        return "refused" in text or "name or service not known" in text or "failed to resolve" in text

    def _api(self, method, request, timeout=CALL_TIMEOUT):
        """One SDK call under our retry policy; the SDK's own retries are off (retry=None)."""
        try:
            return self.call(method, request=request, retry=None, timeout=timeout)
        except api_exceptions.Unauthorized as exc:
            raise ProviderError(
                f"the GCP API at {self.connection.get('endpoint') or 'compute.googleapis.com'} rejected the credentials "
                f"of {self._credentials_source}: {exc.message} (check gcp.credentials_file or GOOGLE_APPLICATION_CREDENTIALS)"
            ) from exc

    # -- where -----------------------------------------------------------------------------------

    def region(self, spec):
        """The zone a deployment lives in: the zone given, or the first zone of the region given (a container
        deployment given a region keeps it: Cloud Run services live in regions)."""
        value = super().region(spec)
        if ZONE.match(value):
            return value
        if not REGION.match(value):
            raise ProviderError(
                f"region '{value}' is not a GCP zone or region: use a zone such as us-central1-a or a region such "
                "as us-central1 (its first zone is used)"
            )
        if spec.get("kind") in SERVICE_KINDS:
            return value  # a Cloud Run location is a region: no zone to look up (nor Compute Engine to ask)
        if value not in self._zones:
            try:
                found = self._api(self._regions.get, compute_v1.GetRegionRequest(project=self.project, region=value))
            except api_exceptions.NotFound:
                raise ProviderError(
                    f"region '{value}' is not a Compute Engine region of project {self.project}: use a zone such as "
                    "us-central1-a or a region such as us-central1"
                ) from None
            zones = sorted(last_segment(link) for link in found.zones)
            if not zones:
                raise ProviderError(f"region '{value}' has no zones: set region to one of its zones")
            self._zones[value] = zones[0]
        return self._zones[value]

    # -- reading ---------------------------------------------------------------------------------

    def _list(self, zone, filter_text):
        """Every instance of the zone matching the filter, all pages, each page one retried call."""
        instances, token = [], ""
        while True:
            request = compute_v1.ListInstancesRequest(project=self.project, zone=zone, filter=filter_text, max_results=500)
            if token:
                request.page_token = token
            try:
                page = next(iter(self._api(self.instances.list, request).pages))
            except api_exceptions.BadRequest as exc:
                if "zone" in str(exc).lower():
                    raise ProviderError(
                        f"zone '{zone}' is not valid for project {self.project}: set region (or gcp.region) to a zone "
                        f"such as us-central1-a ({exc})"
                    ) from exc
                raise
            instances.extend(page.items)
            token = page.next_page_token
            if not token:
                return instances

    def _record(self, inst):
        labels = dict(inst.labels)
        metadata = {item.key: item.value for item in inst.metadata.items}
        zone = last_segment(inst.zone)
        nic = inst.network_interfaces[0] if inst.network_interfaces else None
        public = [access.nat_i_p for access in (nic.access_configs if nic else []) if access.nat_i_p]
        self._native[str(inst.id)] = inst.status
        return record(
            self.name,
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

    def find_members(self, name, region, kind="vm"):
        return [self._record(inst) for inst in self._list(region, f'labels.{DEPLOYMENT_TAG} = "{name}"')]

    def find_service(self, name, region, kind):
        return self.run.find(name, region, kind)

    def service_config(self, rec):
        return self.run.service_config(rec)

    def update_service(self, rec, spec, changes):
        return self.run.update(rec, spec, changes)

    def list(self, region, tags=None):
        tags = tags or {}
        if not all(label_ok(key, key=True) and label_ok(value) for key, value in tags.items()):
            return []  # no label can hold such a tag, so no instance or service carries it
        found = self._list(region, f"(labels.{DEPLOYMENT_TAG}:*) {tag_filter(tags)}".strip())
        records = [self._record(inst) for inst in found]
        records = [rec for rec in records if all(rec["tags"].get(key) == value for key, value in tags.items())]
        return records + (self.run.list(region, tags) if gcp_run.load_sdk() else [])

    def refresh(self, records):
        records, services = self.split(records)
        fresh = self.run.refresh(services) if services else []
        return self._refresh_members(records) + fresh

    def _refresh_members(self, records):
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

    # -- operations ------------------------------------------------------------------------------

    def _wait(self, operation, zone, what):
        """Wait for a zonal operation to be DONE; an operation that ends in errors raises them."""
        done = compute_v1.Operation.Status.DONE
        if operation.status != done:
            request = compute_v1.WaitZoneOperationRequest(project=self.project, zone=zone, operation=operation.name)
            operation = wait_for(
                lambda: self._api(self.operations.wait, request, timeout=WAIT_CALL_TIMEOUT),
                lambda op: op.status == done,
                f"GCP operation {operation.name} ({what})", self.OPERATION_TIMEOUT, first=0.05, maximum=self.POLL_MAX,
                describe=lambda op: getattr(op.status, "name", op.status),
            )
        errors = list(operation.error.errors) if "error" in operation else []
        if errors:
            detail = "; ".join(f"{error.code}: {error.message}" for error in errors)
            raise ProviderError(f"GCP operation {what} failed: {detail}")
        return operation

    def _act(self, rec, action):
        """instances.<action> on one member, awaited."""
        methods = {
            "start": (self.instances.start_unary, compute_v1.StartInstanceRequest),
            "resume": (self.instances.resume_unary, compute_v1.ResumeInstanceRequest),
            "stop": (self.instances.stop_unary, compute_v1.StopInstanceRequest),
            "reset": (self.instances.reset_unary, compute_v1.ResetInstanceRequest),
            "delete": (self.instances.delete_unary, compute_v1.DeleteInstanceRequest),
        }
        method, request_class = methods[action]
        request = request_class(project=self.project, zone=rec["zone"], instance=rec["name"], request_id=str(uuid.uuid4()))
        self._wait(self._api(method, request), rec["zone"], f"{action} of {rec['name']}")

    def _get(self, zone, name):
        return self._api(self.instances.get, compute_v1.GetInstanceRequest(project=self.project, zone=zone, instance=name))

    def _steady(self, rec):
        """The member's GCE status once it is no longer on its way somewhere (provisioning, stopping ...)."""
        status = self._native.get(rec["id"])
        if status in CHANGING or status is None:
            inst = wait_for(
                lambda: self._get(rec["zone"], rec["name"]), lambda i: i.status not in CHANGING,
                f"{rec['name']} to finish {str(status).lower()}", self.OPERATION_TIMEOUT, first=0.1, maximum=self.POLL_MAX,
                describe=lambda i: i.status,
            )
            status = self._native[rec["id"]] = inst.status
        return status

    def _power(self, rec, action):
        if action == "reset":
            self._act(rec, "reset")
            return
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
                        source_image=catalog.native_image(self.name, spec["image"]), labels=labels
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

    def create(self, spec, region, members):
        if spec["kind"] not in self.MEMBER_KINDS:
            return [self.run.create(spec, region, member) for member in members]
        return self.each(lambda member: self._create_one(spec, region, member), members)

    def _create_one(self, spec, zone, member):
        # One requestId for every retry of this insert: GCE answers a repeat with the first operation.
        request = compute_v1.InsertInstanceRequest(
            project=self.project, zone=zone, instance_resource=self._instance(spec, zone, member), request_id=str(uuid.uuid4())
        )
        try:
            operation = self._api(self.instances.insert_unary, request)
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
            raise ProviderError(f"{exc}; {self._remove_failed(zone, member)}") from exc
        return self._record(self._get(zone, member))

    def _remove_failed(self, zone, member):
        try:
            self._get(zone, member)
        except api_exceptions.NotFound:
            return f"no instance {member} was left behind"
        try:
            self._act({"zone": zone, "name": member}, "delete")
        except Exception as exc:  # say what is left, whatever went wrong
            return f"instance {member} was left behind and could not be deleted ({exc}): delete it by hand"
        return f"instance {member} was deleted again"

    def _delete_one(self, rec):
        try:
            self._act(rec, "delete")
        except api_exceptions.NotFound:
            pass  # already gone: that is what was asked

    def delete(self, records):
        records, services = self.split(records)
        self.each(self._delete_one, records)
        self.each(self.run.delete, services)

    def start(self, records):
        records, services = self.split(records)
        self.each(lambda rec: self._power(rec, "start"), records)
        self.each(self.run.start, services)

    def stop(self, records):
        records, services = self.split(records)
        self.each(lambda rec: self._power(rec, "stop"), records)
        self.each(self.run.stop, services)

    def restart(self, records):
        records, services = self.split(records)
        self.each(lambda rec: self._power(rec, "reset"), records)
        self.each(self.run.restart, services)

    def update_tags(self, records, tags, purge):
        records, services = self.split(records)
        self.each(lambda rec: self._retag(rec, tags, purge), records)
        self.each(lambda rec: self.run.retag(rec, tags, purge), services)

    def _retag(self, rec, tags, purge, attempts=3):
        """setLabels with the instance's current labelFingerprint; the lxcri-* and goog-* labels stay."""
        for _attempt in range(attempts):
            inst = self._get(rec["zone"], rec["name"])
            labels = dict(inst.labels)
            user = user_tags(labels)
            wanted = {**{k: v for k, v in labels.items() if system_label(k)}, **(dict(tags) if purge else {**user, **tags})}
            if wanted == labels:
                return
            request = compute_v1.SetLabelsInstanceRequest(
                project=self.project, zone=rec["zone"], instance=rec["name"], request_id=str(uuid.uuid4()),
                instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                    labels=wanted, label_fingerprint=inst.label_fingerprint
                ),
            )
            try:
                operation = self._api(self.instances.set_labels_unary, request)
            except api_exceptions.PreconditionFailed:
                continue  # someone else changed the labels in between: read them again
            self._wait(operation, rec["zone"], f"setLabels of {rec['name']}")
            return
        raise ProviderError(f"the labels of {rec['name']} kept changing while they were being set: try again")

    # -- monitoring (gcp_monitoring.py) ----------------------------------------------------------

    @classmethod
    def validate_alarm(cls, alarm):
        gcp_monitoring.validate_alarm(alarm, label_ok)
