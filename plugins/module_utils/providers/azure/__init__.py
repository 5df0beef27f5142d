# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure: VMs are Azure virtual machines in a resource group per deployment (vms.py), containers are
container groups of Azure Container Instances (containers.py); metrics and alarms are Azure Monitor's
(monitoring.py)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.info import Field, ProviderInfo

INFO = ProviderInfo(
    name="azure",
    title="Azure",
    kinds=("vm", "container"),
    connection={
        "subscription_id": Field("Subscription.", env=("AZURE_SUBSCRIPTION_ID",)),
        "tenant_id": Field("Directory (tenant).", env=("AZURE_TENANT_ID",)),
        "client_id": Field("Application (client) id.", env=("AZURE_CLIENT_ID",)),
        "client_secret": Field("Client secret.", env=("AZURE_CLIENT_SECRET",), secret=True),
        "authority_host": Field("Microsoft Entra authority.", env=("AZURE_AUTHORITY_HOST",)),
        "resource_group": Field("Resource group of the deployments; by default one per deployment, named after it."),
        "region": Field("Default location.", env=("AZURE_LOCATION",)),
    },
    connection_doc="Connection to Azure (a service principal).",
    sizes={"small": "Standard_B1ms", "medium": "Standard_B2s", "large": "Standard_D2s_v5", "xlarge": "Standard_D4s_v5"},
    images={
        "ubuntu-24.04": "Canonical:ubuntu-24_04-lts:server:latest",
        "ubuntu-22.04": "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest",
        "debian-12": "Debian:debian-12:12-gen2:latest",
    },
    prices={"Standard_B1ms": 0.0207, "Standard_B2s": 0.0416, "Standard_D2s_v5": 0.096, "Standard_D4s_v5": 0.192},
    # Standard_B1ms, Standard_D2s_v5, Standard_E64-32s_v3, Standard_NC24ads_A100_v4, Basic_A1 ...
    native_size=(r"^(Standard|Basic)_[A-Za-z][A-Za-z0-9-]*(_[A-Za-z0-9]+)*$", "Standard_D2s_v5"),
    # publisher:offer:sku:version (a marketplace image URN)
    native_image=(r"^[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._-]*:"
                  r"(latest|[0-9]+(\.[0-9]+)*)$",
                  "Canonical:ubuntu-24_04-lts:server:latest (publisher:offer:sku:version)"),
    cannot={"function": "Azure Functions are not deployed by this version"},
    alarm_state="native",
    endpoint_doc="Resource Manager base URL.",
)


def load():
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure.provider import AzureProvider

    return AzureProvider
