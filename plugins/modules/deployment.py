#!/usr/bin/python
# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deployment
short_description: Deploy VMs, containers and functions on AWS, Azure, GCP, DigitalOcean or Proxmox VE from one portable spec
version_added: 0.1.0
description:
  - Creates, scales, tags, starts, stops, restarts and removes a deployment of O(count) VMs on one provider,
    or one container service with O(count) replicas, or one function.
  - A deployment is identified by O(provider), O(region) and O(name). Its members are named V(<name>-1) to
    V(<name>-<count>) and carry the tag V(lxcri-deployment=<name>), so re-running a task converges and
    reports C(changed=false) when nothing had to change.
  - Portable sizes and images are mapped to each provider's own; native values pass through.
author:
  - lxcri.cloud developers (@lxcri)
attributes:
  check_mode:
    description: Reports what would change, and the records as they would be, without changing anything.
    support: full
  diff_mode:
    description: Shows every member before and after, with state, size, image and tags.
    support: full
options:
  provider:
    description: The cloud to deploy to.
    type: str
    required: true
  name:
    description:
      - Name of the deployment, 1 to 40 lower-case letters, digits and hyphens, starting with a letter.
    type: str
    required: true
  kind:
    description:
      - What to deploy. V(container) runs O(container.image) on the provider's container service (ECS on
        Fargate, Container Instances, Cloud Run, App Platform, LXC on Proxmox); V(function) deploys
        O(function.code) as an AWS Lambda function. A deployment is found by its name and kind, so
        O(state=absent) removes only deployments of the given kind.
    type: str
    default: vm
    choices: [vm, container, function]
  size:
    description:
      - Portable size V(small), V(medium), V(large) or V(xlarge), or the provider's own type
        (for example V(t3.micro) on AWS, V(2c4096m) for 2 cores and 4096 MiB on Proxmox).
    type: str
    default: small
  image:
    description:
      - Portable image V(ubuntu-24.04), V(ubuntu-22.04) or V(debian-12), or the provider's own image
        (an AMI id on AWS, a template name on Proxmox).
    type: str
    default: ubuntu-24.04
  count:
    description: Exact number of members. Members above it are removed, highest index first.
    type: int
    default: 1
  region:
    description:
      - Region of the deployment (the node on Proxmox). Defaults to the provider's connection option C(region).
    type: str
  tags:
    description: Tags of every member. Keys starting with V(lxcri-) are reserved.
    type: dict
    default: {}
  purge_tags:
    description: Remove tags that are not in O(tags).
    type: bool
    default: true
  ssh_public_key:
    description: Public key that cloud-init installs for the default user. Mutually exclusive with O(user_data).
    type: str
  user_data:
    description: Cloud-init user data for new members.
    type: str
  container:
    description:
      - The container of a O(kind=container) deployment. Changing any of it updates the service in place
        (a new task definition revision, Cloud Run revision, app deployment or redeployed container group) or,
        where the provider cannot update (the cpu or memory of an Azure container group), recreates it and
        says so in C(recreated).
    type: dict
    suboptions:
      image:
        description: Container image, for example V(nginx:1.27) or V(ghcr.io/acme/web:2).
        type: str
      port:
        description: Port the container listens on.
        type: int
        default: 80
      env:
        description: Environment variables.
        type: dict
        default: {}
      secret_env:
        description:
          - Secret environment variables, passed the provider's secure way where it has one. Never shown in
            results or diffs; a digest of them tells whether they changed.
        type: dict
        default: {}
      cpu:
        description: vCPUs per replica, for example V(0.25).
        type: float
        default: 0.25
      memory:
        description: Memory per replica in MiB.
        type: int
        default: 512
      command:
        description: Command that replaces the image's entry point arguments.
        type: list
        elements: str
      public:
        description: Reachable from the internet (a public IP, a public URL, unauthenticated invocations).
        type: bool
        default: true
  function:
    description: The function of a O(kind=function) deployment (AWS Lambda).
    type: dict
    suboptions:
      runtime:
        description: Runtime, for example V(python3.12).
        type: str
      handler:
        description: Handler, for example V(app.handler).
        type: str
      code:
        description: A .zip file, or a directory that the module zips (the same files give the same zip).
        type: path
      env:
        description: Environment variables.
        type: dict
        default: {}
      memory:
        description: Memory in MiB.
        type: int
        default: 128
      timeout:
        description: Timeout in seconds.
        type: int
        default: 3
      url:
        description: Give the function a public URL (returned as C(url)).
        type: bool
        default: false
  state:
    description:
      - V(present) makes the members exist (new ones run), V(running) and V(stopped) also set their power state,
        V(restarted) reboots the running members (always a change), V(absent) removes them all.
    type: str
    default: present
    choices: [present, absent, running, stopped, restarted]
  wait:
    description: Wait until every member has reached the requested state.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for in all; when they run out, the task fails and says what it waited for.
    type: int
    default: 600
