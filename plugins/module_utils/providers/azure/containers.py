# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure Container Instances: a `kind: container` deployment is one container group.

The Containers backend of the azure provider (provider.py): every call goes through the provider's retry
policy and long-running-operation handling, with one more client (azure-mgmt-containerinstance, made on
first use). A record's native is the group's document (what config() reads the settings from).

Where: the container group `<name>` in the deployment's resource group, with the same rules as the VMs
(`azure.resource_group` when set, else `lxcri-<name>`, created with the deployment and deleted with it
when it holds nothing else), in the deployment's location.

How the portable container maps onto the group:

- one container `<name>`: container.image -> image, port -> ports [port], env -> environmentVariables with
  `value`, secret_env -> environmentVariables with `secureValue` (ARM never returns those: a GET shows the
  name only), cpu -> resources.requests.cpu, memory (MiB) -> resources.requests.memoryInGB (MiB / 1024,
  rounded up to 0.1 GB), command -> command;
- osType Linux, restartPolicy Always, ipAddress type Public with the port and the DNS name label
  `<name>-<8 hex digits of a hash of subscription and resource group>`, so the url is
  `http://<label>.<location>.azurecontainer.io[:port]` (no `:80` for port 80). public: false is refused: a
  private container group needs a virtual network subnet, which the collection does not manage;
- count: Container Instances has no replica count (a group runs once), so count is 1 (0 removes the
  deployment); more is refused at validation;
- tags: the user's tags, lxcri-deployment, lxcri-kind=container, lxcri-secret (the fingerprint of
  secret_env, when there is one), lxcri-replicas (1), lxcri-memory (the MiB asked for, which memoryInGB
  rounds) and lxcri-created (Container Instances reports no creation time).

Updates: a PUT of the changed group updates it in place when Container Instances allows it (image, env,
secret_env, command, port: the containers restart in place and the group keeps its IP and DNS name), and
the result says recreated false. A group's CPU and memory (and its OS type, restart policy and network
profile) cannot change: Container Instances answers InvalidContainerGroupUpdate, so for a change of cpu or
memory (or whenever it answers that) the group is deleted and created again, and the result says
recreated true. A stopped group that is updated runs again (Container Instances deploys it anew), so it
is stopped again when the task asks only for `present`.

Power: `stopped` is container_groups.stop (the containers stop, compute is deallocated and billing stops;
the IP is released, the DNS name stays); `running` is start (a new IP behind the same DNS name);
`restarted` restarts the containers in place (a stopped group is started instead).
"""

from __future__ import annotations

import datetime
import hashlib
import re

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    Backend,
    ProviderError,
    iso_utc,
    native_of,
    record,
    retagged,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.arm import (
    every_tag,
    normalize_location,
    split_id,
    taken,
    user_tags,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.errors import error_code, error_text
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    DEPLOYMENT_TAG,
    KIND_TAG,
    SpecError,
    secret_fingerprint,
)

try:
    from azure.core.exceptions import HttpResponseError
except ImportError:
    HttpResponseError = None

CONTAINER_GROUP = "Microsoft.ContainerInstance/containerGroups"
SECRET_TAG = "lxcri-secret"
REPLICAS_TAG = "lxcri-replicas"
MEMORY_TAG = "lxcri-memory"
CREATED_TAG = "lxcri-created"
# The collection's own tags on a container group (lxcri-secret only when there are secrets).
CONTAINER_OWN_TAGS = (DEPLOYMENT_TAG, KIND_TAG, SECRET_TAG, REPLICAS_TAG, MEMORY_TAG, CREATED_TAG)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A Linux container group in most regions: at most 4 vCPUs and 16 GB.
MAX_CPU = 4.0
MAX_MEMORY_MIB = 16 * 1024
DNS_SUFFIX = "azurecontainer.io"
# instanceView.state of a container group -> record state.
GROUP_STATES = {"running": "running", "pending": "pending", "stopped": "stopped", "succeeded": "stopped",
                "terminated": "stopped", "failed": "error"}
PENDING_PROVISIONING = ("pending", "creating", "updating", "repairing", "accepted")
# What Container Instances cannot change on an existing group (among the portable settings).
FIXED = ("cpu", "memory")
NOT_UPDATABLE = "InvalidContainerGroupUpdate"


def memory_gb(mib):
    """memoryInGB for `mib` MiB: MiB / 1024 rounded up to a tenth (512 -> 0.5, 1000 -> 1.0)."""
    return -(-int(mib) * 10 // 1024) / 10


def dns_label(name, subscription, group):
    """The DNS name label of a deployment: unique per subscription and resource group, 5 to 63 characters."""
    digest = hashlib.sha256(f"{subscription}/{group}".lower().encode()).hexdigest()[:8]
    return f"{name}-{digest}"


def container_url(fqdn, ip, port):
    host = fqdn or ip
    if not host:
        return None
    return f"http://{host}" if port in (None, 80) else f"http://{host}:{port}"


def group_state(props):
    """The record state of a container group from its provisioningState and instanceView.state."""
    provisioning = str(props.get("provisioningState") or "").lower()
    view = str((props.get("instanceView") or {}).get("state") or "").lower()
    if provisioning == "deleting":
        return "terminated"
    if provisioning == "failed":
        return "error"
    if provisioning in PENDING_PROVISIONING:
        return "pending"
    if view:
        return GROUP_STATES.get(view, "unknown")
    return "running" if provisioning == "succeeded" else "unknown"


def _props(doc):
    return (doc or {}).get("properties") or {}


def _container(doc):
    """The deployment's container in a group: the one named like the group, else the first."""
    containers = _props(doc).get("containers") or []
    named = [c for c in containers if c.get("name") == doc.get("name")]
    return (named or containers or [{}])[0]


