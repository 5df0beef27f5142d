"""The inventory benchmark: seed N deployments per provider straight into the sandbox's emulators, time
`ansible-inventory --list` over all providers (cold and cached) and over each provider alone, count the API
requests, print one table, clean up.

    python tests/bench/seed_inventory.py seed  --count N [--providers "aws gcp ..."]
    python tests/bench/seed_inventory.py clean [--providers ...]
    python tests/bench/seed_inventory.py bench --count N --collections DIR [--repeat R] [--providers ...]

Run it through scripts/bench-inventory, which starts a private sandbox (its own ports and state directory), builds
the collection as it ships and removes both afterwards. The sandbox to use comes from the environment
(`scripts/sandbox env` with SANDBOX_DIR and SANDBOX_PORT_OFFSET).

Seeding goes to each emulator's own port (the proxy's port + 10000), around the proxy, so that it neither counts
as inventory requests nor meets faults. Every seeded member is a one-member deployment `bench-NNNN` whose
member `bench-NNNN-1` carries the collection's identity tags (exactly as the provider would write them) and the
user tags env=bench, tier=web|db and seed=inventory-bench (by which `clean` finds them).
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from tests.sandbox.registry import BACKEND_SHIFT  # noqa: E402  (the sandbox's port layout)

PROVIDERS = ("aws", "azure", "gcp", "digitalocean", "proxmox")
REGIONS = {"aws": "us-east-1", "azure": "westeurope", "gcp": "us-central1-a", "digitalocean": "fra1", "proxmox": "pve1"}
SEED_TAG = ("seed", "inventory-bench")
SANDBOX = os.path.join(ROOT, "scripts", "sandbox")
WORKERS = 16
_local = threading.local()


def session():
    """One requests session per thread (a Session is not meant to be shared across threads)."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def backend(provider, scheme=None):
    """The emulator's own URL: the proxy's public port + BACKEND_SHIFT on 127.0.0.1."""
    public = urllib.parse.urlsplit(os.environ[f"LXCRI_{provider.upper()}_ENDPOINT"])
    scheme = scheme or ("https" if provider == "proxmox" else "http")  # fakepve speaks TLS itself
    return f"{scheme}://127.0.0.1:{public.port + BACKEND_SHIFT}"


def deployments(count):
    """[(deployment, member, user tags)] of the seed."""
    return [(f"bench-{i:04d}", f"bench-{i:04d}-1", {"env": "bench", "tier": "web" if i % 2 else "db", SEED_TAG[0]: SEED_TAG[1]})
            for i in range(1, count + 1)]


def parallel(func, items, workers=WORKERS):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, items))


def checked(response, what):
    if response.status_code >= 400:
        raise RuntimeError(f"{what}: {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


# -- AWS (moto): one RunInstances per deployment, tags in TagSpecifications ------------------------------

def _ec2():
    import boto3
    import botocore.config

    return boto3.client("ec2", endpoint_url=backend("aws"), region_name=REGIONS["aws"],
                        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                        config=botocore.config.Config(max_pool_connections=WORKERS * 2, retries={"total_max_attempts": 3}))


def seed_aws(items):
    ec2 = _ec2()
    images = ec2.describe_images(Owners=["099720109477"], Filters=[
        {"Name": "name", "Values": ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]}])["Images"]
    ami = max(images, key=lambda image: image.get("CreationDate", ""))["ImageId"]

    def one(item):
        dep, member, tags = item
        tags = {**tags, "Name": member, "lxcri-deployment": dep, "lxcri-kind": "vm", "lxcri-image": "ubuntu-24.04"}
        ec2.run_instances(ImageId=ami, InstanceType="t3.small", MinCount=1, MaxCount=1, TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])

    parallel(one, items)


def clean_aws():
    ec2 = _ec2()
    ids = [i["InstanceId"] for page in ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{SEED_TAG[0]}", "Values": [SEED_TAG[1]]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
        for r in page["Reservations"] for i in r["Instances"]]
    for start in range(0, len(ids), 500):
        ec2.terminate_instances(InstanceIds=ids[start:start + 500])
    return len(ids)


