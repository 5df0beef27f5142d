"""Container groups (Microsoft.ContainerInstance) of the Azure emulator, driven by the real
azure-mgmt-containerinstance client over TLS, configured as the collection configures it (base_url, a
ClientSecretCredential against the emulator's authority, connection_verify; default polling).

The status codes of every container group operation are checked against
../shared/specs/azure/sdk-operation-table.json (the codes the installed SDK accepts); that check skips,
saying so, where the table is not there.
"""
import json
import time
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerinstance import ContainerInstanceManagementClient

from tests.sandbox.emulators import azure
from tests.sandbox.tests.test_azure_emulator import LOCATION, SLOW_LRO, SUB, Sandbox

TABLE = Path(__file__).resolve().parents[4] / "shared" / "specs" / "azure" / "sdk-operation-table.json"
SECRET = "s3cr3t-value-never-returned"
OPERATIONS = {  # emulator operation name -> ContainerGroupsOperations method
    "containerGroups.createOrUpdate": "begin_create_or_update", "containerGroups.update": "update",
    "containerGroups.get": "get", "containerGroups.delete": "begin_delete",
    "containerGroups.listByResourceGroup": "list_by_resource_group", "containerGroups.list": "list",
    "containerGroups.start": "begin_start", "containerGroups.stop": "stop", "containerGroups.restart": "begin_restart",
}


class Aci(Sandbox):
    def __init__(self, serve, ca, **server_kwargs):
        super().__init__(serve, ca, **server_kwargs)
        self.aci = ContainerInstanceManagementClient(self.credential, SUB, base_url=self.base, connection_verify=ca)
        self.groups = self.aci.container_groups

    def raw(self, method, path, body=None):
        """A container group request through the SDK pipeline, answered as JSON (or None)."""
        resp = self.arm(method, f"/subscriptions/{SUB}/resourceGroups/{path}", body, api_version="2023-05-01")
        return resp.status_code, (resp.json() if resp.content else None), resp.headers


def group_body(image="nginx:1.27", cpu=0.25, memory=0.5, label="web-1a2b3c4d", port=80, **props):
    body = {"location": LOCATION, "tags": {"lxcri-deployment": "web"}, "properties": {
        "osType": "Linux", "restartPolicy": "Always",
        "containers": [{"name": "web", "properties": {
            "image": image, "command": ["nginx", "-g", "daemon off;"], "ports": [{"port": port, "protocol": "TCP"}],
            "environmentVariables": [{"name": "GREETING", "value": "hello"}, {"name": "API_KEY", "secureValue": SECRET}],
            "resources": {"requests": {"cpu": cpu, "memoryInGB": memory}}}}],
        "ipAddress": {"type": "Public", "ports": [{"port": port, "protocol": "TCP"}], "dnsNameLabel": label}}}
    body["properties"].update(props)
    return body


def current_state(group):
    return [c.instance_view.current_state.state for c in group.containers]


@pytest.fixture
def sb(serve, sandbox_tls):
    sandbox = Aci(serve, sandbox_tls[0])
    sandbox.create_group("rg-aci")
    return sandbox


def test_create_runs_the_group_with_a_public_ip_and_fqdn(sb):
    start = len(sb.log)
    group, ops = sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    put = sb.log[start]
    assert put[2] == 201 and "azure-asyncoperation" in put[3] and int(put[3]["retry-after-ms"]) >= 1
    assert ops == ["operations.get", "containerGroups.get"], ops  # Azure-AsyncOperation, then the final GET
    assert group.provisioning_state == "Succeeded" and group.instance_view.state == "Running"
    assert current_state(group) == ["Running"]
    assert group.ip_address.type == "Public" and group.ip_address.ip
    assert group.ip_address.fqdn == f"web-1a2b3c4d.{LOCATION}.azurecontainer.io"
    container = group.containers[0]
    assert container.image == "nginx:1.27" and container.command == ["nginx", "-g", "daemon off;"]
    assert container.resources.requests.cpu == 0.25 and container.resources.requests.memory_in_gb == 0.5
    assert [(p.port, p.protocol) for p in container.ports] == [(80, "TCP")]
    assert group.os_type == "Linux" and group.restart_policy == "Always" and group.tags == {"lxcri-deployment": "web"}
    assert sb.state()["containerGroups"] == [group.id]
    sb.check_polling_headers()


