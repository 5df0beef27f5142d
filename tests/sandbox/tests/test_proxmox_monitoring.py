"""Proxmox VE metrics in the sandbox: the proxy answers rrddata (fakepve has none) with PVE's samples, seen
through proxmoxer and through the collection's provider. fakepve and the proxy run in-process here, so a test
can make a guest look as if it had run for an hour."""
import argparse
import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

from tests.sandbox import metrics, pve, registry
from tests.sandbox.proxy import Proxy, Route
from tests.sandbox.runtime import ROOT

SECRET = "11111111-2222-3333-4444-555555555555"
CT_TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
APIDOC = Path(os.environ.get("SANDBOX_SPECS_DIR") or Path(ROOT).parent / "shared" / "specs") / "proxmox" / "pve-apidoc.json"
FIELDS = {"time", "cpu", "maxcpu", "mem", "maxmem", "disk", "maxdisk", "netin", "netout", "diskread", "diskwrite"}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Sandbox:
    """fakepve (seeded by the sandbox launcher) behind the sandbox proxy, both in this process."""

    def __init__(self, tls):
        self.ca, cert, key = tls
        args = argparse.Namespace(port=_free_port(), control_port=0, cert=cert, key=key, provision_seconds=0)
        self.launcher = pve.Launcher(args, SECRET)
        threading.Thread(target=self.launcher.loop.run_forever, daemon=True).start()
        self.launcher.pve = self.launcher.call(self.launcher._fresh())
        self.proxy = Proxy([Route(registry.get("proxmox"), 0, args.port)], 0, cert, key).start()
        self.port = self.proxy.routes["proxmox"].public_port
        self.api = self.client(SECRET)

    def client(self, secret):
        user, token = pve.TOKEN_ID.split("!")
        return ProxmoxAPI("127.0.0.1", port=self.port, user=user, token_name=token, token_value=secret,
                          verify_ssl=self.ca)

    def reset(self):
        self.launcher.call(self.launcher._reset())
        self.proxy.requests(reset=True)

    def stop(self):
        self.proxy.stop()
        self.launcher.call(self.launcher.pve.stop())
        self.launcher.loop.call_soon_threadsafe(self.launcher.loop.stop)

    def requests(self):
        return self.proxy.requests()["proxmox"]

    def wait(self, upid):
        Tasks.blocking_status(self.api, upid, polling_interval=0.02)

    def vm(self, vmid, start=True):
        self.wait(self.api.nodes(pve.NODE).qemu(9000).clone.post(newid=vmid, name=f"vm{vmid}", full=1))
        if start:
            self.wait(self.api.nodes(pve.NODE).qemu(vmid).status.start.post())
        return self.api.nodes(pve.NODE).qemu(vmid)

    def ct(self, vmid):
        self.wait(self.api.nodes(pve.NODE).lxc.post(vmid=vmid, ostemplate=CT_TEMPLATE, hostname=f"ct{vmid}", cores=1,
                                                     memory=512, rootfs="local-lvm:8"))
        self.wait(self.api.nodes(pve.NODE).lxc(vmid).status.start.post())
        return self.api.nodes(pve.NODE).lxc(vmid)

    def ran_for(self, seconds):
        """Every running guest as if started `seconds` ago."""
        for guest in list(self.launcher.pve.vms) + list(self.launcher.pve.cts):
            if guest.started_at:
                guest.started_at -= seconds


@pytest.fixture(scope="module")
def module_sandbox(sandbox_tls):
    sandbox = Sandbox(sandbox_tls)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sb(module_sandbox):
    module_sandbox.reset()
    return module_sandbox


# ------------------------------------------------------------------ rrddata through proxmoxer


def test_running_guests_get_pve_samples_from_the_signal(sb):
    vm, ct = sb.vm(100), sb.ct(101)
    sb.ran_for(7200)
    for guest, vmid, cores, maxmem in ((vm, 100, 2, 2048 * 2 ** 20), (ct, 101, 1, 512 * 2 ** 20)):
        began = time.time()
        samples = guest.rrddata.get(timeframe="hour")
        assert len(samples) == 70
        times = [s["time"] for s in samples]
        assert times == list(range(times[0], times[0] + 70 * 60, 60)) and times[-1] + 60 <= began < times[-1] + 180
        for sample in samples:
            assert set(sample) == FIELDS
            assert 0.05 <= sample["cpu"] <= 0.70 and sample["maxcpu"] == cores and sample["maxmem"] == maxmem
            assert 0.05 * maxmem <= sample["mem"] <= 0.70 * maxmem
            assert all(1000 <= sample[f] <= 60000 for f in ("netin", "netout", "diskread", "diskwrite"))
        last = samples[-1]
        assert last["cpu"] == pytest.approx(metrics.level(str(vmid), "cpu", last["time"]) / 100)
        assert last["netin"] == pytest.approx(metrics.level(str(vmid), "network_in", last["time"]))


