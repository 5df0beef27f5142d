"""The GCP package's backends on the Provider contract, against fake SDK clients: records carry what they were
read from (and are read again without it), partial creates, "already gone", one deadline for every wait, one
TLS precedence, validation of every state, the Cloud Run SDK loaded only when needed."""
import json
import os
import types

import pytest

pytest.importorskip("google.cloud.compute_v1")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from google.api_core import exceptions as api_exceptions  # noqa: E402
from google.cloud import compute_v1  # noqa: E402

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import PartialFailure, ProviderError, native_of  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp import run  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.errors import cleanup  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.labels import relabelled  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.provider import GcpProvider  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import RetryPolicy  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline, WaitTimeout  # noqa: E402

ZONE = "us-central1-a"
DONE, RUNNING = compute_v1.Operation.Status.DONE, compute_v1.Operation.Status.RUNNING


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "p", "private_key_id": os.urandom(20).hex(), "private_key": pem,
            "client_email": "deployer@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}
    path = tmp_path_factory.mktemp("gcp") / "sa.json"
    path.write_text(json.dumps(info))
    return str(path)


def make(key_file, seconds=600, **connection):
    return GcpProvider({"endpoint": "http://127.0.0.1:9", "credentials_file": key_file, **connection},
                       policy=RetryPolicy(sleep=lambda seconds: None), deadline=Deadline(seconds, "wait_timeout"))


class FakeCompute:
    """instances, zoneOperations and regions as the REST clients answer; `calls` says what was asked."""

    def __init__(self, statuses=None, failing=(), missing=(), pending=False):
        self.statuses = dict(statuses or {})
        self.failing, self.missing, self.pending = set(failing), set(missing), pending
        self.calls = []

    def operation(self, what):
        return compute_v1.Operation(name=f"op-{what}", status=RUNNING if self.pending else DONE)

    def __getattr__(self, name):
        def method(request, retry=None, timeout=None):
            self.calls.append(name)
            if isinstance(request, compute_v1.GetRegionRequest):
                return compute_v1.Region(name=request.region, zones=[f"zones/{request.region}-c", f"zones/{request.region}-b"])
            if isinstance(request, (compute_v1.WaitZoneOperationRequest, compute_v1.GetZoneOperationRequest)):
                return self.operation(request.operation.removeprefix("op-"))
            target = request.instance_resource.name if isinstance(request, compute_v1.InsertInstanceRequest) else request.instance
            if target in self.missing:
                raise api_exceptions.NotFound(f"instance {target} was not found")
            if isinstance(request, compute_v1.GetInstanceRequest):
                return compute_v1.Instance(name=target, id=7, status=self.statuses.get(target, "RUNNING"),
                                           zone=f"zones/{ZONE}", labels={"lxcri-deployment": "web"})
            if target in self.failing:
                raise api_exceptions.BadRequest(f"no room for {target}")
            return self.operation(name)
        return method


def with_compute(provider, compute):
    provider.instances = provider.zone_operations = provider.regions = compute
    return provider.backend("vm")


def spec(**changes):
    return {"name": "web", "kind": "vm", "image": "ubuntu-24.04", "size": "small", "tags": {}, "cloud_init": None,
            **changes}


# -- records and native ------------------------------------------------------------------------------

def test_a_record_carries_the_instance_it_was_read_from_and_a_copy_does_not(key_file):
    instances = with_compute(make(key_file), FakeCompute())
    (rec,) = instances.create(spec(), ZONE, ["web-1"])
    assert native_of(rec).name == "web-1" and "native" not in rec
    assert native_of(dict(rec)) is None


@pytest.mark.parametrize("status, action, wanted", [
    ("TERMINATED", "stop", []), ("RUNNING", "start", []), ("RUNNING", "stop", ["stop_unary"]),
    ("TERMINATED", "start", ["start_unary"]), ("SUSPENDED", "start", ["resume_unary"]),
])
def test_power_goes_by_the_status_the_record_was_read_with(key_file, status, action, wanted):
    compute = FakeCompute({"web-1": status})
    instances = with_compute(make(key_file), compute)
    rec = instances._record(compute.get(compute_v1.GetInstanceRequest(instance="web-1", zone=ZONE)))
    compute.calls.clear()
    getattr(instances, f"{action}_one")(rec)
    assert compute.calls == wanted


