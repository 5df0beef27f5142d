"""The GCP emulator driven by the official google-cloud-compute client (REST transport), with a real
service-account key file, as a provider of lxcri.cloud would drive Compute Engine."""
import datetime
import ipaddress
import json
import os
import time
import types
import urllib.error
import urllib.request

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions
from google.cloud import compute_v1
from google.oauth2 import service_account

from tests.sandbox.emulators import gcp

PROJECT = "lxcri-test"
ZONE = "us-central1-a"
DONE = compute_v1.Operation.Status.DONE


def write_service_account(path, project=PROJECT):
    """A service-account key file with a fresh RSA key (as downloaded from IAM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": project, "private_key_id": os.urandom(20).hex(),
            "private_key": pem, "client_email": f"deployer@{project}.iam.gserviceaccount.com",
            "client_id": "109876543210987654321", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "http://127.0.0.1:9/token", "universe_domain": "googleapis.com"}
    path.write_text(json.dumps(info))
    return str(path)


def clients(url, credentials):
    kw = {"transport": "rest", "client_options": {"api_endpoint": url}, "credentials": credentials}
    return types.SimpleNamespace(
        url=url, instances=compute_v1.InstancesClient(**kw), zone_ops=compute_v1.ZoneOperationsClient(**kw),
        global_ops=compute_v1.GlobalOperationsClient(**kw), firewalls=compute_v1.FirewallsClient(**kw),
        images=compute_v1.ImagesClient(**kw), zones=compute_v1.ZonesClient(**kw),
        machine_types=compute_v1.MachineTypesClient(**kw), disks=compute_v1.DisksClient(**kw))


@pytest.fixture
def key_file(tmp_path, monkeypatch):
    path = write_service_account(tmp_path / "sa.json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", path)  # read by make_server: JWTs are verified
    return path


@pytest.fixture
def gce(serve, key_file):
    url = serve(gcp.make_server, tls=False)
    return clients(url, service_account.Credentials.from_service_account_file(key_file))


def instance(name, zone=ZONE, labels=None, machine_type="e2-small", family="ubuntu-2404-lts-amd64",
             image_project="ubuntu-os-cloud", nat=True, auto_delete=True):
    return compute_v1.Instance(
        name=name, machine_type=f"zones/{zone}/machineTypes/{machine_type}", labels=labels or {},
        disks=[compute_v1.AttachedDisk(boot=True, auto_delete=auto_delete, initialize_params=compute_v1.AttachedDiskInitializeParams(
            source_image=f"projects/{image_project}/global/images/family/{family}", disk_size_gb=20))],
        network_interfaces=[compute_v1.NetworkInterface(
            network="global/networks/default",
            access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")] if nat else [])])


def wait(gce, op, zone=ZONE, timeout=10):
    """What providers do: poll the operation with wait() until DONE."""
    deadline = time.monotonic() + timeout
    while op.status != DONE:
        assert time.monotonic() < deadline, f"operation {op.name} not DONE after {timeout}s"
        if zone:
            op = gce.zone_ops.wait(project=PROJECT, zone=zone, operation=op.name)
        else:
            op = gce.global_ops.wait(project=PROJECT, operation=op.name)
    return op


def create(gce, name, zone=ZONE, **kw):
    op = gce.instances.insert_unary(project=PROJECT, zone=zone, instance_resource=instance(name, zone, **kw))
    done = wait(gce, op, zone)
    assert not done.error.errors, done.error
    return done


def state(gce):
    with urllib.request.urlopen(gce.url + "/_sandbox/state") as response:
        return json.loads(response.read())


def test_insert_then_get_shows_running_instance_with_addresses(gce):
    op = gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance("web-1"))
    assert op.name.startswith("operation-") and int(op.id) > 0 and op.operation_type == "insert"
    assert wait(gce, op).target_link.endswith(f"/projects/{PROJECT}/zones/{ZONE}/instances/web-1")

    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="web-1")
    assert vm.status == "RUNNING"
    nic = vm.network_interfaces[0]
    assert ipaddress.ip_address(nic.network_i_p) in ipaddress.ip_network("10.128.0.0/20")
    assert ipaddress.ip_address(nic.access_configs[0].nat_i_p).is_global
    assert vm.machine_type.endswith(f"/projects/{PROJECT}/zones/{ZONE}/machineTypes/e2-small")
    assert vm.zone.endswith(f"/projects/{PROJECT}/zones/{ZONE}") and vm.self_link.startswith("http")
    assert vm.id > 2 ** 32 and datetime.datetime.fromisoformat(vm.creation_timestamp).tzinfo is not None
    disk = vm.disks[0]
    assert disk.boot and disk.auto_delete and disk.disk_size_gb == 20
    assert disk.source.endswith(f"/zones/{ZONE}/disks/web-1")
    assert disk.licenses[0].endswith("/projects/ubuntu-os-cloud/global/licenses/ubuntu-2404-lts")
    assert vm.label_fingerprint
    assert state(gce)["instances"] == [f"{ZONE}/web-1"]


def test_extended_operation_result_works_when_provisioning_is_instant(gce):
    op = gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=instance("quick", nat=False))
    assert op.done() and op.result(timeout=5) is None
    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="quick")
    assert vm.status == "RUNNING" and not vm.network_interfaces[0].access_configs


def test_set_labels_needs_the_current_fingerprint(gce):
    create(gce, "web-1", labels={"app": "web"})
    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="web-1")
    stale = vm.label_fingerprint
    request = compute_v1.InstancesSetLabelsRequest(labels={"app": "web", "env": "prod"}, label_fingerprint=stale)
    wait(gce, gce.instances.set_labels_unary(project=PROJECT, zone=ZONE, instance="web-1",
                                            instances_set_labels_request_resource=request))
    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="web-1")
    assert dict(vm.labels) == {"app": "web", "env": "prod"} and vm.label_fingerprint != stale

    request = compute_v1.InstancesSetLabelsRequest(labels={"env": "dev"}, label_fingerprint=stale)
    with pytest.raises(exceptions.PreconditionFailed) as failure:
        gce.instances.set_labels_unary(project=PROJECT, zone=ZONE, instance="web-1",
                                       instances_set_labels_request_resource=request)
    assert failure.value.code == 412 and "fingerprint" in failure.value.message
    assert dict(gce.instances.get(project=PROJECT, zone=ZONE, instance="web-1").labels)["env"] == "prod"

    bad = compute_v1.InstancesSetLabelsRequest(labels={"Env": "x"}, label_fingerprint=vm.label_fingerprint)
    with pytest.raises(exceptions.BadRequest, match="Label key 'Env' violates format constraints"):
        gce.instances.set_labels_unary(project=PROJECT, zone=ZONE, instance="web-1",
                                       instances_set_labels_request_resource=bad)


def test_list_filters_by_label_and_status(gce):
    create(gce, "a", labels={"env": "prod"})
    create(gce, "b", labels={"env": "prod", "tier": "web"})
    create(gce, "c", labels={"env": "dev"})
    create(gce, "d", nat=False)

    def names(expression):
        request = compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, filter=expression)
        return sorted(vm.name for vm in gce.instances.list(request=request))

    assert names('labels.env = "prod"') == ["a", "b"]
    assert names("labels.env:*") == ["a", "b", "c"]
    assert names("-labels.env:*") == ["d"]
    assert names('(labels.env = "prod") (labels.tier = "web")') == ["b"]
    assert names('labels.env = "dev" OR labels.tier = "web"') == ["b", "c"]
    assert names("status = RUNNING") == ["a", "b", "c", "d"]
    assert names("status != RUNNING") == []
    assert names("name eq '[ab]'") == ["a", "b"]
    with pytest.raises(exceptions.BadRequest, match="filter"):
        names("labels.env = (")


def test_aggregated_list_spans_zones_and_warns_for_empty_ones(gce):
    create(gce, "us-vm", zone="us-central1-a")
    create(gce, "eu-vm", zone="europe-west1-b")
    request = compute_v1.AggregatedListInstancesRequest(project=PROJECT)
    scopes = dict(gce.instances.aggregated_list(request=request))  # the pager yields (scope, scoped list)
    assert [vm.name for vm in scopes["zones/us-central1-a"].instances] == ["us-vm"]
    assert [vm.name for vm in scopes["zones/europe-west1-b"].instances] == ["eu-vm"]
    empty = scopes["zones/europe-west4-a"]
    assert not empty.instances and empty.warning.code == "NO_RESULTS_ON_PAGE"
    filtered = compute_v1.AggregatedListInstancesRequest(project=PROJECT, filter="name = eu-vm")
    found = [vm.name for _scope, scoped in gce.instances.aggregated_list(request=filtered) for vm in scoped.instances]
    assert found == ["eu-vm"]


def test_pagination_yields_every_instance(gce):
    for index in range(5):
        create(gce, f"vm-{index}", nat=False)
    pager = gce.instances.list(request=compute_v1.ListInstancesRequest(project=PROJECT, zone=ZONE, max_results=2))
    pages = list(pager.pages)
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [vm.name for p in pages for vm in p.items] == [f"vm-{i}" for i in range(5)]
    agg = gce.instances.aggregated_list(request=compute_v1.AggregatedListInstancesRequest(project=PROJECT, max_results=2))
    assert sorted(vm.name for _s, scoped in agg for vm in scoped.instances) == [f"vm-{i}" for i in range(5)]


def test_stop_resize_start_delete_lifecycle(gce):
    create(gce, "web-1")
    with pytest.raises(exceptions.BadRequest, match="machine type"):
        gce.instances.set_machine_type_unary(
            project=PROJECT, zone=ZONE, instance="web-1",
            instances_set_machine_type_request_resource=compute_v1.InstancesSetMachineTypeRequest(
                machine_type=f"zones/{ZONE}/machineTypes/e2-medium"))

    wait(gce, gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="web-1"))
    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="web-1")
    assert vm.status == "TERMINATED" and not vm.network_interfaces[0].access_configs[0].nat_i_p

    wait(gce, gce.instances.set_machine_type_unary(
        project=PROJECT, zone=ZONE, instance="web-1",
        instances_set_machine_type_request_resource=compute_v1.InstancesSetMachineTypeRequest(
            machine_type=f"zones/{ZONE}/machineTypes/e2-medium")))
    wait(gce, gce.instances.start_unary(project=PROJECT, zone=ZONE, instance="web-1"))
    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="web-1")
    assert vm.status == "RUNNING" and vm.machine_type.endswith("/e2-medium")
    assert vm.network_interfaces[0].access_configs[0].nat_i_p
    wait(gce, gce.instances.reset_unary(project=PROJECT, zone=ZONE, instance="web-1"))

    wait(gce, gce.instances.delete_unary(project=PROJECT, zone=ZONE, instance="web-1"))
    with pytest.raises(exceptions.NotFound, match=f"projects/{PROJECT}/zones/{ZONE}/instances/web-1' was not found"):
        gce.instances.get(project=PROJECT, zone=ZONE, instance="web-1")
    assert state(gce) == {"instances": [], "disks": [], "firewalls": [], "services": []}


def test_boot_disk_without_auto_delete_outlives_its_instance(gce):
    create(gce, "keep", auto_delete=False)
    wait(gce, gce.instances.delete_unary(project=PROJECT, zone=ZONE, instance="keep"))
    assert state(gce)["disks"] == [f"{ZONE}/keep"]
    disk = gce.disks.get(project=PROJECT, zone=ZONE, disk="keep")
    assert not disk.users and disk.source_image.endswith("/ubuntu-2404-noble-amd64-v20250130")
    wait(gce, gce.disks.delete_unary(project=PROJECT, zone=ZONE, disk="keep"))
    assert state(gce)["disks"] == []


@pytest.mark.parametrize("change, field", [
    ({"name": "Web_1"}, "resource.name"),
    ({"name": "x" * 64}, "resource.name"),
    ({"name": ""}, "resource.name"),
    ({"machine_type": ""}, "resource.machineType"),
    ({"machine_type": "e2-small"}, "resource.machineType"),
    ({"machine_type": f"zones/{ZONE}/machineTypes/e2-huge"}, "resource.machineType"),
    ({"disks": []}, "resource.disks"),
    ({"labels": {"Env": "prod"}}, "resource.labels"),
    ({"labels": {"env": "Prod"}}, "resource.labels"),
])
def test_insert_rejects_what_gce_rejects(gce, change, field):
    body = instance("web-1")
    for key, value in change.items():
        setattr(body, key, value)
    with pytest.raises(exceptions.BadRequest) as failure:
        gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=body)
    assert f"field '{field}'" in failure.value.message
    assert failure.value.errors[0]["reason"] in ("invalid", "required")
    assert state(gce)["instances"] == []


def test_unknown_zone_is_a_bad_request_and_missing_image_fails_the_operation(gce):
    with pytest.raises(exceptions.BadRequest, match="Unknown zone"):
        gce.instances.insert_unary(project=PROJECT, zone="us-central1-z", instance_resource=instance("a", "us-central1-z"))
    op = gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance("a", family="ubuntu-9999"))
    done = wait(gce, op)
    assert done.http_error_status_code == 404 and done.error.errors[0].code == "RESOURCE_NOT_FOUND"
    assert "images/family/ubuntu-9999' was not found" in done.error.errors[0].message
    with pytest.raises(exceptions.NotFound):  # ExtendedOperation turns the failed operation into the exception
        gce.instances.insert(project=PROJECT, zone=ZONE, instance_resource=instance("a", family="nope")).result()
    assert state(gce) == {"instances": [], "disks": [], "firewalls": [], "services": []}


def test_duplicate_insert_is_a_conflict(gce):
    create(gce, "web-1")
    with pytest.raises(exceptions.Conflict, match="instances/web-1' already exists"):
        gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance("web-1"))


def test_token_signed_by_another_key_is_unauthorized(gce, tmp_path):
    other = service_account.Credentials.from_service_account_file(write_service_account(tmp_path / "other.json"))
    intruder = clients(gce.url, other)
    with pytest.raises(exceptions.Unauthorized) as failure:
        intruder.instances.get(project=PROJECT, zone=ZONE, instance="web-1")
    assert failure.value.code == 401 and failure.value.errors[0]["reason"] == "authError"
    request = urllib.request.Request(gce.url + f"/compute/v1/projects/{PROJECT}/zones")
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(request)
    assert anonymous.value.code == 401
    assert json.loads(anonymous.value.read())["error"]["errors"][0]["reason"] == "required"


def test_key_file_token_uri_flow_and_late_key_file(serve, tmp_path):
    """google-auth's own token flow (token_uri -> this emulator) yields tokens the API accepts."""
    late = tmp_path / "late.json"
    url = serve(gcp.make_server, tls=False, credentials_file=str(late))
    zones = urllib.request.Request(url + f"/compute/v1/projects/{PROJECT}/zones/{ZONE}",
                                   headers={"Authorization": "Bearer anything"})
    with urllib.request.urlopen(zones) as response:  # no key file yet: any bearer token
        assert json.loads(response.read())["name"] == ZONE
    info = json.loads(open(write_service_account(late)).read())
    info["token_uri"] = url + "/token"
    late.write_text(json.dumps(info))
    with pytest.raises(urllib.error.HTTPError) as failure:  # the key file now exists: tokens are checked
        urllib.request.urlopen(zones)
    assert failure.value.code == 401

    import google.auth.transport.requests
    creds = service_account.Credentials.from_service_account_file(
        str(late), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.token.startswith("ya29.")
    zones.headers["Authorization"] = f"Bearer {creds.token}"
    with urllib.request.urlopen(zones) as response:
        assert json.loads(response.read())["name"] == ZONE

    stranger = json.loads(open(write_service_account(tmp_path / "x.json")).read())
    stranger["token_uri"] = url + "/token"
    from google.auth import exceptions as auth_exceptions
    with pytest.raises(auth_exceptions.RefreshError, match="invalid_grant"):
        service_account.Credentials.from_service_account_info(
            stranger, scopes=["https://www.googleapis.com/auth/cloud-platform"]).refresh(
                google.auth.transport.requests.Request())


def test_instances_go_through_provisioning_when_provisioning_takes_time(serve, key_file):
    gce = clients(serve(gcp.make_server, tls=False, provision_seconds=0.6),
                  service_account.Credentials.from_service_account_file(key_file))
    started = time.monotonic()
    op = gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance("slow"))
    assert op.status == compute_v1.Operation.Status.RUNNING and op.progress == 0
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="slow").status in ("PROVISIONING", "STAGING")
    with pytest.raises(exceptions.BadRequest, match="is not ready"):
        gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="slow")
    done = wait(gce, op)
    assert done.progress == 100 and done.end_time and time.monotonic() - started >= 0.5
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="slow").status == "RUNNING"

    op = gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="slow")
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="slow").status == "STOPPING"
    wait(gce, op)
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="slow").status == "TERMINATED"


