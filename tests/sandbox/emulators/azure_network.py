"""Microsoft.Network resource types of the Azure emulator: virtual networks (+ subnets), network security
groups (+ security rules), public IP addresses, network interfaces.

Back-references that ARM computes (subnet.ipConfigurations, nsg.networkInterfaces/subnets,
publicIP.ipConfiguration, nic.virtualMachine) are derived at read time from the forward references, so
they can never disagree with the store. Deleting a resource still referenced fails with the codes the
real Network RP returns (NicInUse, PublicIPAddressCannotBeDeleted, InUseNetworkSecurityGroupCannotBeDeleted,
InUseSubnetCannotBeDeleted), all HTTP 400.
"""
import copy
import ipaddress
import uuid

from .azure_arm import ArmError, Resource, new_etag
from .azure_routes import ResourceType, register

NS = "Microsoft.Network"
COMPUTE = "Microsoft.Compute"


def _lower(rid):
    return str(rid or "").rstrip("/").lower()


def _ref_id(obj):
    return obj.get("id") if isinstance(obj, dict) else None


def invalid_reference(ref, owner):
    return ArmError(400, "InvalidResourceReference",
                    f"Resource {ref} referenced by resource {owner} was not found. Please make sure that the "
                    "referenced resource exists, and that both resources are in the same region.", details=[])


def resolve(arm, ref, type_path, owner, location):
    """The resource that ``{"id": ...}`` points to, of the given Network type, in location; else ARM's error."""
    rid = _ref_id(ref)
    res = arm.get(rid)
    if res is None or res.rtype.namespace != NS or res.rtype.type_path != type_path \
            or (location and (res.location or arm.location_of(res)) != location):
        raise invalid_reference(rid, owner)
    return res


def _network(text, owner):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ArmError(400, "InvalidAddressPrefixFormat",
                       f"Address prefix {text} of resource {owner} is not formatted correctly. It should follow "
                       "CIDR notation, for example 10.0.0.0/24.", details=[])


def _prefixes(props):
    out = list(props.get("addressPrefixes") or [])
    if props.get("addressPrefix"):
        out.insert(0, props["addressPrefix"])
    return out


def ip_configurations(arm):
    """(nic resource, ip configuration document) for every NIC ip configuration in the store."""
    for nic in arm.of_type(NS, "networkInterfaces"):
        for ipc in nic.props.get("ipConfigurations") or []:
            yield nic, ipc


def vm_of_nic(arm, nic_id):
    """(vm resource, network interface reference) of the VM using the NIC, or (None, None)."""
    for vm in arm.of_type(COMPUTE, "virtualMachines"):
        for ref in (vm.props.get("networkProfile") or {}).get("networkInterfaces") or []:
            if _lower(ref.get("id")) == _lower(nic_id):
                return vm, ref
    return None, None


def _base(rtype, rid, body, existing, location=True):
    doc = {"name": rid.rsplit("/", 1)[-1], "id": rid, "etag": new_etag(), "type": rtype.full_type}
    if location:
        doc["location"] = body["location"]
        if body.get("tags") is not None:
            doc["tags"] = copy.deepcopy(body["tags"])
    for key in ("sku", "zones", "extendedLocation"):
        if body.get(key) is not None:
            doc[key] = copy.deepcopy(body[key])
    props = copy.deepcopy(body.get("properties") or {})
    guid = (existing.props.get("resourceGuid") if existing else None) or str(uuid.uuid4())
    return doc, props, guid