def test_a_record_without_native_is_read_again_before_power(key_file):
    compute = FakeCompute({"web-1": "TERMINATED"})
    instances = with_compute(make(key_file), compute)
    rec = instances._record(compute.get(compute_v1.GetInstanceRequest(instance="web-1", zone=ZONE)))
    compute.calls.clear()
    instances.stop_one(dict(rec))  # a user's record: what the instance is now, not what it was
    assert compute.calls == ["get"]


# -- creating several members ------------------------------------------------------------------------

def test_a_create_that_fails_for_some_members_raises_partial_failure_with_those_made(key_file):
    instances = with_compute(make(key_file), FakeCompute(failing={"web-2", "web-4"}))
    with pytest.raises(PartialFailure) as failed:
        instances.create(spec(), ZONE, ["web-1", "web-2", "web-3", "web-4"])
    assert sorted(rec["name"] for rec in failed.value.done) == ["web-1", "web-3"]
    messages = str(failed.value).split("; ")
    assert len(messages) == 2 and all(m.startswith("creating web-") and "no room" in m for m in messages)


def test_what_a_failed_create_left_is_said():
    assert cleanup("instance a", "", lambda: None, None) == "no instance a was left behind"
    assert cleanup("service b", "the ", lambda: 1, lambda: None) == "the service b was deleted again"

    def refuse():
        raise RuntimeError("refused")
    assert "the service b was left behind and could not be deleted (refused)" in cleanup("service b", "the ", lambda: 1, refuse)
    assert "whether the instance a was left behind is not known (refused)" in cleanup("instance a", "", refuse, None)


# -- gone, waits -------------------------------------------------------------------------------------

def test_deleting_what_is_gone_already_is_done(key_file):
    provider = make(key_file)
    compute = FakeCompute(missing={"web-1"})
    instances = with_compute(provider, compute)
    instances.delete([{"zone": ZONE, "name": "web-1"}])
    assert compute.calls == ["delete_unary"]
    assert provider.gone(api_exceptions.NotFound("x")) and not provider.gone(api_exceptions.Forbidden("x"))


def test_an_operation_is_awaited_until_the_task_deadline_and_the_timeout_names_it(key_file):
    compute = FakeCompute(pending=True)
    instances = with_compute(make(key_file, seconds=0.3), compute)
    with pytest.raises(WaitTimeout, match=r"0.3s \(wait_timeout\) waiting for GCP operation op-stop_unary \(stop of web-1\)"):
        instances.stop_one({"zone": ZONE, "name": "web-1"})
    # Closer to the deadline than operations.wait may hold on: operations.get, which answers at once.
    assert "wait" not in compute.calls and compute.calls.count("get") > 1


def test_far_from_the_deadline_an_operation_is_awaited_with_operations_wait(key_file):
    compute = FakeCompute()
    instances = with_compute(make(key_file), compute)
    instances._wait(compute_v1.Operation(name="op-1", status=RUNNING), ZONE, "stop of web-1")
    assert compute.calls == ["wait"]


# -- where, TLS, validation --------------------------------------------------------------------------

def test_a_region_means_its_first_zone_for_vms_looked_up_once_and_stays_a_region_for_containers(key_file):
    provider = make(key_file)
    compute = FakeCompute()
    with_compute(provider, compute)
    assert provider.region({"region": "europe-west1"}) == "europe-west1-b"
    assert provider.region({"region": "europe-west1", "kind": "vm"}) == "europe-west1-b"
    assert provider.region({"region": "europe-west1", "kind": "container"}) == "europe-west1"
    assert compute.calls == ["get"]


@pytest.mark.parametrize("connection, verify", [
    ({}, True), ({"ca_bundle": "/etc/ca.pem"}, "/etc/ca.pem"),
    ({"validate_certs": False, "ca_bundle": "/etc/ca.pem"}, False),
])
def test_every_session_verifies_tls_as_tls_verify_says(key_file, connection, verify):
    provider = make(key_file, **connection)
    sessions = [provider.instances._transport._session, provider.monitoring.session]
    if run.load_sdk():
        sessions.append(provider.backend("container").services._transport._session)
    assert provider.verify == verify and all(session.verify == verify for session in sessions)


def test_provider_wide_checks_run_for_every_state_and_the_kinds_only_when_not_absent():
    absent = {"name": "api", "kind": "container", "state": "absent", "tags": {"Env": "x"}, "container": {}}
    with pytest.raises(SpecError, match="cannot be a GCP label key"):
        GcpProvider.validate(absent)
    GcpProvider.validate(dict(absent, tags={}))  # the container's settings are not checked for a removal
    with pytest.raises(SpecError, match="user_data is too long"):
        GcpProvider.validate(spec(state="absent", cloud_init="x" * (256 * 1024 + 1)))


