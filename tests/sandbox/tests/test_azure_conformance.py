"""Conformance of the Azure emulator with the offline API material in shared/specs/azure.

* The x-ms-examples payloads deserialize with the installed SDK's model classes without unknown fields or
  changed values (so the examples and the SDK agree, and the checks below compare like with like).
* The example request bodies, sent through the SDK to the emulator, come back with every field kept, and
  the emulator's answers carry every field of the example answers and deserialize cleanly.
* Every operation the emulator implements answers with a status code the SDK accepts: the codes listed in
  sdk-operation-table.json (compute, monitor, containerinstance) or, for SDKs the table does not cover
  (network), read from the installed SDK's ``status_code not in [...]`` check the same way the table was made.
* The Microsoft.Insights answers (action groups, metric alerts and their status, metrics) deserialize with
  azure-mgmt-monitor's models; the verbatim metric alert example goes through the emulator like the VM one.
Failures name the operation (or example) and the field.
"""
import copy
import datetime
import enum
import inspect
import json
import re
from pathlib import Path

import pytest
from azure.mgmt.compute import models as compute_models
from azure.mgmt.compute import operations as compute_ops
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance import operations as aci_ops
from azure.mgmt.monitor import MonitorManagementClient
from azure.mgmt.monitor import models as monitor_models
from azure.mgmt.monitor import operations as monitor_ops
from azure.mgmt.network import operations as network_ops

from tests.sandbox.emulators import azure
from tests.sandbox.tests.test_azure_emulator import LOCATION, SUB, Sandbox, vm_body

SPECS = Path(__file__).resolve().parents[4] / "shared" / "specs" / "azure"
if not (SPECS / "sdk-operation-table.json").is_file():
    pytest.skip(f"offline Azure specs not found at {SPECS} (shared/specs/azure beside the repository); "
                "conformance checks need them", allow_module_level=True)

TABLE = json.loads((SPECS / "sdk-operation-table.json").read_text())["operations"]
EXAMPLES = sorted(p.relative_to(SPECS / "examples").as_posix() for p in (SPECS / "examples").rglob("*.json"))

# example file -> (SDK model of the request body and of the 200/201 response bodies, or None)
EXAMPLE_MODELS = {
    "compute/VirtualMachine_Create_WithSshAuthentication.json": compute_models.VirtualMachine,
    "compute/VirtualMachine_Get_InstanceView.json": compute_models.VirtualMachineInstanceView,
    "compute/VirtualMachine_Start_MaximumSet_Gen.json": None,
    "monitor/createOrUpdateMetricAlertSingleResource.json": monitor_models.MetricAlertResource,
}
# documented disagreements between an example and the installed SDK: (path, example value, fixed value, why)
_ALERT = "monitor/createOrUpdateMetricAlertSingleResource.json"
EXAMPLE_QUIRKS = {_ALERT: [
    (where + ("properties", field), bad, bad.upper(),
     "ISO 8601 duration written in lower case; the SDK's isodate parser rejects it (send 'PT1M')")
    for where in (("parameters", "parameters"), ("responses", "200", "body"))
    for field, bad in (("evaluationFrequency", "Pt1m"), ("windowSize", "Pt15m"))]}
# (path of the object, key in the example, key the SDK uses, why)
EXAMPLE_RENAMES = {_ALERT: [
    (where + ("properties", "actions", 0), "webhookProperties", "webHookProperties",
     "the SDK (de)serializes 'webHookProperties' and silently drops 'webhookProperties'")
    for where in (("parameters", "parameters"), ("responses", "200", "body"))]}
# example answer fields the emulator need not echo: ARM adds hidden-link tags for portal links
ALERT_OPTIONAL = ("tags",)
# example instance view fields a plain Linux VM without extensions/patching/boot diagnostics does not report
INSTANCE_VIEW_OPTIONAL = ("patchStatus", "extensions", "bootDiagnostics", "isVMInStandbyPool",
                          "vmAgent.extensionHandlers")
WRITE_ONLY = ("adminPassword", "customData")

