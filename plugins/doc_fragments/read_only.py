# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The info modules change nothing.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: The module changes nothing, in check mode or not.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
"""

    # How the info modules that read deployments choose them (spec.selection_argument_spec).
    DEPLOYMENTS = r"""
options:
  name:
    description: Deployment name; without it, every deployment in the region (filtered by O(tags) and O(kind)).
    type: str
  kind:
    description: Only deployments of this kind; by default every kind the provider deploys.
    type: str
    choices: [vm, container, function]
  tags:
    description: Only members that carry all of these tags.
    type: dict
    default: {}
  region:
    description: Region (node on Proxmox). Defaults to the provider's connection option C(region).
    type: str
"""
