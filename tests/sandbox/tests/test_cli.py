"""scripts/sandbox as a user runs it: real processes on ports that leave a running default sandbox alone."""
import json
import os
import shlex
import socket
import subprocess
import time

import boto3
import botocore.config
import botocore.exceptions
import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

from tests.sandbox import registry
from tests.sandbox.runtime import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "sandbox")
# Clear of a default sandbox (offset 0); each pytest-xdist worker gets a sandbox of its own.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def _free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_offset(start):
    """The first offset from `start` whose every port is free (another run of these tests may hold one)."""
    for offset in range(start, start + 5000, 100):
        if all(_free(port + offset + shift) for port in (4560, 4566, 4567, 4568, 4569, 8006) for shift in (0, 10000)):
            return offset
    raise RuntimeError(f"no free port range from offset {start}")


OFFSET = str(_free_offset(int(os.environ.get("SANDBOX_TEST_PORT_OFFSET", "20000")) + 500 * WORKER))
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """run(*args) -> stdout of scripts/sandbox on a sandbox of this module's own, brought up once."""
    env = dict(os.environ, SANDBOX_DIR=str(tmp_path_factory.mktemp("sandbox")), SANDBOX_PORT_OFFSET=OFFSET)
    outputs = []

    def run(*args, check=True):
        done = subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, timeout=120)
        outputs.append(done.stdout + done.stderr)
        if check and done.returncode:
            raise AssertionError(f"sandbox {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done if not check else done.stdout

    run.env, run.outputs = env, outputs
    began = time.monotonic()
    run("up")
    run.up_seconds = time.monotonic() - began
    yield run
    run("down")


@pytest.fixture(scope="module")
def cloud(sandbox):
    """The variables of `sandbox env`."""
    pairs = [shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in sandbox("env").splitlines()]
    return dict(pairs)


@pytest.fixture
def sdk_env(cloud, monkeypatch):
    for name, value in cloud.items():
        monkeypatch.setenv(name, value)
    return cloud


def proxmox(cloud):
    host, port = cloud["LXCRI_PROXMOX_ENDPOINT"].removeprefix("https://").split(":")
    user, token = cloud["PROXMOX_TOKEN_ID"].split("!")
    return ProxmoxAPI(host, port=int(port), user=user, token_name=token, token_value=cloud["PROXMOX_TOKEN_SECRET"],
                      verify_ssl=cloud["LXCRI_PROXMOX_CA_BUNDLE"])


def state(sandbox):
    return json.loads(sandbox("state"))


def leaks(found):
    return {p: {kind: ids for kind, ids in kinds.items() if ids} for p, kinds in found.items() if any(kinds.values())}


def test_up_is_fast_and_idempotent(sandbox):
    assert sandbox.up_seconds < 10  # ~1 s measured
    pids = {name: json.load(open(os.path.join(sandbox.env["SANDBOX_DIR"], "run", name)))["pid"]
            for name in ("aws.json", "proxmox.json", "proxy.json")}
    began = time.monotonic()
    again = sandbox("up")
    assert time.monotonic() - began < 3
    assert "started" not in again and again.count("kept") == len(registry.PROVIDERS) + 1  # and the proxy
    for name, pid in pids.items():
        assert json.load(open(os.path.join(sandbox.env["SANDBOX_DIR"], "run", name)))["pid"] == pid


def test_env_points_boto3_and_proxmoxer_at_the_sandbox_and_state_sees_what_they_make(sandbox, sdk_env):
    assert leaks(state(sandbox)) == {}
    ec2 = boto3.client("ec2")  # nothing but the environment
    image = ec2.describe_images(Owners=["099720109477"], Filters=[
        {"Name": "name", "Values": ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]}])["Images"][0]
    instance = ec2.run_instances(ImageId=image["ImageId"], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    key = boto3.client("ec2", region_name="eu-west-1").create_key_pair(KeyName="k")["KeyPairId"]
    pve = proxmox(sdk_env)  # TLS verified with the sandbox CA
    assert {t["name"] for t in pve.nodes("pve1").qemu.get() if t.get("template")} == {
        "ubuntu-24.04-cloudinit", "ubuntu-22.04-cloudinit", "debian-12-cloudinit"}
    task = pve.nodes("pve1").qemu(9000).clone.post(newid=123, name="web-1", full=1)
    assert Tasks.blocking_status(pve, task, polling_interval=0.05)["exitstatus"] == "OK"

    assert leaks(state(sandbox)) == {"aws": {"instances": [instance], "key_pairs": [key]},
                                     "proxmox": {"qemu": ["123"]}}

    ec2.terminate_instances(InstanceIds=[instance])
    boto3.client("ec2", region_name="eu-west-1").delete_key_pair(KeyName="k")
    task = pve.nodes("pve1").qemu(123).delete()
    Tasks.blocking_status(pve, task, polling_interval=0.05)
    assert leaks(state(sandbox)) == {}


def test_requests_counts_by_operation(sandbox, cloud, sdk_env):
    sandbox("requests", "--reset")
    ec2 = boto3.client("ec2")
    ec2.describe_instances()
    ec2.describe_instances()
    proxmox(cloud).nodes("pve1").qemu(9000).config.get()
    counts = {name: ops for name, ops in json.loads(sandbox("requests")).items() if ops}
    assert counts == {"aws": {"ec2.DescribeInstances": 2},
                      "proxmox": {"GET /nodes/{node}/qemu/{vmid}/config": 1}}


def test_throttling_reaches_boto3_and_proxmoxer(sandbox, cloud, sdk_env):
    sandbox("faults", "aws", "--throttle-rate", "1")
    sandbox("faults", "proxmox", "--throttle-rate", "1", "--retry-after", "2")
    try:
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            boto3.client("ec2", config=NO_RETRIES).describe_instances()
        assert raised.value.response["Error"]["Code"] == "RequestLimitExceeded"
        assert raised.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
        with pytest.raises(ResourceException) as raised:
            proxmox(cloud).version.get()
        assert raised.value.status_code == 429
    finally:
        sandbox("faults", "all", "--reset")
    boto3.client("ec2", config=NO_RETRIES).describe_instances()


def test_up_with_latency_keeps_the_processes_and_adds_it(sandbox, sdk_env):
    assert "started" not in sandbox("up", "--latency-ms", "300")
    try:
        ec2 = boto3.client("ec2")
        ec2.describe_regions()
        began = time.monotonic()
        ec2.describe_regions()
        assert time.monotonic() - began >= 0.3
    finally:
        assert "started" not in sandbox("up")  # latency is set on the running proxy
    began = time.monotonic()
    ec2.describe_regions()
    assert time.monotonic() - began < 0.3


def test_reset_forgets_resources_counts_and_faults(sandbox, cloud, sdk_env):
    boto3.client("ec2").create_security_group(GroupName="web", Description="web")
    pve = proxmox(cloud)
    Tasks.blocking_status(pve, pve.nodes("pve1").qemu(9001).clone.post(newid=124), polling_interval=0.05)
    sandbox("faults", "aws", "--error-rate", "0.5")
    assert leaks(state(sandbox))
    sandbox("reset")
    assert leaks(state(sandbox)) == {}
    assert json.loads(sandbox("requests")) == {p.name: {} for p in registry.PROVIDERS}
    assert json.loads(sandbox("faults", "aws"))["aws"]["error_rate"] == 0
    assert len([t for t in pve.nodes("pve1").qemu.get() if t.get("template")]) == 3  # the seed is back


def test_no_command_but_env_prints_a_secret(sandbox, cloud):
    secrets = [cloud["AWS_SECRET_ACCESS_KEY"], cloud["PROXMOX_TOKEN_SECRET"], cloud["AWS_ACCESS_KEY_ID"]]
    mode = os.stat(os.path.join(sandbox.env["SANDBOX_DIR"], "secrets.json")).st_mode & 0o777
    assert mode == 0o600
    printed = "".join(out for out in sandbox.outputs if "export " not in out)
    assert not [s for s in secrets if s in printed]


def test_down_stops_everything_and_is_idempotent(sandbox):
    sandbox("down")
    sandbox("down")
    assert os.listdir(os.path.join(sandbox.env["SANDBOX_DIR"], "run")) == []
    failed = sandbox("state", check=False)
    assert failed.returncode == 1 and "not up" in failed.stderr
    sandbox("up")  # for the fixture's own down, and to show that up after down works