# emulator operation name -> (SDK, operations class, method)
SDK_OPERATIONS = {}
for _prefix, _cls in (("virtualNetworks", network_ops.VirtualNetworksOperations),
                      ("subnets", network_ops.SubnetsOperations),
                      ("securityRules", network_ops.SecurityRulesOperations),
                      ("networkSecurityGroups", network_ops.NetworkSecurityGroupsOperations),
                      ("publicIPAddresses", network_ops.PublicIPAddressesOperations),
                      ("networkInterfaces", network_ops.NetworkInterfacesOperations)):
    for _name, _method in (("createOrUpdate", "begin_create_or_update"), ("get", "get"), ("delete", "begin_delete"),
                           ("list", "list"), ("listAll", "list_all"), ("updateTags", "update_tags")):
        if hasattr(_cls, _method):
            SDK_OPERATIONS[f"{_prefix}.{_name}"] = ("azure-mgmt-network", _cls, _method)
for _name, _method in (("createOrUpdate", "begin_create_or_update"), ("update", "begin_update"), ("get", "get"),
                       ("delete", "begin_delete"), ("list", "list"), ("listAll", "list_all"),
                       ("instanceView", "instance_view"), ("start", "begin_start"), ("powerOff", "begin_power_off"),
                       ("deallocate", "begin_deallocate"), ("restart", "begin_restart")):
    SDK_OPERATIONS[f"virtualMachines.{_name}"] = ("azure-mgmt-compute", compute_ops.VirtualMachinesOperations, _method)
for _name, _method in (("createOrUpdate", "begin_create_or_update"), ("update", "begin_update"), ("get", "get"),
                       ("delete", "begin_delete"), ("listByResourceGroup", "list_by_resource_group"),
                       ("list", "list")):
    SDK_OPERATIONS[f"disks.{_name}"] = ("azure-mgmt-compute", compute_ops.DisksOperations, _method)
for _name, _method in (("createOrUpdate", "begin_create_or_update"), ("update", "update"), ("get", "get"),
                       ("delete", "begin_delete"), ("listByResourceGroup", "list_by_resource_group"), ("list", "list"),
                       ("start", "begin_start"), ("stop", "stop"), ("restart", "begin_restart")):
    SDK_OPERATIONS[f"containerGroups.{_name}"] = ("azure-mgmt-containerinstance", aci_ops.ContainerGroupsOperations,
                                                  _method)
for _name, _method in (("createOrUpdate", "create_or_update"), ("update", "update"), ("get", "get"),
                       ("delete", "delete"), ("listByResourceGroup", "list_by_resource_group"),
                       ("listBySubscription", "list_by_subscription")):
    SDK_OPERATIONS[f"metricAlerts.{_name}"] = ("azure-mgmt-monitor", monitor_ops.MetricAlertsOperations, _method)
SDK_OPERATIONS["metricAlerts.status"] = ("azure-mgmt-monitor", monitor_ops.MetricAlertsStatusOperations, "list")
for _name, _method in (("createOrUpdate", "create_or_update"), ("update", "update"), ("get", "get"),
                       ("delete", "delete"), ("listByResourceGroup", "list_by_resource_group"),
                       ("listBySubscriptionId", "list_by_subscription_id")):
    SDK_OPERATIONS[f"actionGroups.{_name}"] = ("azure-mgmt-monitor", monitor_ops.ActionGroupsOperations, _method)
SDK_OPERATIONS["metrics.list"] = ("azure-mgmt-monitor", monitor_ops.MetricsOperations, "list")
# implemented operations without an SDK among the collection's requirements (checked in test_azure_emulator.py)
NO_SDK = {name: "azure-mgmt-resource is not a requirement" for name in (
    "subscriptions.list", "subscriptions.get", "resourceGroups.list", "resourceGroups.createOrUpdate",
    "resourceGroups.get", "resourceGroups.checkExistence", "resourceGroups.delete", "resourceGroups.update",
    "resources.listByResourceGroup")}
NO_SDK.update({"operations.get": "LRO status monitor, polled by azure-mgmt-core ARMPolling",
               "operationResults.get": "LRO Location monitor, polled by azure-mgmt-core ARMPolling",
               "aad.instanceDiscovery": "msal", "aad.openidConfiguration": "msal", "aad.token": "msal",
               "sandbox.health": "sandbox", "sandbox.reset": "sandbox", "sandbox.state": "sandbox",
               "sandbox.alarm-state": "sandbox"})


# ---- helpers ------------------------------------------------------------------------------------
def load_example(name):
    return json.loads((SPECS / "examples" / name).read_text())


