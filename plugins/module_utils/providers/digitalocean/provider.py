# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The DigitalOcean connection: one pydo client, error classes, answers pydo returns instead of raising, pages.

pydo answers some declared error statuses (404 mostly) with the error's body instead of raising: every call
whose answer matters goes through answer()/checked(), which turn such a body into ErrorAnswer, so that gone()
decides "not there" in one place for raised and returned errors alike.
"""

from __future__ import annotations

import re
import socket
import ssl
import time

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, Provider, ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.answers import ErrorAnswer, body
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.apps import Apps
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.droplets import Droplets
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.monitoring import Monitoring, validate_alarm
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, exception_chain, parse_retry_after

try:
    import pydo
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
except ImportError:
    pydo = None

DEFAULT_ENDPOINT = "https://api.digitalocean.com"
PAGE_SIZE = 200
UNREACHABLE_TEXT = ("connection refused", "name or service not known", "nodename nor servname", "getaddrinfo failed")


def _error_body(exc):
    """(status, error id, message) of an HTTP error answer."""
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    error_id, message = None, None
    if response is not None:
        try:
            data = response.json()
        except Exception:  # not JSON: keep a little of the text
            try:
                data = {"message": response.text()[:300]}
            except Exception:
                data = {}
        if isinstance(data, dict):
            error_id = data.get("id")
            message = data.get("message") or data.get("error")
    return status, error_id, message or getattr(exc, "reason", None) or str(exc)


def _header(exc, name):
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return headers.get(name)
    except Exception:
        return None


class DigitalOceanProvider(Provider):
    info = INFO
    BACKENDS = {"vm": Droplets, "container": Apps}
    POLL_MAX = 3.0

    def connect(self):
        if pydo is None:
            raise MissingSDK("the digitalocean provider needs pydo: pip install -r requirements.txt")
        conn = self.connection
        if not conn.get("token"):
            raise ProviderError("no DigitalOcean credentials: set digitalocean.token (or DIGITALOCEAN_TOKEN)")
        endpoint = (conn.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        if not re.match(r"^https://[^/\s]+", endpoint):
            # pydo sends the token as a bearer token, which azure-core refuses to send over plain http.
            raise ProviderError(
                f"digitalocean.endpoint must be an https URL such as {DEFAULT_ENDPOINT}, got {conn['endpoint']}"
            )
        # retry_total=0: azure-core's own retries are off, retry.py is the only policy at work.
        self.client = pydo.Client(
            token=conn["token"], endpoint=endpoint, connection_verify=self.verify, retry_total=0,
            connection_timeout=10, read_timeout=60, user_agent="lxcri.cloud",
        )
        self.monitoring = Monitoring(self)

    @classmethod
    def validate_alarm(cls, alarm):
        validate_alarm(alarm)

    # -- errors ----------------------------------------------------------------------------------

    def classify(self, exc):
        if isinstance(exc, HttpResponseError) and getattr(exc, "response", None) is not None:
            status, _error_id, message = _error_body(exc)
            retry_after = parse_retry_after(_header(exc, "Retry-After"))
            if status == 429:
                if retry_after is None and str(_header(exc, "ratelimit-remaining")) == "0":
                    # The hourly budget is spent: wait for its reset (the policy's budget decides if that is too long).
                    reset = parse_retry_after(_header(exc, "ratelimit-reset"))
                    retry_after = max(0.0, reset - time.time()) if reset is not None else None
                return THROTTLED, retry_after
            if status and status >= 500:
                return TRANSIENT, retry_after
            if status == 422 and "pending event" in str(message).lower():
                # "Droplet already has a pending event": another action is still running; it will end.
                return TRANSIENT, None
            return FATAL, None
        if self.unreachable(exc) or any(isinstance(inner, ssl.SSLError) for inner in exception_chain(exc)):
            return FATAL, None
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        if pydo is None or not isinstance(exc, ServiceRequestError):
            return False
        for inner in exception_chain(exc):
            if isinstance(inner, (ConnectionRefusedError, socket.gaierror)):
                return True
        return any(text in str(exc).lower() for text in UNREACHABLE_TEXT)

    def gone(self, exc):
        """A 404, raised by pydo or answered as a body (ErrorAnswer not_found), also behind call()'s ProviderError."""
        while exc is not None:
            if isinstance(exc, ErrorAnswer) and exc.error_id == "not_found":
                return True
            if pydo is not None and isinstance(exc, HttpResponseError) and _error_body(exc)[0] == 404:
                return True
            exc = exc.__cause__
        return False

    def call(self, func, *args, **kwargs):
        try:
            return super().call(func, *args, **kwargs)
        except ServiceRequestError as exc:
            if not any(isinstance(inner, ssl.SSLError) for inner in exception_chain(exc)):
                raise
            endpoint = self.connection.get("endpoint") or DEFAULT_ENDPOINT
            raise ProviderError(
                f"TLS with the DigitalOcean API at {endpoint} failed: {exc}; trust its CA with digitalocean.ca_bundle "
                "(or LXCRI_DIGITALOCEAN_CA_BUNDLE), or set digitalocean.validate_certs false"
            ) from exc
        except HttpResponseError as exc:
            if getattr(exc, "response", None) is None:
                raise
            status, error_id, message = _error_body(exc)
            request = getattr(exc.response, "request", None)
            where = f" to {request.method} {re.sub(r'^https?://[^/]+', '', request.url)}" if request is not None else ""
            hint = " (check digitalocean.token or DIGITALOCEAN_TOKEN)" if status in (401, 403) else ""
            if status == 429:
                _kind, wait = self.classify(exc)
                hint = f" (the API's rate limit; it resets in about {wait:.0f} s)" if wait else " (the API's rate limit)"
            raise ProviderError(
                f"DigitalOcean answered {status}{' ' + error_id if error_id else ''}{where}: {message}{hint}"
            ) from exc

    # -- answers and listings, for the backends and monitoring -----------------------------------

    def checked(self, func, key=None, what=""):
        """func, with an error body for an answer raised as ErrorAnswer (and the answer's `key` returned):
        what call() and unless_gone() take where pydo may answer an error instead of raising it."""
        def run(*args, **kwargs):
            return body(func(*args, **kwargs), key, what)
        return run

    def answer(self, func, *args, key=None, what="", **kwargs):
        """call(func, ...), its answer checked: the `key` of it, ErrorAnswer for an error body."""
        return self.call(self.checked(func, key, what), *args, **kwargs)

    def pages(self, func, key, what, optional=False, **query):
        """Every item under `key` of a paged listing (page numbers; links.pages.next says there are more), each
        page one retried call. optional: an answer without `key` (and without an error) is an empty listing."""
        def page(number):
            answer = func(per_page=PAGE_SIZE, page=number, **query)
            if optional and isinstance(answer, dict) and key not in answer and "id" not in answer:
                return [], None
            chunk = body(answer, key, what) or []
            more = chunk and ((answer.get("links") or {}).get("pages") or {}).get("next")
            return chunk, number + 1 if more else None

        return self.paginate(page, token=1)