@pytest.mark.parametrize("timeframe, step", list(pve.TIMEFRAMES.items()))
def test_each_timeframe_has_pve_s_step_and_max_is_at_least_the_average(sb, timeframe, step):
    vm = sb.vm(100)
    sb.ran_for(600 * 86400)
    average = vm.rrddata.get(timeframe=timeframe)
    most = vm.rrddata.get(timeframe=timeframe, cf="MAX")
    assert [s["time"] for s in average] == [s["time"] for s in most]
    assert len(average) == 70 and average[1]["time"] - average[0]["time"] == step and average[0]["time"] % step == 0
    assert all(m["cpu"] >= a["cpu"] and m["netout"] >= a["netout"] for a, m in zip(average, most))


def test_a_running_guest_has_history_and_a_stopped_one_none(sb):
    running = sb.vm(100)
    stopped = sb.vm(102, start=False)
    with_values = [s for s in running.rrddata.get(timeframe="hour") if "cpu" in s]
    assert len(with_values) == pve.ROWS  # the sandbox backfills: a whole timeframe of a guest started just now
    assert all(set(s) == {"time"} for s in stopped.rrddata.get(timeframe="hour"))
    sb.wait(running.status.stop.post())
    assert all(set(s) == {"time"} for s in running.rrddata.get(timeframe="hour"))


def test_fakepve_s_own_errors_come_back(sb):
    sb.vm(100)
    node = sb.api.nodes(pve.NODE)
    with pytest.raises(ResourceException) as absent:
        node.qemu(999).rrddata.get(timeframe="hour")
    assert absent.value.status_code == 500 and "999.conf' does not exist" in absent.value.content
    with pytest.raises(ResourceException) as wrong_type:
        node.lxc(100).rrddata.get(timeframe="hour")  # 100 is a VM
    assert "does not exist" in wrong_type.value.content
    with pytest.raises(ResourceException) as bad:
        node.qemu(100).rrddata.get(timeframe="minute")
    assert bad.value.status_code == 400 and "timeframe" in bad.value.errors
    with pytest.raises(ResourceException) as denied:
        sb.client("wrong").nodes(pve.NODE).qemu(100).rrddata.get(timeframe="hour")
    assert denied.value.status_code == 401


def test_rrddata_is_counted_and_faulted_like_any_request(sb):
    vm, ct = sb.vm(100), sb.ct(101)
    sb.proxy.requests(reset=True)
    for _ in range(3):
        vm.rrddata.get(timeframe="hour")
    ct.rrddata.get(timeframe="day")
    # the proxy's own questions to fakepve (the rrddata check, status/current) are not counted
    assert sb.requests() == {"GET /nodes/{node}/qemu/{vmid}/rrddata": 3, "GET /nodes/{node}/lxc/{vmid}/rrddata": 1}
    sb.proxy.set_faults({"provider": "proxmox", "throttle_rate": 1})
    try:
        with pytest.raises(ResourceException) as throttled:
            vm.rrddata.get(timeframe="hour")
    finally:
        sb.proxy.set_faults({"provider": "proxmox", "reset": True})
    assert throttled.value.status_code == 429


def test_other_requests_are_relayed_untouched(sb):
    vm = sb.vm(100)
    assert vm.status.current.get()["status"] == "running"
    assert pve.answer(type("Req", (), {"method": "POST", "path": "/api2/json/nodes/pve1/qemu/100/rrddata"}), None) is None
    raw = requests.get(f"https://127.0.0.1:{sb.port}/api2/json/nodes/pve1/qemu/100/rrd?timeframe=hour&ds=cpu",
                       headers={"Authorization": f"PVEAPIToken={pve.TOKEN_ID}={SECRET}"}, verify=sb.ca)
    assert raw.status_code == 200  # fakepve's own (generic) answer, not ours


