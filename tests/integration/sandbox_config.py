"""Write ansible-test's integration_config.yml for the sandbox from `scripts/sandbox env`.

ansible-test hands targets a filtered environment, so the connection dicts reach them as variables.
Usage: python sandbox_config.py SANDBOX_COMMAND PROVIDER... > integration_config.yml
"""
import json
import os
import secrets
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.collection_path import importable  # noqa: E402

importable()
from ansible_collections.lxcri.cloud.plugins.module_utils import registry  # noqa: E402

sandbox, providers = sys.argv[1], sys.argv[2:]
env = {}
for line in subprocess.run([sandbox, "env"], check=True, capture_output=True, text=True).stdout.splitlines():
    if line.startswith("export "):
        name, _, value = line[len("export "):].partition("=")
        env[name] = shlex.split(value)[0] if value else ""

connection = {
    "aws": {"region": "us-east-1", "endpoint": env.get("LXCRI_AWS_ENDPOINT"),
            "access_key": env.get("AWS_ACCESS_KEY_ID"), "secret_key": env.get("AWS_SECRET_ACCESS_KEY")},
    "azure": {"region": "westeurope", "endpoint": env.get("LXCRI_AZURE_ENDPOINT"), "ca_bundle": env.get("LXCRI_AZURE_CA_BUNDLE"),
              "subscription_id": env.get("AZURE_SUBSCRIPTION_ID"), "tenant_id": env.get("AZURE_TENANT_ID"),
              "client_id": env.get("AZURE_CLIENT_ID"), "client_secret": env.get("AZURE_CLIENT_SECRET"),
              "authority_host": env.get("AZURE_AUTHORITY_HOST")},
    "digitalocean": {"region": "fra1", "endpoint": env.get("LXCRI_DIGITALOCEAN_ENDPOINT"), "token": env.get("DIGITALOCEAN_TOKEN"),
                     "ca_bundle": env.get("LXCRI_DIGITALOCEAN_CA_BUNDLE")},
    "gcp": {"region": "us-central1-a", "endpoint": env.get("LXCRI_GCP_ENDPOINT"), "project": env.get("GOOGLE_CLOUD_PROJECT"),
            "credentials_file": env.get("GOOGLE_APPLICATION_CREDENTIALS")},
    "proxmox": {"region": "pve1", "endpoint": env.get("LXCRI_PROXMOX_ENDPOINT"), "token_id": env.get("PROXMOX_TOKEN_ID"),
                "token_secret": env.get("PROXMOX_TOKEN_SECRET"), "ca_bundle": env.get("LXCRI_PROXMOX_CA_BUNDLE")},
}
config = {
    "lxcri_sandbox": os.path.abspath(sandbox),
    "lxcri_test_providers": providers,
    "lxcri_connection": {p: connection[p] for p in providers},
    "lxcri_unreachable": {
        "aws": "http://127.0.0.1:9", "azure": "https://127.0.0.1:9", "digitalocean": "https://127.0.0.1:9",
        "gcp": "http://127.0.0.1:9", "proxmox": "https://127.0.0.1:9",
    },
    "lxcri_no_credentials": {
        "aws": {"access_key": None, "secret_key": None, "session_token": None, "profile": None},
        "azure": {"client_secret": None, "client_id": None, "tenant_id": None},
        "digitalocean": {"token": None},
        "gcp": {"credentials_file": None},
        "proxmox": {"token_id": None, "token_secret": None, "user": None, "password": None},
    },
    "lxcri_no_credentials_env": {
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
        "AZURE_CLIENT_SECRET": "", "AZURE_CLIENT_ID": "", "AZURE_TENANT_ID": "",
        "DIGITALOCEAN_TOKEN": "", "DIGITALOCEAN_ACCESS_TOKEN": "", "DO_API_TOKEN": "",
        "GOOGLE_APPLICATION_CREDENTIALS": "", "CLOUDSDK_CONFIG": "/nonexistent", "NO_GCE_CHECK": "True",
    },
    # Which providers run containers in this version, which give them a URL, which must recreate to update.
    "lxcri_container_providers": ["aws", "azure", "digitalocean", "gcp"],
    "lxcri_container_url": {"aws": False, "azure": True, "gcp": True, "digitalocean": True, "proxmox": False},
    "lxcri_container_recreates": {"aws": False, "azure": False, "gcp": False, "digitalocean": False, "proxmox": True},
    # How many replicas a container deployment can have (Azure Container Instances: one group, no replicas).
    "lxcri_container_max_count": {"aws": 2, "azure": 1, "gcp": 2, "digitalocean": 2, "proxmox": 2},
    "lxcri_container_secret": "ct-" + secrets.token_hex(8),
    # Monitoring: a container of each provider to read metrics of (Proxmox: an LXC container).
    "lxcri_metrics_container": {p: {"image": "nginx:1.27", "port": 80} for p in ("aws", "azure", "digitalocean", "gcp")}
    | {"proxmox": {"image": "ubuntu-24.04", "cpu": 0.5, "memory": 512}},
    # How many API calls four metrics of `members` VMs take: the batching contract of docs/cloud_monitoring.md.
    "lxcri_metrics_batching": {
        "aws": {"members": 50, "calls": {"cloudwatch.GetMetricData": 1}},
        "azure": {"members": 4, "calls": {"metrics.list": 4}},
        # one call per (droplet, native metric): cpu 1, bandwidth in + out 2, disk none
        "digitalocean": {"members": 4, "calls": {"monitoring.get_DropletCpuMetrics": 4,
                                                 "monitoring.get_dropletBandwidthMetrics": 8}},
        "gcp": {"members": 6, "calls": {"monitoring.projects.timeSeries.list": 4}},
        "proxmox": {"members": 6, "calls": {"GET /nodes/{node}/qemu/{vmid}/rrddata": 6}},
    },
    "lxcri_alarm_providers": list(registry.alarm_providers()),
    # What each provider's alarms carry: webhooks, tags, where the state comes from, and how many resources
    # (alarm + notification targets) one alarm with an email and a webhook adds to `scripts/sandbox state`.
    "lxcri_alarm_features": {
        "aws": {"webhooks": True, "tags": True, "state_source": "native", "resources": 2},
        "azure": {"webhooks": True, "tags": True, "state_source": "native", "resources": 2},
        "digitalocean": {"webhooks": False, "tags": False, "state_source": "evaluated", "resources": 1},
        "gcp": {"webhooks": True, "tags": True, "state_source": "evaluated", "resources": 3},
    },
    "lxcri_alarm_webhook_token": "T" + secrets.token_hex(12),
}
json.dump(config, sys.stdout, indent=2)
