# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE containers: `kind: container` deploys `count` LXC containers named <name>-1 .. <name>-<count>,
members like VMs, made from an OS template (vztmpl):

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
"""

from __future__ import annotations

import math

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, record
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.errors import ResourceException
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.guests import (
    Guests,
    cores_memory,
    description,
    pve_tags,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.templates import CT_TEMPLATES, ct_template
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError

CT_ROOTFS_GIB = 8
CT_STORAGE = "local-lvm"
CT_NET = "name=eth0,bridge=vmbr0,ip=dhcp"
CT_MIN_MEMORY = 16  # MiB, PVE's minimum


def ct_size(container):
    """The native size of a container spec: whole cores (rounded up) and MiB."""
    return f"{math.ceil(container.get('cpu') or 0.25)}c{container.get('memory') or 512}m"


def normalize(spec):
    """Make a container deployment's image and size the container's, so that the member path plans,
    predicts and reports drift on them (for every state: removing too)."""
    container = spec.get("container") or {}
    spec["image"] = container.get("image") or spec.get("image")
    spec["size"] = ct_size(container)


class Containers(Guests):
    kind = "container"
    members = True
    resizes = True
    guest_type = "lxc"
    noun = "container"
    destroy_command = "pct destroy"

    @classmethod
    def validate(cls, spec):
        """Refuse what LXC has no place for."""
        container = spec.get("container") or {}
        for option, what in (("env", "environment"), ("secret_env", "secret environment"), ("command", "command")):
            if container.get(option):
                raise SpecError(
                    f"container.{option} is not supported on proxmox: an LXC container boots the init system of "
                    f"its OS template and takes no {what}; remove container.{option} and configure the "
                    "container once it runs (for example with Ansible over SSH)"
                )
        if container["memory"] < CT_MIN_MEMORY:
            raise SpecError(f"container.memory must be at least {CT_MIN_MEMORY} (MiB) on proxmox, got {container['memory']}")
        templates = (spec.get(INFO.name) or {}).get("templates")
        if not ct_template(container["image"], templates):
            raise SpecError(
                f"container.image '{container['image']}' is not valid for proxmox: an LXC container is made from an "
                f"OS template: use one of {', '.join(CT_TEMPLATES)}, an image that proxmox.templates maps to a "
                "template volume, or a template volume such as local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
            )

    def native_size(self, spec):
        return ct_size(spec.get("container") or {})

    def address(self, config):
        return config.get("net0", "")

    def source(self, spec, region, guests):
        """The OS template volume of the container image, checked to be on the node's storage."""
        image = spec["container"]["image"]
        volid = ct_template(image, self.p.connection.get("templates"))
        if not volid:
            raise ProviderError(
                f"container.image '{image}': no LXC template is known for it: use one of {', '.join(CT_TEMPLATES)}, "
                "a template volume such as local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst, or map it with proxmox.templates"
            )
        storage = volid.split(":", 1)[0]
        try:
            content = self.p.listing(self.p.api.nodes(region).storage(storage).content.get, content="vztmpl")
        except ResourceException as exc:
            raise ProviderError(f"container.image '{image}': cannot list the LXC templates of storage '{storage}' on node {region}: {exc}") from exc
        available = sorted(item.get("volid", "") for item in content)
        if volid not in available:
            raise ProviderError(
                f"container.image '{image}': the LXC template {volid} is not on node {region} (download it with "
                f"`pveam download {storage} {volid.split('/', 1)[1]}`, or map the image to another template with "
                f"proxmox.templates); templates there: {', '.join(available) or 'none'}"
            )
        return volid

    def create_one(self, spec, node, source, member, vmid, spare):
        cores, memory = cores_memory(self.native_size(spec))
        settings = {
            "ostemplate": source,
            "hostname": member,
            "cores": cores,
            "memory": memory,
            "rootfs": f"{self.p.connection.get('storage') or CT_STORAGE}:{CT_ROOTFS_GIB}",
            "net0": CT_NET,
            "unprivileged": 1,
            "features": "nesting=1",
            "tags": pve_tags(spec["name"]),
            "description": description(spec, spec["tags"]),
        }
        if spec.get("ssh_public_key"):
            settings["ssh-public-keys"] = spec["ssh_public_key"].strip() + "\n"
        lxc = self.p.api.nodes(node).lxc
        try:
            upid, vmid = self.claim(lambda newid: self.p.call(lxc.post, vmid=newid, **settings), vmid, spare,
                                    f"id for container {member}")
        except ResourceException as exc:
            raise ProviderError(f"creating container {member} failed, nothing was made: {exc}") from exc
        rec = record(self.p.name, kind=self.kind, name=member, id=str(vmid), region=node, deployment=spec["name"])
        try:
            self.p.task(node, upid)
            self.power(rec, "start")
        except Exception as exc:
            # Leave nothing half-made behind: the container is removed and the error says so.
            raise self.abandon(rec, exc, label="container ") from exc
        return self.made(vmid, node, member)

    def resize(self, records, spec):
        """Give members the spec's cores and memory in place (a running container takes them at once)."""
        cores, memory = cores_memory(self.native_size(spec))

        def one(rec):
            config = self.p.call(self.path(rec).config.get)
            self.p.call(self.path(rec).config.put, cores=cores, memory=memory, digest=config.get("digest"))

        self.p.each(one, records)
