# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The portable catalog: portable sizes and images, and the lookups that map them to each provider's own
terms and prices. The rows live in each provider package's INFO (sizes, images, prices), so that a new
provider brings its own; they are Python, not data files, because AnsiballZ ships only Python files of
module_utils to the host that runs a module.
"""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.registry import INFO

PORTABLE_SIZES = ("small", "medium", "large", "xlarge")
PORTABLE_IMAGES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12")
# provider -> its rows (views of the packages' INFO)
SIZES = {name: info.sizes for name, info in INFO.items()}
IMAGES = {name: info.images for name, info in INFO.items()}


def _rows(provider, table):
    """A provider's rows of a table ({} for a provider that is not registered, such as a test's own)."""
    return getattr(INFO[provider], table) if provider in INFO else {}


def native_size(provider, size):
    """The provider's own size for a portable or native size (native values pass through)."""
    return _rows(provider, "sizes").get(size, size)


def portable_size(provider, native):
    """The portable name of a native size, or None when it has none."""
    for portable, mapped in _rows(provider, "sizes").items():
        if mapped == native:
            return portable
    return None


def native_image(provider, image):
    """What the provider needs to resolve a portable image; a native image id passes through."""
    return _rows(provider, "images").get(image, image)


def portable_image(provider, native):
    """The portable name of a native image reference, or None."""
    for portable, mapped in _rows(provider, "images").items():
        if mapped == native:
            return portable
    return None


def hourly_cost(provider, native):
    return _rows(provider, "prices").get(native)
