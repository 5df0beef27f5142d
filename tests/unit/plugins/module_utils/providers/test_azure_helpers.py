"""The Azure provider's pure parts: spec checks, records, states, error classification, sign-in handling."""

import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import INFO, arm, errors, vms
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import provider as az
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, RetryPolicy
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
from azure_core_response import AzureCoreResponse

exceptions = pytest.importorskip("azure.core.exceptions")
pytest.importorskip("azure.mgmt.compute")
polling = pytest.importorskip("azure.core.polling.base_polling")

CONNECTION = {
    "subscription_id": "00000000-0000-0000-0000-000000000001", "tenant_id": "00000000-0000-0000-0000-000000000002",
    "client_id": "00000000-0000-0000-0000-000000000003", "client_secret": "s3cr3t-value",
    "authority_host": "https://127.0.0.1:9", "endpoint": "https://127.0.0.1:9",
}


@pytest.fixture
def provider():
    return az.AzureProvider(dict(CONNECTION), policy=RetryPolicy(attempts=1))


def _spec(**over):
    spec = {"name": "web", "kind": "vm", "image": "ubuntu-24.04", "tags": {}, "cloud_init": None}
    spec.update(over)
    return spec


# -- spec ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tags, words", [
    ({"a/b": "x"}, ["key 'a/b'", "found /"]),
    ({"100%": "x"}, ["key '100%'", "found %"]),
    ({"a<b>": "x"}, ["found < >"]),
    ({"why?": "x"}, ["found ?"]),
    ({" ": "x"}, ["is empty"]),
    ({"k" * 513: "x"}, ["at most 512"]),
    ({"k": "v" * 257}, ["value of 'k'", "at most 256"]),
    ({"Env": "x", "env": "y"}, ["case-insensitive"]),
    ({f"t{i}": "x" for i in range(48)}, ["at most 47 tags"]),
])
def test_tags_azure_cannot_hold_are_refused_by_name(tags, words):
    with pytest.raises(SpecError) as error:
        az.AzureProvider.validate(_spec(tags=tags))
    for word in words:
        assert word in str(error.value)


def test_good_specs_pass_and_windows_huge_custom_data_and_other_kinds_do_not():
    az.AzureProvider.validate(_spec(tags={"env": "prod", "cost center": "a.b:c=d"}, cloud_init="#cloud-config\n"))
    az.AzureProvider.validate(_spec(image="Debian:debian-12:12-gen2:latest"))
    with pytest.raises(SpecError, match="Windows image"):
        az.AzureProvider.validate(_spec(image="MicrosoftWindowsServer:WindowsServer:2022-datacenter:latest"))
    with pytest.raises(SpecError, match="customData holds at most 65535"):
        az.AzureProvider.validate(_spec(cloud_init="x" * 65536))
    with pytest.raises(SpecError, match="kind 'function' is not supported on azure"):
        az.AzureProvider.validate(_spec(kind="function"))


@pytest.mark.parametrize("size", ["Standard_B1ms", "Standard_D2s_v5", "Standard_E64-32s_v3", "Standard_NC24ads_A100_v4",
                                  "Basic_A1", "Standard_M416ms_v2", "Standard_DC2as_v5"])
def test_native_sizes(size):
    assert INFO.native_size_pattern().match(size)


@pytest.mark.parametrize("size", ["t3.micro", "s-1vcpu-2gb", "e2-small", "2c4096m", "standard_b1ms", "Standard_"])
def test_other_clouds_sizes_are_not_native(size):
    assert not INFO.native_size_pattern().match(size)


@pytest.mark.parametrize("image, native", [
    ("Canonical:ubuntu-24_04-lts:server:latest", True), ("Debian:debian-12:12-gen2:0.20240101.1616", True),
    ("Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:22.04.202401010", True), ("ubuntu-24-04-x64", False),
    ("Canonical:ubuntu:server", False), ("ami-0123456789abcdef0", False), ("a:b:c:1.2.x", False),
])
def test_native_images(image, native):
    assert bool(INFO.native_image_pattern().match(image)) is native


