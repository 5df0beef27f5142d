"""The playbooks as a user runs them: `eval "$(scripts/sandbox env)"` and nothing else."""
import os
import re
import shlex
import subprocess

import pytest

from tests.collection_path import ROOT, importable

importable()
from ansible_collections.lxcri.cloud.plugins.module_utils import registry  # noqa: E402

SANDBOX = os.path.join(ROOT, "scripts", "sandbox")
PROVIDERS = os.environ.get("LXCRI_TEST_PROVIDERS", "").split() or list(registry.NAMES)
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|(?<!_ID)TOKEN$|TOKEN_SECRET")


def sandbox_env():
    out = subprocess.run([SANDBOX, "env"], check=True, capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            name, _sep, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


@pytest.fixture(scope="module")
def env():
    sandbox = sandbox_env()
    run_env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PROXMOX_", "LXCRI_"))}
    run_env.update(sandbox)
    run_env["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    return run_env, sandbox


def playbook(env, name, provider, *extra):
    cmd = [
        os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), os.path.join(ROOT, "playbooks", name),
        "-e", f"provider={provider}", "-e", f"@{os.path.join(ROOT, 'config', 'cloud', provider + '.yaml')}", *extra,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)


def recap(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    match = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+).*failed=(\d+)", result.stdout)
    assert match, result.stdout[-2000:]
    return {"ok": int(match.group(1)), "changed": int(match.group(2)), "failed": int(match.group(3))}


def sandbox_state():
    import json

    return json.loads(subprocess.run([SANDBOX, "state"], check=True, capture_output=True, text=True).stdout)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_deploy_twice_then_destroy_with_environment_only(env, provider):
    run_env, sandbox = env
    first = playbook(run_env, "deploy.yml", provider, "-vvvv")
    assert recap(first)["changed"] >= 1
    secrets = [value for name, value in sandbox.items() if SECRET_NAMES.search(name) and len(value) >= 8]
    assert secrets, "the sandbox exported no secret to look for"
    for secret in secrets:
        assert secret not in first.stdout + first.stderr, "a credential from scripts/sandbox env appears at -vvvv"
    assert "demo-web-2" in first.stdout  # the records table names both members
    second = playbook(run_env, "deploy.yml", provider)
    assert recap(second)["changed"] == 0
    gone = playbook(run_env, "destroy.yml", provider)
    assert recap(gone)["changed"] >= 1
    assert [ids for ids in sandbox_state()[provider].values() if ids] == []


ALARM_PROVIDERS = registry.alarm_providers()


def monitor(env, provider, alarm, vars_file, *extra):
    """playbooks/monitor.yml on one provider, the alarm in a vars file (as a user keeps a webhook: out of argv)."""
    import json

    import yaml

    with open(os.path.join(ROOT, "config", "cloud", provider + ".yaml"), encoding="utf-8") as handle:
        region = yaml.safe_load(handle)["deployment"]["region"]
    variables = {"providers": [provider], "regions": {provider: region},
                 "alarms": {provider: [alarm]} if provider in ALARM_PROVIDERS else {}}
    vars_file.write_text(json.dumps(variables))
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), os.path.join(ROOT, "playbooks", "monitor.yml"),
           "-e", f"@{vars_file}", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, check=False)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_monitor_shows_metrics_and_converges_an_alarm(env, provider, tmp_path):
    run_env, _sandbox = env
    token = "hook" + os.urandom(8).hex()
    alarm = {"name": "pb-cpu-high", "metric": "cpu", "threshold": 80, "deployments": ["demo-web"],
             "notify": {"emails": ["ops@example.com"]}}
    if provider != "digitalocean":  # DigitalOcean notifies by email and Slack only
        alarm["notify"]["webhooks"] = [f"https://hooks.example.com/{token}"]
    recap(playbook(run_env, "deploy.yml", provider))
    variables = tmp_path / "monitor.json"
    try:
        report = tmp_path / "report.txt"
        first = monitor(run_env, provider, alarm, variables, "-vvvv", "-e", f"report_file={report}")
        assert recap(first)["failed"] == 0
        assert token not in first.stdout + first.stderr, "a webhook URL appears at -vvvv"
        table = report.read_text()
        rows = {line.split()[2]: line.split() for line in table.splitlines() if line.startswith(provider + " ")}
        assert re.fullmatch(r"\d+\.\d", rows["demo-web-1"][4]), table  # the average CPU percent
        if provider in ALARM_PROVIDERS:
            assert re.search(rf"^{provider} +pb-cpu-high +cpu +above 80 ", table, re.M), table
        again = monitor(run_env, provider, alarm, variables)
        assert recap(again)["changed"] == 0
    finally:
        monitor(run_env, provider, alarm, variables, "-e", "alarm_state=absent")
        recap(playbook(run_env, "destroy.yml", provider))
    assert [ids for ids in sandbox_state()[provider].values() if ids] == []
