#!/usr/bin/python
# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: alarm_info
short_description: The alarms made by lxcri.cloud.alarm, with their current state
version_added: 0.2.0
description:
  - Returns the alarm O(name), or every alarm the collection made in the region, as the same records
    M(lxcri.cloud.alarm) returns, with the current C(state).
  - AWS and Azure keep alarm state themselves (C(state_source=native)); GCP and DigitalOcean keep none in their
    APIs, so the collection evaluates the alarm's condition on the latest data points (C(state_source=evaluated)).
  - Proxmox VE has no native metric alerting, so the module fails there, saying what to use instead.
author:
  - lxcri.cloud developers (@lxcri)
options:
  provider:
    description: The cloud to look at.
    type: str
    required: true
  name:
    description: Alarm name; without it, every alarm of the collection in the region.
    type: str
  region:
    description: Region. Defaults to the provider's connection option C(region).
    type: str
extends_documentation_fragment:
  - lxcri.cloud.providers
  - lxcri.cloud.read_only
  - lxcri.cloud.connection
"""

EXAMPLES = r"""
- name: Is the web CPU alarm firing?
  lxcri.cloud.alarm_info:
    provider: azure
    name: web-cpu-high
  register: web_alarm

- name: Every alarm in the GCP zone
  lxcri.cloud.alarm_info:
    provider: gcp
    region: europe-west1-b
"""

RETURN = r"""
alarms:
  description: One record per alarm, the shape of the C(alarm) of M(lxcri.cloud.alarm) (webhook URLs redacted).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.errors import failing_clearly
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import load
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import PROVIDERS, connection_argument_spec, validate_name


def main():
    argument_spec = {
        "provider": {"type": "str", "required": True, "choices": list(PROVIDERS)},
        "name": {"type": "str"},
        "region": {"type": "str"},
        **connection_argument_spec(),
    }
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    with failing_clearly(module, params["provider"], alarms=[]):
        provider_class = load(params["provider"])
        if params["name"] is not None:
            validate_name(params["name"])
        provider_class.validate_alarm({"name": params["name"], "state": "absent", "tags": {}})
        provider = provider_class(params[params["provider"]])
        region = provider.region(params)
        if params["name"]:
            found = provider.find_alarm(params["name"], region)
            alarms = [found] if found else []
        else:
            alarms = sorted(provider.list_alarms(region), key=lambda rec: rec["name"])
        module.exit_json(changed=False, alarms=[monitoring.shown(rec) for rec in alarms])


if __name__ == "__main__":
    main()
