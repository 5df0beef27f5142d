# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a provider package says about itself, as plain data: no SDK, nothing of the collection imported.

Each package `providers/<name>/__init__.py` holds one `ProviderInfo` (INFO) and a `load()` that imports its
Provider class; registry.py gathers the packages, and everything that lists providers (argument specs,
choices, the catalog, doc fragments, the inventory, the roles' lookup, the tests) is computed from there.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class Field:
    """One connection field: its type, the environment variables it falls back to, and its documentation."""

    doc: str
    type: str = "str"
    env: tuple = ()
    secret: bool = False
    default: object = None


@dataclasses.dataclass(frozen=True)
class ProviderInfo:
    """A provider as the rest of the collection sees it before its SDK loads.

    kinds: the deployment kinds it deploys; cannot: {what: why} for what it does not do (a kind, "alarms"),
    said to the user when asked for; alarm_state: where an alarm's state comes from ("native": the provider
    keeps it, "evaluated": the collection computes it from the metrics), None without alarms.
    sizes/images: portable name -> the provider's own; prices: native size -> USD per hour (on demand).
    native_size/native_image: (pattern, example) of the provider's own values; connection: its fields
    (endpoint, validate_certs and ca_bundle are added to every provider by the registry).
    """

    name: str
    title: str
    kinds: tuple
    connection: dict
    connection_doc: str
    sizes: dict
    images: dict
    native_size: tuple
    native_image: tuple
    prices: dict = dataclasses.field(default_factory=dict)
    cannot: dict = dataclasses.field(default_factory=dict)
    alarm_state: str | None = None
    endpoint_doc: str = "API base URL instead of the provider's own, for example the sandbox."
    # kind -> deployment options that make a working deployment of it here where the portable defaults do not
    # (a Proxmox container's image is an OS template, not a registry image): docs and the contract test use them.
    examples: dict = dataclasses.field(default_factory=dict)

    def native_size_pattern(self):
        return re.compile(self.native_size[0])

    def native_image_pattern(self):
        return re.compile(self.native_image[0])
