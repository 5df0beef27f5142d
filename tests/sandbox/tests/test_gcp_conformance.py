"""Every body the GCP emulator writes during a full lifecycle conforms to compute.v1.json.

The lifecycle is driven by the official client (so requests are what real providers send); the
server records each request/response (``make_server(record=True)``), and each 2xx body is checked
against the response schema of the discovery method its path maps to (types, int64/uint64 as
strings, enums, unknown fields), each request body against the request schema (incl. fields the
method requires), and each error against Google's error envelope.
"""
import copy
import json
import os
import threading
import urllib.error
import urllib.request

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1
from google.oauth2 import service_account

from tests.sandbox.emulators import gcp
from tests.sandbox.tests.test_gcp_emulator import PROJECT, ZONE, clients, instance, wait, write_service_account

SPEC = os.environ.get("LXCRI_GCP_DISCOVERY", "/work/shared/specs/gcp/compute.v1.json")
if not os.path.exists(SPEC):
    pytest.skip(f"Compute discovery document not found at {SPEC} (set LXCRI_GCP_DISCOVERY to its path); "
                "the conformance check needs it", allow_module_level=True)

from tests.sandbox.discovery_check import Discovery, check_google_error  # noqa: E402

EXPECTED_OPERATIONS = {
    "compute.zones.list", "compute.zones.get", "compute.regions.list", "compute.regions.get",
    "compute.machineTypes.list", "compute.machineTypes.get", "compute.images.getFromFamily", "compute.images.get",
    "compute.images.list", "compute.networks.get", "compute.networks.list", "compute.subnetworks.get",
    "compute.subnetworks.list", "compute.firewalls.insert", "compute.firewalls.get", "compute.firewalls.list",
    "compute.firewalls.delete", "compute.globalOperations.wait", "compute.globalOperations.get",
    "compute.globalOperations.list", "compute.instances.insert", "compute.instances.get", "compute.instances.list",
    "compute.instances.aggregatedList", "compute.instances.setLabels", "compute.instances.stop",
    "compute.instances.setMachineType", "compute.instances.start", "compute.instances.reset",
    "compute.instances.delete", "compute.zoneOperations.get", "compute.zoneOperations.wait",
    "compute.zoneOperations.list", "compute.disks.list", "compute.disks.get", "compute.disks.delete",
}


