"""App Platform in the DigitalOcean emulator, as the official pydo client (and the collection) see it over TLS:
deployments and their phases, live_url, secrets, archive, restart, validation, and every request and answer
checked against the official OpenAPI description (digitalocean/openapi, bundled under /work/shared/specs)."""
import copy
import json
import os
import ssl
import sys
import tempfile
import time
import urllib.request

import pydo
import pytest
from azure.core.exceptions import HttpResponseError

from tests.sandbox import openapi_check
from tests.sandbox.emulators import digitalocean, digitalocean_apps

TOKEN = "dop_v1_apps_sandbox"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
needs_spec = pytest.mark.skipif(
    not openapi_check.spec_available(),
    reason=f"DigitalOcean OpenAPI description not found at {openapi_check.DIGITALOCEAN_SPEC} "
           "(set SANDBOX_SPECS_DIR to the directory holding digitalocean/DigitalOcean-public.v2.bundled.json)",
)


def nginx(tag="1.27"):
    return {"registry_type": "DOCKER_HUB", "registry": "library", "repository": "nginx", "tag": tag}


def app_spec(name="web", tag="1.27", count=1, size="apps-s-1vcpu-0.5gb", envs=None, **extra):
    service = {"name": name, "image": nginx(tag), "http_port": 80, "instance_count": count,
               "instance_size_slug": size}
    if envs is not None:
        service["envs"] = envs
    return {"name": name, "region": "fra", "services": [service],
            "ingress": {"rules": [{"match": {"path": {"prefix": "/"}}, "component": {"name": name}}]}, **extra}


@pytest.fixture
def emulator(serve, sandbox_tls):
    """(pydo client, recorded exchanges, base URL) of an emulator whose deployments take 0.3 s."""
    records = []
    endpoint = serve(digitalocean.make_server, provision_seconds=0.3, token=TOKEN, recorder=records.append)
    client = pydo.Client(token=TOKEN, endpoint=endpoint, connection_verify=sandbox_tls[0], retry_total=0)
    return client, records, endpoint


def wait_deployment(client, app_id, deployment_id, timeout=10.0):
    """The phases a deployment went through (each distinct one seen while polling) and its final state."""
    seen, deadline = [], time.monotonic() + timeout
    while True:
        deployment = client.apps.get_deployment(app_id, deployment_id)["deployment"]
        if not seen or seen[-1] != deployment["phase"]:
            seen.append(deployment["phase"])
        if deployment["phase"] not in digitalocean_apps.RUNNING_PHASES or time.monotonic() > deadline:
            return seen, deployment
        time.sleep(0.02)


def expect(status, call, *args, **kwargs):
    with pytest.raises(HttpResponseError) as err:
        call(*args, **kwargs)
    assert err.value.status_code == status, err.value.response.text()
    return err.value.response.json()


def sandbox_state(endpoint, ca):
    with urllib.request.urlopen(f"{endpoint}/_sandbox/state", context=ssl.create_default_context(cafile=ca)) as r:
        return json.load(r)


def test_create_goes_through_the_phases_then_serves_on_its_live_url(emulator):
    client, _records, _endpoint = emulator
    created = client.apps.create(body={"spec": app_spec()})["app"]
    assert created["pending_deployment"]["phase"] == "PENDING_BUILD"
    assert "live_url" not in created and "active_deployment" not in created
    assert created["region"]["slug"] == "fra" and created["region"]["data_centers"] == ["fra1"]

    during = client.apps.get(created["id"])["app"]
    assert during["in_progress_deployment"]["id"] == created["pending_deployment"]["id"]
    phases, deployment = wait_deployment(client, created["id"], created["pending_deployment"]["id"])
    assert phases[-1] == "ACTIVE" and deployment["progress"]["success_steps"] == deployment["progress"]["total_steps"]
    order = ["PENDING_BUILD", "BUILDING", "DEPLOYING", "ACTIVE"]
    assert phases == sorted(phases, key=order.index) and len(phases) >= 3, phases

    app = client.apps.get(created["id"])["app"]
    assert app["active_deployment"]["id"] == deployment["id"] and "in_progress_deployment" not in app
    assert app["live_url"].startswith("https://web-") and app["live_url"].endswith(".ondigitalocean.app")
    assert app["default_ingress"] == app["live_url"] and app["live_domain"] == app["live_url"][len("https://"):]