def _is_model(value):
    return hasattr(type(value), "_attr_to_rest_field")


def _datetime(text):
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(text).replace("Z", "+00:00"))
    return datetime.datetime.fromisoformat(text)


def value_problems(got, raw, path):
    """Differences between raw JSON and what a (TypeSpec) SDK model made of it."""
    if _is_model(got):
        if not isinstance(raw, dict):
            return [f"{path}: SDK model {type(got).__name__} built from a non-object {raw!r}"]
        fields = {rf._rest_name: attr for attr, rf in type(got)._attr_to_rest_field.items()}
        problems = []
        for key, value in raw.items():
            if key not in fields:
                problems.append(f"{path}.{key}: not a field of SDK model {type(got).__name__}")
                continue
            try:
                problems += value_problems(getattr(got, fields[key]), value, f"{path}.{key}")
            except Exception as err:  # the SDK could not deserialize the value
                problems.append(f"{path}.{key}: SDK cannot deserialize {value!r}: {err}")
        return problems
    if isinstance(raw, list):
        if not isinstance(got, list) or len(got) != len(raw):
            return [f"{path}: list {raw!r} became {got!r}"]
        return [p for i, (g, r) in enumerate(zip(got, raw)) for p in value_problems(g, r, f"{path}[{i}]")]
    if isinstance(raw, dict):
        if not isinstance(got, dict):
            return [f"{path}: object became {got!r}"]
        return [p for k, v in raw.items() for p in value_problems(got.get(k), v, f"{path}.{k}")]
    if isinstance(got, datetime.datetime):
        return [] if abs((got - _datetime(raw)).total_seconds()) < 1e-3 else [f"{path}: {raw!r} became {got!r}"]
    if isinstance(got, enum.Enum):
        got = got.value
    return [] if got == raw else [f"{path}: {raw!r} became {got!r}"]


def msrest_problems(model_cls, raw, path):
    """Same for msrest-style models (azure-mgmt-monitor): deserialize, serialize back, compare."""
    back = model_cls.deserialize(raw).serialize(keep_readonly=True)

    def diff(a, b, where):
        if isinstance(a, dict):
            if not isinstance(b, dict):
                return [f"{where}: object became {b!r}"]
            return [p for k, v in a.items()
                    for p in ([f"{where}.{k}: not a field of SDK model {model_cls.__name__}"] if k not in b
                              else diff(v, b[k], f"{where}.{k}"))]
        if isinstance(a, list):
            if not isinstance(b, list) or len(a) != len(b):
                return [f"{where}: list {a!r} became {b!r}"]
            return [p for i, (x, y) in enumerate(zip(a, b)) for p in diff(x, y, f"{where}[{i}]")]
        if isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower():  # ISO durations: Pt1m == PT1M
            return []
        return [] if a == b else [f"{where}: {a!r} became {b!r}"]
    return diff(raw, back, path)


def model_problems(model_cls, raw, path):
    if any(c.__module__.endswith("model_base") for c in model_cls.__mro__):  # TypeSpec-generated SDK
        return value_problems(model_cls(copy.deepcopy(raw)), raw, path)
    try:
        return msrest_problems(model_cls, raw, path)
    except Exception as err:  # msrest models deserialize all at once: say where it broke
        return [f"{path}: SDK model {model_cls.__name__} cannot deserialize it: {err}"]


def apply_quirks(name, example):
    """A copy of example with its documented disagreements with the SDK fixed (each must still be present)."""
    example = copy.deepcopy(example)
    for path, bad, good, _ in EXAMPLE_QUIRKS.get(name, ()):
        *parents, last = path
        node = example
        for key in parents:
            node = node[key]
        assert node[last] == bad, f"{name}: quirk at {'.'.join(map(str, path))} is gone; drop it from EXAMPLE_QUIRKS"
        node[last] = good
    for path, bad, good, _ in EXAMPLE_RENAMES.get(name, ()):
        node = example
        for key in path:
            node = node[key]
        assert bad in node, f"{name}: quirk {bad} at {'.'.join(map(str, path))} is gone; drop it from EXAMPLE_RENAMES"
        node[good] = node.pop(bad)
    return example


