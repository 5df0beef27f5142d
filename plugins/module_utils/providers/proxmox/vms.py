# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE VMs: QEMU guests, each a full clone of the template VM that the image names (proxmox.templates,
or the catalog's), configured by cloud-init (cores, memory, DHCP, the SSH key) and started."""

from __future__ import annotations

import urllib.parse

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, record
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.guests import (
    Guests,
    cores_memory,
    description,
    pve_tags,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.templates import vm_template


class Vms(Guests):
    kind = "vm"
    guest_type = "qemu"
    noun = "VM"
    destroy_command = "qm destroy"

    def address(self, config):
        return config.get("ipconfig0", "")

    def source(self, spec, region, guests):
        """The template VM to clone: one on the member's node if there is one."""
        wanted = vm_template(spec["image"], self.p.connection.get("templates"))
        templates = [g for g in guests if g.get("template") and g.get("type", "qemu") == "qemu" and g.get("name") == wanted]
        if not templates:
            raise ProviderError(
                f"image '{spec['image']}': no template named '{wanted}' on this cluster; create it or map the image "
                "to a template with proxmox.templates"
            )
        return sorted(templates, key=lambda g: g["node"] != region)[0]

    def create_one(self, spec, node, source, member, vmid, spare):
        clone = self.p.api.nodes(source["node"]).qemu(source["vmid"]).clone.post
        storage = {"storage": self.p.connection["storage"]} if self.p.connection.get("storage") else {}
        upid, vmid = self.claim(
            lambda newid: self.p.call(clone, newid=newid, name=member, target=node, full=1, **storage),
            vmid, spare, f"VM id for {member}",
        )
        self.p.task(source["node"], upid)
        rec = record(self.p.name, name=member, id=str(vmid), region=node, deployment=spec["name"])
        try:
            self.configure(rec, spec)
            self.power(rec, "start")
        except Exception as exc:
            # Leave nothing half-made behind: the member is removed and the error says so.
            raise self.abandon(rec, exc) from exc
        return self.made(vmid, node, member)

    def configure(self, rec, spec):
        cores, memory = cores_memory(self.native_size(spec))
        settings = {
            "cores": cores,
            "memory": memory,
            "tags": pve_tags(spec["name"]),
            "description": description(spec, spec["tags"]),
            "ipconfig0": "ip=dhcp",
        }
        if spec.get("ssh_public_key"):
            # PVE wants sshkeys URL-encoded, spaces as %20.
            settings["sshkeys"] = urllib.parse.quote(spec["ssh_public_key"].strip() + "\n", safe="")
        self.p.call(self.path(rec).config.put, **settings)
