"""The azure package's own logic without a cloud: records carry what they were read from (and are read again
without it), one deadline for long-running operations, "already gone" in one place, listings page by page,
a partial create, and validation by provider and by kind."""

import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, PartialFailure, ProviderError, native_of
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import arm
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import provider as az
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import RetryPolicy
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline, WaitTimeout
from azure_core_response import AzureCoreResponse

exceptions = pytest.importorskip("azure.core.exceptions")
pytest.importorskip("azure.mgmt.compute")

CONNECTION = {
    "subscription_id": "00000000-0000-0000-0000-000000000001", "tenant_id": "00000000-0000-0000-0000-000000000002",
    "client_id": "00000000-0000-0000-0000-000000000003", "client_secret": "s3cr3t-value",
    "authority_host": "https://127.0.0.1:9", "endpoint": "https://127.0.0.1:9",
}
RG = "/subscriptions/s/resourceGroups/elsewhere/providers"
VM = {
    "id": f"{RG}/Microsoft.Compute/virtualMachines/web-1", "name": "web-1", "location": "westeurope",
    "tags": {"lxcri-deployment": "web", "lxcri-kind": "vm", "lxcri-image": "ubuntu-24.04", "env": "prod"},
    "properties": {"vmId": "11111111-2222-3333-4444-555555555555", "provisioningState": "Succeeded",
                   "hardwareProfile": {"vmSize": "Standard_B1ms"}},
}


@pytest.fixture
def provider():
    return az.AzureProvider(dict(CONNECTION), policy=RetryPolicy(attempts=1))


def _not_found():
    answer = {"error": {"code": "ResourceNotFound", "message": "not there"}}
    return exceptions.ResourceNotFoundError(response=AzureCoreResponse(404, answer))


# -- records: native, or read again --------------------------------------------------------------------

def test_a_vm_record_knows_its_resource_group_from_what_it_was_read_from(provider):
    vms = provider.backend("vm")
    rec = vms.record(VM, {}, {})
    assert native_of(rec) is VM
    assert vms.group_of(rec) == "elsewhere" and vms.arm_id(rec) == VM["id"]
    copy = dict(rec)  # a record handed in: no native, so the deployment's group
    assert vms.group_of(copy) == "lxcri-web"
    assert vms.arm_id(copy) == f"/subscriptions/{CONNECTION['subscription_id']}/resourceGroups/lxcri-web/providers/" \
                               "Microsoft.Compute/virtualMachines/web-1"


def test_retagging_a_vm_uses_its_native_tags_and_reads_a_copy_again(provider, monkeypatch):
    vms = provider.backend("vm")
    calls = []
    monkeypatch.setattr(provider, "get", lambda func, *args: calls.append(("get", *args)) or dict(VM, tags={
        "lxcri-deployment": "web", "lxcri-kind": "vm", "lxcri-image": "ubuntu-24.04", "env": "old"}))
    monkeypatch.setattr(provider, "lro", lambda begin, *args, **kwargs: calls.append(("update", *args)))
    rec = vms.record(VM, {}, {})
    own = {"lxcri-deployment": "web", "lxcri-kind": "vm", "lxcri-image": "ubuntu-24.04"}
    vms.tag_one(rec, {"env": "prod"}, True)
    assert calls == []  # what it was read from already has the tags
    vms.tag_one(rec, {"team": "a"}, False)
    assert calls == [("update", "elsewhere", "web-1", {"tags": {"env": "prod", "team": "a", **own}})]
    calls.clear()
    vms.tag_one(dict(rec), {"env": "prod"}, True)
    assert calls == [("get", "lxcri-web", "web-1"), ("update", "lxcri-web", "web-1", {"tags": {"env": "prod", **own}})]


def test_container_config_reads_the_group_again_for_a_record_handed_in(provider, monkeypatch):
    groups = provider.backend("container")
    doc = {"id": f"{RG}/Microsoft.ContainerInstance/containerGroups/web", "name": "web", "location": "westeurope",
           "tags": {"lxcri-deployment": "web", "lxcri-kind": "container", "lxcri-replicas": "1"},
           "properties": {"containers": [{"name": "web", "properties": {"image": "nginx:1.27"}}]}}
    reads = []
    monkeypatch.setattr(groups, "read", lambda arm_id: reads.append(arm_id) or doc)
    rec = groups.record(doc)
    assert groups.config(rec)["image"] == "nginx:1.27" and reads == []
    assert groups.config(dict(rec))["image"] == "nginx:1.27" and reads == [doc["id"]]
    monkeypatch.setattr(groups, "read", lambda arm_id: None)
    with pytest.raises(ProviderError, match="container group web .* is gone"):
        groups.config(dict(rec))


def test_every_tag_keeps_the_collections_own():
    raw = {"lxcri-deployment": "web", "env": "prod", "team": "a"}
    assert arm.every_tag(raw, {"env": "test"}, True) == {"env": "test", "lxcri-deployment": "web"}
    assert arm.every_tag(raw, {"env": "test"}, False) == {"env": "test", "team": "a", "lxcri-deployment": "web"}


# -- the connection's policies -------------------------------------------------------------------------

class _Poller:
    def __init__(self, done):
        self._done = done
        self.timeouts = []

    def wait(self, timeout=None):
        self.timeouts.append(timeout)

    def done(self):
        return self._done

    def result(self):
        return {"id": "x"}