def missing_fields(expected, actual, path, optional=()):
    """Field paths present in expected (an example) but absent from actual (the emulator's answer)."""
    if any(path == o or path.startswith(o + ".") or path.startswith(o + "[") for o in optional):
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        return [m for k, v in expected.items()
                for m in ([f"{path}.{k}".lstrip(".")] if k not in actual and not any(
                    f"{path}.{k}".lstrip(".") == o for o in optional)
                    else missing_fields(v, actual.get(k), f"{path}.{k}".lstrip("."), optional))]
    if isinstance(expected, list) and expected:
        if not isinstance(actual, list) or not actual:
            return [f"{path}: expected a non-empty list, got {actual!r}"]
        return missing_fields(expected[0], actual[0], f"{path}[0]", optional)
    return []


def lost_fields(sent, got, path):
    """Fields of a request body that the emulator's answer dropped or changed."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [f"{path}: sent an object, got {got!r}"]
        return [m for k, v in sent.items() if k not in WRITE_ONLY
                for m in ([f"{path}.{k}: dropped"] if k not in got else lost_fields(v, got[k], f"{path}.{k}"))]
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return [f"{path}: sent {sent!r}, got {got!r}"]
        return [m for i, (s, g) in enumerate(zip(sent, got)) for m in lost_fields(s, g, f"{path}[{i}]")]
    return [] if sent == got else [f"{path}: sent {sent!r}, got {got!r}"]


def sdk_accepted(sdk, cls, method):
    """Accepted status codes: sdk-operation-table.json, else the installed SDK's own check."""
    for row in TABLE:
        if row["sdk"] == sdk and row["group"] == cls.__name__ and row["operation"] == method:
            return set(row["accepted_status"]), "sdk-operation-table.json"
    func = getattr(cls, "_" + method[len("begin_"):] + "_initial") if method.startswith("begin_") else getattr(cls,
                                                                                                               method)
    source = inspect.getsource(func)
    if "def get_next" in source:
        source = source[source.index("def get_next"):]
    found = re.search(r"status_code not in \[([0-9, ]+)\]", source)
    return {int(c) for c in found.group(1).split(",")}, f"{sdk} {cls.__name__}.{method} source"


class Recorder:
    """raw_response_hook collecting every HTTP response of one SDK call."""

    def __init__(self):
        self.responses = []

    def __call__(self, response):
        self.responses.append(response.http_response)


# ---- tests --------------------------------------------------------------------------------------
def test_every_example_has_a_model():
    assert sorted(EXAMPLE_MODELS) == EXAMPLES, "new example file: map it to its SDK model in EXAMPLE_MODELS"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_payloads_round_trip_through_sdk_models(name):
    example, model_cls = apply_quirks(name, load_example(name)), EXAMPLE_MODELS[name]
    if model_cls is None:
        assert all(not r.get("body") for r in example["responses"].values()), f"{name}: has a body but no model"
        return
    problems = []
    request = example["parameters"].get("parameters")
    if request is not None:
        problems += model_problems(model_cls, request, f"{name} request")
    for status, response in example["responses"].items():
        if response.get("body"):
            problems += model_problems(model_cls, response["body"], f"{name} {status} response")
    assert not problems, "\n".join(problems)


@pytest.fixture
def sandbox(serve, sandbox_tls):
    return Sandbox(serve, sandbox_tls[0])


def _vm_from_example(sb):
    """Create the NIC the VM example refers to and send the example's VM through the SDK."""
    example = load_example("compute/VirtualMachine_Create_WithSshAuthentication.json")
    params = json.loads(json.dumps(example["parameters"]).replace("{subscription-id}", SUB)
                        .replace("{existing-nic-name}", "nsgExistingNic"))
    group, vm_name = params["resourceGroupName"], params["vmName"]
    sb.create_group(group)
    vnet = sb.network.virtual_networks.begin_create_or_update(group, "vnet", {
        "location": params["parameters"]["location"], "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}]}}).result()
    sb.network.network_interfaces.begin_create_or_update(group, "nsgExistingNic", {
        "location": params["parameters"]["location"], "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": {"subnet": {"id": vnet.properties.subnets[0].id}}}]}}).result()
    recorder = Recorder()
    poller = sb.compute.virtual_machines.begin_create_or_update(group, vm_name, params["parameters"],
                                                                raw_response_hook=recorder)
    poller.result()
    return example, params, recorder.responses


