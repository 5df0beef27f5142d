# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure VMs: virtual machines in the deployment's resource group (provider.py), found by the tag
lxcri-deployment.

Per deployment: one virtual network `<name>-vnet` (10.0.0.0/16, subnet `default`) and one network
security group `<name>-nsg` on that subnet that lets SSH (TCP 22) in, all tagged lxcri-deployment. Per
member (the VM name is the member name `<name>-<i>`): a Standard static public IP `<member>-ip`, a NIC
`<member>-nic` and the VM with its OS disk `<member>-osdisk`. The VM deletes its OS disk and NIC with
it (deleteOption Delete); the public IP is deleted right after. When the last member is gone, the
network, the NSG, anything of the deployment left over by an interrupted run and (if it is ours) the
resource group go too, so that `absent` leaves nothing behind.

The VM: admin user `lxcri`, password login disabled, the SSH key `ssh_public_key` (or, without one, a
throwaway key generated for this run that nobody holds, so that only user_data's cloud-config can give
access), customData = the cloud-init user data. VM tags: lxcri-deployment, lxcri-kind, lxcri-image and
the user's tags. A record's `id` is the VM's vmId (a GUID that stays with the VM for its life); its
native is the VM's document (with its ARM id, hence its resource group, and every tag). `stop`
deallocates (the VM stops being billed for compute; its static public IP stays), `start` starts,
`restart` restarts.
"""

from __future__ import annotations

import base64
import re

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    Backend,
    PartialFailure,
    ProviderError,
    iso_utc,
    native_of,
    record,
    undo,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.arm import (
    TAG_VALUE_MAX,
    dig,
    elsewhere,
    every_tag,
    lower,
    normalize_location,
    split_id,
    taken,
    user_tags,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.errors import error_code, error_text
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    DEPLOYMENT_TAG,
    IMAGE_TAG,
    KIND_TAG,
    SpecError,
    member_index,
)

VM_TYPE = "Microsoft.Compute/virtualMachines"
ADMIN_USER = "lxcri"
VNET_PREFIX = "10.0.0.0/16"
SUBNET = "default"
# PowerState/<x> of the instance view -> record state.
POWER_STATES = {
    "running": "running", "starting": "pending", "stopped": "stopped", "deallocated": "stopped",
    "stopping": "pending", "deallocating": "pending", "unknown": "unknown",
}


def image_reference(image):
    """The imageReference of a publisher:offer:sku:version URN."""
    publisher, offer, sku, version = image.split(":")
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def image_urn(reference):
    """publisher:offer:sku:version of an imageReference, or None."""
    if not reference or not reference.get("publisher"):
        return None
    return ":".join(str(reference.get(key) or "") for key in ("publisher", "offer", "sku", "version"))


def identity_tags(spec):
    return {DEPLOYMENT_TAG: spec["name"], KIND_TAG: spec["kind"], IMAGE_TAG: spec["image"]}


def member_resources(member):
    """(public IP, NIC, OS disk) names of a member."""
    return f"{member}-ip", f"{member}-nic", f"{member}-osdisk"


def power_state(view_statuses, provisioning_state):
    """The record state of a VM from its instance view status codes and provisioningState."""
    codes = [str(status.get("code") or "") for status in view_statuses or []]
    # Codes look like ProvisioningState/succeeded, ProvisioningState/failed/AllocationFailed, PowerState/running.
    provisioning = next((c.split("/")[1] for c in codes if c.startswith("ProvisioningState/")), None)
    provisioning = (provisioning or provisioning_state or "").lower()
    power = next((c.split("/")[1].lower() for c in codes if c.startswith("PowerState/")), None)
    if provisioning == "deleting":
        return "terminated"
    if provisioning == "failed":
        return "error"
    if power:
        return POWER_STATES.get(power, "unknown")
    if provisioning in ("creating", "updating", "migrating"):
        return "pending"
    if provisioning == "succeeded":
        return "running"  # a VM without an instance view at hand: right after a successful create
    return "unknown"


def _member_order(rec):
    index = member_index(rec.get("deployment") or "", rec.get("name"))
    return (rec.get("deployment") or "", index is None, index or 0, rec.get("name") or "")


def throwaway_key():
    """A fresh SSH public key whose private half is thrown away: Azure wants a way in, nobody gets one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() + " lxcri-throwaway"


