#!/usr/bin/python
# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: metrics_info
short_description: Portable metrics of deployments on AWS, Azure, GCP, DigitalOcean or Proxmox VE
version_added: 0.2.0
description:
  - Reads the native monitoring API of the provider (CloudWatch, Azure Monitor, Cloud Monitoring, DigitalOcean
    Monitoring, Proxmox VE rrddata) and returns the same metric names, units and shape for every provider.
  - Choose the deployments by O(name) or O(tags), or pass the records a task of M(lxcri.cloud.deployment)
    or M(lxcri.cloud.deployment_info) returned in O(deployments) (records of several providers at once).
  - A metric the provider does not have for a kind of resource is returned with C(points=null) and a C(reason).
  - API calls are batched; docs/cloud_monitoring.md gives the cost per provider.
author:
  - lxcri.cloud developers (@lxcri)
options:
  provider:
    description:
      - The cloud to look at. Required unless O(deployments) is given (each record names its provider).
    type: str
  deployments:
    description:
      - Normalized records (the C(deployments) of M(lxcri.cloud.deployment) or M(lxcri.cloud.deployment_info)) to
        read metrics for, instead of looking deployments up by O(name) or O(tags).
    type: list
    elements: dict
  metrics:
    description:
      - Portable metric names. C(cpu) and C(memory) are percent, C(network_in), C(network_out), C(disk_read) and
        C(disk_write) bytes per period, C(requests) a count per period.
      - Default is every metric but C(requests).
    type: list
    elements: str
  window:
    description: How far back to look, in seconds or as a number with s, m, h or d (V(1h)).
    type: raw
    default: 1h
  period:
    description: The length of one data point (a whole number of minutes), in seconds or as V(5m).
    type: raw
    default: 5m
extends_documentation_fragment:
  - lxcri.cloud.providers
  - lxcri.cloud.read_only
  - lxcri.cloud.read_only.DEPLOYMENTS
  - lxcri.cloud.connection
"""

EXAMPLES = r"""
- name: CPU and network of the deployment web over the last hour, in 5-minute points
  lxcri.cloud.metrics_info:
    provider: gcp
    name: web
    metrics: [cpu, network_in, network_out]
  register: web_metrics

- name: Metrics of what a deployment task just returned, whatever its provider
  lxcri.cloud.metrics_info:
    deployments: "{{ deployed.deployments }}"
    window: 30m
    period: 1m
"""

RETURN = r"""
metrics:
  description:
    - One entry per deployment member (or service), with one result per metric.
    - C(points) are oldest first; C(latest), C(average) and C(max) summarize them. C(unit) is the portable unit;
      C(native_name) and C(native_unit) say what the provider measured.
    - Where the provider has no such metric, C(points) and the summaries are null and C(reason) says why.
  returned: always
  type: list
  elements: dict
  sample:
    - provider: aws
      kind: vm
      deployment: web
      name: web-1
      id: i-0123456789abcdef0
      region: us-east-1
      metrics:
        cpu:
          unit: percent
          native_name: CPUUtilization
          native_unit: Percent
          statistic: average
          points: [{time: '2026-11-26T10:00:00Z', value: 12.5}]
          latest: 12.5
          average: 12.5
          max: 12.5
          reason: null
        memory:
          unit: percent
          native_name: null
          native_unit: null
          statistic: null
          points: null
          latest: null
          average: null
          max: null
          reason: EC2 reports memory only through the CloudWatch agent (namespace CWAgent)
start:
  description: Start of the window (inclusive), ISO 8601 UTC.
  returned: always
  type: str
end:
  description: End of the window (exclusive), ISO 8601 UTC, aligned to the period.
  returned: always
  type: str
period:
  description: Seconds per data point.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lxcri.cloud.plugins.module_utils.errors import failing_clearly
from ansible_collections.lxcri.cloud.plugins.module_utils.monitoring import summarize, time_range, validate_metrics
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import iso_utc, load
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    PROVIDERS,
    SpecError,
    connection_argument_spec,
    selection_argument_spec,
    validate_name,
    validate_tags,
)

RECORD_KEYS = ("provider", "kind", "deployment", "name", "id", "region")


def given_records(records):
    """The records passed in `deployments`, checked for what the providers need."""
    for index, rec in enumerate(records):
        missing = [key for key in RECORD_KEYS if not rec.get(key)]
        if missing or rec["provider"] not in PROVIDERS:
            raise SpecError(
                f"deployments[{index}] is not a deployment record (missing {', '.join(missing) or 'a known provider'}): "
                "pass the deployments returned by lxcri.cloud.deployment or lxcri.cloud.deployment_info"
            )
    return records


def main():
    argument_spec = {
        "provider": {"type": "str", "choices": list(PROVIDERS)},
        **selection_argument_spec(),
        "deployments": {"type": "list", "elements": "dict"},
        "metrics": {"type": "list", "elements": "str"},
        "window": {"type": "raw", "default": "1h"},
        "period": {"type": "raw", "default": "5m"},
        **connection_argument_spec(),
    }
    module = AnsibleModule(
        argument_spec=argument_spec, supports_check_mode=True, required_one_of=[("provider", "deployments")],
        mutually_exclusive=[("deployments", "name"), ("deployments", "tags")],
    )
    params = module.params
    with failing_clearly(module, params["provider"] or "metrics", metrics=[]):
        names = validate_metrics(params["metrics"])
        start, end, period = time_range(params["window"], params["period"])
        provider = None
        if params["deployments"] is not None:
            records = given_records(params["deployments"])
        else:
            if params["name"] is not None:
                validate_name(params["name"])
            provider = load(params["provider"])(params[params["provider"]])
            kinds = [params["kind"]] if params["kind"] else None
            records = provider.select(provider.region(params), params["name"], kinds, validate_tags(params["tags"]))
        results = []
        for provider_name in sorted({rec["provider"] for rec in records}):
            mine = [rec for rec in records if rec["provider"] == provider_name]
            if provider is None or provider.name != provider_name:  # the lookup's connection reads the metrics too
                provider = load(provider_name)(params[provider_name])
            for rec, answers in zip(mine, provider.metrics(mine, names, start, end, period)):
                entry = {key: rec.get(key) for key in RECORD_KEYS}
                entry["metrics"] = {metric: summarize(metric, answers[metric]) for metric in names}
                results.append(entry)
        module.exit_json(changed=False, metrics=results, start=iso_utc(start), end=iso_utc(end), period=period)


if __name__ == "__main__":
    main()
