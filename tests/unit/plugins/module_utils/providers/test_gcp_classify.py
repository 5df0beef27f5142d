"""The GCP provider's pure parts: label rules and encoding, validation, error classification, records.

The exceptions are the real google.api_core ones, made the way the REST transport makes them (from an
HTTP response), so that what is classified here is what the provider meets.
"""
import json

import pytest

pytest.importorskip("google.cloud.compute_v1")

import requests  # noqa: E402
from google.api_core import exceptions as api_exceptions  # noqa: E402
from google.cloud import compute_v1  # noqa: E402

from ansible_collections.lxcri.cloud.plugins.module_utils.catalog import PORTABLE_IMAGES  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp import INFO  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp import instances as gcp  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp import labels as gcp_labels  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.provider import GcpProvider  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError  # noqa: E402

NATIVE_SIZE, NATIVE_IMAGE = INFO.native_size_pattern(), INFO.native_image_pattern()


def bare_provider():
    """A provider without clients: enough for classify() and the Instances backend's _record()."""
    provider = GcpProvider.__new__(GcpProvider)
    provider.connection = {"endpoint": "http://127.0.0.1:1"}
    return provider


def bare_instances():
    return gcp.Instances(bare_provider())


def http_error(status, reason="backendError", headers=None, message="boom"):
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = json.dumps(
        {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}
    ).encode()
    response.request = requests.Request("GET", "http://127.0.0.1:1/compute/v1/projects/p/zones/z/instances").prepare()
    return api_exceptions.from_http_response(response)


# -- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", PORTABLE_IMAGES)
def test_portable_images_round_trip_through_their_label(image):
    label = gcp.encode_image(image)
    assert gcp_labels.label_ok(label) and "." not in label
    assert gcp.decode_image(label) == image
    assert gcp.image_metadata(image) == {}


def test_ubuntu_label_reads_as_documented():
    assert gcp.encode_image("ubuntu-24.04") == "ubuntu-24_04"


def test_native_images_get_a_safe_label_and_keep_their_exact_text_in_metadata():
    image = "projects/debian-cloud/global/images/family/debian-12"
    assert gcp.encode_image(image) == "debian-12"
    assert gcp.image_metadata(image) == {gcp.IMAGE_METADATA: image}
    long_name = "projects/p/global/images/" + "a" * 70
    assert gcp_labels.label_ok(gcp.encode_image(long_name))


@pytest.mark.parametrize("text,key,ok", [
    ("env", True, True), ("a_b-1", True, True), ("1env", True, False), ("Env", True, False), ("", True, False),
    ("", False, True), ("prod", False, True), ("Prod", False, False), ("1.2", False, False), ("a b", False, False),
    ("x" * 63, False, True), ("x" * 64, False, False), ("übung", True, True),
])
def test_label_rule(text, key, ok):
    assert gcp_labels.label_ok(text, key=key) is ok


def test_user_tags_leave_out_the_collections_and_googles_labels():
    labels = {"lxcri-deployment": "web", "goog-ops-agent-policy": "v1", "env": "prod"}
    assert gcp_labels.user_tags(labels) == {"env": "prod"}


def test_tag_filter_only_names_label_safe_non_empty_tags():
    assert gcp.tag_filter({"env": "prod", "team": "", "Bad": "x"}) == '(labels.env = "prod")'


# -- validate ----------------------------------------------------------------------------------


def spec(**tags):
    return {"name": "web", "kind": "vm", "image": "ubuntu-24.04", "tags": tags, "cloud_init": None}


def test_label_safe_tags_are_accepted():
    GcpProvider.validate(spec(env="prod", team="a_b-1", empty=""))


@pytest.mark.parametrize("tags,named", [
    ({"Env": "x"}, "'Env'"),
    ({"env": "Prod"}, "'Prod' of 'env'"),
    ({"version": "1.2"}, "'1.2' of 'version'"),
    ({"ok": "True"}, "lower-case strings"),
    ({"goog-x": "y"}, "reserved"),
])
def test_tags_a_label_cannot_hold_are_refused_by_name(tags, named):
    with pytest.raises(SpecError, match="tags: ") as err:
        GcpProvider.validate(spec(**tags))
    assert named in str(err.value)


def test_too_many_tags_are_refused():
    with pytest.raises(SpecError, match="at most 61 tags"):
        GcpProvider.validate(spec(**{f"k{i}": "v" for i in range(62)}))


def test_native_sizes_and_images():
    for size in ("e2-small", "n2-standard-4", "custom-2-4096", "n2-custom-4-8192-ext", "c3-highmem-8-lssd"):
        assert NATIVE_SIZE.match(size), size
    for size in ("t3.small", "Standard_B1ms", "s-1vcpu-2gb.x"):
        assert not NATIVE_SIZE.match(size), size
    for image in ("projects/debian-cloud/global/images/family/debian-12",
                  "projects/ubuntu-os-cloud/global/images/ubuntu-2404-noble-amd64-v20250130",
                  "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/debian-12"):
        assert NATIVE_IMAGE.match(image), image
    for image in ("ami-0123456789abcdef0", "debian-12", "projects/x/global/images/"):
        assert not NATIVE_IMAGE.match(image), image