# ---- virtual networks and subnets ---------------------------------------------------------------
class Subnets(ResourceType):
    namespace, type_path, op = NS, "virtualNetworks/subnets", "subnets"
    tracked = False
    patch_mode = None

    def build(self, arm, req, rid, existing, body):
        vnet = arm.get(rid.rsplit("/", 2)[0])
        siblings = [s for s in arm.children(vnet, "subnets") if s is not existing]
        data = self.document(arm, vnet, rid, body, existing, siblings)
        return data, None

    def document(self, arm, vnet, rid, body, existing, siblings):
        doc, props, _ = _base(self, rid, body, existing, location=False)
        owner = vnet.id
        space = [_network(p, owner) for p in (vnet.props.get("addressSpace") or {}).get("addressPrefixes") or []]
        mine = [_network(p, rid) for p in _prefixes(props)]
        name = doc["name"]
        for net in mine:
            if space and not any(net.version == s.version and net.subnet_of(s) for s in space):
                raise ArmError(400, "NetcfgInvalidSubnet",
                               f"Subnet '{name}' is not valid in virtual network '{vnet.name}'.", details=[])
            for other in siblings:
                for theirs in [_network(p, other.id) for p in _prefixes(other.props)]:
                    if net.version == theirs.version and net.overlaps(theirs):
                        raise ArmError(400, "NetcfgSubnetRangesOverlap",
                                       f"Subnet '{name}' is not valid because its IP address range overlaps with "
                                       f"that of an existing subnet in virtual network '{vnet.name}'.", details=[])
        if existing is not None and _prefixes(existing.props) != _prefixes(props):
            users = self.users(arm, existing)
            if users:
                raise ArmError(400, "InUseSubnetCannotBeUpdated",
                               f"Subnet {name} is in use by {users[0]} and its address prefix cannot be updated.",
                               details=[])
        if props.get("networkSecurityGroup"):
            nsg = resolve(arm, props["networkSecurityGroup"], "networkSecurityGroups", rid, vnet.location)
            props["networkSecurityGroup"] = {"id": nsg.id}
        for key in ("ipConfigurations", "provisioningState", "purpose", "ipConfigurationProfiles",
                    "resourceNavigationLinks", "serviceAssociationLinks", "privateEndpoints"):
            props.pop(key, None)
        props.setdefault("delegations", [])
        props.setdefault("privateEndpointNetworkPolicies", "Disabled")
        props.setdefault("privateLinkServiceNetworkPolicies", "Enabled")
        doc["properties"] = props
        return doc

    @staticmethod
    def users(arm, subnet):
        return [ipc.get("id") for _, ipc in ip_configurations(arm)
                if _lower(_ref_id((ipc.get("properties") or {}).get("subnet"))) == subnet.id.lower()]

    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        users = self.users(arm, res)
        if users:
            doc["properties"]["ipConfigurations"] = [{"id": u} for u in users]
        return doc

    def check_delete(self, arm, res):
        users = self.users(arm, res)
        if users:
            raise ArmError(400, "InUseSubnetCannotBeDeleted",
                           f"Subnet {res.name} is in use by {users[0]} and cannot be deleted. In order to delete the "
                           "subnet, delete all the resources within the subnet. See aka.ms/deletesubnet.", details=[])


SUBNETS = register(Subnets())


class VirtualNetworks(ResourceType):
    namespace, type_path, op, state_key = NS, "virtualNetworks", "virtualNetworks", "virtualNetworks"

    def build(self, arm, req, rid, existing, body):
        doc, props, guid = _base(self, rid, body, existing)
        for prefix in (props.get("addressSpace") or {}).get("addressPrefixes") or []:
            _network(prefix, rid)
        wanted = props.pop("subnets", None) or []
        for key in ("provisioningState", "resourceGuid"):
            props.pop(key, None)
        props.setdefault("virtualNetworkPeerings", [])
        props.setdefault("enableDdosProtection", False)
        props["resourceGuid"] = guid
        doc["properties"] = props
        # validate the subnets against the new document (a vnet PUT without a subnet deletes it, as in ARM)
        shadow = Resource(rid, self, None, None)
        shadow.data = doc
        old = {s.name.lower(): s for s in arm.children(existing, "subnets")} if existing else {}
        plan, done = [], []
        for item in wanted:
            name = item.get("name")
            if not name:
                raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: a subnet has no name.",
                               details=[])
            sid = f"{rid}/subnets/{name}"
            current = old.get(name.lower())
            plan.append((current, sid, SUBNETS.document(arm, shadow, sid, item, current, done)))
            stub = Resource(sid, SUBNETS, None, None)
            stub.data = plan[-1][2]
            done.append(stub)
        keep = {sid.lower() for _, sid, _ in plan}
        dropped = [s for s in old.values() if s.id.lower() not in keep]
        for subnet in dropped:
            SUBNETS.check_delete(arm, subnet)

        def commit(vnet):
            for subnet in dropped:
                arm.remove(subnet)
            for current, sid, sdoc in plan:
                child = current or Resource(sid, SUBNETS, vnet.sub, vnet.rg, vnet.id.lower())
                arm.store_put(None, child, sdoc, None, is_new=current is None)
        return doc, commit

    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        doc["properties"]["subnets"] = [arm.render(s, req) for s in arm.children(res, "subnets")]
        return doc

    def check_delete(self, arm, res):
        for subnet in arm.children(res, "subnets"):
            SUBNETS.check_delete(arm, subnet)


