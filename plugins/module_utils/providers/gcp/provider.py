# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GCP connection: credentials, the Compute Engine clients (REST transport), error classes, SDK calls and
listings under the collection's retry policy, and where a deployment lives.

Where a deployment lives: `region` is a zone (us-central1-a) or a region (us-central1). For VMs a region means
its first zone in alphabetical order, looked up once (us-central1 -> us-central1-a, europe-west1 ->
europe-west1-b), so the same spec always lands in the same zone; records carry both: region "us-central1",
zone "us-central1-a". Cloud Run services live in regions: a container deployment given a region keeps it.

VMs are instances.py, containers (Cloud Run v2) run.py, metrics and alarms (Cloud Monitoring v3) monitoring.py.
"""

from __future__ import annotations

import contextlib
import json

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, Provider, ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp import monitoring as gcp_monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.errors import refusal
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.instances import Instances
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.labels import check_tags, label_ok
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.places import REGION, ZONE
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.run import Services
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, parse_retry_after
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError

try:
    import google.auth
    import google.auth.exceptions
    import requests
    from google.api_core import exceptions as api_exceptions
    from google.api_core.client_options import ClientOptions
    from google.cloud import compute_v1
    from google.oauth2 import service_account
except ImportError:
    compute_v1 = None

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
MAX_METADATA_VALUE = 256 * 1024
# The labels of the collection's own on every deployment (lxcri-deployment, lxcri-kind, lxcri-image).
IDENTITY_LABELS = 3
# GCE answers some rate limits with 403 and one of these reasons (a 403 quotaExceeded is a real quota: fatal).
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
CALL_TIMEOUT = 60.0


class GcpProvider(Provider):
    info = INFO
    BACKENDS = {"vm": Instances, "container": Services}
    POLL_MAX = 2.0

    def connect(self):
        if compute_v1 is None:
            raise MissingSDK("the gcp provider needs google-cloud-compute and google-auth: pip install -r requirements.txt")
        conn = self.connection
        self.credentials, file_project = self._credentials(conn.get("credentials_file"))
        self.credentials_source = conn.get("credentials_file") or "Application Default Credentials"
        self.project = conn.get("project") or file_project
        if not self.project:
            raise ProviderError(
                "no GCP project: set gcp.project (or GOOGLE_CLOUD_PROJECT), or use a credentials file that names "
                "its project_id"
            )
        self._options = ClientOptions(api_endpoint=conn["endpoint"]) if conn.get("endpoint") else None
        self.instances = self.client(compute_v1.InstancesClient)
        self.zone_operations = self.client(compute_v1.ZoneOperationsClient)
        self.regions = self.client(compute_v1.RegionsClient)
        self._monitoring = None

    def client(self, cls):
        """An SDK client of this connection (REST transport, the endpoint, TLS as tls_verify says)."""
        made = cls(credentials=self.credentials, transport="rest", client_options=self._options)
        # The REST transport talks through a requests session: TLS verification is set on it.
        session = getattr(getattr(made, "_transport", None), "_session", None)
        if session is not None and self.verify is not True:
            session.verify = self.verify
        return made

    @property
    def monitoring(self):
        """Cloud Monitoring (monitoring.Monitoring), made at first use."""
        if self._monitoring is None:
            if not gcp_monitoring.load_sdk():
                raise MissingSDK("metrics and alarms on gcp need google-auth with requests: pip install -r requirements.txt")
            self._monitoring = gcp_monitoring.Monitoring(self)
        return self._monitoring

    @staticmethod
    def _credentials(path):
        """(credentials, project id or None) from the key file, or from Application Default Credentials."""
        hint = "set gcp.credentials_file (or GOOGLE_APPLICATION_CREDENTIALS) to a service-account key file"
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    info = json.load(handle)
            except OSError as exc:
                raise ProviderError(f"gcp.credentials_file '{path}' cannot be read ({exc.strerror}): {hint}") from None
            except ValueError:
                raise ProviderError(f"gcp.credentials_file '{path}' is not a JSON key file: {hint}") from None
            if not isinstance(info, dict):
                raise ProviderError(f"gcp.credentials_file '{path}' is not a JSON key file: {hint}")
            try:
                if info.get("type") == "service_account":
                    credentials = service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
                    return credentials, info.get("project_id")
                credentials, project = google.auth.load_credentials_from_file(path, scopes=SCOPES)
                return credentials, project or info.get("quota_project_id")
            except (ValueError, KeyError, google.auth.exceptions.GoogleAuthError) as exc:
                raise ProviderError(f"gcp.credentials_file '{path}' is not a usable key file ({exc}): {hint}") from None
        try:
            return google.auth.default(scopes=SCOPES)
        except google.auth.exceptions.GoogleAuthError:
            raise ProviderError(
                f"no GCP credentials: {hint}, or run where Application Default Credentials are set up"
            ) from None

    # -- validation ------------------------------------------------------------------------------

    @classmethod
    def validate_spec(cls, spec):
        check_tags(spec.get("tags") or {}, IDENTITY_LABELS)
        if spec.get("cloud_init") and len(spec["cloud_init"].encode()) > MAX_METADATA_VALUE:
            raise SpecError(f"user_data is too long for gcp: at most {MAX_METADATA_VALUE} bytes of instance metadata")

    @classmethod
    def validate_alarm(cls, alarm):
        gcp_monitoring.validate_alarm(alarm, label_ok)

    # -- errors ----------------------------------------------------------------------------------

    def classify(self, exc):
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            response = getattr(exc, "response", None)
            headers = getattr(response, "headers", None) or {}
            retry_after = parse_retry_after(headers.get("Retry-After"))
            reasons = {error.get("reason") for error in (exc.errors or []) if isinstance(error, dict)}
            if isinstance(exc, (api_exceptions.TooManyRequests, api_exceptions.ResourceExhausted)):
                return THROTTLED, retry_after
            if isinstance(exc, api_exceptions.Forbidden) and reasons & RATE_LIMIT_REASONS:
                return THROTTLED, retry_after  # GCE's rate limits answer 403 rateLimitExceeded
            if exc.code in (500, 502, 503, 504) or isinstance(
                exc, (api_exceptions.InternalServerError, api_exceptions.BadGateway, api_exceptions.ServiceUnavailable,
                      api_exceptions.GatewayTimeout)
            ):
                return TRANSIENT, retry_after
            return FATAL, None
        if self.unreachable(exc):
            return FATAL, None
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.ChunkedEncodingError, google.auth.exceptions.TransportError)):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        if not isinstance(exc, requests.exceptions.ConnectionError) or isinstance(exc, requests.exceptions.Timeout):
            return False
        text = str(exc).lower()
        return "refused" in text or "name or service not known" in text or "failed to resolve" in text

    def gone(self, exc):
        return isinstance(exc, api_exceptions.NotFound)

    def rejected(self, exc):
        """What a Compute Engine refusal means for the user (errors.refusal), or None."""
        endpoint = self.connection.get("endpoint") or "compute.googleapis.com"
        return refusal(exc, f"the GCP API at {endpoint}", self.project, credentials=f" of {self.credentials_source}")

    # -- calls -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def explained(self, explain=None):
        """Raise what explain(exc) (default: rejected) makes of a failure, where it makes something of it."""
        try:
            yield
        except Exception as exc:  # explain decides; anything it has no words for goes on unchanged
            better = (explain or self.rejected)(exc)
            if better is None:
                raise
            raise better from exc

    def rpc(self, method, request, timeout=CALL_TIMEOUT, missing_ok=False, explain=None):
        """One SDK call under our retry policy, the SDK's own retries off (retry=None); with missing_ok, None
        when the resource is not there."""
        with self.explained(explain):
            return (self.unless_gone if missing_ok else self.call)(method, request=request, retry=None, timeout=timeout)

    def listing(self, method, request, field, explain=None):
        """Every item under `field` of a paged SDK listing, each page one retried call (paginate)."""
        def page(token):
            if token:
                request.page_token = token
            first = next(iter(method(request=request, retry=None, timeout=CALL_TIMEOUT).pages))
            return list(getattr(first, field)), first.next_page_token

        with self.explained(explain):
            return self.paginate(page)

    # -- where -----------------------------------------------------------------------------------

    def region(self, spec):
        """Where a deployment lives: the zone given, or what its kind makes of the region given (Instances: its
        first zone; Cloud Run: the region)."""
        value = super().region(spec)
        if ZONE.match(value):
            return value
        if not REGION.match(value):
            raise ProviderError(
                f"region '{value}' is not a GCP zone or region: use a zone such as us-central1-a or a region such "
                "as us-central1 (its first zone is used)"
            )
        kind = spec.get("kind") or "vm"
        if kind not in self.BACKENDS:
            return value  # nothing of that kind is deployed here (an info task asking for one): no zone to look up
        return self.backend(kind).locate(value)
