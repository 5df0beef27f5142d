"""Compute Engine v1 emulator, part two: networks, subnetworks, firewalls, disks, and how instances
get their images, internal IPs and external (NAT) IPs. Mixed into ``gcp_compute.ComputeService``."""
import copy
import ipaddress
import random
import re

from . import gcp_compute_catalog as cat
from .gcp_common import (
    ApiError, AsyncFailure, Link, already_exists, check_name, invalid, new_id, not_found, random_fingerprint,
    rel_path, required, rfc3339,
)

ROUTES = [
    ("GET", "global/networks", "compute.networks.list", "networks_list"),
    ("GET", "global/networks/{name}", "compute.networks.get", "networks_get"),
    ("GET", "regions/{region}/subnetworks", "compute.subnetworks.list", "subnetworks_list"),
    ("GET", "regions/{region}/subnetworks/{name}", "compute.subnetworks.get", "subnetworks_get"),
    ("GET", "global/firewalls", "compute.firewalls.list", "firewalls_list"),
    ("POST", "global/firewalls", "compute.firewalls.insert", "firewalls_insert"),
    ("GET", "global/firewalls/{name}", "compute.firewalls.get", "firewalls_get"),
    ("DELETE", "global/firewalls/{name}", "compute.firewalls.delete", "firewalls_delete"),
    ("GET", "zones/{zone}/disks", "compute.disks.list", "disks_list"),
    ("GET", "zones/{zone}/disks/{name}", "compute.disks.get", "disks_get"),
    ("DELETE", "zones/{zone}/disks/{name}", "compute.disks.delete", "disks_delete"),
]
PROTOCOLS = {"tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"}
_rng = random.SystemRandom()


def resolve_image(proj, value, field):
    """The image a disk is created from: 'projects/P/global/images/family/F', '.../images/NAME', or
    those relative to the caller's project. Unknown images fail the insert's operation, as on GCE."""
    path = rel_path(value, proj.name)
    match = re.fullmatch(r"projects/([^/]+)/global/images/(?:family/(?P<family>[^/]+)|(?P<name>[^/]+))", path)
    image = None
    if match:
        image = cat.find_image(match.group(1), name=match.group("name"), family=match.group("family"))
    if image is None:
        raise AsyncFailure("RESOURCE_NOT_FOUND", 404, f"The resource '{path}' was not found")
    return image


def assign_nat(res):
    for nic in res.get("networkInterfaces", []):
        for access in nic.get("accessConfigs", []):
            if not access.get("natIP"):
                access["natIP"] = "34.%d.%d.%d" % (_rng.randrange(1, 255), _rng.randrange(0, 256), _rng.randrange(1, 255))


def release_nat(res):
    """Ephemeral external IPs go back to the pool when an instance stops (static ones stay)."""
    for nic in res.get("networkInterfaces", []):
        for access in nic.get("accessConfigs", []):
            if not access.get("_static"):
                access.pop("natIP", None)


