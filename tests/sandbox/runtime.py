"""Where the sandbox keeps its things and how it runs its processes.

State directory (default <repo>/.sandbox, env SANDBOX_DIR): tls/ (CA and server cert), secrets.json (0600),
run/<name>.json (pid, process start time, config digest), logs/<name>.log, scopes.json (regions seen).
Record directory (env SANDBOX_RECORD_DIR, off by default): our own emulators append every exchange to
<dir>/<provider>.jsonl there (tests/sandbox/conformance.py checks them); part of their config digest,
so `up` with another (or no) record directory restarts them.
"""
import contextlib
import datetime
import fcntl
import glob
import hashlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.sandbox import registry
from tests.sandbox.tls import make_tls

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROXY = "proxy"  # the record name of the proxy process
CLOUD_VARIABLES = ("AWS_", "AZURE_", "GOOGLE_", "DIGITALOCEAN_", "PROXMOX_", "LXCRI_", "REQUESTS_CA_BUNDLE")


@contextlib.contextmanager
def exclusive(ctx):
    """One `up`, `reset` or `down` at a time per state directory (test workers may all call `up`)."""
    os.makedirs(ctx.dir, exist_ok=True)
    with open(os.path.join(ctx.dir, "lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def state_dir():
    return os.path.abspath(os.environ.get("SANDBOX_DIR") or os.path.join(ROOT, ".sandbox"))


def port_offset():
    return int(os.environ.get("SANDBOX_PORT_OFFSET") or 0)


def record_dir():
    """$SANDBOX_RECORD_DIR made absolute (the backends run in the repository), or None when unset."""
    directory = os.environ.get("SANDBOX_RECORD_DIR")
    return os.path.abspath(directory) if directory else None


class Context:
    """What a provider entry needs to know: ports, URLs, credentials, TLS files, options."""

    def __init__(self, directory=None, offset=None, provision_seconds=0.0):
        self.dir = directory or state_dir()
        self.offset = port_offset() if offset is None else offset
        self.provision_seconds = provision_seconds
        self.record_dir = record_dir()  # where own emulators record their exchanges, or None
        self.python = sys.executable
        tls = os.path.join(self.dir, "tls")
        self.ca, self.cert, self.key = (os.path.join(tls, n) for n in ("ca.pem", "server.pem", "server.key"))
        self.secrets = _read_json(os.path.join(self.dir, "secrets.json")) or {}

    def public_port(self, name):
        return registry.public_port(registry.get(name), self.offset)

    def backend_port(self, name):
        return registry.backend_port(registry.get(name), self.offset)

    def public_url(self, name):
        scheme = "https" if registry.get(name).https else "http"
        return f"{scheme}://127.0.0.1:{self.public_port(name)}"

    def backend_url(self, name):
        scheme = "https" if registry.get(name).backend_https else "http"
        return f"{scheme}://127.0.0.1:{self.backend_port(name)}"

    @property
    def control_url(self):
        return f"http://127.0.0.1:{registry.CONTROL_PORT + self.offset}"

    def scopes(self, name):
        """Scopes (AWS regions) clients have used through the proxy since the last reset."""
        return (_read_json(os.path.join(self.dir, "scopes.json")) or {}).get(name, [])


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def _write_json(path, data, mode=0o644):
    temporary = path + ".tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as handle:
        json.dump(data, handle, indent=1)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


# ------------------------------------------------------------------ files


def ensure_tls(ctx):
    """Make the CA and server certificate unless valid ones (for two more days at least) exist."""
    try:
        with open(ctx.ca, "rb") as handle:
            from cryptography import x509

            expires = x509.load_pem_x509_certificate(handle.read()).not_valid_after_utc
        if expires - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(days=2) and os.path.exists(
                ctx.key):
            return False
    except FileNotFoundError:
        pass
    make_tls(os.path.dirname(ctx.ca))
    return True


def ensure_secrets(ctx):
    """Credentials for every registered provider, made the first time and kept (0600) until `down`."""
    missing = [p for p in registry.PROVIDERS if p.name not in ctx.secrets]
    for provider in missing:
        ctx.secrets[provider.name] = provider.make_secrets(ctx)
    if missing:
        _write_json(os.path.join(ctx.dir, "secrets.json"), ctx.secrets, 0o600)


def forget_secrets(ctx):
    for name in ("secrets.json", "gcp-service-account.json", "scopes.json"):
        try:
            os.remove(os.path.join(ctx.dir, name))
        except FileNotFoundError:
            pass


def fingerprint(sources):
    """Changes when one of the files (globs, relative to the repository) changes: `up` then restarts what runs them."""
    digest = hashlib.sha256()
    for source in sources:
        for path in sorted(glob.glob(os.path.join(ROOT, source))) or [source]:
            try:
                info = os.stat(path)
                digest.update(f"{path}:{info.st_mtime_ns}:{info.st_size};".encode())
            except FileNotFoundError:
                digest.update(f"{path}:missing;".encode())
    return digest.hexdigest()


def digest(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------ processes


def _record_path(ctx, name):
    return os.path.join(ctx.dir, "run", f"{name}.json")


def _started(pid):
    """The kernel's start time of a process (to tell it from a later one with the same pid), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # field 22 of proc(5); a zombie is gone


def running(ctx, name):
    """The record of a process of ours that is still alive, or None."""
    record = _read_json(_record_path(ctx, name))
    if record and record.get("started") and _started(record["pid"]) == record["started"]:
        return record
    return None


def records(ctx):
    """Names of every process record in the state directory (also of providers no longer registered)."""
    try:
        return sorted(n[:-5] for n in os.listdir(os.path.join(ctx.dir, "run")) if n.endswith(".json"))
    except FileNotFoundError:
        return []


def spawn(ctx, name, argv, extra_env, config):
    """Start a detached process (own session: it outlives the shell) logging to logs/<name>.log."""
    os.makedirs(os.path.join(ctx.dir, "run"), exist_ok=True)
    os.makedirs(os.path.join(ctx.dir, "logs"), exist_ok=True)
    # not what a shell that ran `eval "$(sandbox env)"` points at: the backends get their own settings only
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLOUD_VARIABLES)}
    env.update(PYTHONPATH=ROOT, PYTHONUNBUFFERED="1", **extra_env)
    path = os.path.join(ctx.dir, "logs", f"{name}.log")
    if os.path.exists(path):
        os.replace(path, path + ".1")  # the previous run's log (a crash?) stays for one more start
    with open(path, "wb") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    started = None
    while started is None and process.poll() is None:
        started = _started(process.pid)
    _write_json(_record_path(ctx, name), {"pid": process.pid, "started": started, "config": config})
    return process


def stop(ctx, names, timeout=5.0):
    """SIGTERM the process groups, SIGKILL what is left after timeout; forget their records."""
    alive = {}
    for name in names:
        record = running(ctx, name)
        if record:
            try:
                os.killpg(record["pid"], signal.SIGTERM)
                alive[name] = record
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = {n: r for n, r in alive.items() if _started(r["pid"]) == r["started"]}
        time.sleep(0.02)
    for record in alive.values():
        try:
            os.killpg(record["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name in names:
        try:
            os.remove(_record_path(ctx, name))
        except FileNotFoundError:
            pass


def log_tail(ctx, name, lines=15):
    try:
        with open(os.path.join(ctx.dir, "logs", f"{name}.log"), errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except FileNotFoundError:
        return ""


# ------------------------------------------------------------------ HTTP


def http(url, method="GET", payload=None, headers=None, ca=None, timeout=10):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    data = json.dumps(payload).encode() if payload is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    context = ssl.create_default_context(cafile=ca) if ca else ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def control(ctx, path, payload=None):
    """A call to the proxy's control API; its JSON answer. RuntimeError with the message on an error."""
    status, _, body = http(ctx.control_url + path, "POST" if payload is not None else "GET", payload)
    answer = json.loads(body or b"null")
    if status != 200:
        raise RuntimeError((answer or {}).get("error") or f"proxy answered {status}")
    return answer
