# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a portable image is made from on Proxmox VE, for both kinds: proxmox.templates maps an image to the
name of a template VM (VMs) or to an LXC OS template volume `<storage>:vztmpl/<file>` (containers); one
image may have both, told apart by their shape."""

from __future__ import annotations

import re

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox import INFO

# Portable image -> the LXC OS template volume it is made from (the names of PVE's appliance index, pveam).
CT_TEMPLATES = {
    "ubuntu-24.04": "local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst",
    "ubuntu-22.04": "local:vztmpl/ubuntu-22.04-standard_22.04-1_amd64.tar.zst",
    "debian-12": "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
}
VZTMPL = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*:vztmpl/[A-Za-z0-9][A-Za-z0-9._+-]*$")


def ct_template(image, templates):
    """The OS template volume of a container image: proxmox.templates' own (a vztmpl volume), the image
    itself when it is one, the table's; None when there is none."""
    override = str((templates or {}).get(image) or "")
    if VZTMPL.match(override):
        return override
    if VZTMPL.match(image or ""):
        return image
    return CT_TEMPLATES.get(image)


def vm_template(image, templates):
    """The name of the template VM that is cloned for a VM image: proxmox.templates' own (unless it maps the
    image to an LXC template volume: that one is for containers), else the catalog's."""
    override = (templates or {}).get(image)
    return (override if override and not VZTMPL.match(str(override)) else None) or catalog.native_image(INFO.name, image)
