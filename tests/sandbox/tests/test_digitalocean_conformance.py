"""Every request pydo sends and every answer of the DigitalOcean emulator, checked against the
official OpenAPI description (digitalocean/openapi, bundled under /work/shared/specs)."""
import copy
import json
import time

import pydo
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from tests.sandbox import openapi_check
from tests.sandbox.emulators import digitalocean

pytestmark = pytest.mark.skipif(
    not openapi_check.spec_available(),
    reason=f"DigitalOcean OpenAPI description not found at {openapi_check.DIGITALOCEAN_SPEC} "
           "(set SANDBOX_SPECS_DIR to the directory holding digitalocean/DigitalOcean-public.v2.bundled.json)",
)

TOKEN = "dop_v1_conformance"
IMAGE = "ubuntu-22-04-x64"

# operations the lifecycle must exercise, so the check cannot pass by seeing nothing
EXPECTED_OPERATIONS = {
    "sizes.list", "regions.list", "images.list", "images.get", "tags.create", "tags.list", "tags.get",
    "tags.assign_resources", "tags.unassign_resources", "tags.delete", "droplets.create", "droplets.list",
    "droplets.get", "droplets.destroy", "droplets.destroy_byTag", "actions.list", "actions.get",
    "dropletActions.post", "dropletActions.post_byTag", "dropletActions.list", "dropletActions.get",
}


@pytest.fixture(scope="module")
def checker():
    return openapi_check.digitalocean_checker()


def _wait(client, action_id):
    deadline = time.monotonic() + 10
    while client.actions.get(action_id)["action"]["status"] == "in-progress" and time.monotonic() < deadline:
        time.sleep(0.05)


def _expect(status, call, *args, **kwargs):
    with pytest.raises(HttpResponseError) as err:
        call(*args, **kwargs)
    assert err.value.status_code == status, err.value.response.text()


def _lifecycle(client, intruder):
    """A user's full session: catalog, tags, single and multi create, actions, errors, teardown."""
    client.sizes.list(per_page=200)
    client.regions.list()
    client.images.list(type="distribution", per_page=2)
    client.images.get(IMAGE)
    client.tags.create(body={"name": "conformance"})

    single = client.droplets.create(body={
        "name": "conf-single", "region": "ams3", "size": "s-1vcpu-1gb", "image": IMAGE, "ssh_keys": [289794],
        "backups": True, "ipv6": True, "monitoring": True, "tags": ["conformance", "env:test"],
        "user_data": "#cloud-config\nruncmd:\n  - touch /test.txt\n",
    })
    droplet_id = single["droplet"]["id"]
    client.droplets.get(droplet_id)  # still "new": empty networks must validate too
    multi = client.droplets.create(body={"names": ["conf-a", "conf-b", "conf-c"], "region": "ams3",
                                         "size": "s-1vcpu-2gb", "image": IMAGE, "tags": ["fleet"]})
    for link in single["links"]["actions"] + multi["links"]["actions"]:
        _wait(client, link["id"])
    client.droplets.get(droplet_id)
    client.droplets.list(tag_name="fleet", per_page=2)
    client.droplets.list(tag_name="fleet", per_page=2, page=2)
    client.droplets.list(name="conf-a")

    _expect(422, client.droplet_actions.post, droplet_id, body={"type": "resize", "size": "s-2vcpu-4gb"})
    for body in ({"type": "power_off"}, {"type": "resize", "size": "s-2vcpu-4gb", "disk": True},
                 {"type": "power_on"}, {"type": "rename", "name": "conf-renamed"}, {"type": "reboot"},
                 {"type": "disable_backups"}):
        action = client.droplet_actions.post(droplet_id, body=body)["action"]
        _wait(client, action["id"])
    client.droplet_actions.get(droplet_id, action["id"])
    client.droplet_actions.list(droplet_id, per_page=3)
    for action in client.droplet_actions.post_by_tag(tag_name="fleet", body={"type": "shutdown"})["actions"]:
        _wait(client, action["id"])
    client.actions.list(per_page=5)

    resources = {"resources": [{"resource_id": str(droplet_id), "resource_type": "droplet"}]}
    client.tags.assign_resources("fleet", body=resources)
    client.tags.get("fleet")
    client.tags.list()
    client.tags.unassign_resources("fleet", body=resources)

    _expect(422, client.droplets.create, body={"name": "bad", "size": "s-99vcpu-1tb", "image": IMAGE})
    with pytest.raises(ClientAuthenticationError):
        intruder.droplets.list()
    client.droplets.destroy(droplet_id)
    assert client.droplets.get(droplet_id)["id"] == "not_found"
    client.droplets.destroy_by_tag(tag_name="fleet")
    client.tags.delete("fleet")
    client.tags.get("fleet")  # 404: pydo returns the error body


