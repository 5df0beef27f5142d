# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure: VMs are Azure virtual machines, one resource group per deployment, found by the tag lxcri-deployment;
containers are container groups of Azure Container Instances (azure_containers.py, mixed into AzureProvider below);
metrics and alarms are Azure Monitor's (azure_monitoring.py, delegated to below).

Where a deployment lives: the resource group `azure.resource_group` when it is set (it must exist; it is
shared, so members are told apart by their tag), else `lxcri-<deployment>`, created on demand in the
deployment's location with the tag lxcri-deployment and deleted again when the deployment goes absent
and the group holds nothing else. `region` is an Azure location (westeurope; "West Europe" is read the
same way). A deployment name is unique per resource group: the same name cannot live in two locations
of one group.

Per deployment: one virtual network `<name>-vnet` (10.0.0.0/16, subnet `default`) and one network
security group `<name>-nsg` on that subnet that lets SSH (TCP 22) in, all tagged lxcri-deployment. Per
member (the VM name is the member name `<name>-<i>`): a Standard static public IP `<member>-ip`, a NIC
`<member>-nic` and the VM with its OS disk `<member>-osdisk`. The VM deletes its OS disk and NIC with
it (deleteOption Delete); the public IP is deleted right after. When the last member is gone, the
network, the NSG, anything of the deployment left over by an interrupted run and (if it is ours) the
resource group go too, so that `absent` leaves nothing behind.

The VM: admin user `lxcri`, password login disabled, the SSH key `ssh_public_key` (or, without one, a
throwaway key generated for this run that nobody holds, so that only user_data's cloud-config can give
access), customData = the cloud-init user data. VM tags: lxcri-deployment, lxcri-kind, lxcri-image and
the user's tags. A record's `id` is the VM's vmId (a GUID that stays with the VM for its life); its
ARM resource id is kept internally. `stop` deallocates (the VM stops being billed for compute; its
static public IP stays), `start` starts, `restart` restarts.

Calls: the SDKs' own retries are off (retry_total=0); each HTTP request, including every poll of a
long-running operation, goes through the collection's retry policy (provider.call), and an operation
that ends Failed with a code that may pass (InternalExecutionError, OperationPreempted ...) is sent
again as a whole (PUT, DELETE and the power POSTs are idempotent).
"""

from __future__ import annotations

import base64
import re
import ssl
import threading

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    MissingSDK,
    Provider,
    ProviderError,
    iso_utc,
    record,
    undo,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure_containers import (
    CONTAINER_OWN_TAGS,
    ContainerInstances,
    validate_container,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure_monitoring import (
    ALARM_OWN_TAGS,
    AzureMonitoring,
    validate_alarm as validate_monitor_alarm,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, exception_chain, parse_retry_after
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    DEPLOYMENT_TAG,
    IMAGE_TAG,
    KIND_TAG,
    SERVICE_KINDS,
    TAG_PREFIX,
    SpecError,
    member_index,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import WaitTimeout, wait_for

try:
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.core.polling.base_polling import OperationFailed
    from azure.identity import ClientSecretCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.core.polling.arm_polling import ARMPolling
    from azure.mgmt.network import NetworkManagementClient

    try:
        from azure.mgmt.resource.resources import ResourceManagementClient
    except ImportError:  # azure-mgmt-resource before 24 kept it at the package root
        from azure.mgmt.resource import ResourceManagementClient
except ImportError:
    ComputeManagementClient = None
    ARMPolling = object

DEFAULT_ENDPOINT = "https://management.azure.com"
ADMIN_USER = "lxcri"
VNET_PREFIX = "10.0.0.0/16"
SUBNET = "default"
# PowerState/<x> of the instance view -> record state.
POWER_STATES = {
    "running": "running", "starting": "pending", "stopped": "stopped", "deallocated": "stopped",
    "stopping": "pending", "deallocating": "pending", "unknown": "unknown",
}
# Azure tag names cannot hold these characters; names are at most 512 characters, values 256, 50 per resource.
TAG_FORBIDDEN = set('<>%&\\?/')
TAG_NAME_MAX = 512
TAG_VALUE_MAX = 256
TAGS_MAX = 50
# customData: at most 65535 bytes once decoded.
CUSTOM_DATA_MAX = 65535
# ARM error codes that a later attempt may get past (in an error answer or in a Failed operation).
RETRYABLE_CODES = {
    "AnotherOperationInProgress", "OperationPreempted", "RetryableError", "InternalExecutionError",
    "InternalOperationError", "InternalServerError", "ServiceUnavailable", "ServerTimeout", "GatewayTimeout",
    "TooManyRequests", "RequestThrottled", "OperationNotAllowedDueToOngoingOperation",
}
# Sign-in errors that say "later": the token endpoint's error body (MSAL keeps no HTTP status).
AUTH_THROTTLED = re.compile(r"TooManyRequests|too_many_requests|throttl|HTTP Error: 429\b", re.I)
AUTH_TRANSIENT = re.compile(
    r"temporarily_unavailable|InternalServerError|ServiceUnavailable|AADSTS(50196|90033)\b|HTTP Error: 5[0-9][0-9]\b"
)
# "Still in use" answers right after the user was deleted: Network catches up within seconds.
IN_USE_CODES = {
    "PublicIPAddressCannotBeDeleted", "InUseSubnetCannotBeDeleted", "InUseNetworkSecurityGroupCannotBeDeleted",
    "NicInUse", "NicReservedForAnotherVm",
}
UNREACHABLE_TEXT = ("connection refused", "name or service not known", "nodename nor servname", "getaddrinfo failed",
                    "temporary failure in name resolution", "no route to host", "network is unreachable")
# Marks an exception that came out of a long-running operation's poller (its polls were retried already).
POLLED = "_lxcri_polled"
# Marks a deletion's "still in use" answer that is worth another try.
IN_USE = "_lxcri_in_use"


# -- helpers --------------------------------------------------------------------------------------

def normalize_location(location):
    """Azure's spelling of a location: 'West Europe' -> 'westeurope'."""
    return str(location or "").replace(" ", "").lower()


