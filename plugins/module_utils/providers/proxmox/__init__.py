# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE: VMs are QEMU guests cloned from a template (vms.py), containers are LXC containers made from
an OS template (containers.py), both members on the node that `region` names; metrics are each guest's
rrddata (monitoring.py)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.info import Field, ProviderInfo

INFO = ProviderInfo(
    name="proxmox",
    title="Proxmox",
    kinds=("vm", "container"),
    connection={
        "user": Field("User for password login, for example V(root@pam).", env=("PROXMOX_USER",)),
        "password": Field("Password.", env=("PROXMOX_PASSWORD",), secret=True),
        "token_id": Field("API token id, for example V(root@pam!ansible).", env=("PROXMOX_TOKEN_ID",)),
        "token_secret": Field("API token secret.", env=("PROXMOX_TOKEN_SECRET",), secret=True),
        "region": Field("Default node.", env=("PROXMOX_NODE",)),
        "templates": Field("Portable image name to the name of the template VM that is cloned for it (or, for "
                           "containers, to an LXC template volume). Defaults to V(ubuntu-24.04-cloudinit), "
                           "V(ubuntu-22.04-cloudinit) and V(debian-12-cloudinit).", type="dict"),
        "storage": Field("Storage for the disks of full clones and container root disks; by default the template's "
                         "own (V(local-lvm) for containers)."),
    },
    connection_doc="Connection to a Proxmox VE cluster, with an API token or a user and password.",
    # Proxmox has no instance types: its native size is "<cores>c<memory MiB>m".
    sizes={"small": "1c2048m", "medium": "2c4096m", "large": "4c8192m", "xlarge": "8c16384m"},
    # A template VM cloned by its name (overridable per deployment through the connection field templates).
    images={
        "ubuntu-24.04": "ubuntu-24.04-cloudinit",
        "ubuntu-22.04": "ubuntu-22.04-cloudinit",
        "debian-12": "debian-12-cloudinit",
    },
    # Your own hardware: no price.
    native_size=(r"^(\d+)c(\d+)m$", "2c4096m (2 cores, 4096 MiB)"),
    native_image=(r"^[A-Za-z0-9][A-Za-z0-9.-]*$", "the name of a template VM"),
    cannot={
        "function": "Proxmox VE runs no functions",
        "alarms": "Proxmox VE has no native metric alerting, so there are no alarms to make or list there: send the "
                  "metrics to an external metric server (Datacenter > Metric Server: InfluxDB or Graphite) and alert "
                  "there, or run lxcri.cloud.metrics_info on a schedule (a cron job or an AWX/AAP schedule) and act "
                  "on its results",
    },
    endpoint_doc="API base URL, for example V(https://pve.example.com:8006).",
    examples={"container": {"container": {"image": "debian-12", "cpu": 1, "memory": 512}}},
)


def load():
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.provider import ProxmoxProvider

    return ProxmoxProvider
