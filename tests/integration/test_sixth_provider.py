"""A sixth provider plugs in with its package, its emulator and three one-line edits: the test copies the
collection, adds the throwaway provider "acme" (tests/sandbox/sixth_provider/), makes exactly those edits, and
runs the provider contract test (test_contract.py) against it in a sandbox of its own; the modules' choices,
the doc fragments and the lookup list it too."""
import difflib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.collection_path import ROOT

FIXTURE = os.path.join(ROOT, "tests", "sandbox", "sixth_provider")
PACKAGE = os.path.join("plugins", "module_utils", "providers", "acme")
EMULATOR = os.path.join("tests", "sandbox", "emulators", "acme.py")
# The edits outside the package and the emulator: (file, old text, new text), one line each.
EDITS = [
    ("plugins/module_utils/registry.py",
     "providers import aws, azure, digitalocean, gcp, proxmox\n",
     "providers import acme, aws, azure, digitalocean, gcp, proxmox\n"),
    ("plugins/module_utils/registry.py",
     "PACKAGES = (aws, azure, gcp, digitalocean, proxmox)\n",
     "PACKAGES = (aws, azure, gcp, digitalocean, proxmox, acme)\n"),
    ("tests/sandbox/registry.py",
     '    own_emulator("digitalocean", 4569, https=True, region="fra1", **own.DIGITALOCEAN),\n',
     '    own_emulator("digitalocean", 4569, https=True, region="fra1", **own.DIGITALOCEAN),\n'
     '    own_emulator("acme", 4570, https=True, region="zone-1"),\n'),
]
# Ports of its own, beside the sandbox of the run it is part of (runs with other offsets may go on beside it).
OFFSET = str(int(os.environ.get("SANDBOX_PORT_OFFSET") or 0) + 600)


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [path for path in out.split("\0") if path and os.path.isfile(os.path.join(ROOT, path))]


def changed_lines(before, after):
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The collection with acme added, and its sandbox (acme alone) up; down again afterwards."""
    tree = tmp_path_factory.mktemp("sixth") / "repo"
    for path in tracked_files():
        os.makedirs(tree / os.path.dirname(path), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), tree / path)
    os.symlink(os.path.join(ROOT, ".venv"), tree / ".venv")
    shutil.copytree(os.path.join(FIXTURE, "acme"), tree / PACKAGE)
    shutil.copy2(os.path.join(FIXTURE, "emulator.py"), tree / EMULATOR)
    edited = {}
    for path, old, new in EDITS:
        text = edited.get(path) or (tree / path).read_text()
        assert text.count(old) == 1, f"{path} no longer has the line the edit expects: {old!r}"
        edited[path] = text.replace(old, new)
    lines = 0
    for path, text in edited.items():
        lines += len([line for line in changed_lines((tree / path).read_text(), text) if line.startswith("+")])
        (tree / path).write_text(text)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SANDBOX_", "LXCRI_", "ACME_"))}
    env.update(SANDBOX_PROVIDERS="acme", SANDBOX_PORT_OFFSET=OFFSET, SANDBOX_DIR=str(tree / ".sandbox"),
               LXCRI_TEST_PROVIDERS="acme")
    subprocess.run([str(tree / "scripts" / "sandbox"), "up"], env=env, check=True, capture_output=True, text=True)
    yield tree, env, lines
    subprocess.run([str(tree / "scripts" / "sandbox"), "down"], env=env, check=False, capture_output=True)


def test_three_one_line_edits_outside_the_package_and_the_emulator(copy):
    _tree, _env, lines = copy
    assert lines == 3


def test_the_sixth_provider_passes_the_contract(copy):
    tree, env, _lines = copy
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/test_contract.py"],
                         cwd=tree, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "1 passed" in run.stdout  # acme declares one kind, vm


def test_everything_that_lists_providers_lists_it(copy):
    tree, env, _lines = copy
    names = subprocess.run([sys.executable, "scripts/providers"], cwd=tree, env=env, check=True, capture_output=True,
                           text=True).stdout.split()
    assert names[-1] == "acme" and len(names) == 6
    code = (
        "import json\n"
        "from tests.collection_path import importable\n"
        "importable()\n"
        "from ansible_collections.lxcri.cloud.plugins.module_utils import spec\n"
        "from ansible_collections.lxcri.cloud.plugins.doc_fragments.connection import ModuleDocFragment as C\n"
        "from ansible_collections.lxcri.cloud.plugins.doc_fragments.providers import ModuleDocFragment as P\n"
        "print(json.dumps({'choices': spec.deployment_argument_spec()['provider']['choices'],\n"
        "                  'connection': sorted(spec.connection_argument_spec()['acme']['options']),\n"
        "                  'documented': sorted(json.loads(C.DOCUMENTATION)['options']['acme']['suboptions']),\n"
        "                  'doc_choices': json.loads(P.DOCUMENTATION)['options']['provider']['choices'],\n"
        "                  'vm': spec.KIND_PROVIDERS['vm'], 'container': spec.KIND_PROVIDERS['container']}))\n"
    )
    seen = json.loads(subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True,
                                     text=True).stdout)
    assert "acme" in seen["choices"] and seen["doc_choices"] == seen["choices"]
    assert seen["connection"] == seen["documented"] == ["ca_bundle", "endpoint", "region", "token", "validate_certs"]
    assert "acme" in seen["vm"] and "acme" not in seen["container"]