@pytest.mark.skipif(not APIDOC.exists(), reason=f"skipped: the PVE API description is not at {APIDOC}")
def test_what_is_served_is_what_the_pve_api_describes():
    tree = json.loads(APIDOC.read_text())

    def walk(nodes):
        for node in nodes:
            yield node
            yield from walk(node.get("children") or [])

    described = {n["path"]: n["info"]["GET"] for n in walk(tree) if n["path"].endswith("/rrddata")}
    for guest in ("qemu", "lxc"):
        method = described[f"/nodes/{{node}}/{guest}/{{vmid}}/rrddata"]
        params = method["parameters"]["properties"]
        assert params["timeframe"]["enum"] == list(pve.TIMEFRAMES) and not params["timeframe"].get("optional")
        assert params["cf"]["enum"] == ["AVERAGE", "MAX"] and params["cf"]["optional"]
        assert method["returns"]["type"] == "array" and method["returns"]["items"]["type"] == "object"


# ------------------------------------------------------------------ the collection's provider


def _collection():
    """lxcri.cloud from this checkout: tests/unit/conftest.py makes it importable."""
    import tests.unit.conftest  # noqa: F401
    from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring, spec
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox.provider import ProxmoxProvider
    return monitoring, spec, ProxmoxProvider


def _provider(sb):
    _, _, provider_class = _collection()
    return provider_class({"endpoint": f"https://127.0.0.1:{sb.port}", "token_id": pve.TOKEN_ID,
                           "token_secret": SECRET, "ca_bundle": sb.ca, "region": pve.NODE})


def _records(sb, vmids):
    provider = _provider(sb)
    return sorted(provider.refresh([{"id": str(v), "kind": k} for v, k in vmids]), key=lambda rec: int(rec["id"]))


def test_metrics_of_a_vm_and_a_container_in_portable_units(sb):
    monitoring, _, _ = _collection()
    sb.vm(100)
    sb.ct(101)
    sb.ran_for(7200)
    records = _records(sb, [(100, "vm"), (101, "container")])
    assert [rec["kind"] for rec in records] == ["vm", "container"]
    start, end, period = monitoring.time_range("1h", "5m")
    sb.proxy.requests(reset=True)
    answers = _provider(sb).metrics(records, list(monitoring.METRICS), start, end, period)
    assert sb.requests() == {"GET /nodes/{node}/qemu/{vmid}/rrddata": 1, "GET /nodes/{node}/lxc/{vmid}/rrddata": 1}
    for rec, answer in zip(records, answers):
        assert (answer["cpu"]["native_name"], answer["cpu"]["native_unit"]) == ("cpu", "fraction of maxcpu")
        assert (answer["memory"]["native_name"], answer["network_in"]["native_unit"]) == ("mem", "bytes/s")
        for metric in ("cpu", "memory"):
            points = answer[metric]["points"]
            assert len(points) == 12 and [t for t, _ in points] == list(range(start, end, period))
            assert all(5 <= value <= 70 for _, value in points)
        for metric in ("network_in", "network_out", "disk_read", "disk_write"):
            points = answer[metric]["points"]
            assert len(points) == 12 and all(1000 * period <= value <= 60000 * period for _, value in points)
        first = answer["network_in"]["points"][0]
        expected = sum(metrics.level(rec["id"], "network_in", t) * 60 for t in range(start, start + period, 60))
        assert first == (start, pytest.approx(expected))
        assert answer["requests"]["points"] is None and "does not count" in answer["requests"]["reason"]
        summary = monitoring.summarize("network_out", answer["network_out"])
        assert summary["unit"] == "bytes" and summary["max"] <= 60000 * period


def test_coarse_timeframes_give_a_point_per_sample(sb):
    monitoring, _, _ = _collection()
    sb.vm(100)
    sb.ran_for(3 * 86400)
    records = _records(sb, [(100, "vm")])
    start, end, period = monitoring.time_range("1d", "10m")  # the day archive: one sample per 30 minutes
    sb.proxy.requests(reset=True)
    answer = _provider(sb).metrics(records, ["cpu", "disk_write"], start, end, period)[0]
    assert sb.requests() == {"GET /nodes/{node}/qemu/{vmid}/rrddata": 1}
    times = [t for t, _ in answer["disk_write"]["points"]]
    assert 46 <= len(times) <= 48 and all(b - a == 1800 for a, b in zip(times, times[1:]))
    assert all(1000 * period <= value <= 60000 * period for _, value in answer["disk_write"]["points"])