def test_wait_returns_a_running_operation_after_its_bound(serve, key_file):
    url = serve(gcp.make_server, tls=False, provision_seconds=5, wait_seconds=0.3)
    gce = clients(url, service_account.Credentials.from_service_account_file(key_file))
    op = gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance("slow"))
    started = time.monotonic()
    again = gce.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
    assert again.status == compute_v1.Operation.Status.RUNNING and 0.25 <= time.monotonic() - started < 2
    assert again.id == op.id


def test_firewall_insert_get_list_delete(gce):
    rule = compute_v1.Firewall(name="allow-http", network="global/networks/default", target_tags=["web"],
                               allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["80", "443"])])
    wait(gce, gce.firewalls.insert_unary(project=PROJECT, firewall_resource=rule), zone=None)
    got = gce.firewalls.get(project=PROJECT, firewall="allow-http")
    assert got.direction == "INGRESS" and got.priority == 1000 and list(got.source_ranges) == ["0.0.0.0/0"]
    assert list(got.allowed[0].ports) == ["80", "443"]
    names = [fw.name for fw in gce.firewalls.list(project=PROJECT)]
    assert "allow-http" in names and "default-allow-ssh" in names
    assert state(gce)["firewalls"] == ["allow-http"]
    with pytest.raises(exceptions.Conflict):
        gce.firewalls.insert_unary(project=PROJECT, firewall_resource=rule)
    bad = compute_v1.Firewall(name="bad", allowed=[compute_v1.Allowed(I_p_protocol="icmp", ports=["22"])])
    with pytest.raises(exceptions.BadRequest, match="ports"):
        gce.firewalls.insert_unary(project=PROJECT, firewall_resource=bad)
    wait(gce, gce.firewalls.delete_unary(project=PROJECT, firewall="allow-http"), zone=None)
    assert state(gce)["firewalls"] == []
    with pytest.raises(exceptions.NotFound):
        gce.firewalls.get(project=PROJECT, firewall="allow-http")