def test_update_deploys_anew_while_the_old_deployment_serves(emulator):
    client, _records, _endpoint = emulator
    app = client.apps.create(body={"spec": app_spec()})["app"]
    first = wait_deployment(client, app["id"], app["pending_deployment"]["id"])[1]
    url = client.apps.get(app["id"])["app"]["live_url"]

    bigger = app_spec(tag="1.28", count=2, size="apps-s-1vcpu-1gb")
    updated = client.apps.update(app["id"], body={"spec": bigger})["app"]
    second = updated["pending_deployment"]
    assert second["id"] != first["id"] and updated["spec"]["services"][0]["image"]["tag"] == "1.28"
    meanwhile = client.apps.get(app["id"])["app"]
    assert meanwhile["active_deployment"]["spec"]["services"][0]["image"]["tag"] == "1.27"
    assert meanwhile["in_progress_deployment"]["id"] == second["id"]

    assert wait_deployment(client, app["id"], second["id"])[1]["phase"] == "ACTIVE"
    after = client.apps.get(app["id"])["app"]
    assert after["active_deployment"]["spec"]["services"][0]["image"]["tag"] == "1.28"
    assert after["live_url"] == url
    assert client.apps.get_deployment(app["id"], first["id"])["deployment"]["phase"] == "SUPERSEDED"
    listed = client.apps.list_deployments(app["id"])["deployments"]
    assert [d["id"] for d in listed] == [second["id"], first["id"]]


def test_a_new_deployment_cancels_the_running_one(emulator):
    client, _records, _endpoint = emulator
    app = client.apps.create(body={"spec": app_spec()})["app"]
    second = client.apps.update(app["id"], body={"spec": app_spec(tag="1.28")})["app"]["pending_deployment"]
    assert client.apps.get_deployment(app["id"], app["pending_deployment"]["id"])["deployment"]["phase"] == "CANCELED"
    assert wait_deployment(client, app["id"], second["id"])[1]["phase"] == "ACTIVE"
    third = client.apps.create_deployment(app["id"], body={"force_build": False})["deployment"]
    canceled = client.apps.cancel_deployment(app["id"], third["id"])["deployment"]
    assert canceled["phase"] == "CANCELED"
    assert client.apps.get(app["id"])["app"]["active_deployment"]["id"] == second["id"]


def test_secret_values_come_back_encrypted_and_are_accepted_back(emulator):
    client, _records, _endpoint = emulator
    envs = [{"key": "GREETING", "value": "hello", "type": "GENERAL", "scope": "RUN_TIME"},
            {"key": "API_KEY", "value": "s3cr3t-value", "type": "SECRET", "scope": "RUN_TIME"}]
    app = client.apps.create(body={"spec": app_spec(envs=envs)})["app"]
    stored = app["spec"]["services"][0]["envs"]
    assert stored[0]["value"] == "hello"
    assert stored[1]["value"].startswith("EV[1:") and "s3cr3t" not in json.dumps(app)
    again = client.apps.update(app["id"], body={"spec": app["spec"]})["app"]
    assert again["spec"]["services"][0]["envs"][1]["value"] == stored[1]["value"]

    forged = copy.deepcopy(app["spec"])
    forged["services"][0]["envs"][1]["value"] = "EV[1:bm9wZQ==:bm9wZQ==]"
    assert expect(400, client.apps.update, app["id"], body={"spec": forged})["id"] == "invalid_argument"


def test_archive_stops_the_app_and_restore_brings_it_back(emulator):
    client, _records, _endpoint = emulator
    app = client.apps.create(body={"spec": app_spec()})["app"]
    wait_deployment(client, app["id"], app["pending_deployment"]["id"])
    archived = client.apps.update(app["id"], body={"spec": app_spec(maintenance={"archive": True})})["app"]
    assert wait_deployment(client, app["id"], archived["pending_deployment"]["id"])[1]["phase"] == "ACTIVE"
    app = client.apps.get(app["id"])["app"]
    assert app["active_deployment"]["spec"]["maintenance"] == {"archive": True} and app["live_url"]
    assert expect(422, client.apps.restart, app["id"], body={})["id"] == "unprocessable_entity"

    restored = client.apps.update(app["id"], body={"spec": app_spec()})["app"]
    assert wait_deployment(client, app["id"], restored["pending_deployment"]["id"])[1]["phase"] == "ACTIVE"
    restarted = client.apps.restart(app["id"], body={})["deployment"]
    assert restarted["cause"] == "app restart" and restarted["phase"] == "PENDING_BUILD"
    assert wait_deployment(client, app["id"], restarted["id"])[1]["phase"] == "ACTIVE"


