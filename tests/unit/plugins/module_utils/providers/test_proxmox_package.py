"""The proxmox package without a cluster: a small fake PVE behind proxmoxer's call shape (api.nodes(n).qemu(id)...).

What the move to a package added: spec normalisation for every state, "gone" decided once, PVE tasks bounded
by the task's deadline, partial creates raising PartialFailure with the members made, TLS from tls_verify,
an id taken by another client moving on to a spare one, and records handed in without native.
"""
import itertools

import pytest

from proxmoxer.core import ResourceException

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import PartialFailure, ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox import provider as provider_module
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.guests import meta
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.provider import ProxmoxProvider
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import RetryPolicy
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline, WaitTimeout

CONNECTION = {"endpoint": "https://pve.example.com:8006", "token_id": "root@pam!t", "token_secret": "s", "region": "pve1"}
TEMPLATE = 9000


def missing(what):
    return ResourceException(500, "Internal Server Error", f"Configuration file '{what}' does not exist")


class Api:
    """proxmoxer's shape: attributes and calls build the path, get/post/put/delete send it."""

    def __init__(self, pve, path=()):
        self._pve, self._path = pve, path

    def __getattr__(self, name):
        if name in ("get", "post", "put", "delete"):
            return lambda **kwargs: self._pve.handle(name, list(self._path), kwargs)
        return Api(self._pve, self._path + (name,))

    def __call__(self, *segments):
        return Api(self._pve, self._path + tuple(str(s) for s in segments))


class FakePve:
    def __init__(self):
        self.guests = {TEMPLATE: {"vmid": TEMPLATE, "node": "pve1", "type": "qemu", "name": "debian-12-cloudinit",
                                  "template": 1, "status": "stopped", "config": {}}}
        self.tasks = {}
        self.upids = itertools.count()
        self.calls = []
        self.failing_starts = set()  # member names whose start task fails
        self.taken = set()  # ids another client takes just before ours
        self.hung = False  # tasks never finish

    def task(self, ok=True):
        upid = f"UPID:pve1:{next(self.upids)}"
        self.tasks[upid] = "OK" if ok else "start failed: boom"
        return upid

    def guest(self, vmid):
        if int(vmid) not in self.guests:
            raise missing(f"nodes/pve1/qemu/{vmid}.conf")
        return self.guests[int(vmid)]

    def handle(self, method, path, kwargs):
        self.calls.append((method, "/".join(path)))
        if path == ["nodes"]:
            return [{"node": "pve1"}]
        if path == ["cluster", "resources"]:
            return [{k: v for k, v in g.items() if k != "config"} for g in self.guests.values()]
        if path == ["cluster", "nextid"]:
            return "100"
        if path[0] == "nodes" and path[2] == "tasks":
            return {"status": "running"} if self.hung else {"status": "stopped", "exitstatus": self.tasks[path[3]],
                                                            "type": "qmstart", "id": "x"}
        vmid = int(path[3])
        rest = path[4:]
        if rest == ["clone"] and method == "post":
            if kwargs["newid"] in self.taken or kwargs["newid"] in self.guests:
                raise ResourceException(500, "Internal Server Error", f"unable to create VM {kwargs['newid']}: config file already exists")
            self.guests[kwargs["newid"]] = {"vmid": kwargs["newid"], "node": kwargs["target"], "type": "qemu",
                                            "name": kwargs["name"], "status": "stopped", "config": {}}
            return self.task()
        guest = self.guest(vmid)
        if rest == ["config"]:
            if method == "get":
                return dict(guest["config"], digest="d")
            guest["config"].update({k: v for k, v in kwargs.items() if k != "digest"})
            guest["tags"] = guest["config"].get("tags", guest.get("tags"))
            return None
        if rest == ["status", "current"]:
            return {"status": guest["status"]}
        if rest == ["status", "start"]:
            ok = guest["name"] not in self.failing_starts
            if ok:
                guest["status"] = "running"
            return self.task(ok)
        if rest == ["status", "stop"]:
            guest["status"] = "stopped"
            return self.task()
        if rest == [] and method == "delete":
            del self.guests[vmid]
            return self.task()
        raise AssertionError(f"unexpected {method} {path}")


