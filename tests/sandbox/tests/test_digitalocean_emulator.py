"""The DigitalOcean emulator as the official pydo client sees it (https, CA bundle, default settings)."""
import ipaddress
import json
import ssl
import time
import urllib.request

import pydo
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.rest import HttpRequest

from tests.sandbox.emulators import digitalocean

TOKEN = "dop_v1_sandbox_token"
IMAGE = "ubuntu-24-04-x64"


@pytest.fixture
def endpoint(serve, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    return serve(digitalocean.make_server)


@pytest.fixture
def client(endpoint, sandbox_tls):
    return pydo.Client(token=TOKEN, endpoint=endpoint, connection_verify=sandbox_tls[0])


def with_status(call, *args, **kwargs):
    """(HTTP status, body, response headers) of a pydo call."""
    return call(*args, cls=lambda pipeline, body, headers: (pipeline.http_response.status_code, body, headers),
                **kwargs)


def wait_for_action(client, action_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        action = client.actions.get(action_id)["action"]
        if action["status"] != "in-progress" or time.monotonic() > deadline:
            return action
        time.sleep(0.05)


def create(client, names, size="s-1vcpu-1gb", tags=None):
    body = {"names": names, "region": "fra1", "size": size, "image": IMAGE}
    if tags is not None:
        body["tags"] = tags
    response = client.droplets.create(body=body)
    for link in response["links"]["actions"]:
        assert wait_for_action(client, link["id"])["status"] == "completed"
    return [droplet["id"] for droplet in response["droplets"]]


def act(client, droplet_id, **body):
    action = client.droplet_actions.post(droplet_id, body=body)["action"]
    assert action["status"] == "in-progress", action
    return wait_for_action(client, action["id"])


def sandbox_state(endpoint, ca):
    with urllib.request.urlopen(f"{endpoint}/_sandbox/state", context=ssl.create_default_context(cafile=ca)) as r:
        return json.load(r)


def test_three_droplets_with_tags_become_active_with_public_ipv4(client):
    status, created, headers = with_status(client.droplets.create, body={
        "names": ["web-1", "web-2", "web-3"], "region": "fra1", "size": "s-1vcpu-1gb", "image": IMAGE,
        "tags": ["web", "env:test"], "ipv6": True, "monitoring": True,
    })
    assert status == 202
    assert all(isinstance(headers[h], int) for h in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"))
    assert [d["status"] for d in created["droplets"]] == ["new"] * 3
    assert [d["networks"]["v4"] for d in created["droplets"]] == [[]] * 3
    links = created["links"]["actions"]
    assert [link["rel"] for link in links] == ["create"] * 3
    assert all(link["href"].endswith(f"/v2/actions/{link['id']}") for link in links)
    for link in links:
        action = wait_for_action(client, link["id"])
        assert (action["status"], action["type"], action["region_slug"]) == ("completed", "create", "fra1")
        assert action["completed_at"]

    ids = [d["id"] for d in created["droplets"]]
    addresses = set()
    for droplet_id in ids:
        droplet = client.droplets.get(droplet_id)["droplet"]
        assert droplet["status"] == "active"
        assert droplet["tags"] == ["web", "env:test"]
        assert (droplet["region"]["slug"], droplet["size_slug"], droplet["image"]["slug"]) == ("fra1", "s-1vcpu-1gb",
                                                                                               IMAGE)
        public = [n["ip_address"] for n in droplet["networks"]["v4"] if n["type"] == "public"]
        assert len(public) == 1 and ipaddress.ip_address(public[0]).version == 4
        assert droplet["networks"]["v6"] and {"ipv6", "monitoring"} <= set(droplet["features"])
        addresses.add(public[0])
    assert len(addresses) == 3

    client.droplets.create(body={"name": "db-1", "region": "fra1", "size": "s-1vcpu-2gb", "image": IMAGE,
                                 "tags": ["db"]})
    listed = client.droplets.list(tag_name="web")
    assert sorted(d["id"] for d in listed["droplets"]) == sorted(ids)
    assert listed["meta"]["total"] == 3
    assert client.tags.get("web")["tag"]["resources"]["droplets"]["count"] == 3
    assert client.tags.get("env:test")["tag"]["resources"]["count"] == 3


def test_pagination_follows_links_like_a_user(client):
    ids = create(client, [f"page-{n}" for n in range(5)])
    first = client.droplets.list(per_page=2)
    assert first["meta"]["total"] == 5
    assert set(first["links"]["pages"]) == {"next", "last"}
    seen, pages, page = [d["id"] for d in first["droplets"]], 1, first
    while "next" in page["links"]["pages"]:
        response = client.send_request(HttpRequest("GET", page["links"]["pages"]["next"]))
        assert response.status_code == 200
        page = response.json()
        pages += 1
        assert len(page["droplets"]) <= 2 and page["meta"]["total"] == 5
        seen += [d["id"] for d in page["droplets"]]
    assert pages == 3
    assert seen == ids
    assert set(page["links"]["pages"]) == {"first", "prev"}
    assert "page=1" in page["links"]["pages"]["first"]


def test_power_off_resize_power_on(client):
    [droplet_id] = create(client, ["resize-me"])
    with pytest.raises(HttpResponseError) as err:
        client.droplet_actions.post(droplet_id, body={"type": "resize", "size": "s-2vcpu-4gb"})
    assert err.value.status_code == 422
    assert "power it off" in err.value.response.json()["message"]

    status, posted, _ = with_status(client.droplet_actions.post, droplet_id, body={"type": "power_off"})
    assert status == 201 and posted["action"]["type"] == "power_off"
    assert wait_for_action(client, posted["action"]["id"])["status"] == "completed"
    assert client.droplets.get(droplet_id)["droplet"]["status"] == "off"
    with pytest.raises(HttpResponseError) as err:
        client.droplet_actions.post(droplet_id, body={"type": "power_off"})
    assert err.value.status_code == 422

    assert act(client, droplet_id, type="resize", size="s-2vcpu-4gb", disk=True)["status"] == "completed"
    droplet = client.droplets.get(droplet_id)["droplet"]
    assert (droplet["size_slug"], droplet["size"]["slug"], droplet["memory"], droplet["vcpus"], droplet["disk"]) == (
        "s-2vcpu-4gb", "s-2vcpu-4gb", 4096, 2, 80)
    assert droplet["status"] == "off"

    assert act(client, droplet_id, type="power_on")["type"] == "power_on"
    assert client.droplets.get(droplet_id)["droplet"]["status"] == "active"
    assert act(client, droplet_id, type="rename", name="resized")["status"] == "completed"
    assert client.droplets.get(droplet_id)["droplet"]["name"] == "resized"
    history = client.droplet_actions.list(droplet_id)["actions"]
    assert [a["type"] for a in history] == ["rename", "power_on", "resize", "power_off", "create"]


def test_actions_complete_only_after_provision_seconds(serve, monkeypatch, sandbox_tls):
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", TOKEN)
    slow = pydo.Client(token=TOKEN, endpoint=serve(digitalocean.make_server, provision_seconds=0.5),
                       connection_verify=sandbox_tls[0])
    created = slow.droplets.create(body={"name": "slow", "size": "s-1vcpu-1gb", "image": IMAGE})
    droplet_id, action_id = created["droplet"]["id"], created["links"]["actions"][0]["id"]
    assert slow.droplets.get(droplet_id)["droplet"]["status"] == "new"
    assert slow.actions.get(action_id)["action"]["status"] == "in-progress"
    with pytest.raises(HttpResponseError) as err:
        slow.droplet_actions.post(droplet_id, body={"type": "power_off"})
    assert err.value.response.json()["message"] == "Droplet already has a pending event."
    assert wait_for_action(slow, action_id)["status"] == "completed"
    assert slow.droplets.get(droplet_id)["droplet"]["status"] == "active"


def test_tag_and_untag_through_tag_resources(client):
    [droplet_id] = create(client, ["taggable"])
    status, tag, _ = with_status(client.tags.create, body={"name": "blue"})
    assert status == 201 and tag["tag"]["name"] == "blue"
    resources = {"resources": [{"resource_id": str(droplet_id), "resource_type": "droplet"}]}

    client.tags.assign_resources("blue", body=resources)
    assert client.droplets.get(droplet_id)["droplet"]["tags"] == ["blue"]
    assert [d["id"] for d in client.droplets.list(tag_name="blue")["droplets"]] == [droplet_id]
    assert client.tags.get("blue")["tag"]["resources"]["count"] == 1

    client.tags.unassign_resources("blue", body=resources)
    assert client.droplets.get(droplet_id)["droplet"]["tags"] == []
    assert client.droplets.list(tag_name="blue")["droplets"] == []
    assert client.tags.get("blue")["tag"]["resources"]["count"] == 0


def test_bulk_power_off_by_tag(client):
    ids = create(client, ["bulk-1", "bulk-2"], tags=["bulk"])
    create(client, ["other"])
    actions = client.droplet_actions.post_by_tag(tag_name="bulk", body={"type": "power_off"})["actions"]
    assert sorted(a["resource_id"] for a in actions) == sorted(ids)
    for action in actions:
        assert wait_for_action(client, action["id"])["status"] == "completed"
    assert {d["id"]: d["status"] for d in client.droplets.list()["droplets"]} == {ids[0]: "off", ids[1]: "off",
                                                                                  ids[1] + 1: "active"}


def test_delete_by_id_and_by_tag_leaves_nothing(client, endpoint, sandbox_tls):
    ids = create(client, ["gone-1", "gone-2", "gone-3"], tags=["batch"])
    assert sorted(sandbox_state(endpoint, sandbox_tls[0])["droplets"]) == sorted(ids)

    status, body, _ = with_status(client.droplets.destroy, ids[0])
    assert (status, body) == (204, None)
    missing = client.droplets.get(ids[0])  # pydo returns the 404 body instead of raising
    assert "droplet" not in missing
    assert missing["id"] == "not_found" and missing["message"] and missing["request_id"]

    client.droplets.destroy_by_tag(tag_name="batch")
    assert client.droplets.list()["droplets"] == []
    assert client.droplets.list()["meta"]["total"] == 0
    client.tags.delete("batch")
    assert "tag" not in client.tags.get("batch")
    assert sandbox_state(endpoint, sandbox_tls[0]) == {"droplets": [], "tags": [], "tag_resources": [], "apps": [],
                                                        "alert_policies": []}


def test_bad_size_is_a_422_naming_the_size(client):
    with pytest.raises(HttpResponseError) as err:
        client.droplets.create(body={"name": "nope", "region": "fra1", "size": "s-99vcpu-1tb", "image": IMAGE})
    assert err.value.status_code == 422
    body = err.value.response.json()
    assert body["id"] == "unprocessable_entity"
    assert "s-99vcpu-1tb" in body["message"] and "invalid size" in body["message"]
    assert client.droplets.list()["droplets"] == []


def test_bad_token_is_rejected(endpoint, sandbox_tls):
    intruder = pydo.Client(token="dop_v1_wrong", endpoint=endpoint, connection_verify=sandbox_tls[0])
    with pytest.raises(ClientAuthenticationError) as err:
        intruder.droplets.list()
    assert err.value.status_code == 401
    assert err.value.response.json()["id"] == "Unauthorized"
    assert err.value.response.json()["message"] == "Unable to authenticate you"


def test_catalog_sizes_regions_images(client):
    sizes = {s["slug"]: s for s in client.sizes.list(per_page=200)["sizes"]}
    assert {"s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb", "s-2vcpu-4gb", "s-4vcpu-8gb"} <= set(sizes)
    assert sizes["s-1vcpu-1gb"]["price_monthly"] > 0 and "fra1" in sizes["s-1vcpu-1gb"]["regions"]
    regions = {r["slug"]: r for r in client.regions.list()["regions"]}
    assert {"nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1"} <= set(regions)
    assert regions["fra1"]["available"] and "s-1vcpu-1gb" in regions["fra1"]["sizes"]
    images = {i["slug"] for i in client.images.list(type="distribution")["images"]}
    assert {"ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64"} <= images
    assert "docker-20-04" not in images


def test_operation_names():
    op = digitalocean.operation
    assert op("POST", "/v2/droplets") == "droplets.create"
    assert op("GET", "/v2/droplets?tag_name=web&page=2") == "droplets.list"
    assert op("DELETE", "/v2/droplets?tag_name=web") == "droplets.destroy_byTag"
    assert op("GET", "/v2/droplets/123") == "droplets.get"
    assert op("POST", "/v2/droplets/123/actions") == "dropletActions.post"
    assert op("POST", "/v2/droplets/actions?tag_name=web") == "dropletActions.post_byTag"
    assert op("GET", "/v2/actions/7") == "actions.get"
    assert op("POST", "/v2/tags/web/resources") == "tags.assign_resources"
    assert op("GET", "/v2/nowhere") == "unknown"