def test_the_initial_answer_is_pending_until_the_operation_ends(serve, sandbox_tls):
    sb = Aci(serve, sandbox_tls[0], provision_seconds=1.0)
    sb.create_group("rg-aci")
    status, body, headers = sb.raw("PUT", "rg-aci/providers/Microsoft.ContainerInstance/containerGroups/web", group_body())
    assert status == 201 and body["properties"]["provisioningState"] == "Pending"
    assert body["properties"]["instanceView"]["state"] == "Pending"
    assert body["properties"]["containers"][0]["properties"]["instanceView"]["currentState"]["state"] == "Waiting"
    assert sb.groups.get("rg-aci", "web").provisioning_state == "Pending"
    time.sleep(1.1)
    group = sb.groups.get("rg-aci", "web")
    assert group.provisioning_state == "Succeeded" and group.instance_view.state == "Running"


def test_secure_values_are_never_returned(sb):
    sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    sb.groups.update("rg-aci", "web", {"tags": {"a": "b"}})
    list(sb.groups.list_by_resource_group("rg-aci")), list(sb.groups.list())
    sb.groups.stop("rg-aci", "web")
    sb.lro(sb.groups.begin_start, "rg-aci", "web")
    _, body, _ = sb.raw("GET", "rg-aci/providers/Microsoft.ContainerInstance/containerGroups/web")
    assert body["properties"]["containers"][0]["properties"]["environmentVariables"] == [
        {"name": "GREETING", "value": "hello"}, {"name": "API_KEY"}]
    listed = sb.raw("GET", "rg-aci/providers/Microsoft.ContainerInstance/containerGroups")[1]
    status, answer, _ = sb.raw("PUT", "rg-aci/providers/Microsoft.ContainerInstance/containerGroups/web", group_body())
    assert status == 200
    assert all(SECRET not in json.dumps(doc) for doc in (body, listed, answer))
    assert SECRET not in json.dumps([g.serialize(keep_readonly=True) for g in sb.groups.list()])


def test_image_env_and_port_update_in_place_keeping_the_ip(sb):
    first, _ = sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    start = len(sb.log)
    body = group_body(image="nginx:1.28", port=8080)
    body["properties"]["containers"][0]["properties"]["environmentVariables"][0]["value"] = "bye"
    updated, _ = sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", body)
    assert sb.log[start][2] == 200
    assert updated.containers[0].image == "nginx:1.28" and updated.ip_address.ip == first.ip_address.ip
    assert updated.containers[0].environment_variables[0].value == "bye"
    assert [p.port for p in updated.ip_address.ports] == [8080] and updated.instance_view.state == "Running"


@pytest.mark.parametrize("change", ["cpu", "memory", "restartPolicy", "osType", "restartPolicy left out"])
def test_what_aci_cannot_update_is_refused(sb, change):
    sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body(restartPolicy="OnFailure"))
    body = group_body(restartPolicy="OnFailure")
    if change == "cpu":
        body = group_body(cpu=1, restartPolicy="OnFailure")
    elif change == "memory":
        body = group_body(memory=1.5, restartPolicy="OnFailure")
    elif change == "restartPolicy":
        body["properties"]["restartPolicy"] = "Never"
    elif change == "osType":
        body["properties"]["osType"] = "Windows"
    else:  # left out: it reverts to its default, Always
        del body["properties"]["restartPolicy"]
    with pytest.raises(HttpResponseError) as failed:
        sb.groups.begin_create_or_update("rg-aci", "web", body).result()
    assert failed.value.status_code == 409 and failed.value.error.code == "InvalidContainerGroupUpdate"
    assert "you must delete it first and then create a new one" in failed.value.error.message
    assert sb.groups.get("rg-aci", "web").containers[0].resources.requests.cpu == 0.25


