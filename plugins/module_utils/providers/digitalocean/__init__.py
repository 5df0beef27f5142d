# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DigitalOcean: VMs are droplets (droplets.py), containers are App Platform apps (apps.py); metrics and
alert policies are DigitalOcean Monitoring's (monitoring.py)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.info import Field, ProviderInfo

INFO = ProviderInfo(
    name="digitalocean",
    title="DigitalOcean",
    kinds=("vm", "container"),
    connection={
        "token": Field("API token.", env=("DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "DO_API_TOKEN"), secret=True),
        "region": Field("Default region slug.", env=("DIGITALOCEAN_REGION",)),
    },
    connection_doc="Connection to DigitalOcean.",
    sizes={"small": "s-1vcpu-2gb", "medium": "s-2vcpu-4gb", "large": "s-4vcpu-8gb", "xlarge": "s-8vcpu-16gb"},
    images={"ubuntu-24.04": "ubuntu-24-04-x64", "ubuntu-22.04": "ubuntu-22-04-x64", "debian-12": "debian-12-x64"},
    prices={"s-1vcpu-2gb": 0.01786, "s-2vcpu-4gb": 0.03571, "s-4vcpu-8gb": 0.07143, "s-8vcpu-16gb": 0.14286},
    native_size=(r"^[a-z]+[0-9]*(_[0-9]+)?-[a-z0-9]+(-[a-z0-9]+)*$",
                 "s-1vcpu-1gb (or c-2, g-2vcpu-8gb, m-2vcpu-16gb, so-2vcpu-16gb)"),
    native_image=(r"^([a-z0-9]+(-[a-z0-9]+)*|[0-9]+)$", "ubuntu-24-04-x64 (an image slug) or 160232537 (an image id)"),
    cannot={"function": "DigitalOcean Functions are not deployed by this version"},
    alarm_state="evaluated",
    endpoint_doc="API base URL.",
)


def load():
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.provider import DigitalOceanProvider

    return DigitalOceanProvider