def test_an_image_that_cannot_be_pulled_fails_the_deployment(emulator):
    client, _records, _endpoint = emulator
    app = client.apps.create(body={"spec": app_spec(tag="1.27-sandbox-fail")})["app"]
    phases, deployment = wait_deployment(client, app["id"], app["pending_deployment"]["id"])
    assert phases[-1] == "ERROR" and deployment["progress"]["error_steps"] == 1
    failed = next(step for step in deployment["progress"]["steps"] if step["status"] == "ERROR")
    assert failed["name"] == "deploy" and failed["reason"]["message"]
    app = client.apps.get(app["id"])["app"]
    assert "active_deployment" not in app and "in_progress_deployment" not in app and "live_url" not in app


@pytest.mark.parametrize("change, status, needle", [
    (lambda s: s["services"][0].update(instance_count=0), 400, "at least 1"),
    (lambda s: s["services"][0].update(instance_count=2), 400, "allows only one instance"),
    (lambda s: s["services"][0].update(instance_size_slug="apps-s-64vcpu"), 400, "unknown instance size"),
    (lambda s: s.update(name="Web_1"), 400, "lower-case"),
    (lambda s: s.update(region="fra1"), 400, "not an App Platform region"),
    (lambda s: s["services"][0]["image"].update(registry_type="QUAY"), 400, "registry_type"),
    (lambda s: s["services"][0]["image"].update(digest="sha256:" + "0" * 64), 400, "only one of tag and digest"),
    (lambda s: s["services"][0].update(envs=[{"key": "1X", "value": "v"}]), 400, "key"),
    (lambda s: s["ingress"]["rules"][0]["component"].update(name="api"), 400, "no component named"),
    (lambda s: s["services"][0].update(github={"repo": "a/b", "branch": "main"}), 422, "not emulated"),
    (lambda s: s.update(workers=[{"name": "w"}]), 422, "not emulated"),
])
def test_invalid_specs_are_refused_and_create_nothing(emulator, sandbox_tls, change, status, needle):
    client, _records, endpoint = emulator
    spec = app_spec()
    change(spec)
    body = expect(status, client.apps.create, body={"spec": spec})
    assert needle in body["message"] and body["request_id"]
    assert sandbox_state(endpoint, sandbox_tls[0])["apps"] == []


def test_names_are_unique_and_regions_fixed(emulator):
    client, _records, _endpoint = emulator
    app = client.apps.create(body={"spec": app_spec()})["app"]
    assert expect(409, client.apps.create, body={"spec": app_spec()})["id"] == "conflict"
    other = client.apps.create(body={"spec": app_spec(name="api")})["app"]
    assert expect(409, client.apps.update, other["id"], body={"spec": app_spec(name="web")})["id"] == "conflict"
    moved = app_spec()
    moved["region"] = "ams"
    assert expect(422, client.apps.update, app["id"], body={"spec": moved})["id"] == "unprocessable_entity"


def test_list_pages_delete_and_state(emulator, sandbox_tls):
    client, _records, endpoint = emulator
    ids = [client.apps.create(body={"spec": app_spec(name=f"app-{i}")})["app"]["id"] for i in range(3)]
    first = client.apps.list(per_page=2, page=1)
    assert [a["id"] for a in first["apps"]] == ids[:2] and first["meta"]["total"] == 3
    assert "next" in first["links"]["pages"]
    assert [a["id"] for a in client.apps.list(per_page=2, page=2)["apps"]] == ids[2:]
    assert client.apps.list(with_projects=True)["apps"][0]["project_id"]
    assert sorted(sandbox_state(endpoint, sandbox_tls[0])["apps"]) == sorted(ids)
    for app_id in ids:
        assert client.apps.delete(app_id) == {"id": app_id}
    assert client.apps.get(ids[0])["id"] == "not_found"  # pydo hands 404 bodies back
    assert client.apps.delete(ids[0])["id"] == "not_found"
    assert sandbox_state(endpoint, sandbox_tls[0])["apps"] == []


def test_catalog_instance_sizes_and_regions(emulator):
    client, _records, _endpoint = emulator
    sizes = {s["slug"]: s for s in client.apps.list_instance_sizes()["instance_sizes"]}
    assert sizes["apps-s-1vcpu-0.5gb"]["single_instance_only"] is True and sizes["apps-s-1vcpu-0.5gb"]["cpus"] == "1"
    assert client.apps.get_instance_size("apps-d-8vcpu-32gb")["instance_size"]["memory_bytes"] == str(32 * 2 ** 30)
    assert client.apps.get_instance_size("nope")["id"] == "not_found"
    regions = {r["slug"]: r for r in client.apps.list_regions()["regions"]}
    assert regions["fra"]["data_centers"] == ["fra1"] and regions["nyc"]["default"] is True


