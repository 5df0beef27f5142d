"""Proxmox VE in the sandbox: fakepve, run by this launcher.

fakepve is AGPL: we use it as a PyPI test dependency through its public Python API and never copy its code.
The launcher exists because API tokens can only be set through that API. It seeds node pve1 with the
cloud-init templates and LXC templates the collection's portable images map to, and serves
/_sandbox/health|state|reset (plain http on the backend port + 1) like our own emulators do.

fakepve answers rrddata with [{}]; answer() (run by the proxy, registry.Provider.answer) gives guests
PVE's RRD samples instead, from tests/sandbox/metrics.py keyed by the vmid.

    python -m tests.sandbox.pve --port P --control-port C --cert server.pem --key server.key [--provision-seconds N]
    (the token secret comes from the environment: PROXMOX_TOKEN_SECRET)
"""
import argparse
import asyncio
import json
import os
import re
import threading
import time
import urllib.parse
import uuid
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.sandbox import metrics
from tests.sandbox.own import sandbox_call

NODE = "pve1"
TOKEN_ID = "root@pam!lxcri"
TEMPLATES = {9000: "ubuntu-24.04-cloudinit", 9001: "ubuntu-22.04-cloudinit", 9002: "debian-12-cloudinit"}
CT_TEMPLATES = ("ubuntu-24.04-standard_24.04-2_amd64.tar.zst", "debian-12-standard_12.7-1_amd64.tar.zst")
TEMPLATE_CONFIG = {  # what `qm create` + `qm template` of a cloud image gives
    "memory": "2048", "cores": "2", "ostype": "l26", "scsihw": "virtio-scsi-single", "scsi0": "local-lvm:4",
    "ide2": "local-lvm:cloudinit", "net0": "virtio,bridge=vmbr0", "serial0": "socket", "vga": "serial0",
    "boot": "order=scsi0", "agent": "enabled=1",
}
HEALTH_PATH = "/api2/json/version"
SOURCES = ("tests/sandbox/pve.py",)
_PREFIX = re.compile(r"^/api2/(?:json|extjs)(?=/)")
RRDDATA = re.compile(r"^/api2/json/nodes/[^/]+/(?:qemu|lxc)/(?P<vmid>\d+)/rrddata$")
# The guest RRD archives of PVE 8 (pve-cluster's rrd_def_vm, PVE::RRD::create_rrd_data): seconds per sample;
# rrddata returns the last ROWS complete samples, each stamped with the start of its interval.
TIMEFRAMES = {"hour": 60, "day": 1800, "week": 10800, "month": 43200, "year": 604800}
ROWS = 70
MINUTES_PER_SAMPLE = 12  # minutes of the synthetic signal consolidated into one coarse sample (enough for its shape)
# rrddata field -> the portable metric of tests/sandbox/metrics.py it is served from (bytes/s as PVE keeps them)
RATES = {"netin": "network_in", "netout": "network_out", "diskread": "disk_read", "diskwrite": "disk_write"}


# ------------------------------------------------------------------ provider entry


def command(ctx):
    port = ctx.backend_port("proxmox")
    argv = ["-m", "tests.sandbox.pve", "--port", str(port), "--control-port", str(port + 1),
            "--cert", ctx.cert, "--key", ctx.key, "--provision-seconds", str(ctx.provision_seconds)]
    return [ctx.python] + argv, {"PROXMOX_TOKEN_SECRET": ctx.secrets["proxmox"]["token_secret"]}


def _control(ctx):
    return f"http://127.0.0.1:{ctx.backend_port('proxmox') + 1}/_sandbox"


def ready_url(ctx):
    return _control(ctx) + "/health"  # up once the templates are seeded (the API answers before that)


def state(ctx):
    return sandbox_call(_control(ctx) + "/state")


def reset(ctx):
    sandbox_call(_control(ctx) + "/reset", "POST")


def make_secrets(ctx):
    return {"token_secret": str(uuid.uuid4())}


def env(ctx):
    return {"PROXMOX_TOKEN_ID": TOKEN_ID, "PROXMOX_TOKEN_SECRET": ctx.secrets["proxmox"]["token_secret"],
            "LXCRI_PROXMOX_ENDPOINT": ctx.public_url("proxmox"), "LXCRI_PROXMOX_CA_BUNDLE": ctx.ca}


@lru_cache(maxsize=1)
def _schema():
    from fakepve import schema  # PVE's API paths, shipped with fakepve

    return schema.load()


def classify(req):
    """'POST /nodes/{node}/qemu/{vmid}/clone': the method and PVE's path template."""
    path = _PREFIX.sub("", req.path.split("?", 1)[0])
    match = _schema().match(path)  # on the raw path: an encoded volume id stays one segment
    if match is None:
        path = re.sub(r"/\d+(?=/|$)", "/{id}", path)
    return f"{req.method} {match.template if match else path}"


def shape(kind, status, req, retry_after):
    """PVE carries the error message in the reason phrase (proxmoxer shows it), the body has data: null."""
    reason = {"throttle": "too many requests - try again later"}.get(kind) or {
        500: "internal error - please retry", 503: "service unavailable - please retry"}[status]
    body = json.dumps({"data": None, "message": reason + "\n"}).encode()
    return status, reason, {"Content-Type": "application/json;charset=UTF-8", "Retry-After": str(retry_after)}, body