class NetworkHandlers:
    """Handlers and helpers that need ComputeService's lock, clock, operations and lists."""

    # ---------------------------------------------------------------------------- network interfaces
    def attach_nics(self, proj, zone, nics):
        region = cat.ZONES[zone]
        default_net = f"projects/{proj.name}/global/networks/default"
        default_sub = f"projects/{proj.name}/regions/{region}/subnetworks/default"
        cidr = ipaddress.ip_network(cat.REGIONS[region][1])
        out = []
        for index, nic in enumerate(nics):
            field = f"resource.networkInterfaces[{index}]"
            network = rel_path(nic.get("network") or "global/networks/default", proj.name)
            subnetwork = rel_path(nic["subnetwork"], proj.name) if nic.get("subnetwork") else default_sub
            for path in (network, subnetwork):
                if path not in (default_net, default_sub):
                    raise AsyncFailure("RESOURCE_NOT_FOUND", 404, f"The resource '{path}' was not found")
            address = nic.get("networkIP")
            if address:
                try:
                    if ipaddress.ip_address(address) not in cidr:
                        raise ValueError
                except ValueError:
                    raise invalid(f"{field}.networkIP", address,
                                  f"Requested internal IP is outside the subnetwork CIDR range {cidr}.") from None
            else:
                host = proj.next_host.get(region, 2)
                proj.next_host[region] = host + 1
                address = str(cidr.network_address + host)
            accesses = []
            for access in nic.get("accessConfigs") or []:
                kind = access.get("type", "ONE_TO_ONE_NAT")
                if kind != "ONE_TO_ONE_NAT":
                    raise invalid(f"{field}.accessConfigs[0].type", kind, "Must be ONE_TO_ONE_NAT.")
                item = {"kind": "compute#accessConfig", "type": kind, "name": access.get("name", "External NAT"),
                        "networkTier": access.get("networkTier", "PREMIUM")}
                if access.get("natIP"):
                    item.update({"natIP": access["natIP"], "_static": True})
                accesses.append(item)
            item = {"kind": "compute#networkInterface", "network": Link(network), "subnetwork": Link(subnetwork),
                    "networkIP": address, "name": f"nic{index}", "fingerprint": random_fingerprint(),
                    "stackType": nic.get("stackType", "IPV4_ONLY")}
            if accesses:
                item["accessConfigs"] = accesses
            out.append(item)
        return out

    # -------------------------------------------------------------------------- networks, subnets
    def networks_list(self, ctx, proj):
        return self.list_body(ctx, [cat.default_network(proj.name)], "compute#networkList",
                              f"projects/{proj.name}/global/networks")

    def networks_get(self, ctx, proj, name):
        if name != "default":
            raise not_found(f"projects/{proj.name}/global/networks/{name}")
        return cat.default_network(proj.name)

    def _region(self, region):
        if region not in cat.REGIONS:
            raise invalid("region", region, "Unknown region.")

    def subnetworks_list(self, ctx, proj, region):
        self._region(region)
        return self.list_body(ctx, [cat.default_subnetwork(proj.name, region)], "compute#subnetworkList",
                              f"projects/{proj.name}/regions/{region}/subnetworks")

    def subnetworks_get(self, ctx, proj, region, name):
        self._region(region)
        if name != "default":
            raise not_found(f"projects/{proj.name}/regions/{region}/subnetworks/{name}")
        return cat.default_subnetwork(proj.name, region)

    # ---------------------------------------------------------------------------------- firewalls
    def _firewall(self, proj, name):
        res = proj.firewalls.get(name)
        if res is None:
            raise not_found(f"projects/{proj.name}/global/firewalls/{name}")
        return res

    def firewalls_list(self, ctx, proj):
        items = sorted(proj.firewalls.values(), key=lambda r: r["name"])
        return self.list_body(ctx, items, "compute#firewallList", f"projects/{proj.name}/global/firewalls")

    def firewalls_get(self, ctx, proj, name):
        return self._firewall(proj, name)

    def firewalls_delete(self, ctx, proj, name):
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        res = self._firewall(proj, name)
        del proj.firewalls[name]
        return self.start_op(ctx, proj, "delete", res["selfLink"], res["id"], delay=self.provision_seconds / 4)

    def firewalls_insert(self, ctx, proj):
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        body = ctx.body
        if not isinstance(body, dict) or not body:
            raise required("resource")
        name = body.get("name")
        check_name(name)
        network = rel_path(body.get("network") or "global/networks/default", proj.name)
        if network != f"projects/{proj.name}/global/networks/default":
            raise not_found(network)
        direction = body.get("direction", "INGRESS")
        if direction not in ("INGRESS", "EGRESS"):
            raise invalid("resource.direction", direction, "Must be one of [EGRESS, INGRESS].")
        if body.get("allowed") and body.get("denied"):
            raise invalid("resource.denied", "", "Exactly one of allowed or denied must be specified.")
        kind = "denied" if body.get("denied") else "allowed"
        rules = body.get(kind) or []
        if not rules:
            raise required("resource.allowed")
        for index, rule in enumerate(rules):
            self._check_rule(rule, f"resource.{kind}[{index}]")
        for field in ("sourceRanges", "destinationRanges"):
            for index, cidr in enumerate(body.get(field) or []):
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise invalid(f"resource.{field}[{index}]", cidr, "Must be a valid IPv4 or IPv6 CIDR range.") from None
        priority = body.get("priority", 1000)
        if not isinstance(priority, int) or not 0 <= priority <= 65535:
            raise invalid("resource.priority", priority, "Must be between 0 and 65535, inclusive.")
        self_link = f"projects/{proj.name}/global/firewalls/{name}"
        if name in proj.firewalls:
            raise already_exists(self_link)
        res = copy.deepcopy(body)
        res.update({"kind": "compute#firewall", "id": new_id(), "creationTimestamp": rfc3339(self.clock()),
                    "name": name, "network": Link(network), "priority": priority, "direction": direction,
                    "logConfig": body.get("logConfig") or {"enable": False}, "disabled": bool(body.get("disabled")),
                    "selfLink": Link(self_link)})
        if direction == "INGRESS" and not (body.get("sourceRanges") or body.get("sourceTags")
                                           or body.get("sourceServiceAccounts")):
            res["sourceRanges"] = ["0.0.0.0/0"]
        if direction == "EGRESS" and not body.get("destinationRanges"):
            res["destinationRanges"] = ["0.0.0.0/0"]
        proj.firewalls[name] = res
        return self.start_op(ctx, proj, "insert", self_link, res["id"], delay=self.provision_seconds / 4)

    @staticmethod
    def _check_rule(rule, field):
        protocol = str(rule.get("IPProtocol") or "")
        if not protocol:
            raise required(f"{field}.IPProtocol")
        if protocol.lower() not in PROTOCOLS and not (protocol.isdigit() and int(protocol) <= 255):
            raise invalid(f"{field}.IPProtocol", protocol, "Must be a protocol name (tcp, udp, icmp, esp, ah, sctp, "
                          "ipip, all) or an IP protocol number.")
        for index, port in enumerate(rule.get("ports") or []):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", str(port))
            if protocol.lower() not in ("tcp", "udp", "sctp", "all", "6", "17", "132"):
                raise invalid(f"{field}.ports[{index}]", port, "Ports may only be specified for tcp, udp or sctp.")
            if not match or int(match.group(1)) > 65535 or int(match.group(2) or 0) > 65535 or (
                    match.group(2) and int(match.group(2)) < int(match.group(1))):
                raise invalid(f"{field}.ports[{index}]", port, "Must be a port or a port range 0-65535.")

    # -------------------------------------------------------------------------------------- disks
    def _disk(self, proj, zone, name):
        self.check_zone(zone)
        res = proj.disks.get((zone, name))
        if res is None:
            raise not_found(f"projects/{proj.name}/zones/{zone}/disks/{name}")
        return res

    def disks_list(self, ctx, proj, zone):
        self.check_zone(zone)
        items = sorted((res for (z, _n), res in proj.disks.items() if z == zone), key=lambda r: r["name"])
        return self.list_body(ctx, items, "compute#diskList", f"projects/{proj.name}/zones/{zone}/disks")

    def disks_get(self, ctx, proj, zone, name):
        return self._disk(proj, zone, name)

    def disks_delete(self, ctx, proj, zone, name):
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        res = self._disk(proj, zone, name)
        if res.get("users"):
            raise ApiError(400, f"The disk resource '{res['selfLink']}' is already being used by "
                           f"'{res['users'][0]}'", "resourceInUseByAnotherResource")
        del proj.disks[(zone, name)]
        return self.start_op(ctx, proj, "delete", res["selfLink"], res["id"], zone, delay=self.provision_seconds / 4)