def test_relabelling_keeps_the_collections_and_googles_labels():
    labels = {"lxcri-deployment": "web", "goog-x": "1", "env": "prod", "team": "a"}
    assert relabelled(labels, {"env": "dev"}, purge=True) == {"lxcri-deployment": "web", "goog-x": "1", "env": "dev"}
    assert relabelled(labels, {"env": "dev"}, purge=False) == dict(labels, env="dev")


# -- Cloud Run ---------------------------------------------------------------------------------------

def test_without_google_cloud_run_a_vm_task_works_and_no_container_is_listed(key_file, monkeypatch):
    monkeypatch.setattr(run, "load_sdk", lambda: False)
    provider = make(key_file)
    compute = FakeCompute()
    with_compute(provider, compute)
    compute.list = lambda request, retry=None, timeout=None: types.SimpleNamespace(
        pages=iter([compute_v1.InstanceList(items=[], next_page_token="")]))
    assert provider.list(ZONE) == []
    with pytest.raises(ProviderError, match="containers on gcp need google-cloud-run"):
        provider.find("api", ZONE, "container")


def test_listings_follow_every_page(key_file):
    provider = make(key_file)
    compute = FakeCompute()
    instances = with_compute(provider, compute)
    pages = {"": ["a", "b"], "t1": ["c"], "t2": ["d"]}
    tokens = {"": "t1", "t1": "t2", "t2": ""}
    seen = []

    def listing(request, retry=None, timeout=None):
        seen.append(request.page_token)
        items = [compute_v1.Instance(name=name, zone=f"zones/{ZONE}") for name in pages[request.page_token]]
        return types.SimpleNamespace(pages=iter([compute_v1.InstanceList(items=items, next_page_token=tokens[request.page_token])]))
    compute.list = listing
    assert [rec["name"] for rec in instances.list(ZONE, {})] == ["a", "b", "c", "d"]
    assert seen == ["", "t1", "t2"]


class FakeRun:
    """ServicesClient with one service; `calls` says what was asked."""

    def __init__(self, service):
        self.service, self.calls = service, []

    def get_service(self, request, retry=None, timeout=None):
        self.calls.append("get_service")
        if request.name != self.service.name:
            raise api_exceptions.NotFound(f"{request.name} not found")
        return self.service

    def get_iam_policy(self, request, retry=None, timeout=None):
        from google.iam.v1 import policy_pb2

        self.calls.append("get_iam_policy")
        return policy_pb2.Policy()


def test_cloud_run_reads_settings_from_the_service_a_record_was_read_from_else_again(key_file):
    if not run.load_sdk():
        pytest.skip("google-cloud-run is not installed")
    svc = run.run_v2.Service(
        name="projects/p/locations/us-central1/services/api", uid="u-1", labels={"lxcri-deployment": "api"},
        template=run.run_v2.RevisionTemplate(containers=[run.run_v2.Container(image="nginx:1.27")]))
    services = make(key_file).backend("container")
    services._client = fake = FakeRun(svc)
    (rec,) = services.find("api", ZONE)
    fake.calls.clear()
    assert services.config(rec)["image"] == "nginx:1.27" and fake.calls == ["get_iam_policy"]
    fake.calls.clear()
    assert services.config(dict(rec))["image"] == "nginx:1.27" and fake.calls == ["get_service", "get_iam_policy"]
    assert [r["id"] for r in services.refresh([dict(rec)])] == ["u-1"]
    assert services.refresh([dict(rec, id="u-0")]) == []  # one deleted and made again is someone else
    assert services.refresh([dict(rec, name="gone")]) == []


def test_cloud_run_not_enabled_means_no_container_deployments_and_a_change_says_how_to_enable_it(key_file):
    if not run.load_sdk():
        pytest.skip("google-cloud-run is not installed")
    services = make(key_file).backend("container")
    refused = api_exceptions.PermissionDenied("Cloud Run Admin API has not been used in project p before or it is disabled")

    class Disabled:
        def get_service(self, request, retry=None, timeout=None):
            raise refused
        list_services = delete_service = get_service
    services._client = Disabled()
    assert services.find("api", ZONE) == [] and services.list(ZONE, {}) == []
    with pytest.raises(ProviderError, match="the Cloud Run Admin API is not enabled in project p: enable run.googleapis.com"):
        services.delete_one({"region": "us-central1", "name": "api"})
