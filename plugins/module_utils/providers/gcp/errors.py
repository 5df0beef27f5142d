# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every API of the package (Compute Engine, Cloud Run, Cloud Monitoring) fails with alike: refusals a
user acts on, and what a failed create says it left (google-api-core is optional until a task uses GCP)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError

try:
    from google.api_core import exceptions as api_exceptions
except ImportError:
    api_exceptions = None


def api_disabled(exc):
    """True when exc is a 403 (PermissionDenied) that says the API is not enabled in the project."""
    if api_exceptions is None or not isinstance(exc, api_exceptions.PermissionDenied):
        return False
    text = (exc.message or "").lower()
    return getattr(exc, "reason", None) == "SERVICE_DISABLED" or "has not been used in project" in text


def refusal(exc, api, project, credentials="", enable=None):
    """The ProviderError for a refusal: `api` ("the Cloud Run API at ...") rejected the `credentials`, or the
    API is not enabled in the project (enable: (its title, what to enable)); None for any other failure."""
    if api_exceptions is None:
        return None
    if isinstance(exc, api_exceptions.Unauthorized):
        return ProviderError(f"{api} rejected the credentials{credentials}: {exc.message} (check gcp.credentials_file "
                             "or GOOGLE_APPLICATION_CREDENTIALS)")
    if enable and api_disabled(exc):
        return ProviderError(f"the {enable[0]} is not enabled in project {project}: enable {enable[1]} ({exc.message})")
    return None


def cleanup(what, article, fetch, remove):
    """Remove what a failed create left (fetch() -> None when nothing is there); say what became of it."""
    try:
        if fetch() is None:
            return f"no {what} was left behind"
    except Exception as exc:  # say so, whatever went wrong
        return f"whether the {what} was left behind is not known ({exc}): check and delete it by hand"
    try:
        remove()
    except Exception as exc:  # say what is left, whatever went wrong
        return f"{article}{what} was left behind and could not be deleted ({exc}): delete it by hand"
    return f"{article}{what} was deleted again"