def test_vm_create_example_through_the_emulator(sandbox):
    example, params, responses = _vm_from_example(sandbox)
    initial, final = responses[0], responses[-1]
    op = "virtualMachines.createOrUpdate"
    assert str(initial.status_code) in example["responses"], f"{op}: status {initial.status_code} not in example"
    problems = [f"{op} {initial.status_code} response lacks example field {m}"
                for m in missing_fields(example["responses"][str(initial.status_code)]["body"], initial.json(), "")]
    problems += [f"{op} response {p}" for p in lost_fields(params["parameters"], final.json(), "")]
    problems += model_problems(compute_models.VirtualMachine, initial.json(), f"{op} {initial.status_code} response")
    problems += model_problems(compute_models.VirtualMachine, final.json(), f"{op} final GET response")
    assert not problems, "\n".join(problems)
    assert initial.json()["properties"]["provisioningState"] == "Creating"
    assert final.json()["properties"]["provisioningState"] == "Succeeded"


def test_instance_view_example_through_the_emulator(sandbox):
    _, params, _ = _vm_from_example(sandbox)
    example = load_example("compute/VirtualMachine_Get_InstanceView.json")
    recorder = Recorder()
    sandbox.compute.virtual_machines.instance_view(params["resourceGroupName"], params["vmName"],
                                                   raw_response_hook=recorder)
    answer = recorder.responses[0]
    op = "virtualMachines.instanceView"
    assert answer.status_code == 200
    problems = [f"{op} response lacks example field {m}"
                for m in missing_fields(example["responses"]["200"]["body"], answer.json(), "",
                                        INSTANCE_VIEW_OPTIONAL)]
    problems += model_problems(compute_models.VirtualMachineInstanceView, answer.json(), f"{op} response")
    assert not problems, "\n".join(problems)
    assert [s["code"] for s in answer.json()["statuses"]] == ["ProvisioningState/succeeded", "PowerState/running"]


def test_start_example_through_the_emulator(sandbox):
    _, params, _ = _vm_from_example(sandbox)
    example = load_example("compute/VirtualMachine_Start_MaximumSet_Gen.json")
    recorder = Recorder()
    sandbox.compute.virtual_machines.begin_start(params["resourceGroupName"], params["vmName"],
                                                 raw_response_hook=recorder).result()
    initial = recorder.responses[0]
    op = "virtualMachines.start"
    assert str(initial.status_code) in example["responses"], f"{op}: status {initial.status_code} not in example"
    for header in (example["responses"][str(initial.status_code)].get("headers") or {}):
        assert header in initial.headers, f"{op} {initial.status_code} response lacks header {header}"


def test_metric_alert_example_through_the_emulator(sandbox):
    """The verbatim example (its SDK quirks fixed as above) sent through azure-mgmt-monitor: 200 only, every
    example field answered, every sent field kept, the answer deserializes cleanly."""
    example = apply_quirks(_ALERT, load_example(_ALERT))
    params = json.loads(json.dumps(example["parameters"]).replace(example["parameters"]["subscriptionId"], SUB))
    group, rule = params["resourceGroupName"], params["ruleName"]
    sandbox.create_group(group)
    vm_name = params["parameters"]["properties"]["scopes"][0].rsplit("/", 1)[-1]  # the scope must exist
    nic = sandbox.network_stack(group)["nic"]
    sandbox.compute.virtual_machines.begin_create_or_update(group, vm_name, vm_body(nic.id)).result()
    monitor = MonitorManagementClient(sandbox.credential, SUB, base_url=sandbox.base, connection_verify=sandbox.ca)
    recorder = Recorder()
    monitor.metric_alerts.create_or_update(group, rule, params["parameters"], raw_response_hook=recorder)
    answer = recorder.responses[0]
    op = "metricAlerts.createOrUpdate"
    assert str(answer.status_code) in example["responses"], f"{op}: status {answer.status_code} not in example"
    problems = [f"{op} {answer.status_code} response lacks example field {m}"
                for m in missing_fields(example["responses"]["200"]["body"], answer.json(), "", ALERT_OPTIONAL)]
    problems += [f"{op} response {p}" for p in lost_fields(params["parameters"], answer.json(), "")]
    problems += model_problems(monitor_models.MetricAlertResource, answer.json(), f"{op} 200 response")
    got = monitor.metric_alerts.get(group, rule, raw_response_hook=recorder)
    problems += model_problems(monitor_models.MetricAlertResource, recorder.responses[-1].json(), "metricAlerts.get")
    assert not problems, "\n".join(problems)
    assert got.criteria.all_of[0].metric_name == "\\Processor(_Total)\\% Processor Time"