def test_catalog_zones_machine_types_and_image_families(gce):
    zones = [zone.name for zone in gce.zones.list(project=PROJECT)]
    assert {"us-central1-a", "europe-west1-b", "europe-west4-a"} <= set(zones)
    medium = gce.machine_types.get(project=PROJECT, zone=ZONE, machine_type="e2-medium")
    assert (medium.guest_cpus, medium.memory_mb) == (2, 4096)
    for project, family in [("ubuntu-os-cloud", "ubuntu-2404-lts-amd64"), ("ubuntu-os-cloud", "ubuntu-2204-lts"),
                            ("debian-cloud", "debian-12")]:
        image = gce.images.get_from_family(project=project, family=family)
        assert image.family == family and image.status == "READY"
        assert gce.images.get(project=project, image=image.name).id == image.id
    with pytest.raises(exceptions.NotFound):
        gce.images.get_from_family(project="debian-cloud", family="debian-7")


def test_reset_forgets_everything(gce):
    create(gce, "web-1")
    request = urllib.request.Request(gce.url + "/_sandbox/reset", method="POST")
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert state(gce) == {"instances": [], "disks": [], "firewalls": [], "services": []}


def test_operation_names_requests_for_the_proxy():
    assert gcp.operation("POST", "/compute/v1/projects/p/zones/z/instances") == "compute.instances.insert"
    assert gcp.operation("POST", "/compute/v1/projects/p/zones/z/operations/op-1/wait") == "compute.zoneOperations.wait"
    assert gcp.operation("GET", "/compute/v1/projects/p/aggregated/instances?maxResults=2") == \
        "compute.instances.aggregatedList"
    assert gcp.operation("GET", "/compute/v1/projects/p/global/images/family/debian-12") == "compute.images.getFromFamily"
    assert gcp.operation("GET", "/nothing") == "unknown"
