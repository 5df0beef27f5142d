#!/usr/bin/python
# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: alarm
short_description: One portable metric alarm, made native on AWS, Azure, GCP or DigitalOcean
version_added: 0.2.0
description:
  - Creates, updates in place or removes a native alarm on the portable metric of one or more deployments, with
    its notifications. AWS gets a CloudWatch alarm and an SNS topic with subscriptions, Azure a metric alert
    and an action group, GCP an alert policy and notification channels, DigitalOcean an alert policy.
  - An alarm is found again by O(provider), region and O(name), so a re-run never makes a second one.
  - The alarm watches the members that the target deployments have when the task runs; run it again after
    scaling a deployment so that it watches the new members too.
  - Proxmox VE has no native metric alerting, so every alarm on it fails validation, saying what to use instead.
author:
  - lxcri.cloud developers (@lxcri)
attributes:
  check_mode:
    description: Reports what would change and changes nothing.
    support: full
  diff_mode:
    description: Shows the alarm settings before and after (webhook URLs redacted).
    support: full
options:
  provider:
    description: The cloud of the alarm.
    type: str
    required: true
  name:
    description: Alarm name, unique per provider and region.
    type: str
    required: true
  state:
    description: V(present) creates or updates the alarm; V(absent) removes it and its notification resources.
    type: str
    choices: [present, absent]
    default: present
  metric:
    description:
      - Portable metric name, in the units of M(lxcri.cloud.metrics_info).
      - One of V(cpu), V(memory) (percent), V(network_in), V(network_out), V(disk_read), V(disk_write) (bytes per
        period), V(requests) (count per period). Required with O(state=present).
    type: str
  comparison:
    description: Fire when the metric is above or below O(threshold).
    type: str
    choices: [above, below]
    default: above
  threshold:
    description: The threshold in the metric's portable unit. Required with O(state=present).
    type: raw
  period:
    description: The length of one evaluated data point (whole minutes), in seconds or as V(5m).
    type: raw
    default: 5m
  evaluation_periods:
    description: How many consecutive periods must breach the threshold before the alarm fires.
    type: int
    default: 1
  statistic:
    description: How the data points of a period are combined.
    type: str
    choices: [average, max, min, sum]
    default: average
  deployments:
    description: Names of the deployments whose members the alarm watches. Required with O(state=present).
    type: list
    elements: str
  kind:
    description: The kind of the target deployments.
    type: str
    choices: [vm, container, function]
    default: vm
  notify:
    description: Who is told when the alarm fires.
    type: dict
    suboptions:
      emails:
        description: Email addresses.
        type: list
        elements: str
      webhooks:
        description: Webhook URLs (kept out of logs and results, since they often carry tokens).
        type: list
        elements: str
  tags:
    description: Tags (labels) for the alarm, on providers whose alarms have them.
    type: dict
    default: {}
  description:
    description: A description shown with the alarm.
    type: str
  region:
    description: Region (node on Proxmox). Defaults to the provider's connection option C(region).
    type: str
extends_documentation_fragment:
  - lxcri.cloud.providers
  - lxcri.cloud.connection
"""

EXAMPLES = r"""
- name: Page when the web VMs run hot for 10 minutes
  lxcri.cloud.alarm:
    provider: aws
    name: web-cpu-high
    metric: cpu
    comparison: above
    threshold: 80
    period: 5m
    evaluation_periods: 2
    deployments: [web]
    notify:
      emails: [ops@example.com]
      webhooks: ["{{ pager_webhook }}"]

- name: Remove it again
  lxcri.cloud.alarm:
    provider: aws
    name: web-cpu-high
    state: absent