# -- GCP (our Compute Engine emulator): one instances.insert per deployment ------------------------------

def _gcp():
    """(base URL of the zone's instances, headers) with a token from the emulator's token endpoint."""
    import google.auth.transport.requests
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_file(
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"], scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    url = f"{backend('gcp')}/compute/v1/projects/{project}/zones/{REGIONS['gcp']}/instances"
    return url, {"Authorization": f"Bearer {credentials.token}"}


def seed_gcp(items):
    url, headers = _gcp()
    zone = REGIONS["gcp"]

    def one(item):
        dep, member, tags = item
        labels = {**tags, "lxcri-deployment": dep, "lxcri-kind": "vm", "lxcri-image": "ubuntu-24_04"}
        body = {
            "name": member, "machineType": f"zones/{zone}/machineTypes/e2-small", "labels": labels,
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"}}],
            "networkInterfaces": [{"network": "global/networks/default",
                                   "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}]}],
        }
        checked(session().post(url, json=body, headers=headers, timeout=60), f"gcp insert {member}")

    parallel(one, items)


def clean_gcp():
    url, headers = _gcp()
    names, token = [], ""
    while True:
        query = {"filter": f'labels.{SEED_TAG[0]} = "{SEED_TAG[1]}"', "maxResults": 500, **({"pageToken": token} if token else {})}
        page = checked(session().get(url, params=query, headers=headers, timeout=60), "gcp list")
        names += [item["name"] for item in page.get("items", [])]
        token = page.get("nextPageToken")
        if not token:
            break
    parallel(lambda name: checked(session().delete(f"{url}/{name}", headers=headers, timeout=60), f"gcp delete {name}"), names)
    return len(names)


# -- DigitalOcean (our emulator): one droplet create per deployment -----------------------------------------

def _do():
    return f"{backend('digitalocean')}/v2", {"Authorization": f"Bearer {os.environ['DIGITALOCEAN_TOKEN']}"}


# The DigitalOcean emulator gives each droplet a public IPv4 address from three /24 pools when it comes up, so it
# holds 759 droplets at most; more make every later request fail (tests/sandbox/emulators/digitalocean_droplets.py).
DO_CAPACITY = 750


def seed_digitalocean(items):
    url, headers = _do()
    if len(items) > DO_CAPACITY:
        print(f"digitalocean: the emulator holds at most 759 droplets (its public IPv4 pool); seeding {DO_CAPACITY}, "
              f"not {len(items)}", file=sys.stderr)
        items = items[:DO_CAPACITY]

    def one(item):
        dep, member, tags = item
        # The provider's tag spelling: key:value, with '.' written '_d' in the image (ubuntu-24.04 -> ubuntu-24_d04).
        tag_list = [f"lxcri-deployment:{dep}", "lxcri-kind:vm", "lxcri-image:ubuntu-24_d04"] + [f"{k}:{v}" for k, v in tags.items()]
        body = {"name": member, "region": REGIONS["digitalocean"], "size": "s-1vcpu-2gb", "image": "ubuntu-24-04-x64", "tags": tag_list}
        checked(session().post(f"{url}/droplets", json=body, headers=headers, timeout=60), f"digitalocean create {member}")

    parallel(one, items)


def clean_digitalocean():
    url, headers = _do()
    tag = f"{SEED_TAG[0]}:{SEED_TAG[1]}"
    found = checked(session().get(f"{url}/droplets", params={"tag_name": tag, "per_page": 1}, headers=headers, timeout=60), "list")
    count = found.get("meta", {}).get("total", 0)
    if count:
        response = session().delete(f"{url}/droplets", params={"tag_name": tag}, headers=headers, timeout=120)
        if response.status_code >= 400:
            raise RuntimeError(f"digitalocean delete by tag: {response.status_code} {response.text[:300]}")
    return count


# -- Proxmox VE (fakepve): one `qm create` per deployment, with the collection's tags and description -----

def _pve():
    headers = {"Authorization": f"PVEAPIToken={os.environ['PROXMOX_TOKEN_ID']}={os.environ['PROXMOX_TOKEN_SECRET']}"}
    return f"{backend('proxmox')}/api2/json", headers, os.environ.get("LXCRI_PROXMOX_CA_BUNDLE") or False


def seed_proxmox(items):
    url, headers, verify = _pve()
    node = REGIONS["proxmox"]
    first = 10000  # far above the ids the collection's clones take (PVE hands out the lowest free id from 100)

    def one(indexed):
        index, (dep, member, tags) = indexed
        meta = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "deployment": dep, "image": "ubuntu-24.04",
                "kind": "vm", "tags": tags}
        data = {"vmid": first + index, "name": member, "cores": 1, "memory": 2048, "ipconfig0": "ip=dhcp",
                "tags": f"lxcri;lxcri-{dep}", "description": f"Managed by lxcri.cloud\nlxcri: {json.dumps(meta, sort_keys=True)}"}
        checked(session().post(f"{url}/nodes/{node}/qemu", data=data, headers=headers, verify=verify, timeout=60),
                f"proxmox create {member}")

    parallel(one, list(enumerate(items)))


def clean_proxmox():
    url, headers, verify = _pve()
    guests = checked(session().get(f"{url}/cluster/resources", params={"type": "vm"}, headers=headers, verify=verify, timeout=60),
                     "proxmox resources")["data"]
    ours = [g for g in guests if g.get("type") == "qemu" and str(g.get("name", "")).startswith("bench-") and "lxcri" in str(g.get("tags"))]
    parallel(lambda g: checked(session().delete(f"{url}/nodes/{g['node']}/qemu/{g['vmid']}", headers=headers, verify=verify,
                                                timeout=60), f"proxmox delete {g['vmid']}"), ours)
    return len(ours)


# -- Azure (our ARM emulator): a resource group and network, then public IP, NIC and VM per deployment -----

AZ_GROUP = "lxcri-bench"
AZ_VERSIONS = {"resources": "2021-04-01", "network": "2024-05-01", "compute": "2024-07-01"}


def _azure():
    base = backend("azure")
    tenant = os.environ["AZURE_TENANT_ID"]
    token = checked(session().post(f"{base}/{tenant}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": os.environ["AZURE_CLIENT_ID"],
        "client_secret": os.environ["AZURE_CLIENT_SECRET"], "scope": "https://management.azure.com/.default"}, timeout=60),
        "azure token")["access_token"]
    group = f"/subscriptions/{os.environ['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{AZ_GROUP}"
    return base, group, {"Authorization": f"Bearer {token}"}


def _put(base, path, api, body, headers):
    return checked(session().put(f"{base}{path}", params={"api-version": AZ_VERSIONS[api]}, json=body, headers=headers, timeout=60),
                   f"azure PUT {path}")


def seed_azure(items):
    base, group, headers = _azure()
    location = REGIONS["azure"]
    _put(base, group, "resources", {"location": location, "tags": {SEED_TAG[0]: SEED_TAG[1]}}, headers)
    net = f"{group}/providers/Microsoft.Network"
    vnet = _put(base, f"{net}/virtualNetworks/bench-vnet", "network", {"location": location, "properties": {
        "addressSpace": {"addressPrefixes": ["10.0.0.0/8"]},
        "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/8"}}]}}, headers)
    subnet = f"{vnet['id']}/subnets/default"

    def one(item):
        dep, member, tags = item
        ip = _put(base, f"{net}/publicIPAddresses/{member}-ip", "network", {
            "location": location, "sku": {"name": "Standard", "tier": "Regional"},
            "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"}}, headers)
        nic = _put(base, f"{net}/networkInterfaces/{member}-nic", "network", {"location": location, "properties": {
            "ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": subnet}, "privateIPAllocationMethod": "Dynamic", "publicIPAddress": {"id": ip["id"]},
                "primary": True}}]}}, headers)
        _put(base, f"{group}/providers/Microsoft.Compute/virtualMachines/{member}", "compute", {
            "location": location,
            "tags": {**tags, "lxcri-deployment": dep, "lxcri-kind": "vm", "lxcri-image": "ubuntu-24.04"},
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_B1ms"},
                "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
                                                      "version": "latest"},
                                   "osDisk": {"name": f"{member}-osdisk", "createOption": "FromImage", "deleteOption": "Delete"}},
                "osProfile": {"computerName": member, "adminUsername": "lxcri", "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {"publicKeys": [{"path": "/home/lxcri/.ssh/authorized_keys",
                                            "keyData": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench"}]}}},
                "networkProfile": {"networkInterfaces": [{"id": nic["id"], "properties": {"primary": True, "deleteOption": "Delete"}}]},
            }}, headers)

    parallel(one, items)


