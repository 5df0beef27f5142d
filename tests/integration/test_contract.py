"""The provider contract: every registered provider (LXCRI_TEST_PROVIDERS picks fewer), for every kind it
declares, through the real core (argument spec, validation, Convergence) and its real SDK against the sandbox:
create, converge again with no change, find/select/list, retag, stop, start, work on records handed in without
what the provider read them from, remove, and leave nothing behind.

A provider that passes this plugs into the modules, the inventory and the roles: they use nothing else of it.
"""
import json
import os
import shlex
import subprocess

import pytest

from tests.collection_path import ROOT, importable

importable()
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402

from ansible_collections.lxcri.cloud.plugins.module_utils import registry, spec  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.converge import Convergence  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import RECORD_FIELDS, load  # noqa: E402
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline  # noqa: E402
from tests.sandbox import registry as sandbox_registry  # noqa: E402

SANDBOX = os.path.join(ROOT, "scripts", "sandbox")
PROVIDERS = os.environ.get("LXCRI_TEST_PROVIDERS", "").split() or list(registry.NAMES)
CASES = [(name, kind) for name in PROVIDERS for kind in registry.INFO[name].kinds]
# What each kind needs beyond the portable defaults; count: members (or replicas) the contract asks for.
KIND_OPTIONS = {
    "vm": {"count": 2},
    "container": {"count": 1, "container": {"image": "nginx:1.27", "port": 80}},
    "function": {"count": 1, "function": {"runtime": "python3.12", "handler": "app.handler", "url": False}},
}


def sandbox(*args):
    return subprocess.run([SANDBOX, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def sandbox_environment():
    """The sandbox's environment (endpoints, credentials) in os.environ: the connection fields fall back to it."""
    sandbox("up")
    saved = dict(os.environ)
    for line in sandbox("env").splitlines():
        if line.startswith("export "):
            name, _sep, value = line[len("export "):].partition("=")
            os.environ[name] = shlex.split(value)[0] if value else ""
    yield
    os.environ.clear()
    os.environ.update(saved)


def live(provider):
    state = json.loads(sandbox("state")).get(provider) or {}
    return {kind: sorted(ids) for kind, ids in state.items() if ids}


def merged(base, extra):
    return {key: merged(base.get(key) or {}, value) if isinstance(value, dict) else value
            for key, value in {**base, **extra}.items()} if extra else dict(base)


def params(provider, kind, name, tmp_path, **changes):
    """The module's parameters as AnsibleModule completes them (defaults, environment fallbacks); the package's
    own example of the kind where the portable one does not fit it."""
    options = merged(json.loads(json.dumps(KIND_OPTIONS[kind])), registry.INFO[provider].examples.get(kind, {}))
    if kind == "function":
        (tmp_path / "app.py").write_text("def handler(event, context):\n    return {'statusCode': 200}\n")
        options["function"]["code"] = str(tmp_path)
    given = {"provider": provider, "name": name, "kind": kind, "region": sandbox_registry.get(provider).region,
             "tags": {"suite": "contract"}, **options, **changes}
    result = ArgumentSpecValidator(spec.deployment_argument_spec()).validate(given)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


class Deployment:
    """One deployment of the contract, converged as the module does it: argument spec, validation, Convergence."""

    def __init__(self, provider_name, kind, name, tmp_path):
        self.provider_name, self.kind, self.name, self.tmp_path = provider_name, kind, name, tmp_path
        self.provider = self.region = None

    def converge(self, **changes):
        values = params(self.provider_name, self.kind, self.name, self.tmp_path, **changes)
        provider_class = load(self.provider_name)
        wanted = spec.validate_deployment(values, provider_class)
        self.provider = provider_class(values[self.provider_name], deadline=Deadline(wanted["wait_timeout"], "wait_timeout"))
        self.region = self.provider.region(wanted)
        return Convergence(self.provider, wanted).run()


@pytest.mark.parametrize("provider_name, kind", CASES)
def test_contract(sandbox_environment, tmp_path, provider_name, kind):
    name = f"contract-{kind}"[:20]
    before = live(provider_name)
    count = KIND_OPTIONS[kind]["count"]
    deployment = Deployment(provider_name, kind, name, tmp_path)
    made = deployment.converge()
    provider, region = deployment.provider, deployment.region
    records = made["deployments"]
    assert made["changed"] and len(records) == count
    for rec in records:
        assert set(rec) == set(RECORD_FIELDS)
        assert (rec["provider"], rec["kind"], rec["deployment"]) == (provider_name, kind, name)
        assert rec["state"] == "running" and rec["tags"] == {"suite": "contract"} and rec["id"]
    assert live(provider_name) != before

    again = deployment.converge()
    assert not again["changed"], again["actions"]
    ids = sorted(rec["id"] for rec in records)
    assert sorted(rec["id"] for rec in provider.find(name, region, kind)) == ids
    assert sorted(rec["id"] for rec in provider.select(region, tags={"suite": "contract"}, kinds=[kind])) == ids
    assert set(ids) <= {rec["id"] for rec in provider.list(region)}

    retagged = deployment.converge(tags={"suite": "contract", "round": "2"})
    assert retagged["changed"]
    assert all(rec["tags"] == {"suite": "contract", "round": "2"} for rec in provider.find(name, region, kind))

    stopped = deployment.converge(tags={"suite": "contract", "round": "2"}, state="stopped")
    assert stopped["changed"] and {rec["state"] for rec in stopped["deployments"]} == {"stopped"}
    started = deployment.converge(tags={"suite": "contract", "round": "2"}, state="running")
    assert started["changed"] and {rec["state"] for rec in started["deployments"]} == {"running"}

    # Records handed in as plain dicts (a user's, or a copy): no native, and every operation still works.
    handed = [dict(rec) for rec in started["deployments"]]
    assert sorted(rec["id"] for rec in provider.refresh(handed)) == ids
    provider.update_tags(handed, {"suite": "contract"}, True)
    assert all(rec["tags"] == {"suite": "contract"} for rec in provider.find(name, region, kind))

    removed = deployment.converge(state="absent")
    assert removed["changed"] and {rec["state"] for rec in removed["deployments"]} == {"terminated"}
    assert provider.find(name, region, kind) == []
    assert live(provider_name) == before