def image_reference(image):
    """The imageReference of a publisher:offer:sku:version URN."""
    publisher, offer, sku, version = image.split(":")
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def image_urn(reference):
    """publisher:offer:sku:version of an imageReference, or None."""
    if not reference or not reference.get("publisher"):
        return None
    return ":".join(str(reference.get(key) or "") for key in ("publisher", "offer", "sku", "version"))


def tag_problem(key, value):
    """Why a user tag cannot be an Azure tag, or None when it can."""
    bad = sorted(set(key) & TAG_FORBIDDEN)
    if not key.strip():
        return f"tags: key '{key}' is empty: Azure tag names need at least one character"
    if bad:
        return (f"tags: key '{key}' cannot be an Azure tag name: names may not contain "
                f"{' '.join(sorted(TAG_FORBIDDEN))} (found {' '.join(bad)})")
    if len(key) > TAG_NAME_MAX:
        return f"tags: key '{key[:40]}...' is {len(key)} characters; Azure tag names hold at most {TAG_NAME_MAX}"
    if len(value) > TAG_VALUE_MAX:
        return f"tags: value of '{key}' is {len(value)} characters; Azure tag values hold at most {TAG_VALUE_MAX}"
    return None


def user_tags(tags):
    return {key: value for key, value in (tags or {}).items() if not key.startswith(TAG_PREFIX)}


def identity_tags(spec):
    return {DEPLOYMENT_TAG: spec["name"], KIND_TAG: spec["kind"], IMAGE_TAG: spec["image"]}


def member_resources(member):
    """(public IP, NIC, OS disk) names of a member."""
    return f"{member}-ip", f"{member}-nic", f"{member}-osdisk"


def power_state(view_statuses, provisioning_state):
    """The record state of a VM from its instance view status codes and provisioningState."""
    codes = [str(status.get("code") or "") for status in view_statuses or []]
    # Codes look like ProvisioningState/succeeded, ProvisioningState/failed/AllocationFailed, PowerState/running.
    provisioning = next((c.split("/")[1] for c in codes if c.startswith("ProvisioningState/")), None)
    provisioning = (provisioning or provisioning_state or "").lower()
    power = next((c.split("/")[1].lower() for c in codes if c.startswith("PowerState/")), None)
    if provisioning == "deleting":
        return "terminated"
    if provisioning == "failed":
        return "error"
    if power:
        return POWER_STATES.get(power, "unknown")
    if provisioning in ("creating", "updating", "migrating"):
        return "pending"
    if provisioning == "succeeded":
        return "running"  # a VM without an instance view at hand: right after a successful create
    return "unknown"


def _member_order(rec):
    index = member_index(rec.get("deployment") or "", rec.get("name"))
    return (rec.get("deployment") or "", index is None, index or 0, rec.get("name") or "")


def _doc(model):
    """The JSON (wire) form of an SDK model or a dict."""
    if model is None:
        return None
    if isinstance(model, dict):
        return model
    if hasattr(model, "as_dict") and hasattr(model, "keys"):  # azure-mgmt-* on model_base: wire names
        return model.as_dict()
    if hasattr(model, "serialize"):  # msrest models of older SDKs
        return model.serialize(keep_readonly=True)
    return dict(model)


def _dig(doc, *keys):
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _lower(text):
    return str(text or "").rstrip("/").lower()


def _status(exc):
    response = getattr(exc, "response", None)
    return getattr(exc, "status_code", None) or getattr(response, "status_code", None)


def _header(exc, *names):
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name in names:
        try:
            value = headers.get(name)
        except Exception:  # a headers object that cannot answer: no hint
            value = None
        if value is not None:
            return value
    return None


