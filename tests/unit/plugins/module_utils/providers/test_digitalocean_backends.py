"""The DigitalOcean backends on a fake pydo client: "gone" decided once, pages, partial creates, records
handed in without what they were read from."""
import itertools
from types import SimpleNamespace

import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import PartialFailure, ProviderError, native_of
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.answers import ErrorAnswer, body
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.provider import DigitalOceanProvider
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline
from azure_core_response import AzureCoreResponse

pytest.importorskip("pydo")
exceptions = pytest.importorskip("azure.core.exceptions")

NOT_FOUND = {"id": "not_found", "message": "The resource you were accessing could not be found."}
SPEC = {"name": "web", "kind": "vm", "image": "ubuntu-24.04", "size": "small", "tags": {"env": "prod"},
        "cloud_init": None, "wait": True}


class FakeDigitalOcean:
    """The few pydo operations the droplet and app backends use, on dicts; 404s answered as bodies, as pydo does."""

    def __init__(self):
        self.droplets_by_id, self.apps_by_id, self.calls = {}, {}, []
        self.ids = itertools.count(500000001)
        self.refuse = set()  # member names whose create call fails
        self.errored = set()  # member names whose create action errors
        self.page_size = None
        self.droplets = SimpleNamespace(create=self.create, list=self.list, get=self.get, destroy=self.destroy,
                                        destroy_by_tag=self.record("destroy_by_tag"))
        self.actions = SimpleNamespace(get=self.action)
        self.tags = SimpleNamespace(create=lambda body: {"tag": {"name": body["name"]}}, get=self.tag,
                                    delete=self.record("tags.delete"), assign_resources=self.record("assign"),
                                    unassign_resources=self.record("unassign"))
        self.apps = SimpleNamespace(get=lambda app_id: {"app": self.apps_by_id[app_id]} if app_id in self.apps_by_id else NOT_FOUND)

    def record(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def create(self, body):
        self.calls.append(("create", tuple(body["names"]), {}))
        if self.refuse & set(body["names"]):
            raise RuntimeError("DigitalOcean answered 422 unprocessable_entity: no capacity")
        made = []
        for name in body["names"]:
            droplet = {"id": next(self.ids), "name": name, "status": "new", "tags": list(body["tags"]),
                       "region": {"slug": body["region"]}, "size_slug": body["size"]}
            self.droplets_by_id[droplet["id"]] = droplet
            made.append(droplet)
        return {"droplets": made, "links": {"actions": [{"id": d["id"] + 1000, "rel": "create"} for d in made]}}

    def action(self, action_id):
        droplet = self.droplets_by_id[action_id - 1000]
        status = "errored" if droplet["name"] in self.errored else "completed"
        if status == "completed":
            droplet["status"] = "active"
        return {"action": {"id": action_id, "type": "create", "status": status, "resource_id": droplet["id"]}}

    def list(self, tag_name, per_page, page):
        self.page_size = self.page_size or per_page
        found = [d for d in self.droplets_by_id.values() if tag_name in d["tags"]]
        chunk = found[(page - 1) * 2:page * 2]  # two a page, so that every listing has pages to follow
        more = page * 2 < len(found)
        return {"droplets": chunk, "links": {"pages": {"next": "next"} if more else {}}}

    def get(self, droplet_id):
        self.calls.append(("get", (droplet_id,), {}))
        return {"droplet": self.droplets_by_id[droplet_id]} if droplet_id in self.droplets_by_id else NOT_FOUND

    def destroy(self, droplet_id):
        self.calls.append(("destroy", (droplet_id,), {}))
        return None if self.droplets_by_id.pop(droplet_id, None) else NOT_FOUND

    def tag(self, name):
        count = sum(name in d["tags"] for d in self.droplets_by_id.values())
        return {"tag": {"name": name, "resources": {"count": count, "droplets": {"count": count}}}}


@pytest.fixture
def cloud():
    return FakeDigitalOcean()


@pytest.fixture
def provider(cloud):
    provider = DigitalOceanProvider({"token": "dop_v1_test", "endpoint": "https://127.0.0.1:9"}, deadline=Deadline(5))
    provider.client = cloud
    return provider


def _http_error(status, body=None):
    return exceptions.HttpResponseError(response=AzureCoreResponse(status, body or {"id": "x", "message": "m"}))


def test_gone_is_a_404_raised_or_answered_as_a_body(provider):
    assert provider.gone(ErrorAnswer("droplet 1: DigitalOcean answered not_found: ...", "not_found"))
    assert provider.gone(_http_error(404, NOT_FOUND))
    wrapped = ProviderError("DigitalOcean answered 404 not_found")
    wrapped.__cause__ = _http_error(404, NOT_FOUND)
    assert provider.gone(wrapped)
    assert not provider.gone(_http_error(422)) and not provider.gone(ErrorAnswer("bad", "unprocessable_entity"))
    assert provider.unless_gone(provider.checked(lambda: NOT_FOUND, "droplet")) is None
    with pytest.raises(ErrorAnswer, match="droplet 7: DigitalOcean answered not_found"):
        provider.answer(lambda: NOT_FOUND, key="droplet", what="droplet 7")


def test_answers_are_checked_with_and_without_a_key():
    assert body({"droplet": {"id": 1}}, "droplet") == {"id": 1}
    assert body(None) is None and body({"id": "app-uuid"}) == {"id": "app-uuid"}  # apps.delete answers its id
    with pytest.raises(ErrorAnswer, match="listing: DigitalOcean answered without droplets"):
        body({}, "droplets", "listing")


def test_listings_follow_every_page(provider, cloud):
    for name in ("web-1", "web-2", "web-3", "web-4", "web-5"):
        cloud.create({"names": [name], "tags": ["lxcri-deployment:web", "lxcri-kind:vm"], "region": "fra1",
                      "size": "s-1vcpu-2gb"})
    assert [rec["name"] for rec in provider.find("web", "fra1", "vm")] == ["web-1", "web-2", "web-3", "web-4", "web-5"]
    assert cloud.page_size == 200


def test_a_create_that_fails_for_some_members_keeps_the_others_and_removes_what_the_failed_ones_made(provider, cloud):
    names = [f"web-{i}" for i in range(1, 13)]  # two create calls: ten members and two
    cloud.refuse, cloud.errored = {"web-12"}, {"web-3"}
    with pytest.raises(PartialFailure) as failure:
        provider.create(SPEC, "fra1", names)
    done = failure.value.done
    assert sorted(rec["name"] for rec in done) == sorted(set(names) - {"web-3", "web-11", "web-12"})
    assert all(rec["state"] == "running" and native_of(rec) for rec in done)
    messages = str(failure.value).split("; creating ")
    assert len(messages) == 3
    assert messages[0].startswith("creating web-3 in DigitalOcean failed: the create action of droplet web-3 errored; "
                                  "the droplet this run had created was destroyed again: web-3 (500000003)")
    assert messages[1] == "web-11 in DigitalOcean failed: DigitalOcean answered 422 unprocessable_entity: no capacity"
    assert messages[2].startswith("web-12 in DigitalOcean failed")
    assert ("destroy", (500000003,), {}) in cloud.calls
    assert sorted(d["name"] for d in cloud.droplets_by_id.values()) == sorted(rec["name"] for rec in done)


def test_a_create_that_fails_for_every_member_leaves_nothing(provider, cloud):
    cloud.errored = {"web-1", "web-2"}
    with pytest.raises(PartialFailure) as failure:
        provider.create(SPEC, "fra1", ["web-1", "web-2"])
    assert failure.value.done == [] and cloud.droplets_by_id == {}
    assert ("tags.delete", ("lxcri-deployment:web",), {}) in cloud.calls


def test_a_create_that_runs_out_of_time_names_what_it_waited_for(cloud):
    provider = DigitalOceanProvider({"token": "t", "endpoint": "https://127.0.0.1:9"}, deadline=Deadline(0, "wait_timeout"))
    provider.client = cloud
    cloud.action = lambda action_id: {"action": {"id": action_id, "status": "in-progress"}}
    cloud.actions.get = cloud.action
    with pytest.raises(PartialFailure) as failure:
        provider.create(SPEC, "fra1", ["web-1"])
    assert "timed out after 0s (wait_timeout) waiting for creation of web-1" in str(failure.value)
    assert "destroyed again: web-1" in str(failure.value) and cloud.droplets_by_id == {}


def test_records_handed_in_without_native_are_read_again(provider, cloud):
    provider.create(dict(SPEC, wait=False), "fra1", ["web-1"])
    found = provider.find("web", "fra1", "vm")
    cloud.calls.clear()
    provider.update_tags(found, {"team": "a"}, True)  # what find read: no droplets.get
    assert not [call for call in cloud.calls if call[0] == "get"] and native_of(found[0]) is None
    handed = [dict(rec) for rec in provider.find("web", "fra1", "vm")]
    cloud.calls.clear()
    provider.update_tags(handed, {"env": "prod"}, True)
    assert [call[0] for call in cloud.calls].count("get") == 1
    assert sorted(provider.refresh(handed)[0]) == sorted(handed[0])
    provider.delete(handed)  # reads the tags it carries again, and drops the unused ones
    assert cloud.droplets_by_id == {} and ("tags.delete", ("lxcri-deployment:web",), {}) in cloud.calls
    provider.delete(handed)  # already gone: nothing to do


def test_an_app_record_without_native_is_read_again_and_a_gone_one_says_so(provider, cloud):
    cloud.apps_by_id["a1"] = {"id": "a1", "spec": {"name": "web", "services": [{"name": "web", "http_port": 80,
                                                                               "instance_count": 2}]}}
    apps = provider.backend("container")
    config = apps.config({"id": "a1", "name": "web", "image": "nginx:1.27"})
    assert (config["port"], config["replicas"]) == (80, 2)
    assert apps.refresh([{"id": "gone", "name": "old"}]) == []
    with pytest.raises(ProviderError, match=r"app old \(gone\) is gone"):
        apps.config({"id": "gone", "name": "old", "image": "x"})