def test_every_portable_image_and_size_is_native_on_azure():
    from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
    for image in catalog.PORTABLE_IMAGES:
        urn = catalog.native_image("azure", image)
        assert INFO.native_image_pattern().match(urn)
        assert vms.image_urn(vms.image_reference(urn)) == urn
    for size in catalog.PORTABLE_SIZES:
        assert INFO.native_size_pattern().match(catalog.native_size("azure", size))


def test_locations_are_read_the_azure_way():
    assert arm.normalize_location("West Europe") == "westeurope"
    assert arm.normalize_location("eastus2") == "eastus2"


# -- records -------------------------------------------------------------------------------------

SUB = "/subscriptions/s/resourceGroups/lxcri-web/providers"
VM = {
    "id": f"{SUB}/Microsoft.Compute/virtualMachines/web-1", "name": "web-1", "location": "westeurope",
    "tags": {"lxcri-deployment": "web", "lxcri-kind": "vm", "lxcri-image": "ubuntu-24.04", "env": "prod"},
    "properties": {
        "vmId": "11111111-2222-3333-4444-555555555555", "timeCreated": "2026-01-02T03:04:05.1234567+00:00",
        "provisioningState": "Succeeded", "hardwareProfile": {"vmSize": "Standard_B1ms"},
        "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
                                              "version": "latest"}},
        "networkProfile": {"networkInterfaces": [{"id": f"{SUB}/Microsoft.Network/networkInterfaces/web-1-nic",
                                                  "properties": {"primary": True}}]},
        "instanceView": {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}]},
    },
}
NIC = {"id": f"{SUB}/Microsoft.Network/networkInterfaces/web-1-nic", "properties": {"ipConfigurations": [
    {"name": "ipconfig1", "properties": {"primary": True, "privateIPAddress": "10.0.0.4",
                                         "publicIPAddress": {"id": f"{SUB}/Microsoft.Network/publicIPAddresses/web-1-ip"}}}]}}
IP = {"id": f"{SUB}/Microsoft.Network/publicIPAddresses/web-1-ip", "properties": {"ipAddress": "20.1.2.3"}}


def _join(*docs):
    return {arm.lower(doc["id"]): doc for doc in docs}


def test_a_vm_with_its_nic_and_ip_becomes_a_complete_record(provider):
    rec = provider.backend("vm").record(VM, _join(NIC), _join(IP))
    assert rec == {
        "provider": "azure", "kind": "vm", "name": "web-1", "deployment": "web",
        "id": "11111111-2222-3333-4444-555555555555", "state": "running", "region": "westeurope", "zone": None,
        "size": "small", "native_size": "Standard_B1ms", "image": "ubuntu-24.04", "public_ip": "20.1.2.3",
        "private_ip": "10.0.0.4", "url": None, "tags": {"env": "prod"}, "created_at": "2026-01-02T03:04:05Z",
        "hourly_cost": 0.0207,
    }
    # The ARM id stays known, so actions on the record find the VM's resource group.
    assert provider.backend("vm").group_of(rec) == "lxcri-web"


def test_a_vm_without_tags_or_network_still_reads(provider):
    vm = dict(VM, tags={}, properties=dict(VM["properties"], networkProfile={}, instanceView=None))
    rec = provider.backend("vm").record(vm, {}, {})
    assert (rec["image"], rec["public_ip"], rec["private_ip"], rec["deployment"], rec["state"]) == (
        "Canonical:ubuntu-24_04-lts:server:latest", None, None, None, "running")