def clean_azure():
    base, group, headers = _azure()
    response = session().delete(f"{base}{group}", params={"api-version": AZ_VERSIONS["resources"]}, headers=headers, timeout=120)
    if response.status_code == 404:
        return 0
    if response.status_code >= 400:
        raise RuntimeError(f"azure delete {group}: {response.status_code} {response.text[:300]}")
    return 1


SEED = {"aws": seed_aws, "azure": seed_azure, "gcp": seed_gcp, "digitalocean": seed_digitalocean, "proxmox": seed_proxmox}
CLEAN = {"aws": clean_aws, "azure": clean_azure, "gcp": clean_gcp, "digitalocean": clean_digitalocean, "proxmox": clean_proxmox}


def seed(providers, count):
    items = deployments(count)

    def one(provider):
        began = time.monotonic()
        SEED[provider](items)
        return provider, time.monotonic() - began

    # Each provider's emulator is its own process: seed them side by side.
    for provider, seconds in parallel(one, providers, workers=len(providers)):
        print(f"seeded {provider} in {seconds:.1f} s", file=sys.stderr)


def clean(providers):
    for provider in providers:
        print(f"removed {CLEAN[provider]()} seeded resources on {provider}", file=sys.stderr)


# -- measuring -------------------------------------------------------------------------------------------------

