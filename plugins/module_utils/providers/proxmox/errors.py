# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What PVE's errors say, for every file of the package (proxmoxer is optional until a task uses Proxmox).

PVE answers 500 with a sentence for most errors, so these read the sentence.
"""

from __future__ import annotations

import re

try:
    import requests
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import ResourceException
except ImportError:
    requests = ProxmoxAPI = None

    class ResourceException(Exception):
        """Stands in for proxmoxer's when it is not installed (nothing raises it then)."""

# The SDK's names, for the package's other files (proxmoxer is imported here only).
__all__ = ["FATAL_500", "GONE", "ProxmoxAPI", "ResourceException", "gone", "requests", "taken"]
# PVE answers 500 for many errors that will not go away on retry.
FATAL_500 = re.compile(r"already exists|does not exist|not exist|no such|unable to find|invalid|not allowed|permission", re.I)
# A guest (its config, its RRD file) that is not there.
GONE = re.compile(r"does not exist|no such", re.I)


def gone(exc):
    """True when PVE says the guest (or its file) asked for does not exist."""
    return isinstance(exc, ResourceException) and bool(GONE.search(str(exc)))


def taken(exc):
    """True when PVE refuses a new guest because its id is in use (another client took it meanwhile)."""
    return isinstance(exc, ResourceException) and "already exists" in str(exc)
