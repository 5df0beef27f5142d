"""The table of sandbox providers: one entry each, read by the CLI (start, env, state, reset) and the proxy.

Adding a provider = one emulator file (tests/sandbox/emulators/<p>.py, contract in emulators/__init__.py)
and one ``own_emulator(...)`` line in PROVIDERS below. SANDBOX_PROVIDERS (names, comma or space separated)
makes a sandbox of only those, for every command that sees it.
"""
import importlib
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from tests.sandbox import aws, own, pve

CONTROL_PORT = 4560  # the proxy's control API (+ SANDBOX_PORT_OFFSET)
BACKEND_SHIFT = 10000  # a backend listens on its public port + this, on 127.0.0.1 only


@dataclass(frozen=True)
class Provider:
    """One cloud of the sandbox. Every callable takes the runtime Context (tests/sandbox/runtime.py)."""

    name: str
    port: int  # public port before SANDBOX_PORT_OFFSET
    https: bool  # the proxy terminates TLS on the public port
    command: Callable  # ctx -> (argv, extra env) of the backend process
    health_path: str  # answered by the backend once it is ready (probed through the proxy)
    classify: Callable  # req -> operation name, for request counting (req: .method .path .headers .body)
    shape: Callable  # (kind "throttle"|"error", status, req, retry_after) -> (status, reason, headers, body)
    state: Callable  # ctx -> {resource_type: [ids]} of live resources
    reset: Callable  # ctx -> None: forget every resource
    env: Callable  # ctx -> {NAME: value}: what `sandbox env` prints (our own emulators get it too)
    make_secrets: Callable  # ctx -> {key: value}: fresh credentials, made once per `up` from nothing
    backend_https: bool = False  # the backend itself speaks TLS (fakepve): the proxy does not verify it
    configure: Optional[Callable] = None  # ctx -> None, after the backend starts and after each reset
    scope: Optional[Callable] = None  # req -> str or None (AWS: the region), remembered by the proxy
    ready_url: Optional[Callable] = None  # ctx -> URL answering 200 once ready; default: backend + health_path
    sources: tuple = field(default_factory=tuple)  # files (globs) whose change means a restart at `up`
    # (ctx, alarm name, "alarm"|"ok"|"insufficient_data") -> JSON answer: make an alarm show that state
    force_alarm: Optional[Callable] = None
    # (req, ask) -> (status, reason, headers, body), or None to relay: a request the proxy answers itself (after
    # counting and faults, so it is counted under its operation); ask(method, path) asks the backend with the
    # request's own headers (not counted). For what a backend lacks (fakepve's empty rrddata).
    answer: Optional[Callable] = None
    region: str = ""  # where the tests deploy on it (a region, zone or node the emulator serves)


def own_emulator(name, port, https, env=None, make_secrets=None, shape=None, module=None, region=""):
    """An emulator of ours: started with `python -m`, classified by its operation(), /_sandbox/ for the rest.

    env, make_secrets and shape default to the emulator module's SANDBOX dict, so that a new emulator brings them."""
    module = module or f"tests.sandbox.emulators.{name}"
    if env is None:
        config = importlib.import_module(module).SANDBOX
        env, make_secrets, shape = config["env"], config["make_secrets"], config["shape"]
    kind = own.OwnEmulator(name, module, env)
    return Provider(name, port, https, kind.command, own.HEALTH_PATH, kind.classify, shape, kind.state, kind.reset,
                    env, make_secrets, sources=("tests/sandbox/own.py", "tests/sandbox/metrics.py",
                                                module.replace(".", "/") + "*.py"), force_alarm=kind.force_alarm,
                    region=region)


ALL = [
    Provider("aws", 4566, False, aws.command, aws.HEALTH_PATH, aws.classify, aws.shape, aws.state, aws.reset,
             aws.env, aws.make_secrets, configure=aws.configure, scope=aws.region, sources=aws.SOURCES,
             force_alarm=aws.force_alarm, region="us-east-1"),
    Provider("proxmox", 8006, True, pve.command, pve.HEALTH_PATH, pve.classify, pve.shape, pve.state, pve.reset,
             pve.env, pve.make_secrets, backend_https=True, ready_url=pve.ready_url, sources=pve.SOURCES,
             answer=pve.answer, region="pve1"),
    # Our own emulators, one line each (tests/sandbox/emulators/<p>.py):
    own_emulator("azure", 4567, https=True, region="westeurope", **own.AZURE),
    own_emulator("gcp", 4568, https=False, region="us-central1-a", **own.GCP),
    own_emulator("digitalocean", 4569, https=True, region="fra1", **own.DIGITALOCEAN),
]
_WANTED = [name for name in re.split(r"[,\s]+", os.environ.get("SANDBOX_PROVIDERS", "")) if name]
PROVIDERS = [p for p in ALL if not _WANTED or p.name in _WANTED]


def get(name):
    """The registered provider called name, or KeyError listing the known ones."""
    for provider in PROVIDERS:
        if provider.name == name:
            return provider
    raise KeyError(f"unknown provider {name!r}; registered: {', '.join(p.name for p in PROVIDERS)}")


def public_port(provider, offset):
    return provider.port + offset


def backend_port(provider, offset):
    return provider.port + offset + BACKEND_SHIFT