def test_every_implemented_operation_has_an_sdk_mapping():
    unmapped = [n for n in azure.implemented_operations() if n not in SDK_OPERATIONS and n not in NO_SDK]
    assert not unmapped, f"map these emulator operations to their SDK method in SDK_OPERATIONS: {unmapped}"


def _drive_everything(sb):
    """Call every operation in SDK_OPERATIONS at least once along its success path."""
    net, comp, rg = sb.network, sb.compute, "rg-conf"
    sb.create_group(rg)
    body = {"location": LOCATION, "properties": {
        "addressSpace": {"addressPrefixes": ["10.1.0.0/16"]},
        "subnets": [{"name": "a", "properties": {"addressPrefix": "10.1.0.0/24"}}]}}
    net.virtual_networks.begin_create_or_update(rg, "vnet", body).result()
    vnet = net.virtual_networks.begin_create_or_update(rg, "vnet", body).result()  # update: 200
    net.virtual_networks.get(rg, "vnet")
    list(net.virtual_networks.list(rg)), list(net.virtual_networks.list_all())
    net.virtual_networks.update_tags(rg, "vnet", {"tags": {"k": "v"}})
    net.subnets.begin_create_or_update(rg, "vnet", "b", {"properties": {"addressPrefix": "10.1.1.0/24"}}).result()
    net.subnets.get(rg, "vnet", "b"), list(net.subnets.list(rg, "vnet"))
    net.subnets.begin_delete(rg, "vnet", "b").result()
    rule = {"properties": {"protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 200,
                           "sourcePortRange": "*", "destinationPortRange": "443", "sourceAddressPrefix": "*",
                           "destinationAddressPrefix": "*"}}
    for name, ops, kwargs in (("nsg", net.network_security_groups, {}),
                              ("ip", net.public_ip_addresses, {"sku": {"name": "Standard"}})):
        ops.begin_create_or_update(rg, name, {"location": LOCATION, **kwargs}).result()
        ops.get(rg, name), list(ops.list(rg)), list(ops.list_all())
        ops.update_tags(rg, name, {"tags": {"k": "v"}})
    net.security_rules.begin_create_or_update(rg, "nsg", "https", rule).result()
    net.security_rules.get(rg, "nsg", "https"), list(net.security_rules.list(rg, "nsg"))
    net.security_rules.begin_delete(rg, "nsg", "https").result()
    nic = net.network_interfaces.begin_create_or_update(rg, "nic", {"location": LOCATION, "properties": {
        "ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": vnet.properties.subnets[0].id}}}]}}).result()
    net.network_interfaces.get(rg, "nic"), list(net.network_interfaces.list(rg))
    list(net.network_interfaces.list_all()), net.network_interfaces.update_tags(rg, "nic", {"tags": {"k": "v"}})
    vms = comp.virtual_machines
    vms.begin_create_or_update(rg, "vm", vm_body(nic.id, delete_option="Detach")).result()
    vms.begin_create_or_update(rg, "vm", vm_body(nic.id, delete_option="Detach")).result()  # update: 200
    vms.begin_update(rg, "vm", {"tags": {"k": "v"}}).result()
    vms.get(rg, "vm"), list(vms.list(rg)), list(vms.list_all()), vms.instance_view(rg, "vm")
    for action in (vms.begin_power_off, vms.begin_start, vms.begin_restart, vms.begin_deallocate):
        action(rg, "vm").result()
    vms.begin_delete(rg, "vm").result()
    vms.begin_delete(rg, "vm").result()  # already gone: 204
    aci = ContainerInstanceManagementClient(sb.credential, SUB, base_url=sb.base, connection_verify=sb.ca).container_groups
    group = {"location": LOCATION, "properties": {"osType": "Linux", "containers": [{"name": "web", "properties": {
        "image": "nginx:1.27", "ports": [{"port": 80}], "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}}}}],
        "ipAddress": {"type": "Public", "ports": [{"port": 80}], "dnsNameLabel": "web-conformance"}}}
    aci.begin_create_or_update(rg, "web", group).result()
    aci.begin_create_or_update(rg, "web", group).result()  # update: 200
    aci.update(rg, "web", {"tags": {"k": "v"}}), aci.get(rg, "web")
    list(aci.list_by_resource_group(rg)), list(aci.list())
    aci.stop(rg, "web"), aci.begin_start(rg, "web").result(), aci.begin_start(rg, "web").result()  # 202, then 204
    aci.begin_restart(rg, "web").result()
    aci.begin_delete(rg, "web").result(), aci.begin_delete(rg, "web").result()  # 202, then 204
    disks = comp.disks
    disks.begin_create_or_update(rg, "data", {"location": LOCATION, "sku": {"name": "Premium_LRS"}, "properties": {
        "creationData": {"createOption": "Empty"}, "diskSizeGB": 64}}).result()
    disks.begin_create_or_update(rg, "data", {"location": LOCATION, "properties": {
        "creationData": {"createOption": "Empty"}, "diskSizeGB": 128}}).result()  # update: 200
    disks.begin_update(rg, "data", {"tags": {"k": "v"}}).result()
    disks.get(rg, "data"), list(disks.list_by_resource_group(rg)), list(disks.list())
    for disk in list(disks.list_by_resource_group(rg)):
        disks.begin_delete(rg, disk.name).result()
    _drive_monitor(sb, rg)
    for ops, name in ((net.network_interfaces, "nic"), (net.public_ip_addresses, "ip"),
                      (net.network_security_groups, "nsg"), (net.virtual_networks, "vnet"),
                      (net.virtual_networks, "vnet")):
        ops.begin_delete(rg, name).result()


def test_monitor_answers_deserialize_cleanly(sandbox):
    """Action group, metric alert (+ list, status) and metrics answers of the emulator against the SDK's models.
    Metrics answers are only deserialized: msrest writes their whole-minute timeStamps back with '.000'."""
    rg = "rg-models"
    sandbox.create_group(rg)
    nic = sandbox.network_stack(rg)["nic"]
    vm = sandbox.compute.virtual_machines.begin_create_or_update(rg, "vm", vm_body(nic.id)).result()
    mon = MonitorManagementClient(sandbox.credential, SUB, base_url=sandbox.base, connection_verify=sandbox.ca)
    recorder = Recorder()
    mon.action_groups.create_or_update(rg, "g", {"location": "Global", "properties": {
        "groupShortName": "g", "enabled": True,
        "emailReceivers": [{"name": "ops", "emailAddress": "ops@example.com", "useCommonAlertSchema": True}],
        "webhookReceivers": [{"name": "hook", "serviceUri": "https://hooks.example.com/x", "useCommonAlertSchema": True}],
    }}, raw_response_hook=recorder)
    group = recorder.responses[-1].json()
    alert = {"location": "global", "properties": {
        "severity": 3, "enabled": True, "scopes": [vm.id], "evaluationFrequency": "PT5M", "windowSize": "PT15M",
        "criteria": {"odata.type": "Microsoft.Azure.Monitor.MultipleResourceMultipleMetricCriteria", "allOf": [
            {"criterionType": "StaticThresholdCriterion", "name": "net", "metricName": "Network In Total",
             "metricNamespace": "Microsoft.Compute/virtualMachines", "operator": "GreaterThan", "threshold": 1e6,
             "timeAggregation": "Total", "dimensions": []}]},
        "targetResourceType": "Microsoft.Compute/virtualMachines", "targetResourceRegion": LOCATION,
        "actions": [{"actionGroupId": group["id"], "webHookProperties": {}}]}}
    mon.metric_alerts.create_or_update(rg, "net", alert, raw_response_hook=recorder)
    created = recorder.responses[-1].json()
    list(mon.metric_alerts.list_by_resource_group(rg, raw_response_hook=recorder))
    listed = recorder.responses[-1].json()
    mon.metric_alerts_status.list(rg, "net", raw_response_hook=recorder)
    status = recorder.responses[-1].json()
    answer = mon.metrics.list(vm.id, metricnames="Network In Total", aggregation="total")
    problems = model_problems(monitor_models.ActionGroupResource, group, "actionGroups.createOrUpdate")
    problems += model_problems(monitor_models.MetricAlertResource, created, "metricAlerts.createOrUpdate")
    problems += [f"metricAlerts.createOrUpdate response {p}" for p in lost_fields(alert, created, "")]
    problems += model_problems(monitor_models.MetricAlertResourceCollection, listed, "metricAlerts.listByResourceGroup")
    problems += model_problems(monitor_models.MetricAlertStatusCollection, status, "metricAlerts.status")
    assert not problems, "\n".join(problems)
    assert answer.value[0].unit == "Bytes" and answer.value[0].timeseries[0].data


def _drive_monitor(sb, rg):
    """Every Microsoft.Insights operation along its success path (needs a VM: made and removed here)."""
    nic = sb.network.network_interfaces.get(rg, "nic")
    sb.compute.virtual_machines.begin_create_or_update(rg, "watched", vm_body(nic.id, delete_option="Detach")).result()
    vm = sb.compute.virtual_machines.get(rg, "watched")
    mon = MonitorManagementClient(sb.credential, SUB, base_url=sb.base, connection_verify=sb.ca)
    mon.metrics.list(vm.id, metricnames="Percentage CPU,Network In Total", aggregation="average,total")
    groups, alerts = mon.action_groups, mon.metric_alerts
    group = {"location": "Global", "properties": {"groupShortName": "conf", "enabled": True, "emailReceivers": [
        {"name": "ops", "emailAddress": "ops@example.com", "useCommonAlertSchema": True}]}}
    ag = groups.create_or_update(rg, "conf-notify", group)
    groups.create_or_update(rg, "conf-notify", group)  # update: 200
    groups.update(rg, "conf-notify", {"tags": {"k": "v"}}), groups.get(rg, "conf-notify")
    list(groups.list_by_resource_group(rg)), list(groups.list_by_subscription_id())
    alert = {"location": "global", "properties": {
        "severity": 2, "enabled": True, "scopes": [vm.id], "evaluationFrequency": "PT1M", "windowSize": "PT5M",
        "criteria": {"odata.type": "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria", "allOf": [
            {"criterionType": "StaticThresholdCriterion", "name": "cpu", "metricName": "Percentage CPU",
             "operator": "GreaterThan", "threshold": 80, "timeAggregation": "Average"}]},
        "actions": [{"actionGroupId": ag.id}]}}
    alerts.create_or_update(rg, "conf", alert), alerts.create_or_update(rg, "conf", alert)  # create, update: 200
    alerts.update(rg, "conf", {"tags": {"k": "v"}}), alerts.get(rg, "conf")
    list(alerts.list_by_resource_group(rg)), list(alerts.list_by_subscription())
    mon.metric_alerts_status.list(rg, "conf")
    alerts.delete(rg, "conf"), alerts.delete(rg, "conf")  # 200, then 204
    groups.delete(rg, "conf-notify")
    sb.compute.virtual_machines.begin_delete(rg, "watched").result()
    for disk in list(sb.compute.disks.list_by_resource_group(rg)):
        sb.compute.disks.begin_delete(rg, disk.name).result()


def test_status_codes_match_what_the_sdk_accepts(sandbox):
    problems = []
    try:
        _drive_everything(sandbox)
    except Exception as err:  # the SDK refused an answer: name the request it refused
        method, path, status, _ = sandbox.log[-1]
        problems.append(f"{azure.operation(method, path)}: the SDK raised on the emulator's {status} answer to "
                        f"{method} {path}: {err}")
    seen = {}
    for name, status in sandbox.operations():
        seen.setdefault(name, set()).add(status)
    for name, (sdk, cls, method) in sorted(SDK_OPERATIONS.items()):
        if name not in seen:
            if not problems:
                problems.append(f"{name}: not driven by this test")
            continue
        accepted, source = sdk_accepted(sdk, cls, method)
        if not seen[name] <= accepted:
            problems.append(f"{name} ({cls.__name__}.{method}): emulator answered {sorted(seen[name])}, "
                            f"accepted {sorted(accepted)} per {source}")
    assert not problems, "\n".join(problems)
    # the success paths above include both create and update answers where the codes differ
    assert {201, 200} <= seen["virtualMachines.createOrUpdate"] and {202, 200} <= seen["disks.createOrUpdate"]
    assert seen["virtualMachines.delete"] == {202, 204}
    assert sandbox.state()["resourceGroups"] and not any(v for k, v in sandbox.state().items()
                                                         if k != "resourceGroups")
