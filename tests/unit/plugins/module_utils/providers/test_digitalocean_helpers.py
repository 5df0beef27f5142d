"""The DigitalOcean provider's pure helpers: tag encoding, spec checks, records, error classification."""
import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean import droplets as do
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.provider import DigitalOceanProvider
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
from azure_core_response import AzureCoreResponse

pydo = pytest.importorskip("pydo")
exceptions = pytest.importorskip("azure.core.exceptions")


@pytest.mark.parametrize("text", [
    "ubuntu-24.04", "debian-12", "a._b", "x__d", "_d", "..__..", "plain", "ünïcode", "a b/c", "160232537", "",
])
def test_values_encode_to_tag_characters_and_back(text):
    encoded = do.encode_value(text)
    assert do.VALUE_PATTERN.match(encoded)
    assert do.decode_value(encoded) == text


def test_portable_images_read_well_as_tags():
    assert do.image_tag("ubuntu-24.04") == "lxcri-image:ubuntu-24_d04"
    for image in catalog.PORTABLE_IMAGES:
        assert do.TAG_PATTERN.match(do.image_tag(image))


@pytest.mark.parametrize("key, value, tag", [("env", "prod", "env:prod"), ("url", "a:b", "url:a:b"), ("web", "", "web")])
def test_user_tags_are_key_colon_value_and_split_back(key, value, tag):
    assert do.user_tag(key, value) == tag
    assert do.split_tag(tag) == (key, value)
    assert do.tag_problem(key, value) is None


def test_collection_tags_and_user_tags_are_told_apart():
    tags = ["lxcri-deployment:web", "lxcri-kind:vm", "lxcri-image:ubuntu-24_d04", "env:prod", "web"]
    assert do.lxcri_tags(tags) == {"lxcri-deployment": "web", "lxcri-kind": "vm", "lxcri-image": "ubuntu-24_d04"}
    assert do.user_tags(tags) == {"env": "prod", "web": ""}


def _spec(**over):
    spec = {"name": "web", "image": "ubuntu-24.04", "tags": {}, "cloud_init": None}
    spec.update(over)
    return spec


@pytest.mark.parametrize("tags, words", [
    ({"env": "prod 1"}, ["'env:prod 1'", "values may hold"]),
    ({"a:b": "c"}, ["key 'a:b'", "keys may hold"]),
    ({"version": "1.2"}, ["'version:1.2'"]),
    ({"": "x"}, ["key ''"]),
    ({"k": "v" * 300}, ["at most 255"]),
    ({"Env": "x", "env": "x"}, ["case-insensitive"]),
])
def test_tags_that_cannot_be_digitalocean_tags_are_refused_by_name(tags, words):
    with pytest.raises(SpecError) as error:
        DigitalOceanProvider.validate(_spec(tags=tags))
    for word in words:
        assert word in str(error.value)


def test_good_tags_and_user_data_pass_and_huge_user_data_does_not():
    DigitalOceanProvider.validate(_spec(tags={"env": "prod", "team": "web_ops", "url": "x:y"}, cloud_init="#cloud-config\n"))
    with pytest.raises(SpecError, match="user_data"):
        DigitalOceanProvider.validate(_spec(cloud_init="x" * (64 * 1024 + 1)))


@pytest.mark.parametrize("size", ["s-1vcpu-1gb", "s-1vcpu-512mb-10gb", "c-2", "c2-2vcpu-4gb", "g-2vcpu-8gb", "gd-2vcpu-8gb",
                                  "m-2vcpu-16gb", "m3-2vcpu-16gb", "so-2vcpu-16gb", "so1_5-2vcpu-16gb", "s-2vcpu-4gb-amd"])
def test_native_sizes(size):
    assert INFO.native_size_pattern().match(size)


@pytest.mark.parametrize("size", ["t3.micro", "Standard_B1ms", "2c4096m", "small-"])
def test_other_clouds_sizes_are_not_native(size):
    assert not INFO.native_size_pattern().match(size)


@pytest.mark.parametrize("image, native", [("ubuntu-24-04-x64", True), ("160232537", True), ("docker-20-04", True),
                                           ("my-app-image", True), ("Ubuntu 24", False), ("ubuntu-24.04-x64", False)])
def test_native_images(image, native):
    assert bool(INFO.native_image_pattern().match(image)) is native


@pytest.fixture
def provider():
    return DigitalOceanProvider({"token": "dop_v1_test", "endpoint": "https://127.0.0.1:9"})


