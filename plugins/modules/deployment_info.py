#!/usr/bin/python
# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment_info
short_description: List deployments on AWS, Azure, GCP, DigitalOcean or Proxmox VE as normalized records
version_added: 0.1.0
description:
  - Returns the live members of one deployment by O(name), of every deployment whose members carry O(tags),
    or of every deployment of the collection in a region.
author:
  - lxcri.cloud developers (@lxcri)
options:
  provider:
    description: The cloud to look at.
    type: str
    required: true
extends_documentation_fragment:
  - lxcri.cloud.providers
  - lxcri.cloud.read_only
  - lxcri.cloud.read_only.DEPLOYMENTS
  - lxcri.cloud.connection
"""

EXAMPLES = r"""
- name: Members of the deployment web
  lxcri.cloud.deployment_info:
    provider: aws
    name: web
  register: web

- name: Everything tagged env=prod on the Proxmox node pve1
  lxcri.cloud.deployment_info:
    provider: proxmox
    region: pve1
    tags:
      env: prod
"""

RETURN = r"""
deployments:
  description:
    - One normalized record per live member, the same shape as the C(deployments) of M(lxcri.cloud.deployment).
  returned: always
  type: list
  elements: dict
  sample:
    - provider: aws
      kind: vm
      name: web-1
      deployment: web
      id: i-0123456789abcdef0
      state: running
      region: us-east-1
      zone: us-east-1a
      size: small
      native_size: t3.small
      image: ubuntu-24.04
      public_ip: 203.0.113.10
      private_ip: 10.0.0.10
      url: null
      tags: {env: prod}
      created_at: '2026-11-26T10:00:00Z'
      hourly_cost: 0.0208
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lxcri.cloud.plugins.module_utils.errors import failing_clearly
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import load
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    PROVIDERS,
    connection_argument_spec,
    selection_argument_spec,
    validate_name,
    validate_tags,
)


def main():
    argument_spec = {
        "provider": {"type": "str", "required": True, "choices": list(PROVIDERS)},
        **selection_argument_spec(),
        **connection_argument_spec(),
    }
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    with failing_clearly(module, params["provider"], deployments=[]):
        if params["name"] is not None:
            validate_name(params["name"])
        tags = validate_tags(params["tags"])
        provider = load(params["provider"])(params[params["provider"]])
        region = provider.region(params)
        kinds = [params["kind"]] if params["kind"] else None
        module.exit_json(changed=False, deployments=provider.select(region, params["name"], kinds, tags))


if __name__ == "__main__":
    main()