register(VirtualNetworks())


# ---- network security groups ----------------------------------------------------------------------
_DEFAULT_RULES = [
    ("AllowVnetInBound", "Allow inbound traffic from all VMs in VNET", "VirtualNetwork", "VirtualNetwork", "Allow",
     65000, "Inbound"),
    ("AllowAzureLoadBalancerInBound", "Allow inbound traffic from azure load balancer", "AzureLoadBalancer", "*",
     "Allow", 65001, "Inbound"),
    ("DenyAllInBound", "Deny all inbound traffic", "*", "*", "Deny", 65500, "Inbound"),
    ("AllowVnetOutBound", "Allow outbound traffic from all VMs to all VMs in VNET", "VirtualNetwork",
     "VirtualNetwork", "Allow", 65000, "Outbound"),
    ("AllowInternetOutBound", "Allow outbound traffic from all VMs to Internet", "*", "Internet", "Allow", 65001,
     "Outbound"),
    ("DenyAllOutBound", "Deny all outbound traffic", "*", "*", "Deny", 65500, "Outbound"),
]


class SecurityRules(ResourceType):
    namespace, type_path, op = NS, "networkSecurityGroups/securityRules", "securityRules"
    tracked = False
    patch_mode = None

    def build(self, arm, req, rid, existing, body):
        nsg = arm.get(rid.rsplit("/", 2)[0])
        siblings = [r for r in arm.children(nsg, "securityRules") if r is not existing]
        return self.document(rid, body, existing, siblings), None

    def document(self, rid, body, existing, siblings):
        doc, props, _ = _base(self, rid, body, existing, location=False)
        props.pop("provisioningState", None)
        name = doc["name"]
        priority = props.get("priority")
        if not isinstance(priority, int) or not 100 <= priority <= 4096:
            raise ArmError(400, "SecurityRuleInvalidPriority",
                           f"Security rule {name} has invalid Priority. Value provided: {priority}. Allowed range "
                           "100-4096.", details=[])
        direction = props.get("direction")
        if direction not in ("Inbound", "Outbound"):
            raise ArmError(400, "SecurityRuleInvalidDirection",
                           f"Security rule {name} has invalid Direction. Value provided: {direction}. Allowed values "
                           "are Inbound, Outbound.", details=[])
        for other in siblings:
            if other.props.get("priority") == priority and other.props.get("direction") == direction:
                raise ArmError(400, "SecurityRuleConflict",
                               f"Security rule {other.name} conflicts with rule {name}. Rules cannot have the same "
                               "Priority and Direction.", details=[])
        for key in ("sourceAddressPrefixes", "destinationAddressPrefixes", "sourcePortRanges",
                    "destinationPortRanges"):
            props.setdefault(key, [])
        doc["properties"] = props
        return doc


RULES = register(SecurityRules())