@pytest.fixture(scope="module")
def discovery():
    return Discovery.load(SPEC)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Run a full lifecycle once against a recording emulator; return its records."""
    tmp_path = tmp_path_factory.mktemp("gcp-conformance")
    key_file = write_service_account(tmp_path / "sa.json")
    server = gcp.make_server("127.0.0.1", 0, provision_seconds=0.2, credentials_file=key_file, record=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        credentials = service_account.Credentials.from_service_account_file(key_file)
        lifecycle(clients(url, credentials), credentials, tmp_path)
        yield server.records
    finally:
        server.shutdown()
        server.server_close()


def lifecycle(gce, credentials, tmp_path):
    p, z = PROJECT, ZONE
    kw = {"transport": "rest", "client_options": {"api_endpoint": gce.url}, "credentials": credentials}
    regions = compute_v1.RegionsClient(**kw)
    networks, subnetworks = compute_v1.NetworksClient(**kw), compute_v1.SubnetworksClient(**kw)
    list(gce.zones.list(project=p))
    gce.zones.get(project=p, zone=z)
    list(regions.list(project=p))
    regions.get(project=p, region="europe-west4")
    list(gce.machine_types.list(project=p, zone=z))
    gce.machine_types.get(project=p, zone=z, machine_type="n2-standard-2")
    for project, family in [("ubuntu-os-cloud", "ubuntu-2404-lts-amd64"), ("ubuntu-os-cloud", "ubuntu-2204-lts"),
                            ("debian-cloud", "debian-12")]:
        image = gce.images.get_from_family(project=project, family=family)
        gce.images.get(project=project, image=image.name)
    list(gce.images.list(project="debian-cloud"))
    networks.get(project=p, network="default")
    list(networks.list(project=p))
    subnetworks.get(project=p, region="us-central1", subnetwork="default")
    list(subnetworks.list(project=p, region="europe-west1"))

    rule = compute_v1.Firewall(name="allow-web", target_tags=["web"], description="web",
                               allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["80", "8000-8080"])])
    op = gce.firewalls.insert_unary(project=p, firewall_resource=rule)
    gce.global_ops.get(project=p, operation=op.name)
    wait(gce, op, zone=None)
    gce.firewalls.get(project=p, firewall="allow-web")
    list(gce.firewalls.list(project=p))
    list(gce.global_ops.list(project=p))

    ops = [gce.instances.insert_unary(project=p, zone=z, instance_resource=instance(f"vm-{i}", labels={"env": "test"}))
           for i in range(3)]
    gce.instances.get(project=p, zone=z, instance="vm-0")  # PROVISIONING
    gce.zone_ops.get(project=p, zone=z, operation=ops[0].name)  # RUNNING
    for op in ops:
        wait(gce, op)
    failed = gce.instances.insert_unary(project=p, zone=z, instance_resource=instance("ghost", family="nope"))
    wait(gce, failed)  # DONE with error
    wait(gce, gce.instances.insert_unary(project=p, zone="europe-west4-b",
                                         instance_resource=instance("eu", "europe-west4-b", nat=False, auto_delete=False)),
         zone="europe-west4-b")
    list(gce.instances.list(request=compute_v1.ListInstancesRequest(project=p, zone=z, max_results=2,
                                                                    filter='labels.env = "test"')))
    list(gce.instances.list(project=p, zone="us-central1-b"))  # empty list
    list(gce.instances.aggregated_list(request=compute_v1.AggregatedListInstancesRequest(project=p, max_results=2)))
    list(gce.zone_ops.list(project=p, zone=z))

    vm = gce.instances.get(project=p, zone=z, instance="vm-0")
    set_labels = compute_v1.InstancesSetLabelsRequest(labels={"env": "prod"}, label_fingerprint=vm.label_fingerprint)
    wait(gce, gce.instances.set_labels_unary(project=p, zone=z, instance="vm-0",
                                            instances_set_labels_request_resource=set_labels))
    with pytest.raises(exceptions.PreconditionFailed):
        gce.instances.set_labels_unary(project=p, zone=z, instance="vm-0", instances_set_labels_request_resource=set_labels)
    stop = gce.instances.stop_unary(project=p, zone=z, instance="vm-0")
    gce.instances.get(project=p, zone=z, instance="vm-0")  # STOPPING
    wait(gce, stop)
    gce.instances.get(project=p, zone=z, instance="vm-0")  # TERMINATED
    wait(gce, gce.instances.set_machine_type_unary(
        project=p, zone=z, instance="vm-0", instances_set_machine_type_request_resource=compute_v1.InstancesSetMachineTypeRequest(
            machine_type=f"zones/{z}/machineTypes/e2-standard-4")))
    wait(gce, gce.instances.start_unary(project=p, zone=z, instance="vm-0"))
    wait(gce, gce.instances.reset_unary(project=p, zone=z, instance="vm-0"))

    with pytest.raises(exceptions.Conflict):
        gce.instances.insert_unary(project=p, zone=z, instance_resource=instance("vm-1"))
    with pytest.raises(exceptions.BadRequest):
        gce.instances.insert_unary(project=p, zone=z, instance_resource=instance("Bad_Name"))
    with pytest.raises(exceptions.NotFound):
        gce.instances.get(project=p, zone=z, instance="missing")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(gce.url + f"/compute/v1/projects/{p}/zones")  # 401, no token
    other = clients(gce.url, service_account.Credentials.from_service_account_file(
        write_service_account(tmp_path / "other.json")))
    with pytest.raises(exceptions.Unauthorized):
        other.zones.get(project=p, zone=z)

    for name in ("vm-0", "vm-1", "vm-2"):
        wait(gce, gce.instances.delete_unary(project=p, zone=z, instance=name))
    wait(gce, gce.instances.delete_unary(project=p, zone="europe-west4-b", instance="eu"), zone="europe-west4-b")
    list(gce.disks.list(project=p, zone="europe-west4-b"))
    gce.disks.get(project=p, zone="europe-west4-b", disk="eu")
    wait(gce, gce.disks.delete_unary(project=p, zone="europe-west4-b", disk="eu"), zone="europe-west4-b")
    wait(gce, gce.firewalls.delete_unary(project=p, firewall="allow-web"), zone=None)
    with urllib.request.urlopen(gce.url + "/_sandbox/state") as response:
        assert json.loads(response.read()) == {"instances": [], "disks": [], "firewalls": [], "services": []}


def violations(discovery, records):
    found = []
    for record in records:
        where = f"{record['method']} {record['path']} -> {record['status']}"
        if not record["path"].startswith("/compute/"):
            continue
        if record["status"] < 300:
            problems = discovery.validate_response(record["method"], record["path"], record["response"])
        else:
            problems = check_google_error(record["response"])
        if record["request"] is not None:
            problems += ["request " + v for v in discovery.validate_request(record["method"], record["path"],
                                                                            record["request"])]
        found += [f"{where}: {problem}" for problem in problems]
    return found


def test_every_emulator_body_of_a_lifecycle_conforms_to_the_discovery_document(discovery, recorded):
    assert EXPECTED_OPERATIONS <= {r["operation"] for r in recorded}, "the lifecycle no longer covers every method"
    statuses = {(r["operation"], r["status"]) for r in recorded}
    assert {("compute.instances.insert", 409), ("compute.instances.insert", 400), ("compute.instances.get", 404),
            ("compute.instances.setLabels", 412), ("compute.zones.get", 401)} <= statuses
    seen_states = {r["response"].get("status") for r in recorded if r["operation"] == "compute.instances.get"}
    assert {"RUNNING", "STOPPING", "TERMINATED"} <= seen_states and seen_states & {"PROVISIONING", "STAGING"}
    checked = [r for r in recorded if r["path"].startswith("/compute/")]
    assert len(checked) > 60
    problems = violations(discovery, checked)
    assert not problems, "emulator bodies violate compute.v1.json:\n" + "\n".join(problems)


def test_the_check_names_path_and_field_of_a_violation(discovery, recorded):
    """The conformance check must be able to fail: corrupt a recorded instance and an operation."""
    record = next(r for r in recorded if r["operation"] == "compute.instances.get" and r["status"] == 200)
    bad = copy.deepcopy(record)
    bad["response"]["id"] = int(bad["response"]["id"])                       # uint64 must be a string
    bad["response"]["status"] = "BOOTING"                                      # not an enum value
    bad["response"]["networkInterfaces"][0]["natIp"] = "1.2.3.4"               # misspelt field
    bad["response"]["disks"][0]["index"] = "0"                                  # int32 must be a number
    problems = violations(discovery, [bad])
    where = f"GET {record['path']} -> 200: compute.instances.get"
    assert f"{where} $.id: expected string, got int" in problems[0]
    assert any(p.startswith(f"{where} $.status: 'BOOTING' is not one of") for p in problems)
    assert any(p.startswith(f"{where} $.networkInterfaces[0].natIp: unknown field") for p in problems)
    assert any(p.startswith(f"{where} $.disks[0].index: expected integer") for p in problems)

    op = copy.deepcopy(next(r for r in recorded if r["operation"] == "compute.zoneOperations.wait"))
    op["response"]["progress"] = 100.5
    del op["request"]
    op["request"] = {"unexpected": True}
    assert len(violations(discovery, [op])) == 2
    error = copy.deepcopy(next(r for r in recorded if r["status"] == 404))
    error["response"]["error"]["errors"][0].pop("reason")
    assert violations(discovery, [error]) == [
        f"GET {error['path']} -> 404: $.error.errors[0].reason: expected string"]
