# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one table of providers. A provider is a package under providers/ (its INFO and its load());
adding one is an entry in the import and in PACKAGES below. The imports are literal so that AnsiballZ
ships every package; each package's __init__ is data only, and load() imports the SDK-using code of the
provider that a task asks for, and nothing else."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.info import Field
from ansible_collections.lxcri.cloud.plugins.module_utils.providers import aws, azure, digitalocean, gcp, proxmox

PACKAGES = (aws, azure, gcp, digitalocean, proxmox)

INFO = {package.INFO.name: package.INFO for package in PACKAGES}
NAMES = tuple(INFO)
_LOADERS = {package.INFO.name: package.load for package in PACKAGES}


def tls_fields(name):
    """endpoint, validate_certs and ca_bundle: the same three fields on every provider."""
    upper = name.upper()
    return {
        "endpoint": Field(INFO[name].endpoint_doc, env=(f"LXCRI_{upper}_ENDPOINT",)),
        "validate_certs": Field("Verify the API's TLS certificate; V(false) turns verification off, whatever "
                                "C(ca_bundle) says.", type="bool", default=True),
        "ca_bundle": Field("CA bundle to verify the API's certificate with.", type="path", env=(f"LXCRI_{upper}_CA_BUNDLE",)),
    }


def connection_fields(name):
    """Every connection field of a provider: its own, then the TLS ones."""
    return {**INFO[name].connection, **tls_fields(name)}


def providers_for(kind):
    """The providers that deploy `kind`, in registry order."""
    return tuple(name for name in NAMES if kind in INFO[name].kinds)


def alarm_providers():
    return tuple(name for name in NAMES if INFO[name].alarm_state)


def unknown(name):
    """The error message for a provider name that is not registered."""
    return f"provider '{name}' is not available in this version: use one of {', '.join(NAMES)}"


def load(name):
    """The Provider class of `name`, importing only that provider's code and SDK."""
    if name not in _LOADERS:
        raise KeyError(unknown(name))
    return _LOADERS[name]()