@pytest.mark.parametrize("codes, provisioning, state", [
    (["ProvisioningState/succeeded", "PowerState/running"], None, "running"),
    (["ProvisioningState/updating", "PowerState/starting"], None, "pending"),
    (["ProvisioningState/succeeded", "PowerState/stopped"], None, "stopped"),
    (["ProvisioningState/succeeded", "PowerState/deallocated"], None, "stopped"),
    (["ProvisioningState/updating", "PowerState/deallocating"], None, "pending"),
    (["ProvisioningState/updating", "PowerState/stopping"], None, "pending"),
    (["ProvisioningState/failed/AllocationFailed", "PowerState/running"], None, "error"),
    (["ProvisioningState/deleting", "PowerState/running"], None, "terminated"),
    (["ProvisioningState/creating"], None, "pending"),
    ([], "Creating", "pending"),
    ([], "Succeeded", "running"),
    ([], None, "unknown"),
])
def test_power_states(codes, provisioning, state):
    assert vms.power_state([{"code": code} for code in codes], provisioning) == state


# -- the connection --------------------------------------------------------------------------------

def test_missing_credentials_and_plain_http_are_refused():
    with pytest.raises(az.ProviderError) as error:
        az.AzureProvider(dict(CONNECTION, client_secret=None))
    assert str(error.value) == (
        "no Azure credentials: set azure.tenant_id, azure.client_id and azure.client_secret (or AZURE_TENANT_ID, "
        "AZURE_CLIENT_ID, AZURE_CLIENT_SECRET) and azure.subscription_id"
    )
    with pytest.raises(az.ProviderError, match="azure.endpoint must be an https URL"):
        az.AzureProvider(dict(CONNECTION, endpoint="http://127.0.0.1:4567"))
    with pytest.raises(az.ProviderError, match="azure.authority_host must be an https URL"):
        az.AzureProvider(dict(CONNECTION, authority_host="http://127.0.0.1:4567"))


def test_the_sdks_make_one_attempt_per_call(provider):
    for client in (provider.compute, provider.network, provider.resources):
        assert client._config.retry_policy.total_retries == 0


def test_the_group_is_ours_unless_one_is_given(provider):
    assert provider.group("web") == "lxcri-web" and provider.own_group()
    shared = az.AzureProvider(dict(CONNECTION, resource_group="shared"))
    assert shared.group("web") == "shared" and not shared.own_group()


# -- errors ----------------------------------------------------------------------------------------


def _error(status, code="Whatever", headers=None, cls=None):
    body = {"error": {"code": code, "message": f"{code} happened."}}
    return (cls or exceptions.HttpResponseError)(response=AzureCoreResponse(status, body, headers))


def _polled(exc, failed):
    """As it comes out of a poller: marked, and wrapping OperationFailed when the operation ended Failed."""
    if failed:
        exc.__cause__ = polling.OperationFailed("Operation failed or canceled")
    setattr(exc, errors.POLLED, True)
    return exc


def test_classification_of_arm_answers(provider):
    assert provider.classify(_error(429, "TooManyRequests", {"retry-after-ms": "1500"})) == (THROTTLED, 1.5)
    assert provider.classify(_error(429, headers={"Retry-After": "3"})) == (THROTTLED, 3.0)
    assert provider.classify(_error(429)) == (THROTTLED, None)
    assert provider.classify(_error(503, "ServiceUnavailable", {"Retry-After": "1"})) == (TRANSIENT, 1.0)
    assert provider.classify(_error(500, "InternalServerError")) == (TRANSIENT, None)
    assert provider.classify(_error(409, "AnotherOperationInProgress")) == (TRANSIENT, None)
    assert provider.classify(_error(409, "OperationNotAllowed")) == (FATAL, None)
    assert provider.classify(_error(404, "ResourceNotFound", cls=exceptions.ResourceNotFoundError)) == (FATAL, None)
    assert provider.classify(_error(400, "InvalidParameter")) == (FATAL, None)