class NetworkSecurityGroups(ResourceType):
    namespace, type_path, op, state_key = NS, "networkSecurityGroups", "networkSecurityGroups", \
        "networkSecurityGroups"

    def build(self, arm, req, rid, existing, body):
        doc, props, guid = _base(self, rid, body, existing)
        wanted = props.pop("securityRules", None) or []
        for key in ("defaultSecurityRules", "networkInterfaces", "subnets", "flowLogs", "provisioningState"):
            props.pop(key, None)
        props["resourceGuid"] = guid
        doc["properties"] = props
        old = {r.name.lower(): r for r in arm.children(existing, "securityRules")} if existing else {}
        plan, done = [], []
        for item in wanted:
            name = item.get("name")
            if not name:
                raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: a security rule has no name.",
                               details=[])
            rule_id = f"{rid}/securityRules/{name}"
            current = old.get(name.lower())
            plan.append((current, rule_id, RULES.document(rule_id, item, current, done)))
            stub = Resource(rule_id, RULES, None, None)
            stub.data = plan[-1][2]
            done.append(stub)
        keep = {rule_id.lower() for _, rule_id, _ in plan}

        def commit(nsg):
            for rule in old.values():
                if rule.id.lower() not in keep:
                    arm.remove(rule)
            for current, rule_id, rdoc in plan:
                child = current or Resource(rule_id, RULES, nsg.sub, nsg.rg, nsg.id.lower())
                arm.store_put(None, child, rdoc, None, is_new=current is None)
        return doc, commit

    @staticmethod
    def users(arm, nsg):
        nics = [n.id for n in arm.of_type(NS, "networkInterfaces")
                if _lower(_ref_id(n.props.get("networkSecurityGroup"))) == nsg.id.lower()]
        subnets = [s.id for s in arm.of_type(NS, "virtualNetworks/subnets")
                   if _lower(_ref_id(s.props.get("networkSecurityGroup"))) == nsg.id.lower()]
        return nics, subnets

    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        props = doc["properties"]
        props["securityRules"] = [arm.render(r, req) for r in arm.children(res, "securityRules")]
        props["defaultSecurityRules"] = [
            {"name": name, "id": f"{res.id}/defaultSecurityRules/{name}", "etag": doc["etag"],
             "type": "Microsoft.Network/networkSecurityGroups/defaultSecurityRules",
             "properties": {"provisioningState": "Succeeded", "description": text, "protocol": "*",
                            "sourcePortRange": "*", "destinationPortRange": "*", "sourceAddressPrefix": source,
                            "destinationAddressPrefix": dest, "access": access, "priority": priority,
                            "direction": direction, "sourcePortRanges": [], "destinationPortRanges": [],
                            "sourceAddressPrefixes": [], "destinationAddressPrefixes": []}}
            for name, text, source, dest, access, priority, direction in _DEFAULT_RULES]
        nics, subnets = self.users(arm, res)
        if nics:
            props["networkInterfaces"] = [{"id": i} for i in nics]
        if subnets:
            props["subnets"] = [{"id": i} for i in subnets]
        return doc

    def check_delete(self, arm, res):
        nics, subnets = self.users(arm, res)
        if nics or subnets:
            raise ArmError(400, "InUseNetworkSecurityGroupCannotBeDeleted",
                           f"Network security group {res.id} cannot be deleted because it is in use by the following "
                           f"resources: {', '.join(nics + subnets)}. In order to delete the Network security group, "
                           "remove the association with the resource(s). To learn how to do this, see "
                           "aka.ms/deletensg.", details=[])


register(NetworkSecurityGroups())


