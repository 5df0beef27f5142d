# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provider interface, the normalized deployment record and the lazy provider registry."""

from __future__ import annotations

import concurrent.futures
import datetime
import re
import time

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.monitoring import evaluate
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import DEFAULT_POLICY, FATAL
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import KIND_PROVIDERS

STATES = ("pending", "running", "stopped", "terminated", "error", "unknown")
RECORD_FIELDS = (
    "provider", "kind", "name", "deployment", "id", "state", "region", "zone", "size", "native_size", "image",
    "public_ip", "private_ip", "url", "tags", "created_at", "hourly_cost",
)


class ProviderError(Exception):
    """A failure a user can act on; the message never carries a secret."""


class MissingSDK(ProviderError):
    pass


def record(provider, **fields):
    """A normalized deployment record: every field present, portable size and cost filled in."""
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"not record fields: {sorted(unknown)}")
    rec = {field: None for field in RECORD_FIELDS}
    rec.update(fields)
    rec["provider"] = provider
    rec["kind"] = rec["kind"] or "vm"
    rec["tags"] = dict(rec["tags"] or {})
    if rec["state"] not in STATES:
        rec["state"] = "unknown"
    if rec["native_size"] and not rec["size"]:
        rec["size"] = catalog.portable_size(provider, rec["native_size"])
    if rec["hourly_cost"] is None and rec["native_size"] and rec["state"] != "terminated":
        rec["hourly_cost"] = catalog.hourly_cost(provider, rec["native_size"])
    return rec


def undo(steps, explain=str):
    """Run every (what, action) cleanup step, whatever the others do: (the whats undone, "what (why)" of those left)."""
    undone, left = [], []
    for what, action in steps:
        try:
            action()
            undone.append(what)
        except Exception as exc:  # go on: say what is left, whatever went wrong
            left.append(f"{what} ({explain(exc)})")
    return undone, left