"""

RETURN = r"""
alarm:
  description:
    - The alarm as the provider reports it after the task (null once removed). C(targets) are the ids of the watched
      members; C(state) is V(ok), V(alarm), V(insufficient_data) or V(unknown); C(state_source) says whether the
      provider keeps it (V(native)) or the collection evaluated the metric (V(evaluated)); C(native) names the
      provider's resources. Webhook URLs are shown redacted.
  returned: always
  type: dict
  sample:
    provider: aws
    name: web-cpu-high
    id: arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-cpu-high
    region: us-east-1
    metric: cpu
    comparison: above
    threshold: 80.0
    period: 300
    evaluation_periods: 2
    statistic: average
    kind: vm
    deployments: [web]
    targets: [i-0123456789abcdef0]
    notify: {emails: [ops@example.com], webhooks: ['https://hooks.example.com/...#1a2b3c4d']}
    tags: {}
    description: ''
    state: ok
    state_reason: Threshold Crossed
    state_source: native
    native: {alarm: web-cpu-high, topic: 'arn:aws:sns:us-east-1:123456789012:lxcri-alarm-web-cpu-high'}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.errors import failing_clearly
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, load
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import KINDS, PROVIDERS, connection_argument_spec


def argument_spec():
    return {
        "provider": {"type": "str", "required": True, "choices": list(PROVIDERS)},
        "name": {"type": "str", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "metric": {"type": "str"},
        "comparison": {"type": "str", "choices": list(monitoring.COMPARISONS), "default": "above"},
        "threshold": {"type": "raw"},
        "period": {"type": "raw", "default": "5m"},
        "evaluation_periods": {"type": "int", "default": 1},
        "statistic": {"type": "str", "choices": list(monitoring.STATISTICS), "default": "average"},
        "deployments": {"type": "list", "elements": "str"},
        "kind": {"type": "str", "choices": list(KINDS), "default": "vm"},
        "notify": {"type": "dict", "options": {
            "emails": {"type": "list", "elements": "str"},
            "webhooks": {"type": "list", "elements": "str", "no_log": True},
        }},
        "tags": {"type": "dict", "default": {}},
        "description": {"type": "str"},
        "region": {"type": "str"},
        **connection_argument_spec(),
    }


def targets_of(provider, alarm, region):
    """The live members of the target deployments; an error naming any deployment that has none."""
    found = {name: provider.find(name, region, alarm["kind"]) for name in alarm["deployments"]}
    empty = [name for name, records in found.items() if not records]
    if empty:
        raise ProviderError(
            f"deployments: {', '.join(empty)} has no live {alarm['kind']} members in {provider.name} region {region}: "
            "deploy it first (or give the kind it was deployed as)"
        )
    return [rec for records in found.values() for rec in records]


def shown_config(rec):
    return monitoring.alarm_config(monitoring.shown(rec)) if rec else None


def finish(module, diff, **result):
    module.exit_json(**result, **({"diff": diff} if module._diff else {}))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    with failing_clearly(module, params["provider"], alarm=None):
        provider_class = load(params["provider"])
        alarm = monitoring.validate_alarm(params, provider_class)
        provider = provider_class(params[params["provider"]])
        region = provider.region(params)
        current = provider.find_alarm(alarm["name"], region)
        if params["state"] == "absent":
            if current and not module.check_mode:
                provider.delete_alarm(current)
            finish(module, changed=bool(current), alarm=None, diff={"before": shown_config(current), "after": None})
        targets = targets_of(provider, alarm, region)
        wanted = monitoring.alarm_record(
            provider.name, region=region, targets=[rec["id"] for rec in targets],
            **{key: alarm[key] for key in monitoring.ALARM_CONFIG if key != "targets"},
        )
        changed = current is None or monitoring.alarm_config(current) != monitoring.alarm_config(wanted)
        result = current
        if changed:
            # In check mode the record is the one the task would make (no id or state yet for a new alarm).
            result = wanted if module.check_mode else provider.put_alarm(alarm, region, targets, current)
            if module.check_mode and current:
                result = dict(current, **monitoring.alarm_config(wanted))
        finish(module, changed=changed, alarm=monitoring.shown(result),
               diff={"before": shown_config(current), "after": shown_config(wanted)})


if __name__ == "__main__":
    main()