# ---- public IP addresses --------------------------------------------------------------------------
class PublicIPAddresses(ResourceType):
    namespace, type_path, op, state_key = NS, "publicIPAddresses", "publicIPAddresses", "publicIPAddresses"

    def build(self, arm, req, rid, existing, body):
        doc, props, guid = _base(self, rid, body, existing)
        sku = doc.setdefault("sku", {"name": "Standard", "tier": "Regional"})
        sku.setdefault("tier", "Regional")
        for key in ("ipAddress", "ipConfiguration", "provisioningState", "natGateway", "servicePublicIPAddress",
                    "linkedPublicIPAddress"):
            props.pop(key, None)
        props.setdefault("publicIPAllocationMethod", "Static" if sku.get("name") == "Standard" else "Dynamic")
        props.setdefault("publicIPAddressVersion", "IPv4")
        props.setdefault("idleTimeoutInMinutes", 4)
        props.setdefault("ipTags", [])
        if sku.get("name") == "Standard":
            props.setdefault("ddosSettings", {"protectionMode": "VirtualNetworkInherited"})
        dns = props.get("dnsSettings")
        if dns and dns.get("domainNameLabel"):
            dns["fqdn"] = f"{dns['domainNameLabel']}.{doc['location']}.cloudapp.azure.com"
        props["resourceGuid"] = guid
        doc["properties"] = props
        return doc, None

    @staticmethod
    def user(arm, pip):
        for nic, ipc in ip_configurations(arm):
            if _lower(_ref_id((ipc.get("properties") or {}).get("publicIPAddress"))) == pip.id.lower():
                return nic, ipc
        return None, None

    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        props = doc["properties"]
        nic, ipc = self.user(arm, res)
        if ipc is not None:
            props["ipConfiguration"] = {"id": ipc["id"]}
        allocated = props.get("publicIPAllocationMethod") == "Static"
        if not allocated and nic is not None:
            vm, _ = vm_of_nic(arm, nic.id)
            allocated = vm is not None and vm.private.get("power") not in ("deallocated", "deallocating")
        if allocated:
            if "address" not in res.private:
                n = arm.counter("publicIP")
                res.private["address"] = f"20.{101 + n // 65536 % 100}.{n // 256 % 256}.{n % 256}"
            props["ipAddress"] = res.private["address"]
        else:
            res.private.pop("address", None)
        return doc

    def check_delete(self, arm, res):
        _, ipc = self.user(arm, res)
        if ipc is not None:
            raise ArmError(400, "PublicIPAddressCannotBeDeleted",
                           f"Public IP address {res.id} can not be deleted since it is still allocated to resource "
                           f"{ipc['id']}. In order to delete the public IP, disassociate/detach the Public IP address "
                           "from the resource.  To learn how to do this, see aka.ms/deletepublicip.", details=[])


register(PublicIPAddresses())


