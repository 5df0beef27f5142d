# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE: VMs are QEMU guests cloned from a template, containers are LXC containers made from an OS
template (vztmpl), both on the node that `region` names.

A member carries the PVE tags `lxcri` and `lxcri-<deployment>` (found in one /cluster/resources call);
PVE tags cannot hold key=value pairs, so the user's tags live as JSON in the guest's description, beside the
deployment, kind, image and creation time.

`kind: container` deploys `count` LXC containers named <name>-1 .. <name>-<count>, members like VMs:
- container.image is a portable image (ubuntu-24.04, ubuntu-22.04, debian-12) mapped to an OS template volume
  by CT_TEMPLATES (override per image with proxmox.templates: {ubuntu-24.04: "local:vztmpl/..."}), or a
  template volume itself, `<storage>:vztmpl/<file>`;
- cores = ceil(container.cpu), memory = container.memory MiB, an 8 GiB rootfs on proxmox.storage (default
  local-lvm), net0 eth0 on vmbr0 by DHCP, unprivileged with nesting, started once made;
- container.env, secret_env and command have no LXC equivalent (the container boots its template's init)
  and are refused at validation; container.port and public are ignored (an LXC container has its own
  address on the bridge, every port of it is reachable there; there is no URL);
- cpu and memory of existing members are changed in place (resize); a new image is reported as drift and
  left alone: remove the members (or the deployment) to recreate them from the new template.

Metrics come from each guest's rrddata; Proxmox VE has no native metric alerting, so every alarm is refused
at validation (proxmox_monitoring.py).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    MissingSDK,
    Provider,
    ProviderError,
    iso_utc,
    record,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers import proxmox_monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import wait_for

try:
    import requests
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import ResourceException
except ImportError:
    ProxmoxAPI = None

MARKER = "lxcri"
META_PREFIX = "lxcri: "
STATES = {"running": "running", "stopped": "stopped", "paused": "stopped", "suspended": "stopped"}
# PVE answers 500 for many errors that will not go away on retry.
FATAL_500 = re.compile(r"already exists|does not exist|not exist|no such|unable to find|invalid|not allowed|permission", re.I)
SIZE = re.compile(r"^(\d+)c(\d+)m$")
# Portable image -> the LXC OS template volume it is made from (the names of PVE's appliance index, pveam).
CT_TEMPLATES = {
    "ubuntu-24.04": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
    "ubuntu-22.04": "local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.zst",
    "debian-12": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
}
VZTMPL = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*:vztmpl/[A-Za-z0-9][A-Za-z0-9._+-]*$")
CT_ROOTFS_GIB = 8
CT_STORAGE = "local-lvm"
CT_NET = "name=eth0,bridge=vmbr0,ip=dhcp"
CT_MIN_MEMORY = 16  # MiB, PVE's minimum
# The PVE guest type of each kind deployed as members.
GUEST_TYPE = {"vm": "qemu", "container": "lxc"}
KIND_OF = {"qemu": "vm", "lxc": "container"}


def _meta(description):
    """The collection's metadata line of a guest description, or {}."""
    for line in (description or "").splitlines():
        if line.startswith(META_PREFIX):
            try:
                return json.loads(line[len(META_PREFIX):])
            except ValueError:
                return {}
    return {}


def _tag_list(text):
    return [tag for tag in re.split(r"[;, ]+", text or "") if tag]


def _ct_size(container):
    """The native size of a container spec: whole cores (rounded up) and MiB."""
    return f"{math.ceil(container.get('cpu') or 0.25)}c{container.get('memory') or 512}m"


def _ct_template(image, templates):
    """The OS template volume of a container image: proxmox.templates' own (a vztmpl volume), the image
    itself when it is one, the table's; None when there is none."""
    override = str((templates or {}).get(image) or "")
    if VZTMPL.match(override):
        return override
    if VZTMPL.match(image or ""):
        return image
    return CT_TEMPLATES.get(image)


class ProxmoxProvider(Provider):
    name = "proxmox"
    title = "Proxmox"
    NATIVE_SIZE = SIZE
    NATIVE_SIZE_EXAMPLE = "2c4096m (2 cores, 4096 MiB)"
    NATIVE_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    NATIVE_IMAGE_EXAMPLE = "the name of a template VM"
    POLL_MAX = 2.0
    TASK_TIMEOUT = 600
    # LXC containers are members like VMs (<name>-1 .. <name>-<count>), not one service.
    MEMBER_KINDS = ("vm", "container")
    # Kinds whose members take a new size (cores, memory) in place.
    RESIZE_KINDS = ("container",)

    def __init__(self, connection, policy=None):
        super().__init__(connection, **({"policy": policy} if policy else {}))
        if ProxmoxAPI is None:
            raise MissingSDK("the proxmox provider needs proxmoxer and requests: pip install -r requirements.txt")
        conn = self.connection
        if not conn.get("endpoint"):
            raise ProviderError("proxmox.endpoint is required (or LXCRI_PROXMOX_ENDPOINT), e.g. https://pve.example.com:8006")
        url = urllib.parse.urlsplit(conn["endpoint"])
        if url.scheme != "https" or not url.hostname:
            raise ProviderError(f"proxmox.endpoint must be an https URL such as https://pve.example.com:8006, got {conn['endpoint']}")
        auth = {}
        if conn.get("token_id") and conn.get("token_secret"):
            user, _sep, token_name = conn["token_id"].partition("!")
            if not token_name:
                raise ProviderError("proxmox.token_id must look like user@realm!tokenname")
            auth = {"user": user, "token_name": token_name, "token_value": conn["token_secret"]}
        elif conn.get("user") and conn.get("password"):
            auth = {"user": conn["user"], "password": conn["password"]}
        else:
            raise ProviderError(
                "no Proxmox credentials: set proxmox.token_id and proxmox.token_secret (or PROXMOX_TOKEN_ID and "
                "PROXMOX_TOKEN_SECRET), or proxmox.user and proxmox.password"
            )
        verify = conn.get("ca_bundle") or conn.get("validate_certs", True)
        self._connect = lambda: ProxmoxAPI(
            url.hostname, port=url.port or 8006, path_prefix=url.path.strip("/") or None,
            verify_ssl=verify, timeout=60, **auth,
        )
        self._api = None

    @property
    def api(self):
        if self._api is None:
            # Password login is an API call too; it gets the same retries as every other.
            self._api = self.call(self._connect)
        return self._api

    @classmethod
    def validate(cls, spec):
        if spec.get("user_data"):
            raise SpecError("user_data is not supported on proxmox (cloud-init snippets need shell access to the node): use ssh_public_key")
        if spec.get("kind") == "container":
            cls._validate_container(spec)

    @classmethod
    def _validate_container(cls, spec):
        """Refuse what LXC has no place for; make the deployment's image and size the container's, so that
        the member path plans, predicts and reports drift on them."""
        container = spec.get("container") or {}
        spec["image"] = container.get("image") or spec.get("image")
        spec["size"] = _ct_size(container)
        if spec.get("state") == "absent":
            return  # removing needs nothing of the container's settings
        for option, what in (("env", "environment"), ("secret_env", "secret environment"), ("command", "command")):
            if container.get(option):
                raise SpecError(
                    f"container.{option} is not supported on proxmox: an LXC container boots the init system of "
                    f"its OS template and takes no {what}; remove container.{option} and configure the "
                    "container once it runs (for example with Ansible over SSH)"
                )
        if container["memory"] < CT_MIN_MEMORY:
            raise SpecError(f"container.memory must be at least {CT_MIN_MEMORY} (MiB) on proxmox, got {container['memory']}")
        templates = (spec.get(cls.name) or {}).get("templates")
        if not _ct_template(container["image"], templates):
            raise SpecError(
                f"container.image '{container['image']}' is not valid for proxmox: an LXC container is made from an "
                f"OS template: use one of {', '.join(CT_TEMPLATES)}, an image that proxmox.templates maps to a "
                "template volume, or a template volume such as local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
            )

    @classmethod
    def validate_alarm(cls, alarm):
        proxmox_monitoring.validate_alarm(alarm)  # always refuses: PVE has no native metric alerting

    def native_size(self, spec):
        if spec.get("kind") == "container":
            return _ct_size(spec.get("container") or {})
        return super().native_size(spec)

    def classify(self, exc):
        if isinstance(exc, ResourceException):
            if exc.status_code == 429:
                return THROTTLED, None
            if exc.status_code in (502, 503, 504) or (exc.status_code == 500 and not FATAL_500.search(str(exc))):
                return TRANSIENT, None
            return FATAL, None
        if self.unreachable(exc):
            return FATAL, None
        if isinstance(exc, requests.exceptions.ConnectionError):
            return TRANSIENT, None
        if isinstance(exc, requests.exceptions.Timeout):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        return isinstance(exc, requests.exceptions.ConnectionError) and "refused" in str(exc).lower()

    def region(self, spec):
        node = super().region(spec)
        nodes = [entry["node"] for entry in self.call(self.api.nodes.get)]
        if node not in nodes:
            raise ProviderError(f"region '{node}' is not a node of this Proxmox cluster: use one of {', '.join(sorted(nodes))}")
        return node

    # -- reading ---------------------------------------------------------------------------------

    def _guests(self):
        """QEMU VMs and LXC containers of the cluster, templates included."""
        return [g for g in self.call(self.api.cluster.resources.get, type="vm") if g.get("type") in KIND_OF]

    def _record(self, guest):
        kind = KIND_OF[guest.get("type", "qemu")]
        config = self.call(getattr(self.api.nodes(guest["node"]), GUEST_TYPE[kind])(guest["vmid"]).config.get)
        meta = _meta(config.get("description"))
        ip = re.search(r"ip=([0-9.]+)", config.get("ipconfig0", "") if kind == "vm" else config.get("net0", ""))
        return record(
            self.name,
            kind=meta.get("kind", kind),
            name=guest.get("name"),
            deployment=meta.get("deployment"),
            id=str(guest["vmid"]),
            state=STATES.get(guest.get("status"), "unknown"),
            region=guest["node"],
            native_size=f"{config.get('cores', 1)}c{config.get('memory', 512)}m",
            image=meta.get("image"),
            private_ip=ip.group(1) if ip else None,
            tags=meta.get("tags", {}),
            created_at=iso_utc(meta.get("created_at")),
        )

    def _members(self, node, wanted, types=tuple(KIND_OF)):
        guests = [
            g for g in self._guests()
            if g["node"] == node and g["type"] in types and not g.get("template") and wanted(_tag_list(g.get("tags")))
        ]
        return self.each(self._record, guests)

    def find_members(self, name, region, kind="vm"):
        # A VM and a container deployment may share a name (and so the PVE tag): the guest type and the kind
        # in the metadata tell them apart.
        found = self._members(region, lambda tags: f"{MARKER}-{name}" in tags, (GUEST_TYPE[kind],))
        return [rec for rec in found if rec["kind"] == kind]

    def list(self, region, tags=None):
        found = self._members(region, lambda guest_tags: MARKER in guest_tags)
        return [rec for rec in found if all(rec["tags"].get(k) == v for k, v in (tags or {}).items())]

    def refresh(self, records):
        ids = {(int(rec["id"]), GUEST_TYPE.get(rec.get("kind"), "qemu")) for rec in records}
        return self.each(self._record, [g for g in self._guests() if (g["vmid"], g["type"]) in ids])

    # -- monitoring (proxmox_monitoring.py) ------------------------------------------------------

    def metrics(self, records, names, start, end, period):
        return proxmox_monitoring.metrics(self.each, self._rrddata, records, names, start, end, period)

    def _rrddata(self, rec, **query):
        """(samples, None) of a guest's rrddata, or (None, why) when PVE has none for it: the guest is gone (its
        config does not exist) or has no RRD file yet."""
        try:
            return self.call(self._vm(rec).rrddata.get, **query), None
        except ResourceException as exc:
            if not re.search(r"does not exist|no such file", str(exc), re.I):
                raise
            return None, f"no rrddata for {rec.get('name') or 'guest'} ({rec.get('id')}) on node {rec.get('region')}: {exc}"

    # -- tasks -----------------------------------------------------------------------------------

    def _task(self, node, upid):
        """Wait for a PVE task; a failed task raises with PVE's own exit status."""
        status = wait_for(
            lambda: self.call(self.api.nodes(node).tasks(upid).status.get),
            lambda s: s.get("status") == "stopped",
            f"Proxmox task {upid}", self.TASK_TIMEOUT, first=0.05, maximum=self.POLL_MAX,
        )
        if status.get("exitstatus") != "OK":
            raise ProviderError(f"Proxmox task {status.get('type')} of {status.get('id')} on {node} failed: {status.get('exitstatus')}")
        return status

    def _vm(self, rec):
        """The API path of a member: /nodes/{node}/qemu/{vmid} or /nodes/{node}/lxc/{vmid}."""
        return getattr(self.api.nodes(rec["region"]), GUEST_TYPE.get(rec.get("kind"), "qemu"))(rec["id"])

    def _power(self, rec, action):
        self._task(rec["region"], self.call(getattr(self._vm(rec).status, action).post))

    # -- changing --------------------------------------------------------------------------------

    def _template(self, image, node, guests):
        override = (self.connection.get("templates") or {}).get(image)
        # proxmox.templates may map the same image to an LXC template volume too: that one is for containers.
        wanted = (override if override and not VZTMPL.match(str(override)) else None) or catalog.native_image(self.name, image)
        templates = [g for g in guests if g.get("template") and g.get("name") == wanted]
        if not templates:
            raise ProviderError(
                f"image '{image}': no template named '{wanted}' on this cluster; create it or map the image "
                "to a template with proxmox.templates"
            )
        return sorted(templates, key=lambda g: g["node"] != node)[0]

    def create(self, spec, region, members):
        if spec["kind"] == "container":
            return self._create_containers(spec, region, members)
        guests = self._guests()
        template = self._template(spec["image"], region, guests)
        jobs, spare = self._ids(guests, members)
        return self.each(lambda job: self._create_one(spec, region, template, job[0], job[1], spare), jobs)

    def _ids(self, guests, members):
        """(member, vmid) pairs and an iterator of spare ids.

        Ids are handed out here, before the creations run in parallel; a clash with another client is
        caught per guest (PVE says "already exists") and that guest moves on to a further free id.
        """
        taken = {g["vmid"] for g in guests}
        first = int(self.call(self.api.cluster.nextid.get))
        ids = [vmid for vmid in range(first, first + 10 * len(members) + 100) if vmid not in taken][: len(members)]
        spare = iter(vmid for vmid in range(max(ids) + 1, max(ids) + 1000) if vmid not in taken)
        return list(zip(members, ids)), spare

    def _create_one(self, spec, node, template, member, vmid, spare):
        source = self.api.nodes(template["node"]).qemu(template["vmid"])
        for _attempt in range(5):
            try:
                upid = self.call(source.clone.post, newid=vmid, name=member, target=node, full=1,
                                 **({"storage": self.connection["storage"]} if self.connection.get("storage") else {}))
                break
            except ResourceException as exc:
                if "already exists" not in str(exc):
                    raise
                vmid = next(spare)
        else:
            raise ProviderError(f"could not find a free VM id for {member} after 5 tries")
        self._task(template["node"], upid)
        rec = record(self.name, name=member, id=str(vmid), region=node, deployment=spec["name"])
        try:
            self._configure(rec, spec)
            self._power(rec, "start")
        except Exception as exc:
            # Leave nothing half-made behind: the member is removed and the error says so.
            self._destroy(rec)
            raise ProviderError(f"creating {member} failed and VM {vmid} was removed again: {exc}") from exc
        return self._record({"vmid": vmid, "node": node, "name": member, "status": "running"})

    # -- LXC containers --------------------------------------------------------------------------

    def _ostemplate(self, image, node):
        """The OS template volume of `image`, checked to be on the node's storage."""
        volid = _ct_template(image, self.connection.get("templates"))
        if not volid:
            raise ProviderError(
                f"container.image '{image}': no LXC template is known for it: use one of {', '.join(CT_TEMPLATES)}, "
                "a template volume such as local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst, or map it with proxmox.templates"
            )
        storage = volid.split(":", 1)[0]
        try:
            content = self.call(self.api.nodes(node).storage(storage).content.get, content="vztmpl")
        except ResourceException as exc:
            raise ProviderError(f"container.image '{image}': cannot list the LXC templates of storage '{storage}' on node {node}: {exc}") from exc
        available = sorted(item.get("volid", "") for item in content)
        if volid not in available:
            raise ProviderError(
                f"container.image '{image}': the LXC template {volid} is not on node {node} (download it with "
                f"`pveam download {storage} {volid.split('/', 1)[1]}`, or map the image to another template with "
                f"proxmox.templates); templates there: {', '.join(available) or 'none'}"
            )
        return volid

    def _create_containers(self, spec, region, members):
        ostemplate = self._ostemplate(spec["container"]["image"], region)
        jobs, spare = self._ids(self._guests(), members)
        return self.each(lambda job: self._create_container(spec, region, ostemplate, job[0], job[1], spare), jobs)

    def _create_container(self, spec, node, ostemplate, member, vmid, spare):
        cores, memory = SIZE.match(self.native_size(spec)).groups()
        settings = {
            "ostemplate": ostemplate,
            "hostname": member,
            "cores": int(cores),
            "memory": int(memory),
            "rootfs": f"{self.connection.get('storage') or CT_STORAGE}:{CT_ROOTFS_GIB}",
            "net0": CT_NET,
            "unprivileged": 1,
            "features": "nesting=1",
            "tags": f"{MARKER};{MARKER}-{spec['name']}",
            "description": self._description(spec, spec["tags"]),
        }
        if spec.get("ssh_public_key"):
            settings["ssh-public-keys"] = spec["ssh_public_key"].strip() + "\n"
        lxc = self.api.nodes(node).lxc
        for _attempt in range(5):
            try:
                upid = self.call(lxc.post, vmid=vmid, **settings)
                break
            except ResourceException as exc:
                if "already exists" not in str(exc):
                    raise ProviderError(f"creating container {member} failed, nothing was made: {exc}") from exc
                vmid = next(spare)
        else:
            raise ProviderError(f"could not find a free id for container {member} after 5 tries")
        rec = record(self.name, kind="container", name=member, id=str(vmid), region=node, deployment=spec["name"])
        try:
            self._task(node, upid)
            self._power(rec, "start")
        except Exception as exc:
            # Leave nothing half-made behind: the container is removed and the error says so.
            try:
                removed = self._remove_half_made(rec)
            except Exception as cleanup:
                raise ProviderError(
                    f"creating container {member} failed ({exc}) and removing the half-made container {vmid} failed "
                    f"too ({cleanup}): remove it by hand (pct destroy {vmid} --purge on {node})"
                ) from exc
            raise ProviderError(
                f"creating container {member} failed and "
                f"{f'container {vmid} was removed again' if removed else 'nothing was left behind'}: {exc}"
            ) from exc
        return self._record({"vmid": vmid, "node": node, "name": member, "status": "running", "type": "lxc"})

    def _remove_half_made(self, rec):
        """Destroy a member that failed on the way; True when there was one to destroy."""
        try:
            self._destroy(rec)
        except ResourceException as exc:
            if re.search(r"does not exist|no such", str(exc), re.I):
                return False
            raise
        return True

    def resize(self, records, spec):
        """Give members the spec's cores and memory in place (a running container takes them at once)."""
        cores, memory = SIZE.match(self.native_size(spec)).groups()

        def one(rec):
            config = self.call(self._vm(rec).config.get)
            self.call(self._vm(rec).config.put, cores=int(cores), memory=int(memory), digest=config.get("digest"))

        self.each(one, records)

    # -- both ------------------------------------------------------------------------------------

    def _configure(self, rec, spec):
        match = SIZE.match(self.native_size(spec))
        settings = {
            "cores": int(match.group(1)),
            "memory": int(match.group(2)),
            "tags": f"{MARKER};{MARKER}-{spec['name']}",
            "description": self._description(spec, spec["tags"]),
            "ipconfig0": "ip=dhcp",
        }
        if spec.get("ssh_public_key"):
            # PVE wants sshkeys URL-encoded, spaces as %20.
            settings["sshkeys"] = urllib.parse.quote(spec["ssh_public_key"].strip() + "\n", safe="")
        self.call(self._vm(rec).config.put, **settings)

    def _description(self, spec, tags, created_at=None):
        meta = {
            "deployment": spec["name"], "kind": spec["kind"], "image": spec["image"], "tags": tags,
            "created_at": created_at or iso_utc(time.time()),
        }
        return f"Managed by lxcri.cloud\n{META_PREFIX}{json.dumps(meta, sort_keys=True)}"

    def _destroy(self, rec):
        status = self.call(self._vm(rec).status.current.get)
        if status.get("status") == "running":
            self._power(rec, "stop")
        self._task(rec["region"], self.call(self._vm(rec).delete, purge=1, **{"destroy-unreferenced-disks": 1}))

    def delete(self, records):
        self.each(self._destroy, records)

    def start(self, records):
        self.each(lambda rec: self._power(rec, "start"), records)

    def stop(self, records):
        self.each(lambda rec: self._power(rec, "stop"), records)

    def restart(self, records):
        self.each(lambda rec: self._power(rec, "reboot"), records)

    def update_tags(self, records, tags, purge):
        def retag(rec):
            config = self.call(self._vm(rec).config.get)
            meta = _meta(config.get("description"))
            wanted = dict(tags) if purge else {**rec["tags"], **tags}
            spec = {"name": meta.get("deployment", rec["deployment"]), "kind": meta.get("kind", rec["kind"]), "image": meta.get("image")}
            self.call(self._vm(rec).config.put, description=self._description(spec, wanted, meta.get("created_at")),
                      digest=config.get("digest"))

        self.each(retag, records)