@pytest.fixture
def pve():
    return FakePve()


def provider(pve, deadline=None, **connection):
    made = ProxmoxProvider(dict(CONNECTION, **connection), policy=RetryPolicy(attempts=1), deadline=deadline)
    made._api = Api(pve)
    return made


def vm_spec(**changes):
    spec = {"name": "web", "kind": "vm", "state": "running", "count": 2, "image": "debian-12", "size": "small",
            "tags": {"team": "a"}, "purge_tags": False, "ssh_public_key": None, "user_data": None}
    return dict(spec, **changes)


def test_container_specs_take_image_and_size_from_the_container_for_every_state():
    for state in ("present", "absent"):
        spec = {"name": "ct", "kind": "container", "state": state,
                "container": {"image": "debian-12", "cpu": 1.5, "memory": 1024, "env": {"A": "1"} if state == "absent" else {}}}
        ProxmoxProvider.validate(spec)  # absent: no container checks (env is not refused), but normalised
        assert (spec["image"], spec["size"]) == ("debian-12", "2c1024m")
    with pytest.raises(SpecError, match="container.env is not supported on proxmox"):
        ProxmoxProvider.validate({"name": "ct", "kind": "container", "state": "present",
                                  "container": {"image": "debian-12", "memory": 512, "env": {"A": "1"}}})


def test_user_data_is_refused_whatever_the_state():
    for state in ("present", "absent"):
        with pytest.raises(SpecError, match="user_data is not supported on proxmox"):
            ProxmoxProvider.validate(vm_spec(state=state, user_data="#cloud-config"))


def test_gone_is_pves_does_not_exist():
    proxmox = ProxmoxProvider(CONNECTION)
    assert proxmox.gone(missing("nodes/pve1/qemu/555.conf"))
    assert proxmox.gone(ResourceException(500, "Internal Server Error", "rrd error: No such file or directory"))
    assert not proxmox.gone(ResourceException(500, "Internal Server Error", "permission denied"))
    assert not proxmox.gone(ValueError("does not exist"))


@pytest.mark.parametrize("connection, verify", [
    ({}, True), ({"ca_bundle": "/ca.pem"}, "/ca.pem"), ({"ca_bundle": "/ca.pem", "validate_certs": False}, False),
])
def test_the_client_verifies_tls_as_tls_verify_says(monkeypatch, connection, verify):
    seen = {}
    monkeypatch.setattr(provider_module, "ProxmoxAPI", lambda host, **kwargs: seen.update(kwargs) or object())
    ProxmoxProvider(dict(CONNECTION, **connection)).api
    assert seen["verify_ssl"] == verify


def test_a_task_waits_until_the_tasks_deadline(pve):
    pve.hung = True
    proxmox = provider(pve, deadline=Deadline(0.3, "wait_timeout"))
    with pytest.raises(WaitTimeout, match=r"timed out after 0.3s \(wait_timeout\) waiting for Proxmox task UPID:pve1:0"):
        proxmox.task("pve1", pve.task())


def test_a_create_that_fails_for_some_members_keeps_the_others_for_the_rollback(pve):
    pve.failing_starts = {"web-2", "web-3"}
    proxmox = provider(pve)
    with pytest.raises(PartialFailure) as failed:
        proxmox.create(vm_spec(count=3), "pve1", ["web-1", "web-2", "web-3"])
    assert [rec["name"] for rec in failed.value.done] == ["web-1"]
    message = str(failed.value)
    assert message.count("creating web-") == 2 and "; " in message
    assert "creating web-2 failed and VM 101 was removed again: " in message and "start failed: boom" in message
    assert sorted(g["name"] for g in pve.guests.values() if not g.get("template")) == ["web-1"]


