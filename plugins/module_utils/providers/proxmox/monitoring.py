# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE monitoring: guest metrics from rrddata; Proxmox VE has no native metric alerting.

ProxmoxProvider keeps it as its monitoring; every call goes through the provider.

Metrics: one GET /nodes/{node}/{qemu|lxc}/{vmid}/rrddata per guest (VMs and LXC containers alike; one
answer carries every metric), in parallel through Provider.each. The timeframe is the smallest whose
samples reach back to the window's start; the consolidation is AVERAGE. Native fields and units, as PVE
keeps them in its guest RRDs:

  cpu                  cpu        fraction of the guest's maxcpu (0..1)     x 100 -> percent
  memory               mem        bytes in use, of maxmem                   mem / maxmem x 100 -> percent
  network_in / _out    netin / netout         bytes per second          x sample step, summed per period
  disk_read / _write   diskread / diskwrite   bytes per second          x sample step, summed per period
  requests             (none: PVE does not see a guest's requests)

A sample covering more than one period counts its rate over one period only (its period gets a point, the
others none). A stopped guest has samples with no values: no points.

Alarms: none (INFO.cannot["alarms"]): Provider.validate_alarm refuses every one before any call.
"""

from __future__ import annotations

import time

from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError

# (timeframe, seconds per sample, samples) of PVE's guest RRD archives (PVE 8; rrddata returns the last 70).
TIMEFRAMES = (("hour", 60, 70), ("day", 1800, 70), ("week", 10800, 70), ("month", 43200, 70), ("year", 604800, 70))
# Portable metric -> (rrddata field, its unit as PVE documents it).
NATIVE = {
    "cpu": ("cpu", "fraction of maxcpu"),
    "memory": ("mem", "bytes"),
    "network_in": ("netin", "bytes/s"),
    "network_out": ("netout", "bytes/s"),
    "disk_read": ("diskread", "bytes/s"),
    "disk_write": ("diskwrite", "bytes/s"),
}
NO_REQUESTS = (
    "Proxmox VE does not count a guest's requests (rrddata has cpu, memory, network and disk I/O only): count "
    "them in the application or in a load balancer in front of it"
)


def timeframe(start, now):
    """The smallest rrddata timeframe whose samples reach back to `start` (the longest when none does)."""
    for name, step, rows in TIMEFRAMES:
        if now - start <= step * rows:
            return name
    return TIMEFRAMES[-1][0]


def series(samples, names, start, end, period):
    """{metric: monitoring.series or missing} of one guest from its rrddata samples."""
    samples = sorted((s for s in samples if "time" in s), key=lambda s: s["time"])
    times = [s["time"] for s in samples]
    step = times[1] - times[0] if len(times) > 1 else TIMEFRAMES[0][1]
    out = {}
    for metric in names:
        if metric not in NATIVE:
            out[metric] = monitoring.missing(NO_REQUESTS)
            continue
        field, unit = NATIVE[metric]
        if metric == "cpu":
            points = [(s["time"], s["cpu"] * 100) for s in samples if s.get("cpu") is not None]
        elif metric == "memory":
            points = [(s["time"], s["mem"] / s["maxmem"] * 100) for s in samples if s.get("mem") is not None and s.get("maxmem")]
        else:  # a rate: bytes in the time the sample stands for within one period
            points = [(s["time"], s[field] * min(step, period)) for s in samples if s.get(field) is not None]
        how = "average" if monitoring.METRICS[metric] == "percent" else "sum"
        out[metric] = monitoring.series(field, unit, monitoring.resample(points, start, end, period, how), "average")
    return out


class Monitoring:
    def __init__(self, provider):
        self.p = provider

    def metrics(self, records, names, start, end, period):
        """[{metric: answer}] aligned with `records`: one rrddata call per guest, in parallel."""
        frame = timeframe(start, time.time())

        def one(rec):
            if rec.get("kind") not in self.p.BACKENDS:
                return {metric: monitoring.missing(f"Proxmox VE keeps no metrics of a {rec.get('kind')}") for metric in names}
            if not set(names) & set(NATIVE):
                return series([], names, start, end, period)  # nothing rrddata has: no call
            samples, why = self.rrddata(rec, timeframe=frame, cf="AVERAGE")
            if samples is None:
                return {metric: monitoring.missing(why if metric in NATIVE else NO_REQUESTS) for metric in names}
            return series(samples, names, start, end, period)

        return self.p.each(one, records)

    def rrddata(self, rec, **query):
        """(samples, None) of a guest's rrddata, or (None, why) when PVE has none for it: the guest is gone (its
        config does not exist) or has no RRD file yet."""
        try:
            return self.p.call(self.p.backend(rec["kind"]).path(rec).rrddata.get, **query), None
        except Exception as exc:
            if not self.p.gone(exc):
                raise
            return None, f"no rrddata for {rec.get('name') or 'guest'} ({rec.get('id')}) on node {rec.get('region')}: {exc}"

    # Proxmox VE has no alarms: validate_alarm refuses every one first, so these are never reached from a module.
    def refuse(self, *_args):
        raise ProviderError(self.p.info.cannot["alarms"])

    find_alarm = list_alarms = put_alarm = delete_alarm = refuse
