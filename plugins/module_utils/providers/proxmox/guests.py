# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What QEMU VMs and LXC containers do alike: both are PVE guests, members <name>-<i> on the node that
`region` names, listed by one /cluster/resources call.

A member carries the PVE tags `lxcri` and `lxcri-<deployment>`; PVE tags cannot hold key=value pairs, so the
user's tags live as JSON in the guest's description, beside the deployment, kind, image and creation time.
A record's native is {"guest": its /cluster/resources entry, "config": its config} as read.
"""

from __future__ import annotations

import json
import re
import time

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    Backend,
    PartialFailure,
    ProviderError,
    iso_utc,
    record,
    retagged,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.errors import taken

MARKER = "lxcri"
META_PREFIX = "lxcri: "
STATES = {"running": "running", "stopped": "stopped", "paused": "stopped", "suspended": "stopped"}
SIZE = re.compile(r"^(\d+)c(\d+)m$")
# How many ids a member tries when other clients take the ones it was given.
ID_TRIES = 5


def meta(description):
    """The collection's metadata line of a guest description, or {}."""
    for line in (description or "").splitlines():
        if line.startswith(META_PREFIX):
            try:
                return json.loads(line[len(META_PREFIX):])
            except ValueError:
                return {}
    return {}


def description(spec, tags, created_at=None):
    """A guest description that carries the collection's metadata."""
    data = {
        "deployment": spec["name"], "kind": spec["kind"], "image": spec["image"], "tags": tags,
        "created_at": created_at or iso_utc(time.time()),
    }
    return f"Managed by lxcri.cloud\n{META_PREFIX}{json.dumps(data, sort_keys=True)}"


def pve_tags(name):
    """The PVE tags of a member of deployment `name`."""
    return f"{MARKER};{MARKER}-{name}"


def cores_memory(native_size):
    """(cores, MiB) of a native size such as 2c4096m."""
    cores, memory = SIZE.match(native_size).groups()
    return int(cores), int(memory)


def _tag_list(text):
    return [tag for tag in re.split(r"[;, ]+", text or "") if tag]