class Vms(Backend):
    kind = "vm"
    # lxcri-deployment, lxcri-kind, lxcri-image
    OWN_TAGS = 3

    @classmethod
    def validate(cls, spec):
        if len(spec["image"]) > TAG_VALUE_MAX:
            raise SpecError(f"image '{spec['image'][:40]}...' is too long for Azure's lxcri-image tag (at most {TAG_VALUE_MAX})")
        urn = catalog.native_image("azure", spec["image"])
        if "windows" in str(urn).split(":", maxsplit=1)[0].lower():
            raise SpecError(f"image '{spec['image']}' is a Windows image: the azure provider deploys Linux VMs only")

    @property
    def compute(self):
        return self.p.compute

    @property
    def network(self):
        return self.p.network

    # -- where a VM is ---------------------------------------------------------------------------

    def group_of(self, rec):
        """The resource group of a VM record: from the VM it was read from, else the deployment's."""
        native = native_of(rec)
        if native and native.get("id"):
            return split_id(native["id"])[0]
        return self.p.group(rec.get("deployment") or "")

    def arm_id(self, rec):
        """The ARM id of a record's VM (its record id is the vmId)."""
        native = native_of(rec)
        if native and native.get("id"):
            return native["id"]
        return self.p.resource_id(self.group_of(rec), VM_TYPE, rec["name"])

    def vm_ids(self, group):
        """{ARM id (lower case): vmId} of the VMs of a resource group ({} without the group)."""
        try:
            vms = self.p.listing(lambda: self.compute.virtual_machines.list(group))
        except Exception as exc:
            if not self.p.gone(exc):
                raise
            return {}
        return {lower(vm.get("id")): dig(vm, "properties", "vmId") for vm in vms}

    # -- reading ---------------------------------------------------------------------------------

    def scan(self, group=None):
        """(VMs with instance view, {NIC id: NIC}, {public IP id: IP}) of a resource group, or of the whole
        subscription when group is None: three listings, in parallel."""
        if group is None:
            listings = [
                lambda: self.compute.virtual_machines.list_all(expand="instanceView"),
                self.network.network_interfaces.list_all,
                self.network.public_ip_addresses.list_all,
            ]
        else:
            listings = [
                lambda: self.compute.virtual_machines.list(group, expand="instanceView"),
                lambda: self.network.network_interfaces.list(group),
                lambda: self.network.public_ip_addresses.list(group),
            ]
        try:
            vms, nics, ips = self.p.each(self.p.listing, listings, workers=3)
        except Exception as exc:
            if not self.p.gone(exc):
                raise
            return [], {}, {}  # no such resource group: no members
        return vms, {lower(n.get("id")): n for n in nics}, {lower(i.get("id")): i for i in ips}

    def record(self, vm, nics, ips):
        props = vm.get("properties") or {}
        tags = dict(vm.get("tags") or {})
        refs = dig(props, "networkProfile", "networkInterfaces") or []
        primary = next((r for r in refs if dig(r, "properties", "primary")), refs[0] if refs else {})
        nic = nics.get(lower(primary.get("id"))) or {}
        configs = dig(nic, "properties", "ipConfigurations") or []
        config = next((c for c in configs if dig(c, "properties", "primary")), configs[0] if configs else {})
        ip = ips.get(lower(dig(config, "properties", "publicIPAddress", "id"))) or {}
        return record(
            self.p.name,
            native=vm,
            kind=tags.get(KIND_TAG, "vm"),
            name=vm.get("name"),
            deployment=tags.get(DEPLOYMENT_TAG),
            id=props.get("vmId") or vm.get("id"),
            state=power_state(dig(props, "instanceView", "statuses"), props.get("provisioningState")),
            region=normalize_location(vm.get("location")),
            zone=None,
            native_size=dig(props, "hardwareProfile", "vmSize"),
            image=tags.get(IMAGE_TAG) or image_urn(dig(props, "storageProfile", "imageReference")),
            public_ip=dig(ip, "properties", "ipAddress"),
            private_ip=dig(config, "properties", "privateIPAddress"),
            tags=user_tags(tags),
            created_at=iso_utc(props.get("timeCreated")),
        )

    def find(self, name, region):
        vms, nics, ips = self.scan(self.p.group(name))
        return sorted((
            self.record(vm, nics, ips) for vm in vms
            if (vm.get("tags") or {}).get(DEPLOYMENT_TAG) == name and normalize_location(vm.get("location")) == region
        ), key=_member_order)

    def list(self, region, tags):
        vms, nics, ips = self.scan()
        return [
            self.record(vm, nics, ips) for vm in vms
            if DEPLOYMENT_TAG in (vm.get("tags") or {}) and normalize_location(vm.get("location")) == normalize_location(region)
        ]

    def refresh(self, records):
        by_group = {}
        for rec in records:
            by_group.setdefault(self.group_of(rec), set()).add(rec["id"])
        fresh = []
        for group, ids in by_group.items():
            vms, nics, ips = self.scan(group)
            fresh += [self.record(vm, nics, ips) for vm in vms if dig(vm, "properties", "vmId") in ids]
        return sorted(fresh, key=_member_order)

    # -- the deployment's network ----------------------------------------------------------------

    def ensure_network(self, deployment, group, region):
        """The subnet id of the deployment's network (vnet + subnet + NSG), made when missing."""
        vnet_name, nsg_name = f"{deployment}-vnet", f"{deployment}-nsg"
        subnet_id = self.p.resource_id(group, "Microsoft.Network/virtualNetworks", f"{vnet_name}/subnets/{SUBNET}")
        tags = {DEPLOYMENT_TAG: deployment}
        vnet = self.p.get(self.network.virtual_networks.get, group, vnet_name)
        if vnet and normalize_location(vnet.get("location")) != region:
            raise elsewhere(f"deployment '{deployment}'", vnet.get("location"), group)
        if not vnet or not any(s.get("name") == SUBNET for s in dig(vnet, "properties", "subnets") or []):
            nsg = self.p.get(self.network.network_security_groups.get, group, nsg_name)
            if not nsg:
                nsg = self.p.lro(self.network.network_security_groups.begin_create_or_update, group, nsg_name, {
                    "location": region, "tags": tags,
                    "properties": {"securityRules": [{
                        "name": "AllowSSH",
                        "properties": {
                            "priority": 1000, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                            "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
                            "destinationPortRange": "22", "description": "SSH to the members (key login only)",
                        },
                    }]},
                })
            self.p.lro(self.network.virtual_networks.begin_create_or_update, group, vnet_name, {
                "location": region, "tags": tags,
                "properties": {
                    "addressSpace": {"addressPrefixes": [VNET_PREFIX]},
                    "subnets": [{"name": SUBNET, "properties": {
                        "addressPrefix": VNET_PREFIX, "networkSecurityGroup": {"id": nsg["id"]},
                    }}],
                },
            })
        return subnet_id

    # -- changing --------------------------------------------------------------------------------

    def create(self, spec, region, names):
        group = self.p.ensure_group(spec["name"], region)
        self.refuse_taken(spec["name"], group, names)
        subnet_id = self.ensure_network(spec["name"], group, region)
        key = (spec.get("ssh_public_key") or "").strip() or throwaway_key()
        made, failures = self.p.each_settled(lambda member: self.create_one(spec, group, region, subnet_id, key, member),
                                             names)
        if failures:
            # Each failed member's message says what was removed of it again; the members made are returned.
            raise PartialFailure("; ".join(str(exc) for _member, exc in failures), made)
        return made

    def refuse_taken(self, deployment, group, members):
        """A VM that find() did not report but that has a member's name is someone else's, or this
        deployment's in another location: a PUT would change it, so refuse before touching anything."""
        wanted = set(members)
        for vm in self.p.listing(lambda: self.compute.virtual_machines.list(group)):
            if vm.get("name") in wanted:
                raise taken("VM", vm, deployment, group)

    def vm_body(self, spec, region, member, nic_id, key):
        os_profile = {
            "computerName": member,
            "adminUsername": ADMIN_USER,
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {"publicKeys": [{"path": f"/home/{ADMIN_USER}/.ssh/authorized_keys", "keyData": key}]},
            },
        }
        if spec.get("cloud_init"):
            os_profile["customData"] = base64.b64encode(spec["cloud_init"].encode("utf-8")).decode("ascii")
        return {
            "location": region,
            "tags": {**spec["tags"], **identity_tags(spec)},
            "properties": {
                "hardwareProfile": {"vmSize": self.native_size(spec)},
                "storageProfile": {
                    "imageReference": image_reference(catalog.native_image(self.p.name, spec["image"])),
                    "osDisk": {"name": member_resources(member)[2], "createOption": "FromImage", "deleteOption": "Delete"},
                },
                "osProfile": os_profile,
                "networkProfile": {"networkInterfaces": [
                    {"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}},
                ]},
            },
        }

    def create_one(self, spec, group, region, subnet_id, key, member):
        ip_name, nic_name, _disk = member_resources(member)
        tags = {DEPLOYMENT_TAG: spec["name"]}
        try:
            ip = self.p.lro(self.network.public_ip_addresses.begin_create_or_update, group, ip_name, {
                "location": region, "tags": tags, "sku": {"name": "Standard", "tier": "Regional"},
                "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
            })
            nic = self.p.lro(self.network.network_interfaces.begin_create_or_update, group, nic_name, {
                "location": region, "tags": tags,
                "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "subnet": {"id": subnet_id}, "privateIPAllocationMethod": "Dynamic",
                    "publicIPAddress": {"id": ip["id"]}, "primary": True,
                }}]},
            })
            vm = self.p.lro(self.compute.virtual_machines.begin_create_or_update, group, member,
                            self.vm_body(spec, region, member, nic["id"], key), wait=spec.get("wait", True))
        except ProviderError as exc:
            raise ProviderError(f"creating {member} failed: {exc}; {self.undo(group, member)}") from exc
        except Exception as exc:
            if getattr(exc, "status_code", None) == 409 and error_code(exc) == "InvalidResourceLocation":
                hint = f" (a resource named like it lives in another location of resource group {group})"
            else:
                hint = ""
            raise ProviderError(
                f"creating {member} in {region} failed: {error_text(exc).rstrip('.')}{hint}; {self.undo(group, member)}"
            ) from exc
        return self.record(vm, {lower(nic["id"]): nic}, {lower(ip["id"]): ip})

    def undo(self, group, member):
        """Remove what a failed create of one member made; say what was removed and what is left."""
        ip_name, nic_name, _disk = member_resources(member)
        # The VM (a failed create can leave one in state Failed) takes its OS disk along.
        steps = [
            (f"VM {member}", self.compute.virtual_machines.begin_delete, member),
            (f"network interface {nic_name}", self.network.network_interfaces.begin_delete, nic_name),
            (f"public IP {ip_name}", self.network.public_ip_addresses.begin_delete, ip_name),
        ]
        _undone, left = undo(((what, lambda begin=begin, name=name: self.p.remove(begin, group, name))
                              for what, begin, name in steps), explain=error_text)
        if left:
            return f"these could not be removed, delete them by hand in resource group {group}: {', '.join(left)}"
        return f"what this run had made for it (VM, network interface {nic_name}, public IP {ip_name}) was removed again"

    def delete(self, records):
        # The VMs take their OS disk and NIC with them (deleteOption Delete).
        self.p.each(lambda rec: self.p.remove(self.compute.virtual_machines.begin_delete, self.group_of(rec), rec["name"]),
                    records)
        by_group = {}
        for rec in records:
            by_group.setdefault((self.group_of(rec), rec.get("deployment")), []).append(rec["name"])
        for (group, deployment), names in by_group.items():
            self.cleanup(group, deployment, names)

    def cleanup(self, group, deployment, names):
        """Delete the members' public IPs (and NICs a VM did not take along); when the deployment has no VM
        left in the group, also its network, NSG, leftovers and (if it is ours and empty) the group."""
        vms, nics, ips = self.scan(group)
        if not vms and not nics and not ips and not self.p.get(self.p.resources.resource_groups.get, group):
            return  # the group is gone altogether
        remaining = [vm for vm in vms if (vm.get("tags") or {}).get(DEPLOYMENT_TAG) == deployment]
        empty = deployment is not None and not remaining
        used = {lower(dig(ref, "id")) for vm in vms for ref in dig(vm, "properties", "networkProfile", "networkInterfaces") or []}

        def ours(resource, suffix):
            tags = resource.get("tags") or {}
            name = resource.get("name") or ""
            if name in {f"{member}-{suffix}" for member in names}:
                return True
            return empty and (tags.get(DEPLOYMENT_TAG) == deployment or
                              re.match(rf"^{re.escape(deployment)}-[0-9]+-{suffix}$", name) is not None)

        stale_nics = [nic for key, nic in nics.items() if ours(nic, "nic") and key not in used]
        self.p.each(lambda nic: self.p.remove(self.network.network_interfaces.begin_delete, group, nic["name"]), stale_nics)
        gone = {lower(nic.get("id")) for nic in stale_nics}
        in_use = {
            lower(dig(config, "properties", "publicIPAddress", "id"))
            for key, nic in nics.items() if key not in gone
            for config in dig(nic, "properties", "ipConfigurations") or []
        }
        stale_ips = [ip for key, ip in ips.items() if ours(ip, "ip") and key not in in_use]
        self.p.each(lambda ip: self.p.remove(self.network.public_ip_addresses.begin_delete, group, ip["name"]), stale_ips)
        if not empty:
            return
        disks = self.p.listing(lambda: self.compute.disks.list_by_resource_group(group))
        stale_disks = [d for d in disks if not d.get("managedBy") and (
            (d.get("tags") or {}).get(DEPLOYMENT_TAG) == deployment or
            re.match(rf"^{re.escape(deployment)}-[0-9]+-osdisk$", d.get("name") or ""))]
        self.p.each(lambda d: self.p.remove(self.compute.disks.begin_delete, group, d["name"]), stale_disks)
        # The subnet goes with the vnet; then the NSG is no longer in use.
        self.p.remove(self.network.virtual_networks.begin_delete, group, f"{deployment}-vnet")
        self.p.remove(self.network.network_security_groups.begin_delete, group, f"{deployment}-nsg")
        self.p.drop_group(group, deployment)

    def _power(self, rec, action):
        self.p.lro(getattr(self.compute.virtual_machines, f"begin_{action}"), self.group_of(rec), rec["name"])

    def start_one(self, rec):
        self._power(rec, "start")

    def stop_one(self, rec):
        # Deallocate rather than power off: a deallocated VM is not billed for compute.
        self._power(rec, "deallocate")

    def restart_one(self, rec):
        self._power(rec, "restart")

    def tag_one(self, rec, tags, purge):
        group = self.group_of(rec)
        native = native_of(rec) or self.p.get(self.compute.virtual_machines.get, group, rec["name"]) or {}
        raw = native.get("tags") or {}
        wanted = every_tag(raw, tags, purge)
        if wanted != raw:
            self.p.lro(self.compute.virtual_machines.begin_update, group, rec["name"], {"tags": wanted})