def test_stop_start_restart(sb):
    first, _ = sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    start = len(sb.log)
    assert sb.groups.stop("rg-aci", "web") is None
    assert sb.log[start][2] == 204 and "azure-asyncoperation" not in sb.log[start][3]  # synchronous
    stopped = sb.groups.get("rg-aci", "web")
    assert stopped.instance_view.state == "Stopped" and current_state(stopped) == ["Terminated"]
    assert stopped.ip_address.ip is None and stopped.ip_address.fqdn == first.ip_address.fqdn  # the IP is released
    sb.groups.stop("rg-aci", "web")  # stopping a stopped group: 204 again
    assert sb.log[-1][2] == 204

    start = len(sb.log)
    _, ops = sb.lro(sb.groups.begin_start, "rg-aci", "web")
    assert sb.log[start][2] == 202 and ops == ["operations.get"], ops
    started = sb.groups.get("rg-aci", "web")
    assert started.instance_view.state == "Running" and current_state(started) == ["Running"]
    assert started.ip_address.ip and started.ip_address.ip != first.ip_address.ip
    start = len(sb.log)
    sb.lro(sb.groups.begin_start, "rg-aci", "web")  # running already: 204, nothing to poll
    assert [s for _, _, s, _ in sb.log[start:]] == [204]

    start = len(sb.log)
    _, ops = sb.lro(sb.groups.begin_restart, "rg-aci", "web")
    assert sb.log[start][2] == 204 and ops == ["operations.get"], ops
    assert sb.groups.get("rg-aci", "web").instance_view.state == "Running"
    sb.groups.stop("rg-aci", "web")
    sb.lro(sb.groups.begin_restart, "rg-aci", "web")  # a stopped group restarts by starting
    assert sb.groups.get("rg-aci", "web").instance_view.state == "Running"
    sb.check_polling_headers()


def test_a_put_on_a_stopped_group_deploys_it_anew(sb):
    first, _ = sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    sb.groups.stop("rg-aci", "web")
    again, _ = sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body(image="nginx:1.28"))
    assert again.instance_view.state == "Running" and again.ip_address.ip != first.ip_address.ip


def test_patch_replaces_the_tags_only(sb):
    sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    start = len(sb.log)
    patched = sb.groups.update("rg-aci", "web", {"tags": {"env": "prod"}})
    assert sb.log[start][2] == 200 and patched.tags == {"env": "prod"}
    assert patched.containers[0].image == "nginx:1.27" and patched.instance_view.state == "Running"


def test_list_by_group_and_subscription(sb):
    sb.create_group("rg-aci-2")
    sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    sb.lro(sb.groups.begin_create_or_update, "rg-aci-2", "api", group_body(label="api-1a2b3c4d"))
    assert [g.name for g in sb.groups.list_by_resource_group("rg-aci")] == ["web"]
    assert sorted(g.name for g in sb.groups.list()) == ["api", "web"]
    with pytest.raises(ResourceNotFoundError):
        list(sb.groups.list_by_resource_group("rg-nowhere"))


def test_delete_is_a_long_running_operation(sb):
    sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    start = len(sb.log)
    _, ops = sb.lro(sb.groups.begin_delete, "rg-aci", "web")
    delete = sb.log[start]
    assert delete[2] == 202 and "azure-asyncoperation" in delete[3] and "location" not in delete[3]
    assert ops == ["operations.get"], ops
    with pytest.raises(ResourceNotFoundError):
        sb.groups.get("rg-aci", "web")
    sb.lro(sb.groups.begin_delete, "rg-aci", "web")  # gone already
    assert sb.log[-1][2] == 204
    assert sb.state()["containerGroups"] == []


def test_dns_labels_are_unique_per_location(sb):
    sb.create_group("rg-aci-2")
    sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    with pytest.raises(HttpResponseError) as taken:
        sb.groups.begin_create_or_update("rg-aci-2", "web", group_body()).result()
    assert taken.value.error.code == "DnsNameLabelAlreadyTaken"
    elsewhere = dict(group_body(), location="northeurope")
    group, _ = sb.lro(sb.groups.begin_create_or_update, "rg-aci-2", "web", elsewhere)
    assert group.ip_address.fqdn == "web-1a2b3c4d.northeurope.azurecontainer.io"
    sb.lro(sb.groups.begin_delete, "rg-aci", "web")
    sb.lro(sb.groups.begin_delete, "rg-aci-2", "web")
    sb.lro(sb.groups.begin_create_or_update, "rg-aci-2", "web", group_body())  # free again once deleted


def _refused(sb, body):
    status, answer, _ = sb.raw("PUT", "rg-aci/providers/Microsoft.ContainerInstance/containerGroups/web", body)
    assert status == 400, (status, answer)
    return answer["error"]["code"], answer["error"]["message"]