# ---- network interfaces ---------------------------------------------------------------------------
class NetworkInterfaces(ResourceType):
    namespace, type_path, op, state_key = NS, "networkInterfaces", "networkInterfaces", "networkInterfaces"

    def build(self, arm, req, rid, existing, body):
        doc, props, guid = _base(self, rid, body, existing)
        location = doc["location"]
        for key in ("virtualMachine", "macAddress", "primary", "provisioningState", "hostedWorkloads",
                    "tapConfigurations", "vnetEncryptionSupported", "privateEndpoint", "dscpConfiguration",
                    "privateLinkService", "defaultOutboundConnectivityEnabled"):
            props.pop(key, None)
        if props.get("networkSecurityGroup"):
            nsg = resolve(arm, props["networkSecurityGroup"], "networkSecurityGroups", rid, location)
            props["networkSecurityGroup"] = {"id": nsg.id}
        old = {}
        if existing is not None:
            old = {c["name"].lower(): c for c in existing.props.get("ipConfigurations") or []}
        others = [(n, c) for n, c in ip_configurations(arm) if n is not existing]
        configs = []
        wanted = props.get("ipConfigurations") or []
        for index, item in enumerate(wanted):
            name = item.get("name") or "ipconfig1"
            cid = f"{rid}/ipConfigurations/{name}"
            cprops = copy.deepcopy(item.get("properties") or {})
            for key in ("provisioningState", "privateIPAddressPrefixLength"):
                cprops.pop(key, None)
            subnet = None
            if cprops.get("subnet"):
                subnet = resolve(arm, cprops["subnet"], "virtualNetworks/subnets", rid, location)
                cprops["subnet"] = {"id": subnet.id}
            if cprops.get("publicIPAddress"):
                pip = resolve(arm, cprops["publicIPAddress"], "publicIPAddresses", rid, location)
                cprops["publicIPAddress"] = {"id": pip.id}
                for _, other in others:
                    if _lower(_ref_id((other.get("properties") or {}).get("publicIPAddress"))) == pip.id.lower():
                        raise ArmError(400, "PublicIPAddressInUse",
                                       f"Resource {pip.id} is referenced by resource {other['id']} and cannot be "
                                       f"used by {cid}.", details=[])
            method = cprops.setdefault("privateIPAllocationMethod", "Dynamic")
            cprops.setdefault("privateIPAddressVersion", "IPv4")
            cprops["primary"] = bool(cprops.get("primary", len(wanted) == 1 or index == 0))
            taken = {(c.get("properties") or {}).get("privateIPAddress") for _, c in others}
            taken |= {(c.get("properties") or {}).get("privateIPAddress") for c in configs}
            if subnet is not None:
                cprops["privateIPAddress"] = self._address(subnet, cprops, method, old.get(name.lower()), taken, cid)
            doc_c = {"name": name, "id": cid, "etag": doc["etag"],
                     "type": "Microsoft.Network/networkInterfaces/ipConfigurations", "properties": cprops}
            cprops["provisioningState"] = "Succeeded"
            configs.append(doc_c)
        props["ipConfigurations"] = configs
        dns = props.setdefault("dnsSettings", {})
        dns.setdefault("dnsServers", [])
        dns["appliedDnsServers"] = list(dns["dnsServers"])
        previous = (existing.props.get("dnsSettings") or {}).get("internalDomainNameSuffix") if existing else None
        dns["internalDomainNameSuffix"] = previous or f"{uuid.uuid4().hex[:26]}.ax.internal.cloudapp.net"
        for key, value in (("enableAcceleratedNetworking", False), ("enableIPForwarding", False),
                           ("disableTcpStateTracking", False), ("nicType", "Standard"), ("auxiliaryMode", "None"),
                           ("auxiliarySku", "None")):
            props.setdefault(key, value)
        props.update({"hostedWorkloads": [], "tapConfigurations": [], "vnetEncryptionSupported": False,
                      "resourceGuid": guid})
        doc["properties"] = props
        return doc, None

    @staticmethod
    def _address(subnet, cprops, method, previous, taken, cid):
        prefixes = [ipaddress.ip_network(p, strict=False) for p in _prefixes(subnet.props)]
        if method == "Static":
            address = cprops.get("privateIPAddress")
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                raise ArmError(400, "PrivateIPAddressIsNotValid",
                               f"Private static IP address {address} of {cid} is not a valid IP address.", details=[])
            if not any(parsed in p for p in prefixes):
                raise ArmError(400, "PrivateIPAddressNotInSubnet",
                               f"IP configuration {cid} references the subnet {subnet.id} and its private IP address "
                               f"{address} is not in the subnet's address range.", details=[])
            if address in taken:
                raise ArmError(400, "PrivateIPAddressInUse",
                               f"IP configuration {cid} is using the private IP address {address} which is already "
                               f"allocated to a resource in subnet {subnet.id}.", details=[])
            return address
        prev_props = (previous or {}).get("properties") or {}
        if _lower(_ref_id(prev_props.get("subnet"))) == subnet.id.lower() and prev_props.get("privateIPAddress"):
            return prev_props["privateIPAddress"]
        for net in prefixes:
            for offset, host in enumerate(net.hosts()):
                if offset >= 3 and str(host) not in taken and host != net.broadcast_address:
                    return str(host)
        raise ArmError(400, "SubnetIsFull", f"Subnet {subnet.name} with address prefix {_prefixes(subnet.props)} does "
                                            "not have enough capacity for 1 IP addresses.", details=[])

    def render(self, arm, res, req):
        doc = copy.deepcopy(res.data)
        vm, ref = vm_of_nic(arm, res.id)
        if vm is not None:
            props = doc["properties"]
            props["virtualMachine"] = {"id": vm.id}
            refs = (vm.props.get("networkProfile") or {}).get("networkInterfaces") or []
            props["primary"] = bool((ref.get("properties") or {}).get("primary", len(refs) == 1))
            if "mac" not in res.private:
                n = arm.counter("mac")
                res.private["mac"] = "00-0D-3A-%02X-%02X-%02X" % (n >> 16 & 255, n >> 8 & 255, n & 255)
            props["macAddress"] = res.private["mac"]
        return doc

    def check_delete(self, arm, res):
        vm, _ = vm_of_nic(arm, res.id)
        if vm is not None:
            raise ArmError(400, "NicInUse",
                           f"Network Interface {res.id} is used by existing resource {vm.id}. In order to delete the "
                           "network interface, it must be dissociated from the resource. To learn more, see "
                           "aka.ms/deletenic.", details=[])


register(NetworkInterfaces())
