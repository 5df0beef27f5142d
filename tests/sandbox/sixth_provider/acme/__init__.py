"""Acme Cloud: machines behind a small JSON API (a throwaway sixth provider for the registry test)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.info import Field, ProviderInfo

INFO = ProviderInfo(
    name="acme",
    title="Acme",
    kinds=("vm",),
    connection={
        "token": Field("API token.", env=("ACME_TOKEN",), secret=True),
        "region": Field("Default zone.", env=("ACME_ZONE",)),
    },
    connection_doc="Connection to Acme Cloud.",
    sizes={"small": "a1.small", "medium": "a1.medium", "large": "a1.large", "xlarge": "a1.xlarge"},
    images={"ubuntu-24.04": "ubuntu-noble", "ubuntu-22.04": "ubuntu-jammy", "debian-12": "debian-bookworm"},
    prices={"a1.small": 0.01, "a1.medium": 0.02, "a1.large": 0.04, "a1.xlarge": 0.08},
    native_size=(r"^a[0-9]\.[a-z]+$", "a1.small"),
    native_image=(r"^[a-z]+-[a-z]+$", "ubuntu-noble"),
    cannot={"container": "Acme runs no containers", "function": "Acme runs no functions",
            "alarms": "Acme has no alerting"},
)


def load():
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.acme.provider import AcmeProvider

    return AcmeProvider