def test_a_single_failed_member_raises_as_it_came(pve):
    pve.failing_starts = {"web-1"}
    with pytest.raises(ProviderError) as failed:
        provider(pve).create(vm_spec(count=1), "pve1", ["web-1"])
    assert not isinstance(failed.value, PartialFailure)
    assert str(failed.value).startswith("creating web-1 failed and VM 100 was removed again: ")


def test_an_id_taken_meanwhile_moves_on_to_a_spare_one(pve):
    pve.taken = {100}
    made = provider(pve).create(vm_spec(count=1), "pve1", ["web-1"])
    assert [(rec["name"], rec["id"], rec["state"]) for rec in made] == [("web-1", "101", "running")]
    assert made[0].native["config"]["cores"] == 1  # what the record was read from


def test_records_handed_in_need_only_their_id_and_a_gone_one_is_left_out(pve):
    proxmox = provider(pve)
    made = proxmox.create(vm_spec(), "pve1", ["web-1", "web-2"])
    handed = [{"id": rec["id"], "kind": "vm"} for rec in made] + [{"id": "555", "kind": "vm"}]
    fresh = proxmox.refresh(handed)
    assert sorted(rec["name"] for rec in fresh) == ["web-1", "web-2"]
    assert all(rec.native is not None and rec["tags"] == {"team": "a"} for rec in fresh)


def test_deleting_what_is_already_gone_is_no_error(pve):
    proxmox = provider(pve)
    rec = proxmox.create(vm_spec(count=1), "pve1", ["web-1"])[0]
    proxmox.delete([dict(rec)])
    proxmox.delete([dict(rec)])
    assert int(rec["id"]) not in pve.guests


def test_retagging_keeps_the_metadata_and_reads_the_config_it_writes(pve):
    proxmox = provider(pve)
    rec = dict(proxmox.create(vm_spec(count=1), "pve1", ["web-1"])[0])
    before = meta(pve.guests[int(rec["id"])]["config"]["description"])
    seen = len(pve.calls)
    proxmox.update_tags([rec], {"env": "prod"}, purge=False)
    assert pve.calls[seen:] == [("get", "nodes/pve1/qemu/100/config"), ("put", "nodes/pve1/qemu/100/config")]
    after = meta(pve.guests[int(rec["id"])]["config"]["description"])
    assert after == dict(before, tags={"team": "a", "env": "prod"})
    assert [r["tags"] for r in proxmox.find("web", "pve1", "vm")] == [{"team": "a", "env": "prod"}]


def test_a_vm_and_a_container_deployment_of_one_name_never_see_each_other(pve):
    proxmox = provider(pve)
    proxmox.create(vm_spec(count=1), "pve1", ["web-1"])
    pve.guests[300] = {"vmid": 300, "node": "pve1", "type": "lxc", "name": "web-1", "status": "running",
                       "tags": "lxcri;lxcri-web", "config": {}}
    assert [rec["id"] for rec in proxmox.find("web", "pve1", "vm")] == ["100"]
    assert [rec["id"] for rec in proxmox.find("web", "pve1", "container")] == ["300"]
    assert sorted(rec["kind"] for rec in proxmox.list("pve1")) == ["container", "vm"]


def test_a_half_made_member_that_cannot_be_removed_is_named_for_removal_by_hand(pve, monkeypatch):
    pve.failing_starts = {"web-1"}
    proxmox = provider(pve)
    backend = proxmox.backend("vm")
    monkeypatch.setattr(backend, "destroy", lambda rec: (item for item in ()).throw(ProviderError("node busy")))
    with pytest.raises(ProviderError) as failed:
        proxmox.create(vm_spec(count=1), "pve1", ["web-1"])
    assert str(failed.value).startswith("creating web-1 failed (Proxmox task ")
    assert str(failed.value).endswith("and removing the half-made VM 100 failed too (node busy): remove it by hand "
                                      "(qm destroy 100 --purge on pve1)")