# -- the collection's own traffic, and the conformance of everything ---------------------------------------

def _collection():
    """Import lxcri.cloud from this checkout (as tests/unit/conftest.py does)."""
    tree = os.path.join(tempfile.gettempdir(), f"lxcri-unit-{os.getuid()}")
    link = os.path.join(tree, "ansible_collections", "lxcri", "cloud")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    if tree not in sys.path:
        sys.path.insert(0, tree)
    from ansible_collections.lxcri.cloud.plugins.module_utils import converge, spec
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.provider import DigitalOceanProvider
    return converge, spec, DigitalOceanProvider


def _run_collection(endpoint, ca, monkeypatch):
    """The container lifecycle of the integration target, through the provider, on this emulator."""
    converge, spec, provider_class = _collection()
    monkeypatch.setitem(spec.KIND_PROVIDERS, "container", ("digitalocean",))
    connection = {"token": TOKEN, "endpoint": endpoint, "ca_bundle": ca, "validate_certs": True, "region": "fra1"}
    defaults = {key: option.get("default") for key, option in spec.deployment_argument_spec().items()}

    def run(container, state="present", count=1):
        params = dict(defaults, provider="digitalocean", name="ct-apps", kind="container", tags={"env": "test"},
                      state=state, count=count)
        params["container"] = {**{k: v.get("default") for k, v in spec.CONTAINER_OPTIONS.items()}, **container}
        deployment = spec.validate_deployment(params, provider_class)
        return converge.Convergence(provider_class(connection), deployment).run()

    first = {"image": "nginx:1.27", "env": {"GREETING": "hello"}, "secret_env": {"API_KEY": "the-secret"}}
    second = dict(first, image="nginx:1.28")
    third = dict(second, secret_env={"API_KEY": "the-secret-2"})
    created = run(first)["deployments"][0]
    assert (created["state"], created["image"], created["native_size"]) == ("running", "nginx:1.27",
                                                                              "apps-s-1vcpu-0.5gb")
    assert created["url"].startswith("https://ct-apps-")
    assert run(first)["changed"] is False
    updated = run(second)
    assert (updated["changes"], updated["recreated"]) == (["image"], False)
    scaled = run(third, count=2)
    assert scaled["changes"] == ["replicas", "secret_env"] and "the-secret" not in json.dumps(scaled)
    assert scaled["deployments"][0]["native_size"] == "apps-s-1vcpu-1gb"
    assert run(third, state="stopped", count=2)["deployments"][0]["state"] == "stopped"
    assert run(third, state="restarted", count=2)["deployments"][0]["state"] == "running"
    assert run(first, state="absent")["deployments"][0]["state"] == "terminated"


@pytest.fixture
def session(emulator, sandbox_tls, monkeypatch):
    """Every exchange of a pydo session over all App Platform operations plus the collection's lifecycle."""
    client, records, endpoint = emulator
    envs = [{"key": "A", "value": "1", "type": "GENERAL", "scope": "RUN_TIME"},
            {"key": "S", "value": "secret", "type": "SECRET", "scope": "RUN_AND_BUILD_TIME"}]
    app = client.apps.create(body={"spec": app_spec(envs=envs)})["app"]
    client.apps.get(app["id"])  # in progress
    wait_deployment(client, app["id"], app["pending_deployment"]["id"])
    updated = client.apps.update(app["id"], body={"spec": app_spec(tag="1.28", envs=envs)})["app"]
    wait_deployment(client, app["id"], updated["pending_deployment"]["id"])
    client.apps.list_deployments(app["id"], per_page=1)
    restarted = client.apps.restart(app["id"], body={"components": ["web"]})["deployment"]
    client.apps.cancel_deployment(app["id"], restarted["id"])
    client.apps.create_deployment(app["id"], body={"force_build": True})
    client.apps.list(per_page=1, with_projects=True)
    client.apps.list_instance_sizes()
    client.apps.get_instance_size("apps-s-1vcpu-1gb")
    client.apps.list_regions()
    failing = client.apps.create(body={"spec": app_spec(name="bad", tag="x-sandbox-fail")})["app"]
    wait_deployment(client, failing["id"], failing["pending_deployment"]["id"])
    expect(409, client.apps.create, body={"spec": app_spec()})
    for app_id in (app["id"], failing["id"]):
        client.apps.delete(app_id)
    client.apps.get(app["id"])  # 404
    _run_collection(endpoint, sandbox_tls[0], monkeypatch)
    assert sandbox_state(endpoint, sandbox_tls[0])["apps"] == []
    return [r for r in records if not r["path"].startswith("/_sandbox/")]


