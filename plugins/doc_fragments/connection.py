# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options of every registered provider, rendered from the provider packages' INFO (the same
fields, types, defaults and environment variables as the argument spec, spec.connection_argument_spec)."""

from __future__ import annotations

import json

from ansible_collections.lxcri.cloud.plugins.module_utils import registry


def _field(field):
    doc = {"description": field.doc + (" Falls back to " + ", then ".join(f"E({name})" for name in field.env) + "."
                                       if field.env else ""), "type": field.type}
    if field.default is not None:
        doc["default"] = field.default
    return doc


def _options():
    return {
        name: {
            "description": [registry.INFO[name].connection_doc,
                            "Every field falls back to the environment variable named beside it."],
            "type": "dict",
            "suboptions": {key: _field(field) for key, field in registry.connection_fields(name).items()},
        }
        for name in registry.NAMES
    }


class ModuleDocFragment:
    # One optional dict per provider, so that module_defaults for the action group lxcri.cloud.all can carry all
    # of them at once. Rendered, not written twice (JSON is YAML); ansible-doc and validate-modules read it as
    # rendered. ansible-test's yamllint reads only literal documentation, which this is not:
    # tests/unit/plugins/doc_fragments/test_rendered.py checks what it renders.
    DOCUMENTATION: str = json.dumps({"options": _options()}, indent=1)