def _created(value):
    """created_at from the lxcri-created tag; None when it is missing or not a time."""
    try:
        return iso_utc(value)
    except (TypeError, ValueError):
        return None


def _scrub(text, secrets):
    for value in (secrets or {}).values():
        if value:
            text = text.replace(value, "***")
    return text


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def memory_of(doc):
    """MiB of the group's container: the MiB asked for (lxcri-memory) when memoryInGB is what it rounds to."""
    requests = ((_container(doc).get("properties") or {}).get("resources") or {}).get("requests") or {}
    gb = requests.get("memoryInGB")
    asked = (doc.get("tags") or {}).get(MEMORY_TAG)
    if asked and asked.isdigit() and gb is not None and memory_gb(int(asked)) == round(float(gb), 1):
        return int(asked)
    return int(round(float(gb) * 1024)) if gb is not None else None


def ours(doc, name=None, kind=None, region=None):
    """True when the group is a container deployment of the collection (of this name, kind, location)."""
    tags = doc.get("tags") or {}
    return bool(tags.get(DEPLOYMENT_TAG) and tags[DEPLOYMENT_TAG] == doc.get("name")
                and (name is None or doc.get("name") == name)
                and (kind is None or tags.get(KIND_TAG, "container") == kind)
                and (region is None or normalize_location(doc.get("location")) == region))