def answer(req, ask):
    """GET .../{qemu|lxc}/{vmid}/rrddata with PVE's samples; None (relay to fakepve) for every other request.

    fakepve is asked first, so its parameter checks, token checks and "does not exist" errors come back as they
    are; then status/current says whether the guest runs, since when, and its maxcpu/maxmem/maxdisk.
    """
    path, _, query = req.path.partition("?")
    match = RRDDATA.match(path)
    if req.method != "GET" or not match:
        return None
    checked = ask("GET", req.path)
    if checked[0] != 200:
        return checked
    current = ask("GET", path.rsplit("/", 1)[0] + "/status/current")
    if current[0] != 200:
        return current
    params = dict(urllib.parse.parse_qsl(query))
    data = rrd_samples(match["vmid"], json.loads(current[3])["data"], params["timeframe"], params.get("cf") or "AVERAGE",
                       time.time())
    return 200, "OK", {"Content-Type": "application/json;charset=UTF-8"}, json.dumps({"data": data}).encode()


def rrd_samples(key, guest, timeframe, cf, now):
    """The ROWS samples of a timeframe up to now, as PVE's rrddata returns them: while the guest runs, every
    sample carries every field of the guest RRD (cpu a fraction of maxcpu, mem bytes, netin/netout/diskread/
    diskwrite bytes per second), history included (the sandbox backfills it, so that a guest made a moment ago
    has a window of data already); a stopped guest's samples carry only their time (PVE leaves unknown values out)."""
    step = TIMEFRAMES[timeframe]
    end = int(now) // step * step
    running = guest.get("status") == "running"
    samples = []
    for start in range(end - ROWS * step, end, step):
        sample = {"time": start}
        if running:
            sample.update(_consolidated(key, guest, start, step, max if cf == "MAX" else _mean))
        samples.append(sample)
    return samples


def _mean(values):
    return sum(values) / len(values)


def _consolidated(key, guest, start, step, combine):
    """One sample's fields: the signal over the interval [start, start + step), consolidated with combine."""
    count = max(1, min(step // 60, MINUTES_PER_SAMPLE))
    ticks = [start + i * step // count for i in range(count)]

    def value(metric):
        return combine([metrics.level(key, metric, tick) for tick in ticks])

    maxmem = int(guest.get("maxmem") or 0)
    sample = {"cpu": value("cpu") / 100, "maxcpu": guest.get("cpus") or 1, "mem": value("memory") / 100 * maxmem,
              "maxmem": maxmem, "disk": guest.get("disk") or 0, "maxdisk": guest.get("maxdisk") or 0}
    sample.update((field, value(metric)) for field, metric in RATES.items())
    return sample


# ------------------------------------------------------------------ launcher


class _SlowStart(list):
    """The guest list of a fake with --provision-seconds: a guest made later takes that long to start."""

    def __init__(self, seconds, items=()):
        super().__init__(items)
        self.seconds = seconds

    def append(self, guest):
        guest.start_secs = self.seconds
        super().append(guest)


class Launcher:
    def __init__(self, args, secret):
        self.args = args
        self.secret = secret
        self.pve = None
        self.loop = asyncio.new_event_loop()

    async def _fresh(self):
        from fakepve import FakePve

        pve = FakePve(user="root@pam", password=self.secret, host="127.0.0.1", port=self.args.port)
        pve.apitokens[TOKEN_ID] = self.secret
        pve.time_scale = 0  # seed at once; provision time applies from here on
        await pve.start(self.args.cert, self.args.key)
        await self._seed(pve)
        seconds = self.args.provision_seconds
        if seconds:
            pve.time_scale = 1.0
            pve.ct_secs.update(create=seconds, clone=seconds)
            pve.vms, pve.cts = _SlowStart(seconds, pve.vms), _SlowStart(seconds, pve.cts)
        return pve

    async def _seed(self, pve):
        """The templates, made through the API as an admin would (`qm create`, `qm template`)."""
        import aiohttp

        headers = {"Authorization": f"PVEAPIToken={TOKEN_ID}={self.secret}"}
        base = f"{pve.url}/api2/json/nodes/{NODE}"
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(ssl=False)) as http:
            for vmid, name in TEMPLATES.items():
                for path, data in ((f"{base}/qemu", dict(TEMPLATE_CONFIG, vmid=str(vmid), name=name)),
                                   (f"{base}/qemu/{vmid}/template", {})):
                    async with http.post(path, data=data) as response:
                        if response.status != 200:
                            raise RuntimeError(f"seeding {name}: {response.status} {response.reason}")
        for name in CT_TEMPLATES:
            pve.store_file("local", name, 130 * 1024 ** 2, content="vztmpl")

    async def _reset(self):
        await self.pve.stop()
        self.pve = await self._fresh()

    async def _state(self):
        live = lambda guests: sorted(str(g.vmid) for g in guests if not g.template)  # noqa: E731
        return {"qemu": live(self.pve.vms), "lxc": live(self.pve.cts)}

    def call(self, coroutine):
        """Run a coroutine on the fake's loop from another thread; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def serve(self):
        self.pve = self.loop.run_until_complete(self._fresh())
        control = ThreadingHTTPServer(("127.0.0.1", self.args.control_port), _control_handler(self))
        threading.Thread(target=control.serve_forever, daemon=True).start()
        print(f"fakepve on {self.pve.url}, control on http://127.0.0.1:{self.args.control_port}", flush=True)
        self.loop.run_forever()


def _control_handler(launcher):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status, payload=None):
            body = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/_sandbox/health":
                self._answer(200, {"ok": True})
            elif self.path == "/_sandbox/state":
                self._answer(200, launcher.call(launcher._state()))
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/_sandbox/reset":
                launcher.call(launcher._reset())
                self._answer(200, {"ok": True})
            else:
                self._answer(404, {"error": "not found"})

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--provision-seconds", type=float, default=0.0)
    args = parser.parse_args()
    secret = os.environ.get("PROXMOX_TOKEN_SECRET") or str(uuid.uuid4())
    Launcher(args, secret).serve()


if __name__ == "__main__":
    main()