class Guests(Backend):
    """The members of one kind: PVE guests of one type (`guest_type`, qemu or lxc)."""

    guest_type = "qemu"
    noun = "VM"  # what the messages call one guest
    destroy_command = "qm destroy"

    # -- reading ---------------------------------------------------------------------------------

    def guests(self):
        """The guests of this type in the cluster, templates included."""
        return [g for g in self.p.listing(self.p.api.cluster.resources.get, type="vm") if g.get("type") == self.guest_type]

    def path(self, rec):
        """The API path of a member: /nodes/{node}/{qemu|lxc}/{vmid}."""
        return getattr(self.p.api.nodes(rec["region"]), self.guest_type)(rec["id"])

    def record_of(self, guest):
        """The record of a guest from its /cluster/resources entry and its config; None when it is gone."""
        config = self.p.unless_gone(getattr(self.p.api.nodes(guest["node"]), self.guest_type)(guest["vmid"]).config.get)
        if config is None:
            return None
        data = meta(config.get("description"))
        ip = re.search(r"ip=([0-9.]+)", self.address(config))
        return record(
            self.p.name,
            native={"guest": guest, "config": config},
            kind=data.get("kind", self.kind),
            name=guest.get("name"),
            deployment=data.get("deployment"),
            id=str(guest["vmid"]),
            state=STATES.get(guest.get("status"), "unknown"),
            region=guest["node"],
            native_size=f"{config.get('cores', 1)}c{config.get('memory', 512)}m",
            image=data.get("image"),
            private_ip=ip.group(1) if ip else None,
            tags=data.get("tags", {}),
            created_at=iso_utc(data.get("created_at")),
        )

    def address(self, config):
        """The config entry that holds the guest's IP address (ip=...)."""
        raise NotImplementedError

    def records(self, guests):
        return [rec for rec in self.p.each(self.record_of, guests) if rec is not None]

    def on_node(self, node, wanted):
        """Records of the member guests on `node` whose PVE tags satisfy `wanted`."""
        return self.records([
            g for g in self.guests()
            if g["node"] == node and not g.get("template") and wanted(_tag_list(g.get("tags")))
        ])

    def find(self, name, region):
        # A VM and a container deployment may share a name (and so the PVE tag): the guest type and the kind
        # in the metadata tell them apart.
        found = self.on_node(region, lambda tags: f"{MARKER}-{name}" in tags)
        return [rec for rec in found if rec["kind"] == self.kind]

    def list(self, region, tags):
        return self.on_node(region, lambda guest_tags: MARKER in guest_tags)

    def refresh(self, records):
        # One listing for all: records handed in need only their id.
        ids = {int(rec["id"]) for rec in records}
        return self.records([g for g in self.guests() if g["vmid"] in ids])

    # -- creating --------------------------------------------------------------------------------

    def create(self, spec, region, names):
        """Members in parallel; each one that fails removes what it made, and the others are kept for the
        caller to roll back (PartialFailure)."""
        guests = self.p.listing(self.p.api.cluster.resources.get, type="vm")
        source = self.source(spec, region, guests)
        jobs, spare = self.ids(guests, names)
        made, failures = self.p.each_settled(lambda job: self.create_one(spec, region, source, job[0], job[1], spare), jobs)
        if failures and not made and len(failures) == 1:
            raise failures[0][1]  # as it came: nothing else was tried
        if failures:
            raise PartialFailure("; ".join(str(exc) for _job, exc in failures), done=made)
        return made

    def source(self, spec, region, guests):
        """What the members are made from (a template VM, an OS template volume), checked before any is made."""
        raise NotImplementedError

    def create_one(self, spec, node, source, member, vmid, spare):
        raise NotImplementedError

    def ids(self, guests, members):
        """(member, vmid) pairs and an iterator of spare ids.

        Ids are handed out here, before the creations run in parallel; a clash with another client is
        caught per guest (PVE says "already exists") and that guest moves on to a further free id.
        """
        used = {g["vmid"] for g in guests}
        first = int(self.p.call(self.p.api.cluster.nextid.get))
        ids = [vmid for vmid in range(first, first + 10 * len(members) + 100) if vmid not in used][: len(members)]
        spare = iter(vmid for vmid in range(max(ids) + 1, max(ids) + 1000) if vmid not in used)
        return list(zip(members, ids)), spare

    def claim(self, make, vmid, spare, what):
        """(make(vmid)'s answer, the id it took): an id another client took meanwhile moves on to a spare one;
        `what` names the id in the error when none is left."""
        for _attempt in range(ID_TRIES):
            try:
                return make(vmid), vmid
            except Exception as exc:
                if not taken(exc):
                    raise
                vmid = next(spare)
        raise ProviderError(f"could not find a free {what} after {ID_TRIES} tries")

    def abandon(self, rec, exc, label=""):
        """Remove a member whose creation failed part-way; the error to raise, saying what became of it."""
        member, vmid, node = rec["name"], rec["id"], rec["region"]
        try:
            removed = self.destroy(rec)
        except Exception as cleanup:
            return ProviderError(
                f"creating {label}{member} failed ({exc}) and removing the half-made {self.noun} {vmid} failed "
                f"too ({cleanup}): remove it by hand ({self.destroy_command} {vmid} --purge on {node})"
            )
        left = f"{self.noun} {vmid} was removed again" if removed else "nothing was left behind"
        return ProviderError(f"creating {label}{member} failed and {left}: {exc}")

    def made(self, vmid, node, member):
        """The record of a member just made and started."""
        return self.record_of({"vmid": vmid, "node": node, "name": member, "status": "running", "type": self.guest_type})

    # -- changing --------------------------------------------------------------------------------

    def power(self, rec, action):
        self.p.task(rec["region"], self.p.call(getattr(self.path(rec).status, action).post))

    def destroy(self, rec):
        """Stop and remove a member with its disks; False when it was not there."""
        status = self.p.unless_gone(self.path(rec).status.current.get)
        if status is None:
            return False
        if status.get("status") == "running":
            self.power(rec, "stop")
        self.p.task(rec["region"], self.p.call(self.path(rec).delete, purge=1, **{"destroy-unreferenced-disks": 1}))
        return True

    def delete_one(self, rec):
        self.destroy(rec)

    def start_one(self, rec):
        self.power(rec, "start")

    def stop_one(self, rec):
        self.power(rec, "stop")

    def restart_one(self, rec):
        self.power(rec, "reboot")

    def tag_one(self, rec, tags, purge):
        # The config as it is now: its digest guards the write, its metadata is kept.
        config = self.p.call(self.path(rec).config.get)
        data = meta(config.get("description"))
        spec = {"name": data.get("deployment", rec["deployment"]), "kind": data.get("kind", rec["kind"]), "image": data.get("image")}
        self.p.call(self.path(rec).config.put, description=description(spec, retagged(rec["tags"], tags, purge), data.get("created_at")),
                    digest=config.get("digest"))
