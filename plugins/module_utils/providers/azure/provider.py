# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Azure connection: a service principal's credential, the Resource Manager clients, error classes,
long-running operations, listings and the resource groups the deployments live in. VMs are vms.py,
container groups containers.py, metrics and alarms monitoring.py.

Where a deployment lives: the resource group `azure.resource_group` when it is set (it must exist; it is
shared, so members are told apart by their tag), else `lxcri-<deployment>`, created on demand in the
deployment's location with the tag lxcri-deployment and deleted again when the deployment goes absent
and the group holds nothing else. `region` is an Azure location (westeurope; "West Europe" is read the
same way). A deployment name is unique per resource group: the same name cannot live in two locations
of one group.

Calls: the SDKs' own retries are off (retry_total=0); each HTTP request, including every poll of a
long-running operation, goes through the collection's retry policy (provider.call), and an operation
that ends Failed with a code that may pass (InternalExecutionError, OperationPreempted ...) is sent
again as a whole (PUT, DELETE and the power POSTs are idempotent). Every operation is awaited within the
task's deadline (wait_timeout).
"""

from __future__ import annotations

import importlib
import re
import threading

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, Provider, ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.arm import (
    dig,
    doc,
    normalize_location,
    validate_tags,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.containers import Containers
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.errors import (
    AUTH_THROTTLED,
    AUTH_TRANSIENT,
    IN_USE,
    IN_USE_CODES,
    POLLED,
    RETRYABLE_CODES,
    auth_status,
    error_code,
    error_text,
    network_failure,
    refused,
    retry_after,
    status,
    tls_failure,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.monitoring import (
    ALARM_OWN_TAGS,
    Monitoring,
    validate_alarm,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.vms import Vms
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, exception_chain
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, SpecError
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import WaitTimeout

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
# customData: at most 65535 bytes once decoded.
CUSTOM_DATA_MAX = 65535


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


class AzureProvider(Provider):
    info = INFO
    BACKENDS = {"vm": Vms, "container": Containers}
    POLL_MAX = 5.0

    def connect(self):
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
        credential_options = {"connection_verify": self.verify}
        if self.authority:
            # A custom authority (a sovereign cloud, Azure Stack, a sandbox): no discovery at login.microsoftonline.com.
            credential_options.update(authority=self.authority, disable_instance_discovery=True)
        self.credential = _SerialCredential(lambda: ClientSecretCredential(
            conn["tenant_id"], conn["client_id"], conn["client_secret"], **credential_options))
        self.subscription = conn["subscription_id"]
        self.compute = self.client(ComputeManagementClient)
        self.network = self.client(NetworkManagementClient)
        self.resources = self.client(ResourceManagementClient)
        self._optional = {}  # module -> its client: made once, on first use
        self._optional_lock = threading.Lock()
        self.monitoring = Monitoring(self)

    def client(self, client_class):
        """A Resource Manager client of this connection. retry_total=0: retry.py is the only retry policy at
        work. The token audience follows the endpoint (https://management.azure.com/.default, or a sovereign
        cloud's own)."""
        return client_class(self.credential, self.subscription, base_url=self.endpoint, connection_verify=self.verify,
                            retry_total=0, credential_scopes=[self.endpoint + "/.default"], user_agent="lxcri.cloud")

    def optional_client(self, module, class_name, needed_by):
        """The client of an SDK package that only some tasks need (azure.mgmt.containerinstance ...), made on
        first use; without the package, MissingSDK says what needs it."""
        with self._optional_lock:
            if module not in self._optional:
                try:
                    client_class = getattr(importlib.import_module(module), class_name)
                except ImportError as exc:
                    raise MissingSDK(f"{needed_by} on azure needs {module.replace('.', '-')}: "
                                     "pip install -r requirements.txt") from exc
                self._optional[module] = self.client(client_class)
            return self._optional[module]

    # -- spec --------------------------------------------------------------------------------------

    @classmethod
    def validate_spec(cls, spec):
        kind = spec.get("kind") or "vm"
        if kind not in cls.BACKENDS:
            raise SpecError(f"kind '{kind}' is not supported on azure: azure deploys kind {' and '.join(cls.BACKENDS)}")
        validate_tags(spec.get("tags") or {}, cls.BACKENDS[kind].OWN_TAGS)
        size = len((spec.get("cloud_init") or "").encode("utf-8"))
        if size > CUSTOM_DATA_MAX:
            raise SpecError(f"user_data is {size} bytes; Azure's customData holds at most {CUSTOM_DATA_MAX}")

    @classmethod
    def validate_alarm(cls, alarm):
        validate_tags(alarm.get("tags") or {}, ALARM_OWN_TAGS)
        validate_alarm(alarm)

    def region(self, spec):
        return normalize_location(super().region(spec))

    # -- errors ------------------------------------------------------------------------------------

    def classify(self, exc):
        if isinstance(exc, ClientAuthenticationError):
            found = auth_status(exc)
            if found == 429:
                return THROTTLED, retry_after(exc)
            if found and found >= 500:
                return TRANSIENT, retry_after(exc)
            # MSAL hands identity only the error body of a token answer, not its status.
            text = str(exc)
            if AUTH_THROTTLED.search(text):
                return THROTTLED, None
            if AUTH_TRANSIENT.search(text):
                return TRANSIENT, None
            if network_failure(exc) and not refused(exc) and not tls_failure(exc):
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
            found = status(exc)
            if found == 429 or error_code(exc) in ("TooManyRequests", "RequestThrottled"):
                return THROTTLED, retry_after(exc)
            if found and found >= 500:
                return TRANSIENT, retry_after(exc)
            if error_code(exc) in RETRYABLE_CODES:
                return TRANSIENT, retry_after(exc)
            return FATAL, None
        if self.unreachable(exc) or tls_failure(exc):
            return FATAL, None
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        """Nothing answers at azure.endpoint (the authority's failures are ClientAuthenticationErrors)."""
        return isinstance(exc, ServiceRequestError) and refused(exc)

    def gone(self, exc):
        return isinstance(exc, ResourceNotFoundError)

    def call(self, func, *args, **kwargs):
        try:
            return super().call(func, *args, **kwargs)
        except ClientAuthenticationError as exc:
            raise ProviderError(self._auth_message(exc)) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            if not tls_failure(exc):
                raise
            raise ProviderError(
                f"TLS with the Azure API at {self.endpoint} failed: {error_text(exc)}; trust its CA with azure.ca_bundle "
                "(or LXCRI_AZURE_CA_BUNDLE), or set azure.validate_certs false"
            ) from exc
        except HttpResponseError as exc:
            if status(exc) == 403 and not getattr(exc, POLLED, False):
                raise ProviderError(
                    f"Azure refused the request ({error_text(exc)}): the service principal {self.connection['client_id']} "
                    f"needs a role such as Contributor on subscription {self.subscription} or on the resource group"
                ) from exc
            raise

    def _auth_message(self, exc):
        conn = self.connection
        authority = self.authority or "https://login.microsoftonline.com"
        detail = error_text(exc).replace("Authentication failed: ", "")
        if status(exc) == 401:
            return (f"the Azure API at {self.endpoint} did not accept the token of client {conn['client_id']} "
                    f"({detail}): check azure.tenant_id, azure.authority_host and azure.endpoint")
        if refused(exc):
            return (f"cannot reach the Azure AD authority at {authority} (set by azure.authority_host or "
                    f"AZURE_AUTHORITY_HOST): {detail}")
        if tls_failure(exc):
            return (f"TLS with the Azure AD authority at {authority} failed: {detail}; trust its CA with azure.ca_bundle "
                    "(or LXCRI_AZURE_CA_BUNDLE), or set azure.validate_certs false")
        return (f"Azure AD at {authority} refused to sign in client {conn['client_id']} of tenant {conn['tenant_id']}: "
                f"{detail} (check azure.tenant_id, azure.client_id and azure.client_secret, or AZURE_TENANT_ID, "
                "AZURE_CLIENT_ID and AZURE_CLIENT_SECRET)")

    # -- calls the backends share --------------------------------------------------------------------

    def lro(self, begin, *args, wait=True, in_use_passes=False, **kwargs):
        """A long-running operation, awaited within the task's deadline: each request retried on its own, a
        Failed operation sent again (begin_* + result() is one unit: PUT, DELETE and the power POSTs are
        idempotent). in_use_passes: a deletion answered "still in use" is tried again (its user was deleted a
        moment ago). Returns the result as JSON."""
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
                poller.wait(timeout=self.deadline.left())  # raises what ended the polling, if anything did
                if not poller.done():
                    raise self.deadline.timeout(f"the Azure operation {what}")
                return poller.result()
            except WaitTimeout:
                raise
            except Exception as exc:
                mark(exc, polled=True)
                raise

        return doc(self.call(attempt))

    def remove(self, begin, *args):
        """Delete a resource through its long-running operation; one that is gone already is what was asked."""
        try:
            self.lro(begin, *args, in_use_passes=True)
        except Exception as exc:
            if not self.gone(exc):
                raise

    def listing(self, pager):
        """Every item of a paged list, as JSON: each page is one retried call that resumes at its
        continuation token, so a throttled page does not start the whole listing again."""
        def page(token):
            pages = pager().by_page(continuation_token=token)
            chunk = next(pages, None)
            return [doc(item) for item in chunk or []], pages.continuation_token

        return self.paginate(page)

    def get(self, func, *args, **kwargs):
        """The resource as JSON, or None when it does not exist."""
        return doc(self.unless_gone(func, *args, **kwargs))

    # -- resource groups -----------------------------------------------------------------------------

    def group(self, deployment):
        """The resource group deployment `deployment` lives in."""
        return self.connection.get("resource_group") or f"lxcri-{deployment}"

    def own_group(self):
        """True when every deployment has a resource group of its own, made and removed by the collection."""
        return not self.connection.get("resource_group")

    def resource_id(self, group, kind, name):
        return f"/subscriptions/{self.subscription}/resourceGroups/{group}/providers/{kind}/{name}"

    def ensure_group(self, deployment, region):
        """The deployment's resource group, made when it is ours and missing."""
        group = self.group(deployment)
        found = self.get(self.resources.resource_groups.get, group)
        if found and dig(found, "properties", "provisioningState") == "Deleting":
            # An earlier `absent` is still deleting it: wait for that to end, then make it anew.
            self.wait(lambda: self.get(self.resources.resource_groups.get, group), lambda g: g is None,
                      f"resource group {group} to finish deleting", first=1.0)
            found = None
        if found:
            return group
        if not self.own_group():
            raise ProviderError(
                f"resource group '{group}' (azure.resource_group) does not exist in subscription {self.subscription}: "
                f"create it, or leave azure.resource_group unset so that the collection manages lxcri-{deployment}"
            )
        self.call(self.resources.resource_groups.create_or_update, group,
                  {"location": region, "tags": {DEPLOYMENT_TAG: deployment}})
        return group

    def drop_group(self, group, deployment):
        """Delete the deployment's own resource group when it holds nothing any more; True when it did."""
        if not self.own_group():
            return False
        found = self.get(self.resources.resource_groups.get, group)
        if not found or (found.get("tags") or {}).get(DEPLOYMENT_TAG) != deployment:
            return False  # not made by the collection for this deployment: it stays
        if self.listing(lambda: self.resources.resources.list_by_resource_group(group)):
            return False  # it holds something else (the deployment's other kind, anything of the user's): it stays
        self.remove(self.resources.resource_groups.begin_delete, group)
        return True
