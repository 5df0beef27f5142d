"""The Azure emulator driven by the real SDKs (azure-identity, azure-mgmt-compute, azure-mgmt-network) over TLS.

Clients are configured as a user of the collection would: only ``base_url``, a ``ClientSecretCredential``
whose authority is the emulator (with ``disable_instance_discovery=True``) and ``connection_verify=<CA>``;
polling settings are the SDK defaults (a wrong Retry-After would make each LRO take 30 s).
Resource groups have no SDK among the collection's requirements, so they go through the same clients'
``send_request`` (same pipeline: auth, TLS, retries).
"""
import time

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from tests.sandbox.emulators import azure

SUB = "6c1f3a52-0d1e-4b7a-9a55-0c6f1d2b7e01"
TENANT = "0b6f1d9e-8c4d-4a8e-b0f5-3f2d6a7c9e11"
CLIENT = "9f3e4d2c-1b0a-4c5d-8e7f-6a5b4c3d2e1f"
SECRET = "sandbox~secret.value"
LOCATION = "westeurope"
SLOW_LRO = 5.0  # seconds; a fallback to the SDK's 30 s polling interval would exceed it


def recording(log):
    """make_server wrapper that appends (method, path, status, {header: value}) of every answer to log."""

    def factory(host, port, **kwargs):
        server = azure.make_server(host, port, **kwargs)
        handler = server.RequestHandlerClass

        class Recording(handler):
            def log_request(self, code="-", size="-"):
                self._entry = (self.command, self.path, int(code), {})
                log.append(self._entry)

            def send_header(self, keyword, value):
                self._entry[3][keyword.lower()] = value
                super().send_header(keyword, value)

        server.RequestHandlerClass = Recording
        return server

    return factory


class Sandbox:
    """One emulator behind TLS plus SDK clients configured as the collection configures them."""

    def __init__(self, serve, ca, secret=SECRET, **server_kwargs):
        self.log = []
        for key, value in (("client_id", CLIENT), ("client_secret", SECRET), ("tenant_id", TENANT)):
            server_kwargs.setdefault(key, value)
        self.base = serve(recording(self.log), **server_kwargs)
        self.ca = ca
        self.credential = ClientSecretCredential(TENANT, CLIENT, secret, authority=self.base,
                                                 disable_instance_discovery=True, connection_verify=ca)
        self.compute = ComputeManagementClient(self.credential, SUB, base_url=self.base, connection_verify=ca)
        self.network = NetworkManagementClient(self.credential, SUB, base_url=self.base, connection_verify=ca)

    # raw ARM calls through the SDK pipeline
    def arm(self, method, path, body=None, api_version="2021-04-01"):
        url = self.base + path + (f"?api-version={api_version}" if api_version else "")
        return self.compute.send_request(HttpRequest(method, url, json=body))

    def state(self):
        return requests.get(self.base + "/_sandbox/state", verify=self.ca, timeout=10).json()

    def operations(self, since=0):
        return [(azure.operation(m, p), s) for m, p, s, _ in self.log[since:]
                if not azure.operation(m, p).startswith("aad.")]

    def check_polling_headers(self):
        """No answer carries Retry-After (0 or fractional breaks the SDK); LRO answers pace with retry-after-ms."""
        for method, path, status, headers in self.log:
            assert "retry-after" not in headers, (method, path, headers)
            if "azure-asyncoperation" in headers or "location" in headers or status == 202:
                assert int(headers["retry-after-ms"]) >= 1, (method, path, headers)

    def create_group(self, name, **tags):
        resp = self.arm("PUT", f"/subscriptions/{SUB}/resourcegroups/{name}", {"location": "West Europe", "tags": tags})
        assert resp.status_code in (200, 201), resp.text()
        return resp.json()

    def delete_group(self, name):
        resp = self.arm("DELETE", f"/subscriptions/{SUB}/resourcegroups/{name}")
        assert resp.status_code == 202, resp.text()
        location = resp.headers["Location"]
        for _ in range(200):
            assert "Retry-After" not in resp.headers
            time.sleep(int(resp.headers.get("retry-after-ms", "10")) / 1000)
            resp = self.compute.send_request(HttpRequest("GET", location))
            if resp.status_code != 202:
                break
        assert resp.status_code == 200, resp.text()

    def lro(self, begin, *args, **kwargs):
        """Run an SDK LRO with default polling; -> (result, operation names after the initial request)."""
        start, clock = len(self.log), time.monotonic()
        result = begin(*args, **kwargs).result()
        elapsed = time.monotonic() - clock
        assert elapsed < SLOW_LRO, f"{begin.__qualname__} took {elapsed:.1f}s: polling delay fell back to 30 s?"
        return result, [name for name, _ in self.operations(start)][1:]

    def network_stack(self, group, suffix="", public_ip=True, vnet=None):
        """vnet/subnet (unless given), NSG with an SSH rule, public IP, NIC -> dict of SDK models."""
        out = {}
        if vnet is None:
            vnet, _ = self.lro(self.network.virtual_networks.begin_create_or_update, group, f"vnet{suffix}", {
                "location": LOCATION, "properties": {
                    "addressSpace": {"addressPrefixes": ["10.10.0.0/16"]},
                    "subnets": [{"name": "default", "properties": {"addressPrefix": "10.10.1.0/24"}}]}})
        out["vnet"] = vnet
        out["nsg"], _ = self.lro(self.network.network_security_groups.begin_create_or_update, group, f"nsg{suffix}", {
            "location": LOCATION, "properties": {"securityRules": [{"name": "ssh", "properties": {
                "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 1000,
                "sourcePortRange": "*", "destinationPortRange": "22", "sourceAddressPrefix": "*",
                "destinationAddressPrefix": "*"}}]}})
        ipconfig = {"name": "ipconfig1", "properties": {"subnet": {"id": vnet.properties.subnets[0].id}}}
        if public_ip:
            out["ip"], _ = self.lro(self.network.public_ip_addresses.begin_create_or_update, group, f"ip{suffix}", {
                "location": LOCATION, "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"}})
            ipconfig["properties"]["publicIPAddress"] = {"id": out["ip"].id}
        out["nic"], _ = self.lro(self.network.network_interfaces.begin_create_or_update, group, f"nic{suffix}", {
            "location": LOCATION, "properties": {"networkSecurityGroup": {"id": out["nsg"].id},
                                                 "ipConfigurations": [ipconfig]}})
        return out


SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl lxcri@sandbox"


def vm_body(nic_id, delete_option="Delete", **extra):
    body = {"location": LOCATION, "tags": {"owner": "lxcri"}, "properties": {
        "hardwareProfile": {"vmSize": "Standard_B1s"},
        "storageProfile": {
            "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
                               "version": "latest"},
            "osDisk": {"createOption": "FromImage", "deleteOption": delete_option,
                       "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}},
        "osProfile": {"adminUsername": "lxcri", "computerName": "lxcri-vm", "linuxConfiguration": {
            "disablePasswordAuthentication": True,
            "ssh": {"publicKeys": [{"path": "/home/lxcri/.ssh/authorized_keys", "keyData": SSH_KEY}]}}},
        "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True}}]}}}
    body["properties"].update(extra)
    return body


def power(sandbox, group, name):
    view = sandbox.compute.virtual_machines.instance_view(group, name)
    codes = [s.code for s in view.statuses]
    assert codes[0].startswith("ProvisioningState/"), codes
    return [c.split("/", 1)[1] for c in codes if c.startswith("PowerState/")][0]


def error_code(excinfo):
    return excinfo.value.error.code


@pytest.fixture
def sandbox(serve, sandbox_tls):
    return Sandbox(serve, sandbox_tls[0])


def test_full_vm_lifecycle_with_default_polling(sandbox):
    sb = sandbox
    group = sb.create_group("rg-life", env="test")
    assert group["properties"]["provisioningState"] == "Succeeded" and group["location"] == LOCATION
    stack = sb.network_stack("rg-life")
    assert stack["vnet"].properties.subnets[0].properties.address_prefix == "10.10.1.0/24"
    assert stack["nic"].properties.ip_configurations[0].properties.private_ip_address == "10.10.1.4"
    assert stack["ip"].properties.ip_address  # Standard/Static: allocated at once

    vm, ops = sb.lro(sb.compute.virtual_machines.begin_create_or_update, "rg-life", "vm1",
                     vm_body(stack["nic"].id))
    assert ops == ["operations.get", "virtualMachines.get"], ops  # Azure-AsyncOperation, then final GET
    assert vm.properties.provisioning_state == "Succeeded"
    assert vm.properties.vm_id and vm.tags == {"owner": "lxcri"}
    os_disk = vm.properties.storage_profile.os_disk
    assert os_disk.managed_disk.id.endswith(f"/disks/{os_disk.name}") and os_disk.os_type == "Linux"
    assert power(sb, "rg-life", "vm1") == "running"
    expanded = sb.compute.virtual_machines.get("rg-life", "vm1", expand="instanceView")
    assert [s.code for s in expanded.properties.instance_view.statuses] == ["ProvisioningState/succeeded",
                                                                           "PowerState/running"]
    nic = sb.network.network_interfaces.get("rg-life", "nic")
    assert nic.properties.virtual_machine.id == vm.id and nic.properties.mac_address
    disk = sb.compute.disks.get("rg-life", os_disk.name)
    assert disk.managed_by == vm.id and disk.properties.disk_state == "Attached"

    for begin, expected in ((sb.compute.virtual_machines.begin_power_off, "stopped"),
                            (sb.compute.virtual_machines.begin_start, "running"),
                            (sb.compute.virtual_machines.begin_restart, "running"),
                            (sb.compute.virtual_machines.begin_deallocate, "deallocated")):
        _, ops = sb.lro(begin, "rg-life", "vm1")
        assert ops == ["operations.get", "operationResults.get"], (begin.__name__, ops)
        assert power(sb, "rg-life", "vm1") == expected, begin.__name__
    assert sb.compute.disks.get("rg-life", os_disk.name).properties.disk_state == "Reserved"

    _, ops = sb.lro(sb.compute.virtual_machines.begin_delete, "rg-life", "vm1")
    assert ops == ["operations.get"], ops
    with pytest.raises(ResourceNotFoundError):
        sb.compute.virtual_machines.get("rg-life", "vm1")
    assert sb.state()["disks"] == []  # deleteOption=Delete took the OS disk with it
    assert sb.network.network_interfaces.get("rg-life", "nic").properties.virtual_machine is None

    for ops_group, name in ((sb.network.network_interfaces, "nic"), (sb.network.public_ip_addresses, "ip"),
                            (sb.network.network_security_groups, "nsg"), (sb.network.virtual_networks, "vnet")):
        _, ops = sb.lro(ops_group.begin_delete, "rg-life", name)
        assert ops == ["operations.get"], (name, ops)
    sb.delete_group("rg-life")
    sb.check_polling_headers()
    assert sb.state() == {"resourceGroups": [], "virtualMachines": [], "networkInterfaces": [],
                          "publicIPAddresses": [], "networkSecurityGroups": [], "virtualNetworks": [], "disks": [],
                          "containerGroups": [], "metricAlerts": [], "actionGroups": []}, sb.state()


def test_cleanup_order_is_enforced_with_real_error_codes(sandbox):
    sb = sandbox
    sb.create_group("rg-order")
    stack = sb.network_stack("rg-order")
    sb.lro(sb.compute.virtual_machines.begin_create_or_update, "rg-order", "vm1", vm_body(stack["nic"].id))

    with pytest.raises(HttpResponseError) as nic_in_use:
        sb.network.network_interfaces.begin_delete("rg-order", "nic").result()
    assert nic_in_use.value.status_code == 400 and error_code(nic_in_use) == "NicInUse"
    assert stack["nic"].id in nic_in_use.value.error.message
    with pytest.raises(HttpResponseError) as ip_in_use:
        sb.network.public_ip_addresses.begin_delete("rg-order", "ip").result()
    assert error_code(ip_in_use) == "PublicIPAddressCannotBeDeleted"
    with pytest.raises(HttpResponseError) as nsg_in_use:
        sb.network.network_security_groups.begin_delete("rg-order", "nsg").result()
    assert error_code(nsg_in_use) == "InUseNetworkSecurityGroupCannotBeDeleted"
    with pytest.raises(HttpResponseError) as subnet_in_use:
        sb.network.virtual_networks.begin_delete("rg-order", "vnet").result()
    assert error_code(subnet_in_use) == "InUseSubnetCannotBeDeleted"
    state = sb.state()
    assert len(state["networkInterfaces"]) == len(state["publicIPAddresses"]) == len(state["virtualNetworks"]) == 1

    # a second VM cannot take the NIC either, and a VM needs NICs that exist
    with pytest.raises(HttpResponseError) as taken:
        sb.compute.virtual_machines.begin_create_or_update("rg-order", "vm2", vm_body(stack["nic"].id)).result()
    assert error_code(taken) == "NicInUse"
    missing = stack["nic"].id.replace("/nic", "/nic-missing")
    with pytest.raises(ResourceNotFoundError) as no_nic:
        sb.compute.virtual_machines.begin_create_or_update("rg-order", "vm3", vm_body(missing)).result()
    assert error_code(no_nic) == "NotFound"
    with pytest.raises(HttpResponseError) as bad_ref:
        sb.network.network_interfaces.begin_create_or_update("rg-order", "nic2", {
            "location": LOCATION, "properties": {"ipConfigurations": [{"name": "c", "properties": {
                "subnet": {"id": stack["vnet"].id + "/subnets/nope"}}}]}}).result()
    assert error_code(bad_ref) == "InvalidResourceReference"


def test_detached_os_disk_survives_the_vm_and_can_be_deleted(sandbox):
    sb = sandbox
    sb.create_group("rg-disk")
    stack = sb.network_stack("rg-disk", public_ip=False)
    vm, _ = sb.lro(sb.compute.virtual_machines.begin_create_or_update, "rg-disk", "vm1",
                   vm_body(stack["nic"].id, delete_option="Detach"))
    name = vm.properties.storage_profile.os_disk.name
    with pytest.raises(HttpResponseError) as attached:
        sb.compute.disks.begin_delete("rg-disk", name).result()
    assert attached.value.status_code == 409 and error_code(attached) == "OperationNotAllowed"
    sb.lro(sb.compute.virtual_machines.begin_delete, "rg-disk", "vm1")
    disks = list(sb.compute.disks.list_by_resource_group("rg-disk"))
    assert [d.name for d in disks] == [name] and [d.name for d in sb.compute.disks.list()] == [name]
    assert disks[0].properties.disk_state == "Unattached" and disks[0].managed_by is None
    assert disks[0].properties.os_type == "Linux" and disks[0].properties.disk_size_gb == 30
    sb.lro(sb.compute.disks.begin_delete, "rg-disk", name)
    assert sb.state()["disks"] == []


def test_resource_group_delete_removes_everything_inside(sandbox):
    sb = sandbox
    sb.create_group("rg-cascade")
    sb.create_group("rg-other")
    stack = sb.network_stack("rg-cascade")
    sb.lro(sb.compute.virtual_machines.begin_create_or_update, "rg-cascade", "vm1",
           vm_body(stack["nic"].id, delete_option="Detach"))
    sb.lro(sb.network.public_ip_addresses.begin_create_or_update, "rg-other", "keep", {"location": LOCATION})
    assert sb.arm("HEAD", f"/subscriptions/{SUB}/resourcegroups/rg-cascade").status_code == 204
    sb.delete_group("rg-cascade")
    assert sb.arm("HEAD", f"/subscriptions/{SUB}/resourcegroups/rg-cascade").status_code == 404
    with pytest.raises(ResourceNotFoundError) as gone:
        sb.compute.virtual_machines.get("rg-cascade", "vm1")
    assert error_code(gone) == "ResourceGroupNotFound"
    state = sb.state()
    assert [i.rsplit("/", 1)[-1] for i in state["publicIPAddresses"]] == ["keep"]
    assert state["virtualMachines"] == state["disks"] == state["networkInterfaces"] == []
    assert [g.rsplit("/", 1)[-1] for g in state["resourceGroups"]] == ["rg-other"]


def test_vm_list_pages_with_next_link(serve, sandbox_tls):
    sb = Sandbox(serve, sandbox_tls[0], page_size=2)
    sb.create_group("rg-page")
    vnet = None
    for i in range(5):
        stack = sb.network_stack("rg-page", suffix=str(i), public_ip=False, vnet=vnet)
        vnet = stack["vnet"]
        sb.lro(sb.compute.virtual_machines.begin_create_or_update, "rg-page", f"vm{i}", vm_body(stack["nic"].id))
    start = len(sb.log)
    names = [vm.name for vm in sb.compute.virtual_machines.list("rg-page")]
    assert names == [f"vm{i}" for i in range(5)]
    pages = sb.log[start:]
    assert [azure.operation(m, p) for m, p, _, _ in pages] == ["virtualMachines.list"] * 3
    assert "$skiptoken=2" in pages[1][1] and "api-version=" in pages[1][1], pages
    assert sorted(vm.name for vm in sb.compute.virtual_machines.list_all()) == names
    first = sb.arm("GET", f"/subscriptions/{SUB}/resourceGroups/rg-page/providers/Microsoft.Compute/virtualMachines",
                   api_version="2026-04-01&$top=4").json()
    assert len(first["value"]) == 4 and first["nextLink"].startswith(sb.base)
    last = sb.compute.send_request(HttpRequest("GET", first["nextLink"])).json()
    assert [v["name"] for v in last["value"]] == ["vm4"] and "nextLink" not in last


def test_power_transitions_take_provision_seconds(serve, sandbox_tls):
    sb = Sandbox(serve, sandbox_tls[0], provision_seconds=1.5)
    sb.create_group("rg-slow")
    stack = sb.network_stack("rg-slow", public_ip=False)
    clock = time.monotonic()
    poller = sb.compute.virtual_machines.begin_create_or_update("rg-slow", "vm1", vm_body(stack["nic"].id))
    view = sb.compute.virtual_machines.instance_view("rg-slow", "vm1")
    assert [s.code for s in view.statuses] == ["ProvisioningState/creating", "PowerState/starting"]
    assert poller.result().properties.provisioning_state == "Succeeded"
    assert time.monotonic() - clock < 1.5 + SLOW_LRO, "the waiter slept far past provision_seconds"
    assert power(sb, "rg-slow", "vm1") == "running"
    start = len(sb.log)
    poller = sb.compute.virtual_machines.begin_deallocate("rg-slow", "vm1")
    assert power(sb, "rg-slow", "vm1") == "deallocating"
    poller.result()
    assert power(sb, "rg-slow", "vm1") == "deallocated"
    polls = [name for name, _ in sb.operations(start)].count("operations.get")
    assert 2 <= polls <= 40, polls  # the waiter really waited, paced by retry-after-ms
    sb.check_polling_headers()


def test_missing_api_version_is_rejected(sandbox):
    resp = sandbox.arm("GET", f"/subscriptions/{SUB}/resourcegroups", api_version=None)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "MissingApiVersionParameter"
    assert set(resp.json()["error"]) >= {"code", "message"}


def test_wrong_secret_raises_client_authentication_error(serve, sandbox_tls):
    sb = Sandbox(serve, sandbox_tls[0], secret="not-the-secret")
    with pytest.raises(ClientAuthenticationError) as excinfo:
        sb.compute.virtual_machines.get("rg", "vm")
    assert "AADSTS7000215" in str(excinfo.value)


def test_arm_requires_a_token_issued_by_the_emulator(sandbox):
    url = f"{sandbox.base}/subscriptions/{SUB}/resourcegroups?api-version=2021-04-01"
    missing = requests.get(url, verify=sandbox.ca, timeout=10)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"
    forged = requests.get(url, verify=sandbox.ca, timeout=10, headers={"Authorization": "Bearer a.b.c"})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert forged.headers["WWW-Authenticate"].startswith("Bearer ")
    token = sandbox.credential.get_token("https://management.azure.com/.default").token
    good = requests.get(url, verify=sandbox.ca, timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert good.status_code == 200 and good.json() == {"value": []}


def test_credentials_come_from_the_environment(serve, sandbox_tls, monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "from-env")
    monkeypatch.delenv("AZURE_TENANT_ID", raising=False)
    base = serve(azure.make_server)

    def client(secret):
        cred = ClientSecretCredential(TENANT, CLIENT, secret, authority=base, disable_instance_discovery=True,
                                      connection_verify=sandbox_tls[0])
        return ComputeManagementClient(cred, SUB, base_url=base, connection_verify=sandbox_tls[0])

    assert list(client("from-env").virtual_machines.list_all()) == []
    with pytest.raises(ClientAuthenticationError):
        list(client("other").virtual_machines.list_all())


def test_any_credentials_when_none_are_configured(serve, sandbox_tls, monkeypatch):
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    base = serve(azure.make_server)
    cred = ClientSecretCredential("any-tenant", "any-client", "any-secret", authority=base,
                                  disable_instance_discovery=True, connection_verify=sandbox_tls[0])
    network = NetworkManagementClient(cred, SUB, base_url=base, connection_verify=sandbox_tls[0])
    assert list(network.virtual_networks.list_all()) == []


def test_tags_update_and_subnet_children(sandbox):
    sb = sandbox
    sb.create_group("rg-tags")
    stack = sb.network_stack("rg-tags", public_ip=False)
    tagged = sb.network.network_security_groups.update_tags("rg-tags", "nsg", {"tags": {"team": "infra"}})
    assert tagged.tags == {"team": "infra"} and tagged.properties.security_rules[0].name == "ssh"
    assert tagged.properties.network_interfaces[0].id == stack["nic"].id
    subnet, _ = sb.lro(sb.network.subnets.begin_create_or_update, "rg-tags", "vnet", "second",
                       {"properties": {"addressPrefix": "10.10.2.0/24"}})
    assert subnet.id.endswith("/virtualNetworks/vnet/subnets/second")
    assert sorted(s.name for s in sb.network.subnets.list("rg-tags", "vnet")) == ["default", "second"]
    with pytest.raises(HttpResponseError) as overlap:
        sb.network.subnets.begin_create_or_update("rg-tags", "vnet", "third",
                                                  {"properties": {"addressPrefix": "10.10.2.128/25"}}).result()
    assert error_code(overlap) == "NetcfgSubnetRangesOverlap"
    vm_tags, ops = sb.lro(sb.compute.virtual_machines.begin_create_or_update, "rg-tags", "vm",
                          vm_body(stack["nic"].id))
    updated, ops = sb.lro(sb.compute.virtual_machines.begin_update, "rg-tags", "vm", {"tags": {"a": "b"}})
    assert updated.tags == {"a": "b"} and ops == ["operations.get", "virtualMachines.get"]
    with pytest.raises(HttpResponseError) as immutable:
        body = vm_body(stack["nic"].id)
        body["properties"]["osProfile"]["adminUsername"] = "someoneelse"
        sb.compute.virtual_machines.begin_create_or_update("rg-tags", "vm", body).result()
    assert error_code(immutable) == "PropertyChangeNotAllowed"


def test_sandbox_endpoints_and_operation_names(sandbox):
    assert requests.get(sandbox.base + "/_sandbox/health", verify=sandbox.ca, timeout=10).status_code == 200
    sandbox.create_group("rg-reset")
    assert len(sandbox.state()["resourceGroups"]) == 1
    assert requests.post(sandbox.base + "/_sandbox/reset", verify=sandbox.ca, timeout=10).status_code == 200
    assert sandbox.state()["resourceGroups"] == []
    rg = f"/subscriptions/{SUB}/resourceGroups/rg"
    vm = f"{rg}/providers/Microsoft.Compute/virtualMachines/vm1"
    assert azure.operation("PUT", vm + "?api-version=2026-04-01") == "virtualMachines.createOrUpdate"
    assert azure.operation("PATCH", vm) == "virtualMachines.update"
    assert azure.operation("POST", vm + "/powerOff") == "virtualMachines.powerOff"
    assert azure.operation("GET", vm + "/instanceView") == "virtualMachines.instanceView"
    assert azure.operation("GET", f"/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines") == \
        "virtualMachines.listAll"
    assert azure.operation("DELETE", f"{rg}/providers/Microsoft.Network/networkInterfaces/n") == \
        "networkInterfaces.delete"
    assert azure.operation("GET", f"/subscriptions/{SUB}/providers/Microsoft.Network/locations/westeurope/"
                                  "operations/x?api-version=1") == "operations.get"
    assert azure.operation("HEAD", rg) == "resourceGroups.checkExistence"
    assert azure.operation("POST", f"/{TENANT}/oauth2/v2.0/token") == "aad.token"


def test_resource_group_semantics(sandbox):
    sb = sandbox
    path = f"/subscriptions/{SUB}/resourcegroups/rg-sem"
    created = sb.arm("PUT", path, {"location": "westeurope", "tags": {"a": "1"}})
    assert created.status_code == 201 and created.json()["id"] == f"/subscriptions/{SUB}/resourceGroups/rg-sem"
    again = sb.arm("PUT", path, {"location": "West Europe", "tags": {"b": "2"}})
    assert again.status_code == 200 and again.json()["tags"] == {"b": "2"}
    moved = sb.arm("PUT", path, {"location": "eastus"})
    assert moved.status_code == 409 and moved.json()["error"]["code"] == "InvalidResourceGroupLocation"
    assert [g["name"] for g in sb.arm("GET", f"/subscriptions/{SUB}/resourcegroups").json()["value"]] == ["rg-sem"]
    missing = sb.arm("GET", f"/subscriptions/{SUB}/resourcegroups/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError) as no_group:
        sb.network.public_ip_addresses.begin_create_or_update("nope", "ip", {"location": LOCATION}).result()
    assert error_code(no_group) == "ResourceGroupNotFound"
    sb.lro(sb.network.public_ip_addresses.begin_create_or_update, "rg-sem", "ip", {"location": LOCATION})
    with pytest.raises(HttpResponseError) as elsewhere:
        sb.network.public_ip_addresses.begin_create_or_update("rg-sem", "ip", {"location": "eastus"}).result()
    assert error_code(elsewhere) == "InvalidResourceLocation"
    with pytest.raises(HttpResponseError) as no_location:
        sb.network.public_ip_addresses.begin_create_or_update("rg-sem", "ip2", {}).result()
    assert error_code(no_location) == "LocationRequired"
    listed = sb.arm("GET", f"/subscriptions/{SUB}/resourceGroups/rg-sem/resources").json()["value"]
    assert [(r["name"], r["type"]) for r in listed] == [("ip", "Microsoft.Network/publicIPAddresses")]
    assert sb.arm("GET", f"/subscriptions/{SUB}").json()["subscriptionId"] == SUB
    # a missing resource deletes as 204, a missing group does not
    assert sb.arm("DELETE", f"/subscriptions/{SUB}/resourceGroups/rg-sem/providers/Microsoft.Network/"
                            "networkInterfaces/ghost", api_version="2026-03-01").status_code == 204
    assert sb.arm("DELETE", f"/subscriptions/{SUB}/resourcegroups/nope").status_code == 404


def test_concurrent_creates_are_all_kept(sandbox):
    import concurrent.futures

    sandbox.create_group("rg-many")

    def create(i):
        return sandbox.network.public_ip_addresses.begin_create_or_update(
            "rg-many", f"ip{i}", {"location": LOCATION}).result().properties.ip_address

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        addresses = list(pool.map(create, range(16)))
    assert len(set(addresses)) == 16
    assert len(sandbox.state()["publicIPAddresses"]) == 16


def test_vm_patch_keeps_what_get_hides(sandbox):
    sb = sandbox
    sb.create_group("rg-patch")
    stack = sb.network_stack("rg-patch", public_ip=False)
    sb.lro(sb.compute.virtual_machines.begin_create_or_update, "rg-patch", "vm",
           vm_body(stack["nic"].id, userData="aGVsbG8="))
    assert sb.compute.virtual_machines.get("rg-patch", "vm").properties.user_data is None  # only with $expand
    sb.lro(sb.compute.virtual_machines.begin_update, "rg-patch", "vm",
           {"properties": {"hardwareProfile": {"vmSize": "Standard_B2s"}}})
    vm = sb.compute.virtual_machines.get("rg-patch", "vm", expand="userData")
    assert vm.properties.user_data == "aGVsbG8=" and vm.properties.hardware_profile.vm_size == "Standard_B2s"
    assert vm.properties.os_profile.admin_username == "lxcri" and vm.tags == {"owner": "lxcri"}


def test_msal_instance_discovery_against_the_emulator(sandbox, monkeypatch):
    """msal used directly may point instance discovery at the emulator instead of disabling it."""
    import msal

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca)  # requests lets this override Session.verify
    app = msal.ConfidentialClientApplication(
        CLIENT, client_credential=SECRET, authority=f"{sandbox.base}/{TENANT}",
        instance_discovery=f"{sandbox.base}/common/discovery/instance")
    result = app.acquire_token_for_client(["https://management.azure.com/.default"])
    assert result.get("token_type") == "Bearer", result
    assert "aad.instanceDiscovery" in [azure.operation(m, p) for m, p, _, _ in sandbox.log]
    url = f"{sandbox.base}/subscriptions/{SUB}/resourcegroups?api-version=2021-04-01"
    auth = {"Authorization": f"Bearer {result['access_token']}"}
    assert requests.get(url, verify=sandbox.ca, headers=auth, timeout=10).status_code == 200