@needs_spec
def test_every_request_and_answer_conforms_to_the_openapi_description(session):
    seen = {digitalocean.operation(r["method"], r["path"]) for r in session}
    assert {route.name for route in digitalocean_apps.ROUTES} <= seen, sorted(
        {route.name for route in digitalocean_apps.ROUTES} - seen)
    assert {200, 404, 409} <= {r["status"] for r in session}
    checker = openapi_check.digitalocean_checker()
    violations = []
    for exchange in session:
        violations += checker.check_exchange(exchange, required_headers=openapi_check.RATELIMIT_HEADERS, strict=True,
                                             undeclared_ok=openapi_check.DIGITALOCEAN_UNDECLARED_OK)
    assert not violations, "\n".join(dict.fromkeys(violations))


@needs_spec
def test_the_check_sees_a_broken_app(session):
    checker = openapi_check.digitalocean_checker()
    get = next(r for r in session if r["method"] == "GET" and r["path"].startswith("/v2/apps/") and r["status"] == 200
               and b'"active_deployment"' in r["response_body"])
    assert checker.check_exchange(get) == []
    body = json.loads(get["response_body"])
    body["app"]["active_deployment"]["phase"] = "RUNNING"
    body["app"]["hostname"] = "x"
    broken = dict(get, response_body=json.dumps(body).encode())
    problems = checker.check_exchange(broken, strict=True)
    assert any("app.active_deployment.phase: 'RUNNING' is not one of" in p for p in problems), problems
    assert "GET /v2/apps/{id}: app.hostname: undeclared property" in problems


@pytest.mark.parametrize("ref, image, back", [
    ("nginx:1.27", {"registry_type": "DOCKER_HUB", "registry": "library", "repository": "nginx", "tag": "1.27"},
     "nginx:1.27"),
    ("docker.io/acme/api", {"registry_type": "DOCKER_HUB", "registry": "acme", "repository": "api", "tag": "latest"},
     "acme/api:latest"),
    ("ghcr.io/acme/team/api:2", {"registry_type": "GHCR", "registry": "acme", "repository": "team/api", "tag": "2"},
     "ghcr.io/acme/team/api:2"),
    ("registry.digitalocean.com/reg/api:3", {"registry_type": "DOCR", "repository": "api", "tag": "3"},
     "registry.digitalocean.com/api:3"),
    ("nginx@sha256:" + "a" * 64, {"registry_type": "DOCKER_HUB", "registry": "library", "repository": "nginx",
                                  "digest": "sha256:" + "a" * 64}, "nginx@sha256:" + "a" * 64),
])
def test_the_collection_maps_images_onto_app_platform_sources(ref, image, back):
    _converge, _spec, _cls = _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean import apps as mapping
    assert mapping.parse_image(ref) == image and mapping.image_ref(image) == back


@pytest.mark.parametrize("ref", ["quay.io/x/y:1", "ghcr.io/api:1", "NGINX:1", "nginx:1@sha256:" + "a" * 64])
def test_the_collection_refuses_images_app_platform_cannot_pull(ref):
    _converge, spec, _cls = _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean import apps as mapping
    with pytest.raises(spec.SpecError, match="container.image"):
        mapping.parse_image(ref)


@pytest.mark.parametrize("cpu, memory, count, slug", [
    (0.25, 512, 1, "apps-s-1vcpu-0.5gb"), (0.25, 512, 2, "apps-s-1vcpu-1gb"), (1, 1024, 1, "apps-s-1vcpu-1gb-fixed"),
    (1, 2048, 1, "apps-s-1vcpu-2gb"), (1.5, 1024, 3, "apps-s-2vcpu-4gb"), (2, 6144, 1, "apps-d-2vcpu-8gb"),
    (4, 16384, 2, "apps-d-4vcpu-16gb"), (9, 512, 1, None),
])
def test_the_collection_picks_the_smallest_instance_size_that_fits(cpu, memory, count, slug):
    _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean import apps as mapping
    assert mapping.instance_size(cpu, memory, count) == slug
    if slug:  # the emulator (App Platform's own size list) agrees that it fits
        size = digitalocean_apps.INSTANCE_SIZES[slug]
        assert float(size["cpus"]) >= cpu and int(size["memory_bytes"]) >= memory * 2 ** 20
        assert count == 1 or not size.get("single_instance_only")
