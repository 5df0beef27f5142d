# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure error answers, for every file of the package: codes, texts, statuses, retry hints, and what a
transport failure was (azure-core is optional until a task uses Azure)."""

from __future__ import annotations

import re
import ssl

from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.arm import dig
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import exception_chain, parse_retry_after

try:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError
except ImportError:
    ServiceRequestError = ServiceResponseError = None

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


def status(exc):
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
            return dig(body, "error", "code") or body.get("code")
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
    found = status(exc)
    if found:
        return found
    for inner in exception_chain(exc):
        found = status(inner) if inner is not exc else None
        if found:
            return found
        match = re.search(r"HTTP status: ([0-9]{3})", str(inner))
        if match:
            return int(match.group(1))
    return None


def tls_failure(exc):
    return any(isinstance(inner, ssl.SSLError) for inner in exception_chain(exc)) or "CERTIFICATE_VERIFY_FAILED" in str(exc)


def network_failure(exc):
    """True when exc is or wraps an azure-core transport error (no HTTP answer came back)."""
    return ServiceRequestError is not None and any(
        isinstance(inner, (ServiceRequestError, ServiceResponseError)) for inner in exception_chain(exc)
    )


def refused(exc):
    for inner in exception_chain(exc):
        if isinstance(inner, ConnectionRefusedError):
            return True
    text = str(exc).lower()
    return any(word in text for word in UNREACHABLE_TEXT)
