# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portable catalog: portable sizes and images mapped to each provider's own terms, with prices.

One table, so that a new provider or a new size is one edit here. The data is Python, not a data file,
because AnsiballZ ships only Python files of module_utils to the host that runs a module.
"""

from __future__ import annotations

PORTABLE_SIZES = ("small", "medium", "large", "xlarge")
PORTABLE_IMAGES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12")

# Portable size -> native size per provider. Proxmox has no instance types: its native size is
# "<cores>c<memory MiB>m", which the Proxmox provider turns into cores and memory.
SIZES = {
    "aws": {"small": "t3.small", "medium": "t3.medium", "large": "t3.large", "xlarge": "t3.xlarge"},
    "azure": {
        "small": "Standard_B1ms",
        "medium": "Standard_B2s",
        "large": "Standard_D2s_v5",
        "xlarge": "Standard_D4s_v5",
    },
    "gcp": {"small": "e2-small", "medium": "e2-medium", "large": "e2-standard-2", "xlarge": "e2-standard-4"},
    "digitalocean": {
        "small": "s-1vcpu-2gb",
        "medium": "s-2vcpu-4gb",
        "large": "s-4vcpu-8gb",
        "xlarge": "s-8vcpu-16gb",
    },
    "proxmox": {"small": "1c2048m", "medium": "2c4096m", "large": "4c8192m", "xlarge": "8c16384m"},
}

# Portable image -> what each provider's image resolution needs. AWS images differ per region, so the
# provider looks the newest one up by owner and name pattern; Proxmox clones a template by its name
# (overridable per deployment through the proxmox connection option `templates`).
IMAGES = {
    "aws": {
        "ubuntu-24.04": {"owner": "099720109477", "name": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"},
        "ubuntu-22.04": {"owner": "099720109477", "name": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"},
        "debian-12": {"owner": "136693071363", "name": "debian-12-amd64-*"},
    },
    "azure": {
        "ubuntu-24.04": "Canonical:ubuntu-24_04-lts:server:latest",
        "ubuntu-22.04": "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest",
        "debian-12": "Debian:debian-12:12-gen2:latest",
    },
    "gcp": {
        "ubuntu-24.04": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
        "ubuntu-22.04": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
        "debian-12": "projects/debian-cloud/global/images/family/debian-12",
    },
    "digitalocean": {"ubuntu-24.04": "ubuntu-24-04-x64", "ubuntu-22.04": "ubuntu-22-04-x64", "debian-12": "debian-12-x64"},
    "proxmox": {
        "ubuntu-24.04": "ubuntu-24.04-cloudinit",
        "ubuntu-22.04": "ubuntu-22.04-cloudinit",
        "debian-12": "debian-12-cloudinit",
    },
}

# On-demand USD per hour of the mapped native sizes (list prices of a reference region; Proxmox is
# your own hardware and has no price). Native sizes outside the table have an unknown cost (None).
HOURLY_PRICES = {
    "aws": {"t3.small": 0.0208, "t3.medium": 0.0416, "t3.large": 0.0832, "t3.xlarge": 0.1664},
    "azure": {"Standard_B1ms": 0.0207, "Standard_B2s": 0.0416, "Standard_D2s_v5": 0.096, "Standard_D4s_v5": 0.192},
    "gcp": {"e2-small": 0.016751, "e2-medium": 0.033503, "e2-standard-2": 0.067006, "e2-standard-4": 0.134012},
    "digitalocean": {"s-1vcpu-2gb": 0.01786, "s-2vcpu-4gb": 0.03571, "s-4vcpu-8gb": 0.07143, "s-8vcpu-16gb": 0.14286},
}


def native_size(provider, size):
    """The provider's own size for a portable or native size (native values pass through)."""
    return SIZES[provider].get(size, size)


def portable_size(provider, native):
    """The portable name of a native size, or None when it has none."""
    for portable, mapped in SIZES[provider].items():
        if mapped == native:
            return portable
    return None


def native_image(provider, image):
    """What the provider needs to resolve a portable image; a native image id passes through."""
    return IMAGES[provider].get(image, image)


def portable_image(provider, native):
    """The portable name of a native image reference, or None."""
    for portable, mapped in IMAGES[provider].items():
        if mapped == native:
            return portable
    return None


def hourly_cost(provider, native):
    return HOURLY_PRICES.get(provider, {}).get(native)