def test_missing_token_and_plain_http_are_refused():
    with pytest.raises(ProviderError, match="no DigitalOcean credentials: set digitalocean.token"):
        DigitalOceanProvider({})
    with pytest.raises(ProviderError, match="must be an https URL"):
        DigitalOceanProvider({"token": "x", "endpoint": "http://127.0.0.1:4569"})


def test_the_sdk_makes_one_attempt_per_call(provider):
    assert provider.client._config.retry_policy.total_retries == 0


DROPLET = {
    "id": 500000001, "name": "web-1", "status": "active", "created_at": "2026-01-02T03:04:05Z",
    "size_slug": "s-1vcpu-2gb", "size": {"slug": "s-1vcpu-2gb", "price_hourly": 0.01786},
    "region": {"slug": "fra1"}, "image": {"id": 160232537, "slug": "ubuntu-24-04-x64"},
    "networks": {"v4": [{"ip_address": "10.0.0.2", "type": "private"}, {"ip_address": "203.0.113.2", "type": "public"}]},
    "tags": ["lxcri-deployment:web", "lxcri-kind:vm", "lxcri-image:ubuntu-24_d04", "env:prod"],
}


def test_a_droplet_becomes_a_complete_record(provider):
    rec = provider.backend("vm")._record(DROPLET)
    assert rec == {
        "provider": "digitalocean", "kind": "vm", "name": "web-1", "deployment": "web", "id": "500000001",
        "state": "running", "region": "fra1", "zone": None, "size": "small", "native_size": "s-1vcpu-2gb",
        "image": "ubuntu-24.04", "public_ip": "203.0.113.2", "private_ip": "10.0.0.2", "url": None,
        "tags": {"env": "prod"}, "created_at": "2026-01-02T03:04:05Z", "hourly_cost": 0.01786,
    }


def test_states_image_fallback_and_price_of_sizes_outside_the_catalog(provider):
    droplet = dict(DROPLET, status="new", tags=[], size_slug="c-2", size={"slug": "c-2", "price_hourly": 0.0625},
                   networks={"v4": []})
    rec = provider.backend("vm")._record(droplet)
    assert (rec["state"], rec["image"], rec["size"], rec["hourly_cost"], rec["public_ip"]) == ("pending", "ubuntu-24-04-x64", None, 0.0625, None)
    assert provider.backend("vm")._record(dict(DROPLET, status="off"))["state"] == "stopped"
    archived = provider.backend("vm")._record(dict(DROPLET, status="archive"))
    assert archived["state"] == "terminated" and archived["hourly_cost"] is None


def test_a_second_droplet_with_a_member_name_is_not_a_member(provider):
    twin = dict(DROPLET, id=500000009)
    gone = dict(DROPLET, id=500000005, name="web-2", status="archive")
    records = provider.backend("vm")._records([twin, gone, DROPLET])
    assert [rec["name"] for rec in records] == ["web-1", "web-1#500000009"]


def _http_error(status, body=None, headers=None):
    return exceptions.HttpResponseError(response=AzureCoreResponse(status, body or {"id": "x", "message": "m"}, headers))


def test_classification(provider):
    assert provider.classify(_http_error(429, headers={"Retry-After": "2"})) == (THROTTLED, 2.0)
    kind, wait = provider.classify(_http_error(429, headers={"ratelimit-remaining": "0", "ratelimit-reset": "9999999999"}))
    assert kind == THROTTLED and wait > 3600
    assert provider.classify(_http_error(429, headers={"ratelimit-remaining": "17"})) == (THROTTLED, None)
    assert provider.classify(_http_error(503, headers={"Retry-After": "1"})) == (TRANSIENT, 1.0)
    assert provider.classify(_http_error(500)) == (TRANSIENT, None)
    assert provider.classify(_http_error(422, {"id": "unprocessable_entity", "message": "Droplet already has a pending event."})) == (TRANSIENT, None)
    assert provider.classify(_http_error(422, {"id": "unprocessable_entity", "message": "Size is not available"})) == (FATAL, None)
    assert provider.classify(_http_error(401)) == (FATAL, None)
    assert provider.classify(exceptions.ServiceResponseError("Connection aborted")) == (TRANSIENT, None)


def test_refused_connections_are_unreachable_and_not_retried(provider):
    refused = exceptions.ServiceRequestError("Failed to establish a new connection: [Errno 111] Connection refused",
                                             error=ConnectionRefusedError(111, "Connection refused"))
    assert provider.unreachable(refused)
    assert provider.classify(refused) == (FATAL, None)
    assert not provider.unreachable(exceptions.ServiceResponseError("Connection aborted"))