extends_documentation_fragment:
  - lxcri.cloud.providers
  - lxcri.cloud.connection
notes:
  - Resizing or changing the image of existing members is not done in place; the result lists such members
    under C(drift).
"""

EXAMPLES = r"""
- name: Three medium Ubuntu VMs on GCP
  lxcri.cloud.deployment:
    provider: gcp
    name: web
    size: medium
    image: ubuntu-24.04
    count: 3
    tags:
      env: prod

- name: Scale down to one and stop it
  lxcri.cloud.deployment:
    provider: aws
    name: web
    count: 1
    state: stopped
    aws:
      region: eu-west-1

- name: A container with two replicas, reachable on its URL
  lxcri.cloud.deployment:
    provider: gcp
    name: api
    kind: container
    count: 2
    container:
      image: ghcr.io/acme/api:1.4
      port: 8080
      env: {LOG_LEVEL: info}
      secret_env: {DB_PASSWORD: "{{ vault_db_password }}"}
  register: api

- name: A Lambda function with a URL
  lxcri.cloud.deployment:
    provider: aws
    name: hook
    kind: function
    function:
      runtime: python3.12
      handler: app.handler
      code: files/hook
      url: true

- name: Remove the deployment
  lxcri.cloud.deployment:
    provider: proxmox
    name: web
    state: absent
    region: pve1
"""

RETURN = r"""
deployments:
  description: The members after the task, one normalized record each (the same shape on every provider).
  returned: always
  type: list
  elements: dict
  contains:
    provider: {description: Provider name., type: str, returned: always, sample: aws}
    kind: {description: Kind of deployment., type: str, returned: always, sample: vm}
    name: {description: Member name., type: str, returned: always, sample: web-1}
    deployment: {description: Deployment name., type: str, returned: always, sample: web}
    id: {description: The provider's id of the member., type: str, returned: always, sample: i-0123456789abcdef0}
    state:
      description: One of V(pending), V(running), V(stopped), V(terminated), V(error), V(unknown).
      type: str
      returned: always
    region: {description: Region (node on Proxmox)., type: str, returned: always}
    zone: {description: Zone where the provider has zones., type: str, returned: always}
    size: {description: 'Portable size, or null when the native size has none.', type: str, returned: always}
    native_size: {description: The provider's own size., type: str, returned: always}
    image: {description: 'Portable image name, or the native image.', type: str, returned: always}
    public_ip: {description: Public IPv4 address., type: str, returned: always}
    private_ip: {description: Private IPv4 address., type: str, returned: always}
    url: {description: URL of containers and functions., type: str, returned: always}
    tags: {description: User tags (without the collection's own lxcri- tags)., type: dict, returned: always}
    created_at: {description: 'Creation time, ISO 8601 UTC.', type: str, returned: always}
    hourly_cost: {description: 'On-demand USD per hour, or null when unknown.', type: float, returned: always}
actions:
  description: Member names per step that the task took (or would take in check mode).
  returned: always
  type: dict
  sample: {create: [web-2, web-3], tag: [web-1]}
drift:
  description:
    - Members whose size or image differs from the spec; they are left as they are.
    - Proxmox containers take a new O(container.cpu) and O(container.memory) in place (action C(resize)) and are
      not listed for their size; a new O(container.image) is drift, recreate the members to apply it.
  returned: always
  type: list
  elements: str
changes:
  description: Settings of a container or function that differed from the spec and were (or would be) updated.
  returned: when O(kind) is V(container) or V(function)
  type: list
  elements: str
  sample: [image, env]
recreated:
  description: The container service had to be deleted and created again to apply the changes.
  returned: when O(kind) is V(container) or V(function)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lxcri.cloud.plugins.module_utils.converge import Convergence
from ansible_collections.lxcri.cloud.plugins.module_utils.errors import failing_clearly
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import load
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import deployment_argument_spec, validate_deployment
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline


def main():
    module = AnsibleModule(argument_spec=deployment_argument_spec(), supports_check_mode=True)
    params = module.params
    provider_name = params["provider"]
    with failing_clearly(module, provider_name, deployments=[]):
        provider_class = load(provider_name)
        spec = validate_deployment(params, provider_class)
        provider = provider_class(params[provider_name], deadline=Deadline(spec["wait_timeout"], "wait_timeout"))
        result = Convergence(provider, spec, check_mode=module.check_mode).run()
        if not module._diff:
            result.pop("diff")
        module.exit_json(**result)


if __name__ == "__main__":
    main()