def test_a_stopped_guest_has_no_points_and_a_gone_one_says_so(sb):
    monitoring, _, _ = _collection()
    sb.vm(100, start=False)
    sb.vm(102)
    records = _records(sb, [(100, "vm"), (102, "vm")])
    gone = dict(records[1], id="555", name="gone-1")
    start, end, period = monitoring.time_range("1h", "5m")
    stopped, vanished = _provider(sb).metrics([records[0], gone], ["cpu", "network_in"], start, end, period)
    assert stopped["cpu"]["points"] == [] and stopped["network_in"]["points"] == []
    assert monitoring.summarize("cpu", stopped["cpu"])["reason"] == "no data points in the window"
    assert vanished["cpu"]["points"] is None and "no rrddata for gone-1 (555) on node pve1" in vanished["cpu"]["reason"]
    assert "555.conf' does not exist" in vanished["network_in"]["reason"]


def test_twenty_guests_take_twenty_rrddata_calls_in_parallel(sb):
    monitoring, _, _ = _collection()
    for vmid in range(100, 120):
        sb.vm(vmid)
    sb.ran_for(3600)
    records = _records(sb, [(vmid, "vm") for vmid in range(100, 120)])
    start, end, period = monitoring.time_range("30m", "1m")
    provider = _provider(sb)
    provider.metrics(records[:1], ["cpu"], start, end, period)  # the connection, once
    sb.proxy.requests(reset=True)
    sb.proxy.set_faults({"provider": "proxmox", "latency_ms": 200})
    try:
        began = time.monotonic()
        answers = provider.metrics(records, list(monitoring.DEFAULT_METRICS), start, end, period)
        took = time.monotonic() - began
    finally:
        sb.proxy.set_faults({"provider": "proxmox", "reset": True})
    assert sb.requests() == {"GET /nodes/{node}/qemu/{vmid}/rrddata": 20}
    assert took < 20 * 0.2 / 2  # 3 rounds of the 8-wide pool: ~0.6 s, not the 4 s of one call after another
    assert all(len(answer["cpu"]["points"]) == 30 for answer in answers)


def test_every_alarm_is_refused_before_any_call():
    monitoring, spec, provider_class = _collection()
    params = {"name": "cpu-high", "state": "present", "metric": "cpu", "comparison": "above", "threshold": 80,
              "period": 300, "evaluation_periods": 2, "statistic": "average", "deployments": ["web"], "kind": "vm"}
    for given in (params, {"name": "cpu-high", "state": "absent"}):
        with pytest.raises(spec.SpecError) as refused:
            monitoring.validate_alarm(given, provider_class)
        message = str(refused.value)
        assert "no native metric alerting" in message and "Metric Server" in message
        assert "lxcri.cloud.metrics_info" in message
    assert registry.get("proxmox").force_alarm is None
    assert registry.get("proxmox").answer is pve.answer


@pytest.mark.parametrize("seconds, frame", [(3600, "hour"), (4200, "hour"), (4201, "day"), (86400, "day"),
                                            (7 * 86400, "week"), (30 * 86400, "month"), (365 * 86400, "year"),
                                            (3 * 365 * 86400, "year")])
def test_the_smallest_timeframe_that_reaches_back_to_the_start(seconds, frame):
    _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox import monitoring as proxmox_monitoring

    assert proxmox_monitoring.timeframe(1_000_000_000 - seconds, 1_000_000_000) == frame


def test_rates_become_bytes_per_period_whatever_the_sample_step():
    _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils.providers.proxmox import monitoring as proxmox_monitoring

    minutes = [{"time": t, "netin": 100.0, "cpu": 0.25, "mem": 1.0, "maxmem": 4.0} for t in range(0, 600, 60)]
    fine = proxmox_monitoring.series(minutes + [{"time": 600}], ["network_in", "cpu", "memory"], 0, 600, 300)
    assert fine["network_in"]["points"] == [(0, 30000.0), (300, 30000.0)]  # 5 samples x 60 s x 100 B/s
    assert fine["cpu"]["points"] == [(0, 25.0), (300, 25.0)] and fine["memory"]["points"] == [(0, 25.0), (300, 25.0)]
    halves = [{"time": t, "netin": 100.0} for t in range(0, 7200, 1800)]  # PVE's day archive, 5-minute periods
    coarse = proxmox_monitoring.series(halves, ["network_in"], 0, 7200, 300)
    assert coarse["network_in"]["points"] == [(t, 30000.0) for t in range(0, 7200, 1800)]
