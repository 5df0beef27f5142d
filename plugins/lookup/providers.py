# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: providers
short_description: The providers this version of the collection deploys to
version_added: 0.1.0
description:
  - The names of the registered providers (the values the modules' O(lxcri.cloud.deployment#module:provider)
    accepts), in the collection's order; with O(kind), only those that deploy that kind.
  - With O(details=true), one dict per provider instead, with C(name), C(title), C(kinds), C(alarm_state) (where an
    alarm's state comes from, V(native) or V(evaluated), or null without alarms) and C(cannot) (what it does not
    do, and why).
author:
  - lxcri.cloud developers (@lxcri)
options:
  kind:
    description: Only the providers that deploy this kind.
    type: str
    choices: [vm, container, function]
  details:
    description: Return a dict per provider instead of its name.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Check the provider a user gave before anything else runs
  ansible.builtin.assert:
    that: provider in lookup('lxcri.cloud.providers', wantlist=True)
    fail_msg: "provider must be one of {{ lookup('lxcri.cloud.providers', wantlist=True) | join(', ') }}"

- name: Every provider that runs containers
  ansible.builtin.debug:
    msg: "{{ lookup('lxcri.cloud.providers', kind='container', wantlist=True) }}"
"""

RETURN = r"""
_raw:
  description: Provider names, or with O(details=true) one dict per provider.
  type: list
  elements: raw
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.lxcri.cloud.plugins.module_utils import registry


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        kind = self.get_option("kind")
        infos = [info for info in registry.INFO.values() if kind is None or kind in info.kinds]
        if not self.get_option("details"):
            return [info.name for info in infos]
        return [{"name": info.name, "title": info.title, "kinds": list(info.kinds), "alarm_state": info.alarm_state,
                 "cannot": dict(info.cannot)} for info in infos]