class Containers(Backend):
    kind = "container"
    members = False
    OWN_TAGS = len(CONTAINER_OWN_TAGS)

    @classmethod
    def validate(cls, spec):
        """Checks of a container deployment for Container Instances; raise SpecError."""
        container = spec.get("container") or {}
        if spec.get("count", 1) > 1:
            raise SpecError(
                f"Azure Container Instances runs one container group per deployment: use count 1 (or 0 to remove it) "
                f"for azure containers, got count {spec.get('count')}"
            )
        if not container.get("public", True):
            raise SpecError(
                "container.public false is not supported on azure: a container group without a public IP needs a "
                "virtual network subnet, which the collection does not manage; use public: true (the group gets a "
                "public IP and a DNS name)"
            )
        cpu, memory = float(container.get("cpu", 0.25)), int(container.get("memory", 512))
        if cpu > MAX_CPU or memory > MAX_MEMORY_MIB:
            raise SpecError(
                f"container.cpu {cpu:g} and container.memory {memory} do not fit an Azure container group: at most "
                f"{MAX_CPU:g} vCPUs and {MAX_MEMORY_MIB} MiB (16 GB) per Linux container group"
            )
        for option in ("env", "secret_env"):
            for key in container.get(option) or {}:
                if not ENV_NAME.match(key):
                    raise SpecError(
                        f"container.{option}: '{key}' is not a valid environment variable name on Azure Container "
                        "Instances: use letters, digits and '_', starting with a letter or '_'"
                    )
        both = sorted(set(container.get("env") or {}) & set(container.get("secret_env") or {}))
        if both:
            raise SpecError(f"container.env and container.secret_env both set {', '.join(both)}: give each variable once")

    @property
    def aci(self):
        """The azure-mgmt-containerinstance client."""
        return self.p.optional_client("azure.mgmt.containerinstance", "ContainerInstanceManagementClient", "kind container")

    # -- reading ---------------------------------------------------------------------------------

    def read(self, arm_id):
        """The container group of this ARM id as JSON, or None."""
        return self.p.get(self.aci.container_groups.get, *split_id(arm_id))

    def document(self, rec):
        """The group a record was read from, or read again (a record handed in); None when it is gone."""
        return native_of(rec) or self.read(rec["id"])

    def arm_id(self, rec):
        return rec["id"]

    def record(self, doc):
        props = _props(doc)
        tags = doc.get("tags") or {}
        cprops = _container(doc).get("properties") or {}
        requests = (cprops.get("resources") or {}).get("requests") or {}
        address = props.get("ipAddress") or {}
        ports = cprops.get("ports") or address.get("ports") or [{}]
        port = ports[0].get("port")
        state = group_state(props)
        cpu = requests.get("cpu")
        memory = memory_of(doc)
        native = f"{float(cpu):g} vCPU / {memory} MiB" if cpu is not None and memory is not None else None
        public = address.get("type") == "Public"
        return record(
            self.p.name,
            native=doc,
            kind=tags.get(KIND_TAG, "container"),
            name=doc.get("name"),
            deployment=tags.get(DEPLOYMENT_TAG),
            id=doc["id"],
            state=state,
            region=normalize_location(doc.get("location")),
            zone=None,
            size=None,
            native_size=native,
            image=cprops.get("image"),
            public_ip=address.get("ip") if public else None,
            private_ip=None if public else address.get("ip"),
            url=container_url(address.get("fqdn"), address.get("ip") if public else None, port) if public else None,
            tags=user_tags(tags),
            created_at=_created(tags.get(CREATED_TAG)),
            # Container Instances bills per second by the vCPUs and GB asked for, at prices that differ per
            # location: unknown here, except that a stopped group costs nothing.
            hourly_cost=0.0 if state == "stopped" else None,
        )

    def find(self, name, region):
        doc = self.p.get(self.aci.container_groups.get, self.p.group(name), name)
        if not doc or not ours(doc, name, self.kind, region):
            return []
        return [self.record(doc)]

    def list(self, region, tags):
        docs = self.p.listing(self.aci.container_groups.list)
        return [self.record(doc) for doc in docs if ours(doc, region=normalize_location(region))]

    def refresh_one(self, rec):
        doc = self.read(rec["id"])
        return [self.record(doc)] if doc else []

    def config(self, rec):
        doc = self.document(rec)
        if doc is None:
            raise ProviderError(f"container group {rec['name']} ({rec['id']}) is gone")
        tags = doc.get("tags") or {}
        cprops = _container(doc).get("properties") or {}
        requests = (cprops.get("resources") or {}).get("requests") or {}
        variables = cprops.get("environmentVariables") or []
        # A secure variable comes back by its name only; a plain one with its value.
        secure = [var for var in variables if var.get("value") is None]
        ports = cprops.get("ports") or [{}]
        address = _props(doc).get("ipAddress") or {}
        replicas = tags.get(REPLICAS_TAG) or "1"
        return {
            "image": cprops.get("image"),
            "port": ports[0].get("port"),
            "env": {var["name"]: var["value"] for var in variables if var.get("value") is not None},
            "secret_env": tags.get(SECRET_TAG, "") if secure else "",
            "cpu": float(requests["cpu"]) if requests.get("cpu") is not None else None,
            "memory": memory_of(doc),
            "command": list(cprops.get("command") or []),
            "public": address.get("type") == "Public",
            "replicas": int(replicas) if replicas.isdigit() else 1,
        }

    # -- the group -------------------------------------------------------------------------------

    def body(self, spec, region, group, tags, created):
        container = spec["container"]
        name = spec["name"]
        variables = [{"name": key, "value": value} for key, value in container["env"].items()]
        variables += [{"name": key, "secureValue": value} for key, value in container["secret_env"].items()]
        port = int(container["port"])
        cprops = {
            "image": container["image"],
            "ports": [{"port": port, "protocol": "TCP"}],
            "environmentVariables": variables,
            "resources": {"requests": {"cpu": float(container["cpu"]), "memoryInGB": memory_gb(container["memory"])}},
        }
        if container.get("command"):
            cprops["command"] = list(container["command"])
        own = {DEPLOYMENT_TAG: name, KIND_TAG: "container", REPLICAS_TAG: str(max(1, int(spec["count"]))),
               MEMORY_TAG: str(int(container["memory"])), CREATED_TAG: created}
        fingerprint = secret_fingerprint(container["secret_env"])
        if fingerprint:
            own[SECRET_TAG] = fingerprint
        return {
            "location": region,
            "tags": {**tags, **own},
            "properties": {
                "osType": "Linux",
                "restartPolicy": "Always",
                "containers": [{"name": name, "properties": cprops}],
                "ipAddress": {"type": "Public", "ports": [{"port": port, "protocol": "TCP"}],
                              "dnsNameLabel": dns_label(name, self.p.subscription, group)},
            },
        }

    def _put(self, spec, group, body):
        return self.p.lro(self.aci.container_groups.begin_create_or_update, group, spec["name"], body,
                          wait=spec.get("wait", True))

    def create(self, spec, region, names):
        name = spec["name"]
        group = self.p.ensure_group(name, region)
        existing = self.p.get(self.aci.container_groups.get, group, name)
        if existing is not None:
            raise taken("container group", existing, name, group)
        body = self.body(spec, region, group, dict(spec["tags"]), _now())
        try:
            doc = self._put(spec, group, body)
        except Exception as exc:
            detail = _scrub(error_text(exc).rstrip("."), spec["container"]["secret_env"])
            raise ProviderError(
                f"creating container group {name} in {region} failed: {detail}; {self.undo(group, name)}"
            ) from exc
        return [self.record(doc)]

    def undo(self, group, name):
        """Remove what a failed create made; say what was removed or what is left."""
        try:
            self.p.remove(self.aci.container_groups.begin_delete, group, name)
        except Exception as exc:  # say what is left, whatever went wrong
            return (f"the container group could not be removed ({error_text(exc)}): delete container group "
                    f"{name} in resource group {group} by hand")
        try:
            dropped = self.p.drop_group(group, name)
        except Exception as exc:  # the group is only an empty shell
            return (f"the container group was removed again, its resource group {group} could not be "
                    f"({error_text(exc)})")
        return "what this run had made for it was removed again" + (f" (also resource group {group})" if dropped else "")

    def update(self, rec, spec, changes):
        group, name = split_id(rec["id"])
        current = self.read(rec["id"])
        if current is None:
            raise ProviderError(f"container group {name} (resource group {group}) disappeared while it was being updated")
        raw = current.get("tags") or {}
        tags = retagged(user_tags(raw), spec["tags"], spec["purge_tags"])
        region = normalize_location(current.get("location"))
        secrets = spec["container"]["secret_env"]
        fixed = [key for key in FIXED if key in changes]
        doc = None
        if not fixed:
            body = self.body(spec, region, group, tags, raw.get(CREATED_TAG) or _now())
            try:
                doc = self._put(spec, group, body)
            except Exception as exc:
                if HttpResponseError is None or not isinstance(exc, HttpResponseError) \
                        or error_code(exc) != NOT_UPDATABLE:
                    raise ProviderError(
                        f"updating container group {name} ({', '.join(changes)}) failed: "
                        f"{_scrub(error_text(exc), secrets)}; the group stays as it was"
                    ) from exc
                fixed = ["a setting that Azure Container Instances cannot update"]
        if doc is None:
            # Container Instances cannot change these on an existing group: delete it and create it again.
            self.p.remove(self.aci.container_groups.begin_delete, group, name)
            body = self.body(spec, region, group, tags, _now())
            try:
                doc = self._put(spec, group, body)
            except Exception as exc:
                detail = _scrub(error_text(exc).rstrip("."), secrets)
                raise ProviderError(
                    f"recreating container group {name} (Azure Container Instances cannot change {', '.join(fixed)} "
                    f"of an existing group) failed after the old group was deleted: {detail}; "
                    f"{self.undo(group, name)}; the next run creates it"
                ) from exc
        if rec["state"] == "stopped" and spec["state"] == "present":
            # An updated (or recreated) group runs again: keep it stopped, as it was.
            self.p.call(self.aci.container_groups.stop, group, name)
            doc = self.read(rec["id"]) or doc
        return self.record(doc), bool(fixed)

    # -- changing --------------------------------------------------------------------------------

    def delete_one(self, rec):
        group, name = split_id(rec["id"])
        self.p.remove(self.aci.container_groups.begin_delete, group, name)
        self.p.drop_group(group, rec.get("deployment") or name)

    def start_one(self, rec):
        self.p.lro(self.aci.container_groups.begin_start, *split_id(rec["id"]))

    def stop_one(self, rec):
        # Stop deallocates the containers' compute: billing stops, the group and its DNS name stay.
        self.p.call(self.aci.container_groups.stop, *split_id(rec["id"]))

    def restart_one(self, rec):
        group, name = split_id(rec["id"])
        doc = self.read(rec["id"])
        if doc is None:
            raise ProviderError(f"container group {name} (resource group {group}) is gone")
        if group_state(_props(doc)) == "stopped":
            return self.p.lro(self.aci.container_groups.begin_start, group, name)  # a stopped group starts
        return self.p.lro(self.aci.container_groups.begin_restart, group, name)

    def tag_one(self, rec, tags, purge):
        group, name = split_id(rec["id"])
        doc = self.document(rec)
        if doc is None:
            raise ProviderError(f"container group {name} (resource group {group}) is gone")
        raw = doc.get("tags") or {}
        wanted = every_tag(raw, tags, purge)
        if wanted != raw:
            # PATCH replaces the tags only, synchronously; the containers go on running.
            self.p.call(self.aci.container_groups.update, group, name, {"tags": wanted})
