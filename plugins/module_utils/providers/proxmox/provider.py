# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Proxmox VE connection: one proxmoxer client (logged in on first use), error classes, PVE tasks, listings.

VMs are QEMU guests cloned from a template (vms.py), containers are LXC containers made from an OS template
(containers.py), both members on the node that `region` names; what both do alike is in guests.py. Metrics
come from each guest's rrddata; Proxmox VE has no native metric alerting, so every alarm is refused at
validation (INFO.cannot["alarms"], monitoring.py).
"""

from __future__ import annotations

import urllib.parse

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import MissingSDK, Provider, ProviderError
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.containers import Containers, normalize
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.errors import (
    FATAL_500,
    ProxmoxAPI,
    ResourceException,
    gone,
    requests,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.monitoring import Monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.vms import Vms
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError


class ProxmoxProvider(Provider):
    info = INFO
    BACKENDS = {"vm": Vms, "container": Containers}
    POLL_MAX = 2.0

    def connect(self):
        if ProxmoxAPI is None:
            raise MissingSDK("the proxmox provider needs proxmoxer and requests: pip install -r requirements.txt")
        conn = self.connection
        if not conn.get("endpoint"):
            raise ProviderError("proxmox.endpoint is required (or LXCRI_PROXMOX_ENDPOINT), e.g. https://pve.example.com:8006")
        url = urllib.parse.urlsplit(conn["endpoint"])
        if url.scheme != "https" or not url.hostname:
            raise ProviderError(f"proxmox.endpoint must be an https URL such as https://pve.example.com:8006, got {conn['endpoint']}")
        auth = {}
        if conn.get("token_id") and conn.get("token_secret"):
            user, _sep, token_name = conn["token_id"].partition("!")
            if not token_name:
                raise ProviderError("proxmox.token_id must look like user@realm!tokenname")
            auth = {"user": user, "token_name": token_name, "token_value": conn["token_secret"]}
        elif conn.get("user") and conn.get("password"):
            auth = {"user": conn["user"], "password": conn["password"]}
        else:
            raise ProviderError(
                "no Proxmox credentials: set proxmox.token_id and proxmox.token_secret (or PROXMOX_TOKEN_ID and "
                "PROXMOX_TOKEN_SECRET), or proxmox.user and proxmox.password"
            )
        self._login = lambda: ProxmoxAPI(
            url.hostname, port=url.port or 8006, path_prefix=url.path.strip("/") or None,
            verify_ssl=self.verify, timeout=60, **auth,
        )
        self._api = None
        self.monitoring = Monitoring(self)

    @property
    def api(self):
        if self._api is None:
            # Password login is an API call too; it gets the same retries as every other.
            self._api = self.call(self._login)
        return self._api

    @classmethod
    def validate_spec(cls, spec):
        if spec.get("user_data"):
            raise SpecError("user_data is not supported on proxmox (cloud-init snippets need shell access to the node): use ssh_public_key")
        if spec.get("kind") == "container":
            normalize(spec)  # for every state: absent plans on the spec's image and size too

    # -- errors ----------------------------------------------------------------------------------

    def classify(self, exc):
        if isinstance(exc, ResourceException):
            if exc.status_code == 429:
                return THROTTLED, None
            if exc.status_code in (502, 503, 504) or (exc.status_code == 500 and not FATAL_500.search(str(exc))):
                return TRANSIENT, None
            return FATAL, None
        if self.unreachable(exc):
            return FATAL, None
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        return isinstance(exc, requests.exceptions.ConnectionError) and "refused" in str(exc).lower()

    def gone(self, exc):
        return gone(exc)

    # -- calls shared by the backends ------------------------------------------------------------

    def listing(self, func, **query):
        """Every item of a PVE listing (PVE answers a listing whole: one page)."""
        return self.paginate(lambda _token: (func(**query), None))

    def region(self, spec):
        node = super().region(spec)
        nodes = [entry["node"] for entry in self.listing(self.api.nodes.get)]
        if node not in nodes:
            raise ProviderError(f"region '{node}' is not a node of this Proxmox cluster: use one of {', '.join(sorted(nodes))}")
        return node

    def task(self, node, upid):
        """Wait for a PVE task, until the task's deadline; a failed task raises with PVE's own exit status."""
        status = self.wait(
            lambda: self.call(self.api.nodes(node).tasks(upid).status.get),
            lambda s: s.get("status") == "stopped",
            f"Proxmox task {upid}", first=0.05,
        )
        if status.get("exitstatus") != "OK":
            raise ProviderError(f"Proxmox task {status.get('type')} of {status.get('id')} on {node} failed: {status.get('exitstatus')}")
        return status