# -- classify ----------------------------------------------------------------------------------


def test_429_is_throttling_with_its_retry_after():
    exc = http_error(429, "rateLimitExceeded", {"Retry-After": "3"})
    assert isinstance(exc, api_exceptions.TooManyRequests)
    assert bare_provider().classify(exc) == (THROTTLED, 3.0)


def test_resource_exhausted_and_403_rate_limits_are_throttling():
    provider = bare_provider()
    assert provider.classify(api_exceptions.ResourceExhausted("quota"))[0] == THROTTLED
    assert provider.classify(http_error(403, "rateLimitExceeded"))[0] == THROTTLED
    assert provider.classify(http_error(403, "userRateLimitExceeded"))[0] == THROTTLED


def test_403_quota_and_permission_errors_are_fatal():
    provider = bare_provider()
    assert provider.classify(http_error(403, "quotaExceeded")) == (FATAL, None)
    assert provider.classify(http_error(403, "forbidden")) == (FATAL, None)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status):
    assert bare_provider().classify(http_error(status, headers={"Retry-After": "1"})) == (TRANSIENT, 1.0)


@pytest.mark.parametrize("status", [400, 401, 404, 409, 412])
def test_client_errors_are_fatal(status):
    assert bare_provider().classify(http_error(status, "invalid")) == (FATAL, None)


def test_connection_reset_and_timeouts_are_transient_but_not_unreachable():
    provider = bare_provider()
    reset = requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
    timeout = requests.exceptions.ReadTimeout("read timed out")
    for exc in (reset, timeout, requests.exceptions.ChunkedEncodingError("cut")):
        assert provider.classify(exc) == (TRANSIENT, None)
        assert not provider.unreachable(exc)


def test_refused_connection_is_unreachable_and_not_retried():
    provider = bare_provider()
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        requests.get("http://127.0.0.1:9/", timeout=2)  # port 9 (discard): nothing listens here
    refused = caught.value
    assert provider.unreachable(refused)
    assert provider.classify(refused) == (FATAL, None)


def test_anything_else_is_fatal():
    assert bare_provider().classify(ValueError("bug")) == (FATAL, None)


# -- records -----------------------------------------------------------------------------------


def instance(status="RUNNING", **extra):
    body = {
        "id": "7767688936526275369", "name": "web-1", "status": status,
        "zone": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a",
        "machineType": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a/machineTypes/e2-small",
        "creationTimestamp": "2025-01-10T03:04:05.123-08:00",
        "labels": {"lxcri-deployment": "web", "lxcri-kind": "vm", "lxcri-image": "ubuntu-24_04", "env": "prod"},
        "networkInterfaces": [{"networkIP": "10.128.0.2", "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "natIP": "34.1.2.3"}]}],
    }
    body.update(extra)
    return compute_v1.Instance.from_json(json.dumps(body), ignore_unknown_fields=True)


def test_a_record_is_complete_and_portable():
    rec = bare_instances()._record(instance())
    assert rec == {
        "provider": "gcp", "kind": "vm", "name": "web-1", "deployment": "web", "id": "7767688936526275369",
        "state": "running", "region": "us-central1", "zone": "us-central1-a", "size": "small", "native_size": "e2-small",
        "image": "ubuntu-24.04", "public_ip": "34.1.2.3", "private_ip": "10.128.0.2", "url": None,
        "tags": {"env": "prod"}, "created_at": "2025-01-10T11:04:05Z", "hourly_cost": 0.016751,
    }


@pytest.mark.parametrize("status,state", [
    ("PROVISIONING", "pending"), ("STAGING", "pending"), ("RUNNING", "running"), ("STOPPING", "pending"),
    ("SUSPENDING", "pending"), ("SUSPENDED", "stopped"), ("TERMINATED", "stopped"), ("STOPPED", "stopped"),
    ("REPAIRING", "error"), ("SOMETHING_NEW", "unknown"),
])
def test_states(status, state):
    assert bare_instances()._record(instance(status))["state"] == state


def test_a_stopped_member_has_no_public_ip_and_a_native_image_reads_back_exactly():
    image = "projects/debian-cloud/global/images/family/debian-12"
    inst = instance("TERMINATED", networkInterfaces=[{"networkIP": "10.128.0.2", "accessConfigs": [{"type": "ONE_TO_ONE_NAT"}]}],
                    metadata={"items": [{"key": gcp.IMAGE_METADATA, "value": image}]})
    rec = bare_instances()._record(inst)
    assert rec["public_ip"] is None and rec["image"] == image