def retry_after(exc):
    """Seconds the server asked to wait (retry-after-ms, x-ms-retry-after-ms or Retry-After), or None."""
    millis = parse_retry_after(_header(exc, "retry-after-ms", "x-ms-retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    return parse_retry_after(_header(exc, "Retry-After"))


def error_code(exc):
    """The ARM error code of an error answer or of a Failed operation, or None."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return code
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
        except Exception:  # not JSON
            return None
        if isinstance(body, dict):
            return _dig(body, "error", "code") or body.get("code")
    return None


def error_text(exc):
    """One line for a user: 'Code: message' of an ARM error, else the exception's first line."""
    error = getattr(exc, "error", None)
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if code and message:
        return f"{code}: {message}"
    text = getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


def auth_status(exc):
    """The HTTP status behind a sign-in failure: of the token answer, of a request inside it, or of MSAL's
    authority discovery (it reports only 'HTTP status: 429' in the text of the error it wraps)."""
    status = _status(exc)
    if status:
        return status
    for inner in exception_chain(exc):
        status = _status(inner) if inner is not exc else None
        if status:
            return status
        found = re.search(r"HTTP status: ([0-9]{3})", str(inner))
        if found:
            return int(found.group(1))
    return None


def _tls_failure(exc):
    return any(isinstance(inner, ssl.SSLError) for inner in exception_chain(exc)) or "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _network_failure(exc):
    """True when exc is or wraps an azure-core transport error (no HTTP answer came back)."""
    return ComputeManagementClient is not None and any(
        isinstance(inner, (ServiceRequestError, ServiceResponseError)) for inner in exception_chain(exc)
    )


def _refused(exc):
    for inner in exception_chain(exc):
        if isinstance(inner, ConnectionRefusedError):
            return True
    text = str(exc).lower()
    return any(word in text for word in UNREACHABLE_TEXT)


class _SerialCredential:
    """One token request at a time: parallel first calls wait for the first token instead of each fetching
    one (the credential caches it; the clients' policies then ask only when it runs out). Callers that
    waited while a request failed get that failure rather than trying again at once, and the next try
    starts from a fresh credential: MSAL keeps state of a failed request (throttling cache, telemetry)
    that can make every later request of the same credential fail."""

    def __init__(self, factory):
        self._factory = factory
        self._credential = factory()
        self._lock = threading.Lock()
        self._failures = 0
        self._failure = None

    def _serial(self, method, *scopes, **kwargs):
        seen = self._failures
        with self._lock:
            if self._failures != seen:
                raise self._failure
            try:
                return getattr(self._credential, method)(*scopes, **kwargs)
            except Exception as exc:
                self._failures += 1
                self._failure = exc
                try:
                    self._credential.close()
                except Exception:  # closing is a courtesy
                    pass
                self._credential = self._factory()
                raise

    def get_token(self, *scopes, **kwargs):
        return self._serial("get_token", *scopes, **kwargs)

    def get_token_info(self, *scopes, **kwargs):
        return self._serial("get_token_info", *scopes, **kwargs)


class _Polling(ARMPolling):
    """ARM polling whose every request (status polls and the final GET) runs under the provider's retry policy.

    A 429 or 5xx answer to a poll is raised as HttpResponseError inside the retried unit, so that the
    policy waits as the server asks and polls again, instead of failing the whole operation.
    """

    def __init__(self, provider, endpoint):
        super().__init__(path_format_arguments={"endpoint": endpoint})
        self._provider = provider

    def request_status(self, status_link):
        parent = super().request_status

        def once():
            pipeline_response = parent(status_link)
            response = pipeline_response.http_response
            if response.status_code == 429 or response.status_code >= 500:
                raise HttpResponseError(response=response)
            return pipeline_response

        return self._provider.call(once)


# -- the provider ---------------------------------------------------------------------------------

class AzureProvider(ContainerInstances, Provider):
    name = "azure"
    title = "Azure"
    # Standard_B1ms, Standard_D2s_v5, Standard_E64-32s_v3, Standard_NC24ads_A100_v4, Basic_A1 ...
    NATIVE_SIZE = re.compile(r"^(Standard|Basic)_[A-Za-z][A-Za-z0-9-]*(_[A-Za-z0-9]+)*$")
    NATIVE_SIZE_EXAMPLE = "Standard_D2s_v5"
    # publisher:offer:sku:version (a marketplace image URN)
    NATIVE_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._-]*:"
                              r"(latest|[0-9]+(\.[0-9]+)*)$")
    NATIVE_IMAGE_EXAMPLE = "Canonical:ubuntu-24_04-lts:server:latest (publisher:offer:sku:version)"
    POLL_MAX = 5.0
    # How long one long-running operation (a VM create, a resource group deletion ...) may take.
    LRO_TIMEOUT = 1800
    DELETE_TIMEOUT = 1800

    def __init__(self, connection, policy=None):
        super().__init__(connection, **({"policy": policy} if policy else {}))
        if ComputeManagementClient is None:
            raise MissingSDK(
                "the azure provider needs azure-identity, azure-mgmt-compute, azure-mgmt-network and "
                "azure-mgmt-resource: pip install -r requirements.txt"
            )
        conn = self.connection
        if not all(conn.get(key) for key in ("tenant_id", "client_id", "client_secret", "subscription_id")):
            raise ProviderError(
                "no Azure credentials: set azure.tenant_id, azure.client_id and azure.client_secret (or AZURE_TENANT_ID, "
                "AZURE_CLIENT_ID, AZURE_CLIENT_SECRET) and azure.subscription_id"
            )
        self.endpoint = (conn.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        self.authority = (conn.get("authority_host") or "").rstrip("/") or None
        for option, url in (("azure.endpoint", self.endpoint), ("azure.authority_host", self.authority)):
            if url and not re.match(r"^https://[^/\s]+", url):
                # Bearer tokens only travel over TLS (azure-core refuses otherwise, MSAL too).
                raise ProviderError(f"{option} must be an https URL, got {url}")
        verify = False if conn.get("validate_certs") is False else (conn.get("ca_bundle") or True)
        credential_options = {"connection_verify": verify}
        if self.authority:
            # A custom authority (a sovereign cloud, Azure Stack, a sandbox): no discovery at login.microsoftonline.com.
            credential_options.update(authority=self.authority, disable_instance_discovery=True)
        self.credential = _SerialCredential(lambda: ClientSecretCredential(
            conn["tenant_id"], conn["client_id"], conn["client_secret"], **credential_options))
        self.subscription = conn["subscription_id"]
        # retry_total=0: retry.py is the only retry policy at work. The token audience follows the endpoint
        # (https://management.azure.com/.default, or a sovereign cloud's own).
        options = {"base_url": self.endpoint, "connection_verify": verify, "retry_total": 0,
                   "credential_scopes": [self.endpoint + "/.default"], "user_agent": "lxcri.cloud"}
        self._options = options  # for the clients made on first use (containers)
        self._aci = None
        self._cg_docs = {}  # ARM id -> container group as last seen (for service_config)
        self.compute = ComputeManagementClient(self.credential, self.subscription, **options)
        self.network = NetworkManagementClient(self.credential, self.subscription, **options)
        self.resources = ResourceManagementClient(self.credential, self.subscription, **options)
        self._arm_ids = {}  # vmId -> ARM resource id of the VM
        self._raw_tags = {}  # vmId -> every tag of the VM as last seen (for update_tags)
        self._ready = set()  # (group, deployment) whose network exists
        self._throwaway = None
        self.monitoring = AzureMonitoring(self)  # metrics and alarms (azure_monitoring.py)

    # -- spec --------------------------------------------------------------------------------------

    @classmethod
    def validate(cls, spec):
        kind = spec.get("kind") or "vm"
        if kind not in ("vm", "container"):
            raise SpecError(f"kind '{kind}' is not supported on azure: azure deploys kind vm and container")
        cls._validate_tags(spec.get("tags") or {}, 3 if kind == "vm" else len(CONTAINER_OWN_TAGS))
        if kind == "container":
            validate_container(spec)
            return
        if len(spec["image"]) > TAG_VALUE_MAX:
            raise SpecError(f"image '{spec['image'][:40]}...' is too long for Azure's lxcri-image tag (at most {TAG_VALUE_MAX})")
        urn = catalog.native_image(cls.name, spec["image"])
        if "windows" in str(urn).split(":", maxsplit=1)[0].lower():
            raise SpecError(f"image '{spec['image']}' is a Windows image: the azure provider deploys Linux VMs only")
        size = len((spec.get("cloud_init") or "").encode("utf-8"))
        if size > CUSTOM_DATA_MAX:
            raise SpecError(f"user_data is {size} bytes; Azure's customData holds at most {CUSTOM_DATA_MAX}")

    @staticmethod
    def _validate_tags(tags, own):
        seen = {}
        for key, value in tags.items():
            problem = tag_problem(key, value)
            if problem:
                raise SpecError(problem)
            if key.lower() in seen:
                raise SpecError(f"tags: '{key}' and '{seen[key.lower()]}' are the same Azure tag (tag names are "
                                "case-insensitive): keep one")
            seen[key.lower()] = key
        if len(tags) + own > TAGS_MAX:
            raise SpecError(f"tags: at most {TAGS_MAX - own} tags on azure (a resource holds {TAGS_MAX}, {own} are the "
                            "collection's)")

    def region(self, spec):
        return normalize_location(super().region(spec))

    # -- monitoring (azure_monitoring.py) ----------------------------------------------------------

    @classmethod
    def validate_alarm(cls, alarm):
        cls._validate_tags(alarm.get("tags") or {}, ALARM_OWN_TAGS)
        validate_monitor_alarm(alarm)

    # -- errors ------------------------------------------------------------------------------------

    def classify(self, exc):
        if isinstance(exc, ClientAuthenticationError):
            status = auth_status(exc)
            if status == 429:
                return THROTTLED, retry_after(exc)
            if status and status >= 500:
                return TRANSIENT, retry_after(exc)
            # MSAL hands identity only the error body of a token answer, not its status.
            text = str(exc)
            if AUTH_THROTTLED.search(text):
                return THROTTLED, None
            if AUTH_TRANSIENT.search(text):
                return TRANSIENT, None
            if _network_failure(exc) and not _refused(exc) and not _tls_failure(exc):
                return TRANSIENT, None  # the token endpoint dropped the connection
            return FATAL, None
        if isinstance(exc, HttpResponseError):
            if getattr(exc, IN_USE, False):
                return TRANSIENT, None
            if getattr(exc, POLLED, False):
                # Out of a poller: its requests were retried already; only an operation that ended Failed with
                # a code that may pass is worth sending again.
                failed = any(isinstance(inner, OperationFailed) for inner in exception_chain(exc))
                return (TRANSIENT, None) if failed and error_code(exc) in RETRYABLE_CODES else (FATAL, None)
            status = _status(exc)
            if status == 429 or error_code(exc) in ("TooManyRequests", "RequestThrottled"):
                return THROTTLED, retry_after(exc)
            if status and status >= 500:
                return TRANSIENT, retry_after(exc)
            if error_code(exc) in RETRYABLE_CODES:
                return TRANSIENT, retry_after(exc)
            return FATAL, None
        if self.unreachable(exc) or _tls_failure(exc):
            return FATAL, None
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return TRANSIENT, None
        return FATAL, None

    _error_code = staticmethod(error_code)
    _error_text = staticmethod(error_text)

    def unreachable(self, exc):
        """Nothing answers at azure.endpoint (the authority's failures are ClientAuthenticationErrors)."""
        return isinstance(exc, ServiceRequestError) and _refused(exc)

    def call(self, func, *args, **kwargs):
        try:
            return super().call(func, *args, **kwargs)
        except ClientAuthenticationError as exc:
            raise ProviderError(self._auth_message(exc)) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            if not _tls_failure(exc):
                raise
            raise ProviderError(
                f"TLS with the Azure API at {self.endpoint} failed: {error_text(exc)}; trust its CA with azure.ca_bundle "
                "(or LXCRI_AZURE_CA_BUNDLE), or set azure.validate_certs false"
            ) from exc
        except HttpResponseError as exc:
            if _status(exc) == 403 and not getattr(exc, POLLED, False):
                raise ProviderError(
                    f"Azure refused the request ({error_text(exc)}): the service principal {self.connection['client_id']} "
                    f"needs a role such as Contributor on subscription {self.subscription} or on the resource group"
                ) from exc
            raise

    def _auth_message(self, exc):
        conn = self.connection
        authority = self.authority or "https://login.microsoftonline.com"
        detail = error_text(exc).replace("Authentication failed: ", "")
        if _status(exc) == 401:
            return (f"the Azure API at {self.endpoint} did not accept the token of client {conn['client_id']} "
                    f"({detail}): check azure.tenant_id, azure.authority_host and azure.endpoint")
        if _refused(exc):
            return (f"cannot reach the Azure AD authority at {authority} (set by azure.authority_host or "
                    f"AZURE_AUTHORITY_HOST): {detail}")
        if _tls_failure(exc):
            return (f"TLS with the Azure AD authority at {authority} failed: {detail}; trust its CA with azure.ca_bundle "
                    "(or LXCRI_AZURE_CA_BUNDLE), or set azure.validate_certs false")
        return (f"Azure AD at {authority} refused to sign in client {conn['client_id']} of tenant {conn['tenant_id']}: "
                f"{detail} (check azure.tenant_id, azure.client_id and azure.client_secret, or AZURE_TENANT_ID, "
                "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET)")

    # -- plumbing ----------------------------------------------------------------------------------

    def _lro(self, begin, *args, wait=True, in_use_passes=False, **kwargs):
        """A long-running operation, awaited: each request retried on its own, a Failed operation sent again
        (begin_* + result() is one unit: PUT, DELETE and the power POSTs are idempotent). in_use_passes: a
        deletion answered "still in use" is tried again (its user was deleted a moment ago)."""
        what = f"{begin.__name__.replace('begin_', '')} of {args[1] if len(args) > 1 else args[0]}"

        def mark(exc, polled):
            if polled:
                setattr(exc, POLLED, True)
            if in_use_passes and isinstance(exc, HttpResponseError) and error_code(exc) in IN_USE_CODES:
                setattr(exc, IN_USE, True)

        def attempt():
            try:
                poller = begin(*args, polling=_Polling(self, self.endpoint) if wait else False, **kwargs)
            except Exception as exc:
                mark(exc, polled=False)
                raise
            try:
                poller.wait(timeout=self.LRO_TIMEOUT)  # raises what ended the polling, if anything did
                if not poller.done():
                    raise WaitTimeout(f"timed out after {self.LRO_TIMEOUT}s waiting for the Azure operation {what}")
                return poller.result()
            except WaitTimeout:
                raise
            except Exception as exc:
                mark(exc, polled=True)
                raise

        return _doc(self.call(attempt))

    def _list(self, pager):
        """Every item of a paged list, as JSON; each page is one retried call that resumes at its
        continuation token, so a throttled page does not start the whole listing again."""
        items, token = [], None
        while True:
            def page(token=token):
                pages = pager().by_page(continuation_token=token)
                chunk = next(pages, None)
                return [_doc(item) for item in chunk or []], pages.continuation_token

            chunk, token = self.call(page)
            items += chunk
            if not token:
                return items

    def _get(self, func, *args, **kwargs):
        """The resource as JSON, or None when it does not exist."""
        try:
            return _doc(self.call(func, *args, **kwargs))
        except ResourceNotFoundError:
            return None

    def _delete(self, begin, *args):
        try:
            self._lro(begin, *args, in_use_passes=True)
        except ResourceNotFoundError:
            pass  # gone already: that is what was asked

    def _group(self, deployment):
        return self.connection.get("resource_group") or f"lxcri-{deployment}"

    def _own_group(self):
        return not self.connection.get("resource_group")

    def _group_of(self, rec):
        arm_id = self._arm_ids.get(rec.get("id"))
        if arm_id:
            return arm_id.split("/")[4]
        return self._group(rec.get("deployment") or "")

    def _id(self, group, kind, name):
        return f"/subscriptions/{self.subscription}/resourceGroups/{group}/providers/{kind}/{name}"

    # -- reading -----------------------------------------------------------------------------------

    def _scan(self, group=None):
        """(VMs with instance view, {NIC id: NIC}, {public IP id: IP}) of a resource group, or of the whole
        subscription when group is None: three listings, in parallel."""
        if group is None:
            listings = [
                lambda: self.compute.virtual_machines.list_all(expand="instanceView"),
                self.network.network_interfaces.list_all,
                self.network.public_ip_addresses.list_all,
            ]
        else:
            listings = [
                lambda: self.compute.virtual_machines.list(group, expand="instanceView"),
                lambda: self.network.network_interfaces.list(group),
                lambda: self.network.public_ip_addresses.list(group),
            ]
        try:
            vms, nics, ips = self.each(self._list, listings, workers=3)
        except ResourceNotFoundError:
            return [], {}, {}  # no such resource group: no members
        return vms, {_lower(n.get("id")): n for n in nics}, {_lower(i.get("id")): i for i in ips}

    def _record(self, vm, nics, ips):
        props = vm.get("properties") or {}
        tags = dict(vm.get("tags") or {})
        vm_id = props.get("vmId") or vm.get("id")
        self._arm_ids[vm_id] = vm.get("id")
        self._raw_tags[vm_id] = dict(tags)
        refs = _dig(props, "networkProfile", "networkInterfaces") or []
        primary = next((r for r in refs if _dig(r, "properties", "primary")), refs[0] if refs else {})
        nic = nics.get(_lower(primary.get("id"))) or {}
        configs = _dig(nic, "properties", "ipConfigurations") or []
        config = next((c for c in configs if _dig(c, "properties", "primary")), configs[0] if configs else {})
        ip = ips.get(_lower(_dig(config, "properties", "publicIPAddress", "id"))) or {}
        return record(
            self.name,
            kind=tags.get(KIND_TAG, "vm"),
            name=vm.get("name"),
            deployment=tags.get(DEPLOYMENT_TAG),
            id=vm_id,
            state=power_state(_dig(props, "instanceView", "statuses"), props.get("provisioningState")),
            region=normalize_location(vm.get("location")),
            zone=None,
            native_size=_dig(props, "hardwareProfile", "vmSize"),
            image=tags.get(IMAGE_TAG) or image_urn(_dig(props, "storageProfile", "imageReference")),
            public_ip=_dig(ip, "properties", "ipAddress"),
            private_ip=_dig(config, "properties", "privateIPAddress"),
            tags=user_tags(tags),
            created_at=iso_utc(props.get("timeCreated")),
        )

    def find_members(self, name, region, kind="vm"):
        vms, nics, ips = self._scan(self._group(name))
        return sorted((
            self._record(vm, nics, ips) for vm in vms
            if (vm.get("tags") or {}).get(DEPLOYMENT_TAG) == name and normalize_location(vm.get("location")) == region
        ), key=_member_order)

    def list(self, region, tags=None):
        tags = {key: str(value) for key, value in (tags or {}).items()}
        vms, nics, ips = self._scan()
        records = [
            self._record(vm, nics, ips) for vm in vms
            if DEPLOYMENT_TAG in (vm.get("tags") or {}) and normalize_location(vm.get("location")) == normalize_location(region)
        ]
        records = [rec for rec in records if all(rec["tags"].get(key) == value for key, value in tags.items())]
        return records + self._list_groups(normalize_location(region), tags)

    def refresh(self, records):
        records, groups = self.split(records)
        return self._refresh_vms(records) + (self._refresh_groups(groups) if groups else [])

    def _refresh_vms(self, records):
        by_group = {}
        for rec in records:
            by_group.setdefault(self._group_of(rec), set()).add(rec["id"])
        fresh = []
        for group, ids in by_group.items():
            vms, nics, ips = self._scan(group)
            fresh += [self._record(vm, nics, ips) for vm in vms if _dig(vm, "properties", "vmId") in ids]
        return sorted(fresh, key=_member_order)

    # -- the deployment's shared pieces ---------------------------------------------------------------

    def _ensure_group(self, deployment, region):
        group = self._group(deployment)
        found = self._get(self.resources.resource_groups.get, group)
        if found and _dig(found, "properties", "provisioningState") == "Deleting":
            # An earlier `absent` is still deleting it: wait for that to end, then make it anew.
            wait_for(lambda: self._get(self.resources.resource_groups.get, group), lambda g: g is None,
                     f"resource group {group} to finish deleting", self.DELETE_TIMEOUT, first=1.0, maximum=self.POLL_MAX)
            found = None
        if found:
            return group
        if not self._own_group():
            raise ProviderError(
                f"resource group '{group}' (azure.resource_group) does not exist in subscription {self.subscription}: "
                f"create it, or leave azure.resource_group unset so that the collection manages lxcri-{deployment}"
            )
        self.call(self.resources.resource_groups.create_or_update, group,
                  {"location": region, "tags": {DEPLOYMENT_TAG: deployment}})
        return group

    def _ensure_network(self, deployment, group, region):
        """The subnet id of the deployment's network (vnet + subnet + NSG), made when missing."""
        vnet_name, nsg_name = f"{deployment}-vnet", f"{deployment}-nsg"
        subnet_id = self._id(group, "Microsoft.Network/virtualNetworks", f"{vnet_name}/subnets/{SUBNET}")
        if (group, deployment) in self._ready:
            return subnet_id
        tags = {DEPLOYMENT_TAG: deployment}
        vnet = self._get(self.network.virtual_networks.get, group, vnet_name)
        if vnet and normalize_location(vnet.get("location")) != region:
            raise ProviderError(
                f"deployment '{deployment}' already lives in location {vnet.get('location')} (resource group {group}); "
                f"a deployment name is unique per resource group: use region {vnet.get('location')}, another name, "
                "or another azure.resource_group"
            )
        if not vnet or not any(s.get("name") == SUBNET for s in _dig(vnet, "properties", "subnets") or []):
            nsg = self._get(self.network.network_security_groups.get, group, nsg_name)
            if not nsg:
                nsg = self._lro(self.network.network_security_groups.begin_create_or_update, group, nsg_name, {
                    "location": region, "tags": tags,
                    "properties": {"securityRules": [{
                        "name": "AllowSSH",
                        "properties": {
                            "priority": 1000, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                            "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
                            "destinationPortRange": "22", "description": "SSH to the members (key login only)",
                        },
                    }]},
                })
            self._lro(self.network.virtual_networks.begin_create_or_update, group, vnet_name, {
                "location": region, "tags": tags,
                "properties": {
                    "addressSpace": {"addressPrefixes": [VNET_PREFIX]},
                    "subnets": [{"name": SUBNET, "properties": {
                        "addressPrefix": VNET_PREFIX, "networkSecurityGroup": {"id": nsg["id"]},
                    }}],
                },
            })
        self._ready.add((group, deployment))
        return subnet_id

    def _throwaway_key(self):
        """A fresh SSH public key whose private half is thrown away: Azure wants a way in, nobody gets one."""
        if self._throwaway is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._throwaway = key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            ).decode() + " lxcri-throwaway"
        return self._throwaway

    # -- changing ----------------------------------------------------------------------------------

    def create(self, spec, region, members):
        if spec["kind"] in SERVICE_KINDS:
            return self._create_group(spec, region)
        group = self._ensure_group(spec["name"], region)
        self._refuse_taken(spec["name"], group, members)
        subnet_id = self._ensure_network(spec["name"], group, region)
        key = (spec.get("ssh_public_key") or "").strip() or self._throwaway_key()
        return self.each(lambda member: self._create_one(spec, group, region, subnet_id, key, member), members)

    def _refuse_taken(self, deployment, group, members):
        """A VM that find() did not report but that has a member's name is someone else's, or this
        deployment's in another location: a PUT would change it, so refuse before touching anything."""
        wanted = set(members)
        for vm in self._list(lambda: self.compute.virtual_machines.list(group)):
            if vm.get("name") not in wanted:
                continue
            owner = (vm.get("tags") or {}).get(DEPLOYMENT_TAG)
            if owner == deployment:
                raise ProviderError(
                    f"VM {vm['name']} of deployment '{deployment}' already lives in location {vm.get('location')} "
                    f"(resource group {group}); a deployment name is unique per resource group: use region "
                    f"{vm.get('location')}, another name, or another azure.resource_group"
                )
            raise ProviderError(
                f"a VM named {vm['name']} already exists in resource group {group} without the tag "
                f"{DEPLOYMENT_TAG}={deployment}: rename or delete it, or choose another deployment name"
            )

    def _vm_body(self, spec, region, member, nic_id, key):
        os_profile = {
            "computerName": member,
            "adminUsername": ADMIN_USER,
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {"publicKeys": [{"path": f"/home/{ADMIN_USER}/.ssh/authorized_keys", "keyData": key}]},
            },
        }
        if spec.get("cloud_init"):
            os_profile["customData"] = base64.b64encode(spec["cloud_init"].encode("utf-8")).decode("ascii")
        return {
            "location": region,
            "tags": {**spec["tags"], **identity_tags(spec)},
            "properties": {
                "hardwareProfile": {"vmSize": self.native_size(spec)},
                "storageProfile": {
                    "imageReference": image_reference(catalog.native_image(self.name, spec["image"])),
                    "osDisk": {"name": member_resources(member)[2], "createOption": "FromImage", "deleteOption": "Delete"},
                },
                "osProfile": os_profile,
                "networkProfile": {"networkInterfaces": [
                    {"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}},
                ]},
            },
        }

    def _create_one(self, spec, group, region, subnet_id, key, member):
        ip_name, nic_name, _disk = member_resources(member)
        tags = {DEPLOYMENT_TAG: spec["name"]}
        try:
            ip = self._lro(self.network.public_ip_addresses.begin_create_or_update, group, ip_name, {
                "location": region, "tags": tags, "sku": {"name": "Standard", "tier": "Regional"},
                "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
            })
            nic = self._lro(self.network.network_interfaces.begin_create_or_update, group, nic_name, {
                "location": region, "tags": tags,
                "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "subnet": {"id": subnet_id}, "privateIPAllocationMethod": "Dynamic",
                    "publicIPAddress": {"id": ip["id"]}, "primary": True,
                }}]},
            })
            vm = self._lro(self.compute.virtual_machines.begin_create_or_update, group, member,
                           self._vm_body(spec, region, member, nic["id"], key), wait=spec.get("wait", True))
        except ProviderError as exc:
            raise ProviderError(f"creating {member} failed: {exc}; {self._undo(group, member)}") from exc
        except Exception as exc:
            if getattr(exc, "status_code", None) == 409 and error_code(exc) == "InvalidResourceLocation":
                hint = f" (a resource named like it lives in another location of resource group {group})"
            else:
                hint = ""
            raise ProviderError(
                f"creating {member} in {region} failed: {error_text(exc).rstrip('.')}{hint}; {self._undo(group, member)}"
            ) from exc
        return self._record(vm, {_lower(nic["id"]): nic}, {_lower(ip["id"]): ip})

    def _undo(self, group, member):
        """Remove what a failed create of one member made; say what was removed and what is left."""
        ip_name, nic_name, _disk = member_resources(member)
        # The VM (a failed create can leave one in state Failed) takes its OS disk along.
        steps = [
            (f"VM {member}", self.compute.virtual_machines.begin_delete, member),
            (f"network interface {nic_name}", self.network.network_interfaces.begin_delete, nic_name),
            (f"public IP {ip_name}", self.network.public_ip_addresses.begin_delete, ip_name),
        ]
        _undone, left = undo(((what, lambda begin=begin, name=name: self._delete(begin, group, name))
                              for what, begin, name in steps), explain=error_text)
        if left:
            return f"these could not be removed, delete them by hand in resource group {group}: {', '.join(left)}"
        return f"what this run had made for it (VM, network interface {nic_name}, public IP {ip_name}) was removed again"

    def delete(self, records):
        records, groups = self.split(records)
        if groups:
            self._delete_groups(groups)
        if records:
            self._delete_vms(records)

    def _delete_vms(self, records):
        # The VMs take their OS disk and NIC with them (deleteOption Delete).
        self.each(lambda rec: self._delete(self.compute.virtual_machines.begin_delete, self._group_of(rec), rec["name"]),
                  records)
        by_group = {}
        for rec in records:
            by_group.setdefault((self._group_of(rec), rec.get("deployment")), []).append(rec["name"])
        for (group, deployment), names in by_group.items():
            self._cleanup(group, deployment, names)

    def _cleanup(self, group, deployment, names):
        """Delete the members' public IPs (and NICs a VM did not take along); when the deployment has no VM
        left in the group, also its network, NSG, leftovers and (if it is ours and empty) the group."""
        vms, nics, ips = self._scan(group)
        if not vms and not nics and not ips and not self._get(self.resources.resource_groups.get, group):
            return  # the group is gone altogether
        remaining = [vm for vm in vms if (vm.get("tags") or {}).get(DEPLOYMENT_TAG) == deployment]
        empty = deployment is not None and not remaining
        used = {_lower(_dig(ref, "id")) for vm in vms for ref in _dig(vm, "properties", "networkProfile", "networkInterfaces") or []}

        def ours(resource, suffix):
            tags = resource.get("tags") or {}
            name = resource.get("name") or ""
            if name in {f"{member}-{suffix}" for member in names}:
                return True
            return empty and (tags.get(DEPLOYMENT_TAG) == deployment or
                              re.match(rf"^{re.escape(deployment)}-[0-9]+-{suffix}$", name) is not None)

        stale_nics = [nic for key, nic in nics.items() if ours(nic, "nic") and key not in used]
        self.each(lambda nic: self._delete(self.network.network_interfaces.begin_delete, group, nic["name"]), stale_nics)
        gone = {_lower(nic.get("id")) for nic in stale_nics}
        in_use = {
            _lower(_dig(config, "properties", "publicIPAddress", "id"))
            for key, nic in nics.items() if key not in gone
            for config in _dig(nic, "properties", "ipConfigurations") or []
        }
        stale_ips = [ip for key, ip in ips.items() if ours(ip, "ip") and key not in in_use]
        self.each(lambda ip: self._delete(self.network.public_ip_addresses.begin_delete, group, ip["name"]), stale_ips)
        if not empty:
            return
        disks = self._list(lambda: self.compute.disks.list_by_resource_group(group))
        stale_disks = [d for d in disks if not d.get("managedBy") and (
            (d.get("tags") or {}).get(DEPLOYMENT_TAG) == deployment or
            re.match(rf"^{re.escape(deployment)}-[0-9]+-osdisk$", d.get("name") or ""))]
        self.each(lambda d: self._delete(self.compute.disks.begin_delete, group, d["name"]), stale_disks)
        # The subnet goes with the vnet; then the NSG is no longer in use.
        self._delete(self.network.virtual_networks.begin_delete, group, f"{deployment}-vnet")
        self._delete(self.network.network_security_groups.begin_delete, group, f"{deployment}-nsg")
        self._ready.discard((group, deployment))
        if not self._own_group():
            return
        found = self._get(self.resources.resource_groups.get, group)
        if not found or (found.get("tags") or {}).get(DEPLOYMENT_TAG) != deployment:
            return  # not made by the collection for this deployment: it stays
        if self._list(lambda: self.resources.resources.list_by_resource_group(group)):
            return  # it holds something else: it stays
        self._delete(self.resources.resource_groups.begin_delete, group)

    def _power(self, rec, action):
        begin = getattr(self.compute.virtual_machines, f"begin_{action}")
        self._lro(begin, self._group_of(rec), rec["name"])

    def start(self, records):
        records, groups = self.split(records)
        if groups:
            self._start_groups(groups)
        self.each(lambda rec: self._power(rec, "start"), records)

    def stop(self, records):
        records, groups = self.split(records)
        if groups:
            self._stop_groups(groups)
        # Deallocate rather than power off: a deallocated VM is not billed for compute.
        self.each(lambda rec: self._power(rec, "deallocate"), records)

    def restart(self, records):
        records, groups = self.split(records)
        if groups:
            self._restart_groups(groups)
        self.each(lambda rec: self._power(rec, "restart"), records)

    def update_tags(self, records, tags, purge):
        records, groups = self.split(records)
        if groups:
            self._tag_groups(groups, tags, purge)

        def retag(rec):
            group = self._group_of(rec)
            raw = self._raw_tags.get(rec["id"])
            if raw is None:
                raw = (self._get(self.compute.virtual_machines.get, group, rec["name"]) or {}).get("tags") or {}
            own = {key: value for key, value in raw.items() if key.startswith(TAG_PREFIX)}
            wanted = {**(dict(tags) if purge else {**user_tags(raw), **tags}), **own}
            if wanted != raw:
                vm = self._lro(self.compute.virtual_machines.begin_update, group, rec["name"], {"tags": wanted})
                self._raw_tags[rec["id"]] = dict((vm or {}).get("tags") or wanted)

        self.each(retag, records)