@pytest.fixture(scope="module")
def exchanges(tmp_path_factory):
    """Recorded exchanges of one lifecycle, run against the emulator behind TLS."""
    import ssl
    import threading

    from tests.sandbox.tls import make_tls

    ca, cert, key = make_tls(str(tmp_path_factory.mktemp("do-conformance-tls")))
    records = []
    server = digitalocean.make_server("127.0.0.1", 0, provision_seconds=0.1, token=TOKEN, recorder=records.append)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        _lifecycle(pydo.Client(token=TOKEN, endpoint=endpoint, connection_verify=ca),
                   pydo.Client(token="dop_v1_wrong", endpoint=endpoint, connection_verify=ca))
    finally:
        server.shutdown()
        server.server_close()
    return [r for r in records if not r["path"].startswith("/_sandbox/")]


def test_lifecycle_covers_the_emulated_operations(exchanges):
    seen = {digitalocean.operation(r["method"], r["path"]) for r in exchanges}
    assert EXPECTED_OPERATIONS <= seen, sorted(EXPECTED_OPERATIONS - seen)
    statuses = {r["status"] for r in exchanges}
    assert {200, 201, 202, 204, 401, 404, 422} <= statuses


def test_every_request_and_response_conforms(exchanges, checker):
    violations = []
    for exchange in exchanges:
        violations += checker.check_exchange(exchange, required_headers=openapi_check.RATELIMIT_HEADERS,
                                             strict=True, undeclared_ok=openapi_check.DIGITALOCEAN_UNDECLARED_OK)
    assert not violations, "\n".join(dict.fromkeys(violations))


def _recorded(exchanges, method, prefix, status=200):
    return next(r for r in exchanges if r["method"] == method and r["path"].startswith(prefix)
                and r["status"] == status)


def _broken(exchange, mutate):
    exchange = copy.deepcopy(exchange)
    body = json.loads(exchange["response_body"])
    mutate(body)
    exchange["response_body"] = json.dumps(body).encode()
    return exchange


def test_check_reports_a_broken_droplet_with_operation_and_field(exchanges, checker):
    get = _recorded(exchanges, "GET", "/v2/droplets/")
    assert checker.check_exchange(get) == []
    broken = _broken(get, lambda body: body["droplet"]["size"].pop("available"))
    assert checker.check_exchange(broken) == [
        "GET /v2/droplets/{droplet_id}: droplet.size: 'available' is a required property"]

    listed = _recorded(exchanges, "GET", "/v2/droplets?")
    broken = _broken(listed, lambda body: body["droplets"][1]["networks"]["v4"][0].update(ip_address="300.1.2.3"))
    assert checker.check_exchange(broken) == [
        "GET /v2/droplets: droplets[1].networks.v4[0].ip_address: '300.1.2.3' is not a 'ipv4'"]

    created = _recorded(exchanges, "POST", "/v2/droplets", status=202)
    broken = _broken(created, lambda body: body["droplet"].update(status="booting"))
    assert checker.check_exchange(broken) == [
        "POST /v2/droplets: droplet.status: 'booting' is not one of ['new', 'active', 'off', 'archive']"]


def test_check_reports_headers_invented_fields_statuses_and_requests(exchanges, checker):
    get = _recorded(exchanges, "GET", "/v2/droplets/")
    no_headers = copy.deepcopy(get)
    no_headers["response_headers"] = {"Content-Type": "application/json"}
    assert checker.check_exchange(no_headers, required_headers=openapi_check.RATELIMIT_HEADERS) == [
        f"GET /v2/droplets/{{droplet_id}}: header {name}: missing" for name in openapi_check.RATELIMIT_HEADERS]

    invented = _broken(get, lambda body: body["droplet"].update(hostname="x"))
    assert checker.check_exchange(invented) == []
    assert checker.check_exchange(invented, strict=True) == [
        "GET /v2/droplets/{droplet_id}: droplet.hostname: undeclared property"]

    wrong_status = dict(get, status=201)
    assert any("201 is not a declared success status" in v for v in checker.check_exchange(wrong_status))

    bad_request = _recorded(exchanges, "POST", "/v2/droplets", status=202)
    bad_request = dict(bad_request, request_body=json.dumps({"name": "has space", "size": "s-1vcpu-1gb",
                                                             "image": IMAGE}).encode())
    assert checker.check_request(bad_request["method"], bad_request["path"], bad_request["request_headers"],
                                 bad_request["request_body"]) == [
        "POST /v2/droplets: request body.name: 'has space' does not match "
        "'^[a-zA-Z0-9]?[a-z0-9A-Z.\\\\-]*[a-z0-9A-Z]$'"]
    assert checker.check_request("GET", "/v2/droplets?per_page=500", get["request_headers"]) == [
        "GET /v2/droplets: query per_page: 500 is greater than the maximum of 200"]