def test_a_long_running_operation_waits_within_the_tasks_deadline():
    provider = az.AzureProvider(dict(CONNECTION), policy=RetryPolicy(attempts=1), deadline=Deadline(0.5, "wait_timeout"))
    poller = _Poller(done=False)

    def begin_create_or_update(group, name, body, polling=None):
        return poller

    with pytest.raises(WaitTimeout) as error:
        provider.lro(begin_create_or_update, "lxcri-web", "web-1", {})
    assert "(wait_timeout) waiting for the Azure operation create_or_update of web-1" in str(error.value)
    assert 0 < poller.timeouts[0] <= 0.5
    finished = _Poller(done=True)
    assert provider.lro(lambda group, name, polling=None: finished, "g", "n") == {"id": "x"}


def test_gone_is_decided_once_and_removing_what_is_gone_passes(provider, monkeypatch):
    assert provider.gone(_not_found())
    assert not provider.gone(exceptions.HttpResponseError(response=AzureCoreResponse(409, {"error": {"code": "Conflict"}})))

    def lro(begin, *args, **kwargs):
        raise _not_found()

    monkeypatch.setattr(provider, "lro", lro)
    provider.remove(None, "g", "n")  # gone already: what was asked

    def conflict(begin, *args, **kwargs):
        raise ProviderError("locked")

    monkeypatch.setattr(provider, "lro", conflict)
    with pytest.raises(ProviderError, match="locked"):
        provider.remove(None, "g", "n")

    def missing():
        raise _not_found()

    assert provider.get(missing) is None


def test_listings_follow_the_continuation_token_a_page_a_call(provider):
    pages = {None: (["a", "b"], "t1"), "t1": (["c"], "t2"), "t2": ([], None)}
    asked = []

    class Pages:
        def __init__(self, token):
            asked.append(token)
            self.items, self.continuation_token = pages[token]

        def __next__(self):
            return [{"name": item} for item in self.items]

    class Pager:
        def by_page(self, continuation_token=None):
            return Pages(continuation_token)

    assert provider.listing(Pager) == [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert asked == [None, "t1", "t2"]


def test_an_sdk_package_some_tasks_need_is_named_when_missing(provider, monkeypatch):
    def no_module(name):
        raise ImportError(name)

    monkeypatch.setattr(az.importlib, "import_module", no_module)
    with pytest.raises(MissingSDK, match="kind container on azure needs azure-mgmt-containerinstance: pip install"):
        provider.backend("container").aci


# -- a create that fails for some members -------------------------------------------------------------

def test_a_partial_create_names_each_failed_member_and_returns_the_made_ones(provider, monkeypatch):
    vms = provider.backend("vm")
    monkeypatch.setattr(provider, "ensure_group", lambda deployment, region: "lxcri-web")
    monkeypatch.setattr(vms, "refuse_taken", lambda *args: None)
    monkeypatch.setattr(vms, "ensure_network", lambda *args: "subnet")

    def create_one(spec, group, region, subnet_id, key, member):
        if member != "web-2":
            raise ProviderError(f"creating {member} failed: quota; what this run had made for it was removed again")
        return vms.record(dict(VM, name=member), {}, {})

    monkeypatch.setattr(vms, "create_one", create_one)
    spec = {"name": "web", "kind": "vm", "ssh_public_key": "ssh-ed25519 AAAA test"}
    with pytest.raises(PartialFailure) as error:
        provider.create(spec, "westeurope", ["web-1", "web-2", "web-3"])
    assert [rec["name"] for rec in error.value.done] == ["web-2"]
    assert str(error.value) == ("creating web-1 failed: quota; what this run had made for it was removed again; "
                                "creating web-3 failed: quota; what this run had made for it was removed again")


# -- validation ---------------------------------------------------------------------------------------

def test_tags_and_user_data_are_checked_for_every_state_the_kind_only_when_it_stays():
    windows = {"name": "web", "kind": "vm", "image": "MicrosoftWindowsServer:WindowsServer:2022-datacenter:latest",
               "tags": {}, "cloud_init": None}
    with pytest.raises(SpecError, match="Windows image"):
        az.AzureProvider.validate(windows)
    az.AzureProvider.validate(dict(windows, state="absent"))  # removing needs the name and kind only
    with pytest.raises(SpecError, match="key 'a/b'"):
        az.AzureProvider.validate(dict(windows, state="absent", tags={"a/b": "x"}))
    with pytest.raises(SpecError, match="customData holds at most 65535"):
        az.AzureProvider.validate(dict(windows, state="absent", cloud_init="x" * 65536))
    with pytest.raises(SpecError, match="azure deploys kind vm and container"):
        az.AzureProvider.validate({"name": "f", "kind": "function", "state": "absent"})


# -- monitoring -----------------------------------------------------------------------------------------

def test_alarm_targets_map_back_to_vm_ids_listing_only_groups_not_at_hand(provider, monkeypatch):
    listed = []
    other = "/subscriptions/s/resourceGroups/other/providers/Microsoft.Compute/virtualMachines/db-1"
    monkeypatch.setattr(provider.backend("vm"), "vm_ids", lambda group: listed.append(group) or {other.lower(): "db-id"})
    known = {VM["id"].lower(): "web-id"}
    assert provider.monitoring._targets("vm", [VM["id"]], known) == ["web-id"] and listed == []
    assert provider.monitoring._targets("vm", [VM["id"], other], known) == ["web-id", "db-id"] and listed == ["other"]
    assert provider.monitoring._targets("container", ["/a/b"]) == ["/a/b"]