def test_invalid_groups_are_refused_with_aci_codes(sb):
    body = group_body()
    body["properties"]["containers"][0]["properties"]["environmentVariables"].append({"name": "a.b", "value": "x"})
    code, message = _refused(sb, body)
    assert code == "InvalidContainerEnvironmentVariable" and "must start with alphabetic character or '_'" in message
    body = group_body()
    del body["properties"]["containers"][0]["properties"]["resources"]["requests"]["memoryInGB"]
    assert _refused(sb, body)[0] == "ResourceRequestsNotSpecified"
    body = group_body()
    del body["properties"]["osType"]
    assert _refused(sb, body)[0] == "InvalidOsType"
    for label in ("ab", "1abcde", "abcde-", "Upper-case"):
        assert _refused(sb, group_body(label=label))[0] == "InvalidDnsNameLabel", label
    body = group_body()
    body["properties"]["ipAddress"]["ports"] = [{"port": 9999}]
    assert _refused(sb, body)[0] == "InvalidIpAddressPorts"
    body = group_body()
    body["properties"]["ipAddress"] = {"type": "Private", "ports": [{"port": 80}]}
    assert _refused(sb, body)[0] == "PrivateIPAddressRequiresSubnet"
    assert sb.state()["containerGroups"] == []


def test_operation_names():
    base = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups"
    names = {("PUT", base + "/web"): "containerGroups.createOrUpdate", ("GET", base + "/web"): "containerGroups.get",
             ("PATCH", base + "/web"): "containerGroups.update", ("DELETE", base + "/web"): "containerGroups.delete",
             ("GET", base): "containerGroups.listByResourceGroup",
             ("GET", f"/subscriptions/{SUB}/providers/Microsoft.ContainerInstance/containerGroups"): "containerGroups.list",
             ("POST", base + "/web/start"): "containerGroups.start", ("POST", base + "/web/stop"): "containerGroups.stop",
             ("POST", base + "/web/restart"): "containerGroups.restart"}
    for (method, path), name in names.items():
        assert azure.operation(method, path + "?api-version=2023-05-01") == name, (method, path)
    assert set(OPERATIONS) <= set(azure.implemented_operations())
    assert sorted(n for n in azure.implemented_operations() if n.startswith("containerGroups.")) == sorted(OPERATIONS)


def test_status_codes_are_those_the_sdk_accepts(sb):
    if not TABLE.is_file():
        pytest.skip(f"{TABLE} not found (shared/specs/azure beside the repository): status codes not checked")
    rows = {row["operation"]: row for row in json.loads(TABLE.read_text())["operations"]
            if row["sdk"] == "azure-mgmt-containerinstance" and row["group"] == "ContainerGroupsOperations"}
    groups = sb.groups
    sb.lro(groups.begin_create_or_update, "rg-aci", "web", group_body())  # 201
    sb.lro(groups.begin_create_or_update, "rg-aci", "web", group_body(image="nginx:1.28"))  # 200
    groups.update("rg-aci", "web", {"tags": {"k": "v"}})
    groups.get("rg-aci", "web"), list(groups.list_by_resource_group("rg-aci")), list(groups.list())
    groups.stop("rg-aci", "web"), groups.stop("rg-aci", "web")
    sb.lro(groups.begin_start, "rg-aci", "web"), sb.lro(groups.begin_start, "rg-aci", "web")  # 202, then 204
    sb.lro(groups.begin_restart, "rg-aci", "web")
    sb.lro(groups.begin_delete, "rg-aci", "web"), sb.lro(groups.begin_delete, "rg-aci", "web")  # 202, then 204
    seen = {}
    for name, status in sb.operations():
        if name.startswith("containerGroups."):
            seen.setdefault(name, set()).add(status)
    assert set(seen) == set(OPERATIONS), sorted(set(OPERATIONS) - set(seen))
    problems = [f"{name}: answered {sorted(seen[name])}, the SDK accepts {rows[method]['accepted_status']}"
                for name, method in OPERATIONS.items() if not seen[name] <= set(rows[method]["accepted_status"])]
    assert not problems, "\n".join(problems)
    assert seen["containerGroups.createOrUpdate"] == {200, 201} and seen["containerGroups.start"] == {202, 204}
    assert seen["containerGroups.delete"] == {202, 204}
    lro = {name for name, method in OPERATIONS.items() if rows[method]["lro"]}
    assert lro == {"containerGroups.createOrUpdate", "containerGroups.delete", "containerGroups.start",
                   "containerGroups.restart"}
    sb.check_polling_headers()


def test_each_lro_finishes_fast_with_default_polling(sb):
    clock = time.monotonic()
    sb.lro(sb.groups.begin_create_or_update, "rg-aci", "web", group_body())
    sb.groups.stop("rg-aci", "web")
    sb.lro(sb.groups.begin_start, "rg-aci", "web")
    sb.lro(sb.groups.begin_restart, "rg-aci", "web")
    sb.lro(sb.groups.begin_delete, "rg-aci", "web")
    assert time.monotonic() - clock < SLOW_LRO