def test_a_failed_operation_is_sent_again_only_for_codes_that_may_pass(provider):
    assert provider.classify(_polled(_error(200, "InternalExecutionError"), failed=True)) == (TRANSIENT, None)
    assert provider.classify(_polled(_error(200, "OperationPreempted"), failed=True)) == (TRANSIENT, None)
    assert provider.classify(_polled(_error(200, "AllocationFailed"), failed=True)) == (FATAL, None)
    # A poll that failed even after its own retries is not sent again as a whole.
    assert provider.classify(_polled(_error(503, "ServiceUnavailable"), failed=False)) == (FATAL, None)


def test_transport_errors(provider):
    assert provider.classify(exceptions.ServiceResponseError("Connection aborted")) == (TRANSIENT, None)
    refused = exceptions.ServiceRequestError("Failed to establish a new connection: [Errno 111] Connection refused",
                                             error=ConnectionRefusedError(111, "Connection refused"))
    assert provider.unreachable(refused)
    assert provider.classify(refused) == (FATAL, None)
    assert not provider.unreachable(exceptions.ServiceResponseError("Connection aborted"))


@pytest.mark.parametrize("message, kind", [
    ("Authentication failed: {'code': 'TooManyRequests', 'message': 'The request is being throttled.'}", THROTTLED),
    ("Authentication failed: HTTP Error: 503", TRANSIENT),
    ("Authentication failed: AADSTS90033: A transient error has occurred. Please try again.", TRANSIENT),
    ("Authentication failed: AADSTS7000215: Invalid client secret provided.", FATAL),
    ("Authentication failed: Unable to get authority configuration for https://x/tenant.", FATAL),
])
def test_sign_in_failures(provider, message, kind):
    assert provider.classify(exceptions.ClientAuthenticationError(message))[0] == kind


def test_a_throttled_authority_discovery_is_retried_and_a_wrong_tenant_is_not(provider):
    def discovery(status):
        try:
            try:
                raise ValueError(f"OIDC Discovery failed on https://x/t/v2.0/.well-known/openid-configuration. "
                                 f"HTTP status: {status}, Error: {{}}")
            except ValueError:
                raise ValueError("Unable to get authority configuration for https://x/t.")
        except ValueError as inner:
            error = exceptions.ClientAuthenticationError("Authentication failed: Unable to get authority configuration")
            error.__cause__ = inner
            return error

    assert provider.classify(discovery(429))[0] == THROTTLED
    assert provider.classify(discovery(400))[0] == FATAL


def test_sign_in_failures_become_clear_messages_without_the_secret(provider):
    def wrong_secret():
        raise exceptions.ClientAuthenticationError("Authentication failed: AADSTS7000215: Invalid client secret provided.")

    with pytest.raises(az.ProviderError) as error:
        provider.call(wrong_secret)
    text = str(error.value)
    assert "AADSTS7000215" in text and "azure.client_secret" in text and CONNECTION["client_id"] in text
    assert CONNECTION["client_secret"] not in text

    def authority_down():
        raise exceptions.ClientAuthenticationError("Authentication failed: [Errno 111] Connection refused")

    with pytest.raises(az.ProviderError, match="cannot reach the Azure AD authority at https://127.0.0.1:9 .*azure.authority_host"):
        provider.call(authority_down)


def test_an_unreachable_endpoint_names_the_option(provider):
    def refused():
        raise exceptions.ServiceRequestError("Connection refused", error=ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(az.ProviderError, match=r"cannot reach the azure API at https://127.0.0.1:9 \(set by azure.endpoint"):
        provider.call(refused)


def test_one_sign_in_at_a_time_and_a_fresh_credential_after_a_failure():
    made = []

    class Credential:
        def __init__(self):
            made.append(self)
            self.closed = False

        def get_token(self, *scopes, **kwargs):
            if len(made) == 1:
                raise exceptions.ClientAuthenticationError("Authentication failed: throttled")
            return "token"

        def close(self):
            self.closed = True

    serial = az._SerialCredential(Credential)
    with pytest.raises(exceptions.ClientAuthenticationError):
        serial.get_token("scope")
    assert len(made) == 2 and made[0].closed
    assert serial.get_token("scope") == "token"