def iso_utc(value):
    """ISO 8601 UTC with a Z, from a datetime, an epoch number or an ISO string."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Provider:
    """One cloud behind the common operations. Subclasses live in providers/<name>.py, one per file.

    Records are the normalized dicts of record(); `spec` is the validated deployment spec. The methods
    that change things act on many members at once so that each provider can batch or parallelize.
    """

    name = ""
    title = ""
    NATIVE_SIZE = re.compile(r"^$")
    NATIVE_SIZE_EXAMPLE = ""
    NATIVE_IMAGE = re.compile(r"^$")
    NATIVE_IMAGE_EXAMPLE = ""
    # Kinds deployed as count members named <name>-<i> (VMs everywhere; Proxmox LXC containers too); the
    # other kinds are one service per deployment with count replicas.
    MEMBER_KINDS = ("vm",)
    # Member kinds whose size (cores, memory) changes in place through resize(); elsewhere a differing size
    # is reported as drift.
    RESIZE_KINDS = ()
    # How often to look at a resource that is changing state, at most (seconds).
    POLL_MAX = 5.0

    def __init__(self, connection, policy=DEFAULT_POLICY):
        self.connection = dict(connection or {})
        self.policy = policy

    @classmethod
    def validate(cls, spec):
        """Provider-specific checks that need no API call; raise spec.SpecError."""

    @classmethod
    def validate_alarm(cls, alarm):
        """Provider-specific checks of a portable alarm (monitoring.validate_alarm) that need no API call;
        raise spec.SpecError. Called with the name/kind/tags only when state is absent."""

    def call(self, func, *args, **kwargs):
        """An API call under the shared retry policy with this provider's error classifier."""
        try:
            return self.policy.call(func, self.classify, *args, **kwargs)
        except Exception as exc:
            if self.unreachable(exc):
                endpoint = self.connection.get("endpoint") or "its default endpoint"
                raise ProviderError(
                    f"cannot reach the {self.name} API at {endpoint} (set by {self.name}.endpoint or "
                    f"LXCRI_{self.name.upper()}_ENDPOINT): {exc}"
                ) from exc
            raise

    def unreachable(self, exc):
        """True when nothing answers at the endpoint at all (not worth a retry)."""
        return False

    def each(self, func, items, workers=8):
        """func(item) for every item, in parallel with a bounded pool; results in order.

        Every call runs to its end before the first failure is raised, so nothing is left half-watched.
        """
        items = list(items)
        if len(items) <= 1:
            return [func(item) for item in items]
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            futures = [pool.submit(func, item) for item in items]
            concurrent.futures.wait(futures)
        for future in futures:
            future.result()
        return [future.result() for future in futures]

    def classify(self, exc):
        """(THROTTLED | TRANSIENT | FATAL, retry_after seconds or None) for an SDK exception."""
        return FATAL, None

    def native_size(self, spec):
        return catalog.native_size(self.name, spec["size"])

    def region(self, spec):
        """The region (or node, or zone) a deployment lives in."""
        region = spec.get("region") or self.connection.get("region")
        if not region:
            raise ProviderError(f"region is required for {self.name}: set region or {self.name}.region")
        return region

    # The operations; every provider implements all of them. Methods that take records act on VMs and on
    # services (containers, functions) alike, by each record's kind.
    def find(self, name, region, kind="vm"):
        """Records of deployment `name` of this kind in `region` (terminated ones excluded): the members
        of a VM deployment, the one record of a container or function deployment."""
        if kind in self.MEMBER_KINDS:
            return self.find_members(name, region, kind)
        return self.find_service(name, region, kind)

    def select(self, region, name=None, kinds=None, tags=None):
        """Records of deployment `name` (or of every deployment in the region) of these kinds (default: every
        kind this provider deploys) whose tags include `tags`, sorted by deployment and member name."""
        kinds = kinds or [kind for kind, names in KIND_PROVIDERS.items() if self.name in names]
        if name:
            records = [rec for kind in kinds for rec in self.find(name, region, kind)]
        else:
            records = [rec for rec in self.list(region) if rec["kind"] in kinds]
        tags = tags or {}
        records = [rec for rec in records if all(rec["tags"].get(k) == v for k, v in tags.items())]
        return sorted(records, key=lambda rec: (rec["deployment"] or "", rec["name"] or ""))

    def split(self, records):
        """(member records, service records) by each record's kind (MEMBER_KINDS; a record without one is a VM)."""
        records = list(records)
        members = [rec for rec in records if (rec.get("kind") or "vm") in self.MEMBER_KINDS]
        return members, [rec for rec in records if (rec.get("kind") or "vm") not in self.MEMBER_KINDS]

    def find_members(self, name, region, kind="vm"):
        raise NotImplementedError

    def find_service(self, name, region, kind):
        """[record] of the container or function deployment `name`, or []."""
        raise NotImplementedError

    def service_config(self, rec):
        """The portable settings of a service as spec.service_config(spec) spells them, read back from the
        provider; `replicas` is the configured count even while the service is stopped."""
        raise NotImplementedError

    def update_service(self, rec, spec, changes):
        """Bring a service to the spec (`changes` names the differing settings), keeping its power state;
        return (record, recreated): recreated is True where the provider cannot update in place."""
        raise NotImplementedError

    def list(self, region, tags=None):
        """Records of every live deployment member in `region`, optionally only those with these tags."""
        raise NotImplementedError

    def create(self, spec, region, members):
        """Create the members (names) of a deployment; return their records."""
        raise NotImplementedError

    def resize(self, records, spec):
        """Give these members the spec's native size in place (only for the kinds in RESIZE_KINDS)."""
        raise NotImplementedError

    def update_tags(self, records, tags, purge):
        """Make each record's user tags equal `tags` (or a superset without purge)."""
        raise NotImplementedError

    def delete(self, records):
        raise NotImplementedError

    def start(self, records):
        raise NotImplementedError

    def stop(self, records):
        raise NotImplementedError

    def restart(self, records):
        raise NotImplementedError

    def refresh(self, records):
        """Fresh records for these members (state, addresses)."""
        raise NotImplementedError

    # Monitoring (docs/cloud_monitoring.md): each provider keeps it in `self.monitoring`, an object of its
    # <provider>_monitoring.py with these five methods. Series are monitoring.series() or monitoring.missing().
    monitoring = None

    def metrics(self, records, names, start, end, period):
        """[{metric: series}] in the order of `records` (members and services alike), for the portable metric
        `names` over [start, end) at `period` seconds, in as few API calls as the provider allows."""
        return self.monitoring.metrics(records, names, start, end, period)

    def find_alarm(self, name, region):
        """The alarm record (monitoring.alarm_record) of the collection's alarm `name`, or None."""
        return self.monitoring.find_alarm(name, region)

    def list_alarms(self, region):
        """Records of every alarm the collection made in `region`."""
        return self.monitoring.list_alarms(region)

    def put_alarm(self, alarm, region, targets, current):
        """Create the alarm (current is None) or update `current` in place, with its notification targets,
        for the target records; return its record. A failure part-way removes what this call created."""
        return self.monitoring.put_alarm(alarm, region, targets, current)

    def delete_alarm(self, current):
        """Remove the alarm and the notification resources made for it."""
        self.monitoring.delete_alarm(current)

    def evaluated_state(self, alarm, now=None):
        """(state, reason) of an alarm record computed from the metrics it watches, for providers whose API
        keeps no alarm state: the last evaluation_periods periods of each target deployment's members."""
        targets = [rec for name in alarm["deployments"] for rec in self.find(name, alarm["region"], alarm["kind"])]
        if not targets:
            return "insufficient_data", f"no live members in {', '.join(alarm['deployments'])}"
        period = alarm["period"]
        end = int(now if now is not None else time.time()) // period * period
        answers = self.metrics(targets, [alarm["metric"]], end - period * alarm["evaluation_periods"], end, period)
        return evaluate(alarm, {rec["name"]: answer[alarm["metric"]] for rec, answer in zip(targets, answers)})


def load(name):
    """The provider class for `name`, importing only that provider's module and SDK.

    The imports are spelled out so that AnsiballZ finds and ships every provider file.
    """
    if name == "aws":
        from ansible_collections.lxcri.cloud.plugins.module_utils.providers.aws import AwsProvider as cls
    elif name == "azure":
        from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import AzureProvider as cls
    elif name == "digitalocean":
        from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean import DigitalOceanProvider as cls
    elif name == "gcp":
        from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp import GcpProvider as cls
    elif name == "proxmox":
        from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox import ProxmoxProvider as cls
    else:
        raise ProviderError(f"provider '{name}' is not available in this version: use one of {', '.join(AVAILABLE)}")
    return cls


AVAILABLE = ("aws", "azure", "digitalocean", "gcp", "proxmox")
