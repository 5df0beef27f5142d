# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE: VMs are QEMU guests cloned from a template, on the node that `region` names.

A member carries the PVE tags `lxcri` and `lxcri-<deployment>` (found in one /cluster/resources call);
PVE tags cannot hold key=value pairs, so the user's tags live as JSON in the guest's description.
"""

from __future__ import annotations

import json
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


class ProxmoxProvider(Provider):
    name = "proxmox"
    title = "Proxmox"
    NATIVE_SIZE = SIZE
    NATIVE_SIZE_EXAMPLE = "2c4096m (2 cores, 4096 MiB)"
    NATIVE_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    NATIVE_IMAGE_EXAMPLE = "the name of a template VM"
    POLL_MAX = 2.0
    TASK_TIMEOUT = 600

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
        return [g for g in self.call(self.api.cluster.resources.get, type="vm") if g.get("type") == "qemu"]

    def _record(self, guest):
        config = self.call(self.api.nodes(guest["node"]).qemu(guest["vmid"]).config.get)
        meta = _meta(config.get("description"))
        ip = re.search(r"ip=([0-9.]+)", config.get("ipconfig0", ""))
        return record(
            self.name,
            kind=meta.get("kind", "vm"),
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

    def _members(self, node, wanted):
        guests = [g for g in self._guests() if g["node"] == node and not g.get("template") and wanted(_tag_list(g.get("tags")))]
        return self.each(self._record, guests)

    def find_members(self, name, region, kind="vm"):
        return self._members(region, lambda tags: f"{MARKER}-{name}" in tags)

    def list(self, region, tags=None):
        found = self._members(region, lambda guest_tags: MARKER in guest_tags)
        return [rec for rec in found if all(rec["tags"].get(k) == v for k, v in (tags or {}).items())]

    def refresh(self, records):
        ids = {int(rec["id"]) for rec in records}
        return self.each(self._record, [g for g in self._guests() if g["vmid"] in ids])

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
        return self.api.nodes(rec["region"]).qemu(rec["id"])

    def _power(self, rec, action):
        self._task(rec["region"], self.call(getattr(self._vm(rec).status, action).post))

    # -- changing --------------------------------------------------------------------------------

    def _template(self, image, node, guests):
        wanted = (self.connection.get("templates") or {}).get(image) or catalog.native_image(self.name, image)
        templates = [g for g in guests if g.get("template") and g.get("name") == wanted]
        if not templates:
            raise ProviderError(
                f"image '{image}': no template named '{wanted}' on this cluster; create it or map the image "
                "to a template with proxmox.templates"
            )
        return sorted(templates, key=lambda g: g["node"] != node)[0]

    def create(self, spec, region, members):
        guests = self._guests()
        template = self._template(spec["image"], region, guests)
        taken = {g["vmid"] for g in guests}
        first = int(self.call(self.api.cluster.nextid.get))
        # Ids are handed out here, before the clones run in parallel; a clash with another client is
        # caught per clone (PVE says "already exists") and that clone moves on to a further free id.
        ids = [vmid for vmid in range(first, first + 10 * len(members) + 100) if vmid not in taken][: len(members)]
        spare = iter(vmid for vmid in range(max(ids) + 1, max(ids) + 1000) if vmid not in taken)
        jobs = list(zip(members, ids))
        return self.each(lambda job: self._create_one(spec, region, template, job[0], job[1], spare), jobs)

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
            spec = {"name": meta.get("deployment", rec["deployment"]), "kind": meta.get("kind", "vm"), "image": meta.get("image")}
            self.call(self._vm(rec).config.put, description=self._description(spec, wanted, meta.get("created_at")),
                      digest=config.get("digest"))

        self.each(retag, records)
