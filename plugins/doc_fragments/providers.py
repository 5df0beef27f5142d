# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registered providers as the choices of the options that name one (registry.NAMES): a module documents
its own `provider` option and takes the choices from here, the inventory plugin its `providers`."""

from __future__ import annotations

import json

from ansible_collections.lxcri.cloud.plugins.module_utils import registry


class ModuleDocFragment:
    # Rendered from the registry (see connection.py for why these are annotated assignments).
    # The modules' `provider`.
    DOCUMENTATION: str = json.dumps({"options": {"provider": {"choices": list(registry.NAMES)}}})

    # The inventory plugin's `providers`.
    INVENTORY: str = json.dumps({"options": {"providers": {"choices": list(registry.NAMES)}}})
