# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWS error codes, for every file of the package (botocore is optional until a task uses AWS)."""

from __future__ import annotations

try:
    import botocore.exceptions
except ImportError:
    botocore = None

# What AWS answers for a resource that is not there; codes ending in .NotFound (InvalidGroup.NotFound ...) too.
GONE_CODES = {"ResourceNotFoundException", "NoSuchEntity", "ClusterNotFoundException", "ServiceNotFoundException",
              "ParameterNotFound", "NotFoundException", "NotFound"}


def error_code(exc):
    """The AWS error code of a ClientError, or None."""
    if botocore is not None and isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code")
    return None


def gone(exc):
    code = error_code(exc) or ""
    return code in GONE_CODES or code.endswith(".NotFound")