def sandbox_requests():
    out = subprocess.run([SANDBOX, "requests"], check=True, capture_output=True, text=True).stdout
    return {provider: sum(ops.values()) for provider, ops in json.loads(out).items()}


def available(collections):
    """The providers that this version of the collection's provider registry can load."""
    code = "from ansible_collections.lxcri.cloud.plugins.module_utils.registry import NAMES; print(' '.join(NAMES))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": collections}).stdout
    return out.split()


def write_inventory(directory, name, providers, cache_dir=None):
    """An inventory file for these providers; the connection comes from the environment (scripts/sandbox env)."""
    lines = ["plugin: lxcri.cloud.deployments", f"providers: {json.dumps(providers)}",
             "regions: " + json.dumps({p: REGIONS[p] for p in providers})]
    if cache_dir:
        lines += ["cache: true", "cache_plugin: ansible.builtin.jsonfile", f"cache_connection: {json.dumps(cache_dir)}",
                  "cache_timeout: 3600"]
    path = os.path.join(directory, f"{name}.deployments.yml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def timed_inventory(path, env, cwd, flush=False):
    """(wall seconds, {provider: requests}, number of hosts) of one `ansible-inventory --list`."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", path, "--list",
           "--output", os.path.join(cwd, "out.json")] + (["--flush-cache"] if flush else [])
    before = sandbox_requests()
    began = time.monotonic()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - began
    after = sandbox_requests()
    if done.returncode or "WARNING" in done.stderr:
        raise RuntimeError(f"{' '.join(map(shlex.quote, cmd))} failed or warned:\n{done.stderr}")
    with open(os.path.join(cwd, "out.json"), encoding="utf-8") as handle:
        hosts = len(json.load(handle)["_meta"]["hostvars"])
    return seconds, {p: after.get(p, 0) - before.get(p, 0) for p in after}, hosts


PARSE = """
import json, os, sys, time
from ansible import context
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
context.CLIARGS = ImmutableDict({})
init_plugin_loader(os.environ["ANSIBLE_COLLECTIONS_PATH"].split(":"))
from ansible.inventory.manager import InventoryManager
began = time.monotonic()
inventory = InventoryManager(loader=DataLoader(), sources=[sys.argv[1]], cache=True)
print(json.dumps({"seconds": time.monotonic() - began, "hosts": len(inventory.hosts)}))
"""


def timed_parse(path, env, cwd):
    """Seconds that parsing the inventory source takes in-process (the plugin's own work, no CLI, no output)."""
    done = subprocess.run([sys.executable, "-c", PARSE, path], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def timed_graph(path, env, cwd):
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", path, "--graph"]
    began = time.monotonic()
    subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return time.monotonic() - began


def bench(providers, count, collections, repeat):
    registered = available(collections)
    skipped = [p for p in providers if p not in registered]
    providers = [p for p in providers if p in registered]
    with tempfile.TemporaryDirectory(prefix="lxcri-bench-inventory.") as work:
        return _bench(providers, skipped, count, collections, repeat, work)


def _bench(providers, skipped, count, collections, repeat, work):
    config = os.path.join(work, "ansible.cfg")  # Ansible's defaults, not the repository's ansible.cfg
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("[defaults]\n")
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": collections, "ANSIBLE_CONFIG": config,
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    alone, rows = {}, []
    for provider in providers:
        path = write_inventory(work, provider, [provider])
        runs = [timed_inventory(path, env, work) for _run in range(repeat)]
        alone[provider] = runs
    everything = write_inventory(work, "all", providers, cache_dir=os.path.join(work, "cache"))
    cold = [timed_inventory(everything, env, work, flush=True) for _run in range(repeat)]
    cached = [timed_inventory(everything, env, work) for _run in range(repeat)]
    graph = statistics.median(timed_graph(everything, env, work) for _run in range(repeat))
    parse = statistics.median(timed_parse(everything, env, work) for _run in range(repeat))

    def median(runs):
        return statistics.median(run[0] for run in runs)

    for provider in providers:
        runs = alone[provider]
        rows.append((f"{provider} alone", runs[-1][2], median(runs), f"{runs[-1][1].get(provider, 0)}"))
    slowest = max(providers, key=lambda p: median(alone[p]))
    per_provider = ", ".join(f"{p} {cold[-1][1].get(p, 0)}" for p in providers)
    rows.append(("all, cold", cold[-1][2], median(cold), per_provider))
    rows.append(("all, cached", cached[-1][2], median(cached), str(sum(cached[-1][1].values()))))

    print(f"ansible-inventory --list with lxcri.cloud.deployments: {count} deployments per provider, "
          f"median of {repeat} runs ({os.cpu_count()} CPUs)")
    if skipped:
        print(f"not measured (not in the provider registry of this version): {', '.join(skipped)}")
    print(f"{'run':<22} {'hosts':>6} {'wall s':>7}  API requests")
    for name, hosts, seconds, calls in rows:
        print(f"{name:<22} {hosts:>6} {seconds:>7.2f}  {calls}")
    ratio = median(cold) / median(alone[slowest])
    print(f"all providers cold / slowest alone ({slowest}, {median(alone[slowest]):.2f} s): {ratio:.2f} (goal <= 1.3)")
    print(f"cached run: {median(cached):.2f} s (goal < 1 s), {sum(cached[-1][1].values())} API requests (goal 0); "
          f"of that, the plugin's parse of the cache: {parse:.2f} s; `ansible-inventory --graph` cached: {graph:.2f} s")
    print(f"load average during the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("seed", "clean", "bench"))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--providers", default=" ".join(PROVIDERS))
    parser.add_argument("--collections", help="an ANSIBLE_COLLECTIONS_PATH holding lxcri.cloud (bench)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    providers = [p for p in args.providers.replace(",", " ").split() if p]
    unknown = set(providers) - set(PROVIDERS)
    if unknown:
        parser.error(f"unknown providers: {', '.join(sorted(unknown))}")
    if args.command == "seed":
        seed(providers, args.count)
    elif args.command == "clean":
        clean(providers)
    else:
        if not args.collections:
            parser.error("bench needs --collections")
        return bench(providers, args.count, args.collections, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
