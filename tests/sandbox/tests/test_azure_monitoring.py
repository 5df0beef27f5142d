"""Microsoft.Insights of the Azure emulator (metrics, metric alerts + status, action groups), driven by the real
azure-mgmt-monitor client over TLS, configured as the collection configures it (base_url, a ClientSecretCredential
against the emulator's authority, connection_verify).

Metric values are checked against tests/sandbox/metrics.py, the signal every emulator serves: a VM is keyed by
its vmId, a container group by its ARM id (what the collection's records carry as `id`). Resources made here
are seconds old, so tests that need a history move the creation time back in the in-process emulator.
"""
import base64
import datetime
import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.monitor import MonitorManagementClient

from tests.sandbox import metrics as signal
from tests.sandbox.emulators import azure
from tests.sandbox.emulators.azure_arm import now_iso
from tests.sandbox.tests.test_azure_containers import group_body
from tests.sandbox.tests.test_azure_emulator import LOCATION, SUB, Sandbox, vm_body

RG = "rg-mon"
HOUR = 3600


class Monitor(Sandbox):
    """The sandbox with a monitor client, and the in-process emulator (to move creation times back)."""

    def __init__(self, serve, ca):
        servers = []

        def keep(factory):
            def make(host, port, **kwargs):
                servers.append(factory(host, port, **kwargs))
                return servers[-1]
            return make

        super().__init__(lambda factory, **kwargs: serve(keep(factory), **kwargs), ca)
        self.arm_state = servers[0].emulator.arm
        self.monitor = MonitorManagementClient(self.credential, SUB, base_url=self.base, connection_verify=ca)
        self.aci = ContainerInstanceManagementClient(self.credential, SUB, base_url=self.base, connection_verify=ca)

    def vm(self, name="vm1", age=0):
        nic = self.network_stack(RG, suffix=name)["nic"]
        vm, _ = self.lro(self.compute.virtual_machines.begin_create_or_update, RG, name, vm_body(nic.id))
        if age:
            self.arm_state.get(vm.id).props["timeCreated"] = now_iso(time.time() - age)
        return vm

    def container_group(self, name="web", age=0, cpu=1.0, memory=1.5):
        group, _ = self.lro(self.aci.container_groups.begin_create_or_update, RG, name,
                            group_body(cpu=cpu, memory=memory, label=f"{name}-1a2b3c4d"))
        if age:
            self.arm_state.get(group.id).private["started"] = time.time() - age
        return group

    def sandbox_post(self, name, body=None):
        return requests.post(f"{self.base}/_sandbox/{name}", json=body, verify=self.ca, timeout=10)


@pytest.fixture
def mon(serve, sandbox_tls):
    sandbox = Monitor(serve, sandbox_tls[0])
    sandbox.create_group(RG)
    yield sandbox
    signal.reset()


def _iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(start, end):
    return f"{_iso(start)}/{_iso(end)}"


def _points(response, name, field):
    metric = next(m for m in response.value if m.name.value == name)
    return [(int(p.time_stamp.timestamp()), getattr(p, field)) for ts in metric.timeseries for p in ts.data]


def alert_body(scopes, threshold=80.0, operator="GreaterThan", aggregation="Average", frequency="PT1M",
               window="PT5M", metric="Percentage CPU", action_group=None, **props):
    single = len(scopes) == 1
    body = {"location": "global", "tags": {"lxcri-alarm": "cpu-high"}, "properties": {
        "description": "cpu high", "severity": 2, "enabled": True, "scopes": scopes,
        "evaluationFrequency": frequency, "windowSize": window,
        "criteria": {"odata.type": "Microsoft.Azure.Monitor." + ("Single" if single else "Multiple")
                                   + "ResourceMultipleMetricCriteria",
                     "allOf": [{"criterionType": "StaticThresholdCriterion", "name": "cpu", "metricName": metric,
                                "metricNamespace": "Microsoft.Compute/virtualMachines", "operator": operator,
                                "threshold": threshold, "timeAggregation": aggregation, "dimensions": []}]},
        "actions": [{"actionGroupId": action_group}] if action_group else []}}
    if not single:
        body["properties"].update(targetResourceType="Microsoft.Compute/virtualMachines", targetResourceRegion=LOCATION)
    body["properties"].update(props)
    return body


def action_group_body(emails=("ops@example.com",), webhooks=("https://hooks.example.com/T0/secret",)):
    return {"location": "Global", "properties": {
        "groupShortName": "cpu-high", "enabled": True,
        "emailReceivers": [{"name": f"email-{i}", "emailAddress": e, "useCommonAlertSchema": True}
                           for i, e in enumerate(emails)],
        "webhookReceivers": [{"name": f"webhook-{i}", "serviceUri": u, "useCommonAlertSchema": True}
                             for i, u in enumerate(webhooks)]}}


# ---- metrics ------------------------------------------------------------------------------------
def test_vm_metrics_follow_the_signal_in_native_units_several_names_per_call(mon):
    vm = mon.vm(age=HOUR)
    end = int(time.time()) // 60 * 60
    start = end - 10 * 60
    names = ["Percentage CPU", "Available Memory Percentage", "Network In Total", "Network Out Total",
             "Disk Read Bytes", "Disk Write Bytes"]
    before = len(mon.log)
    answer = mon.monitor.metrics.list(vm.id, timespan=_span(start, end), interval="PT1M",
                                      metricnames=",".join(names), aggregation="average,total")
    assert [name for name, _ in mon.operations(before)] == ["metrics.list"], "one call for all names"
    units = {m.name.value: m.unit for m in answer.value}
    assert units == {"Percentage CPU": "Percent", "Available Memory Percentage": "Percent",
                     "Network In Total": "Bytes", "Network Out Total": "Bytes", "Disk Read Bytes": "Bytes",
                     "Disk Write Bytes": "Bytes"}
    assert answer.namespace == "Microsoft.Compute/virtualMachines" and answer.interval == "PT1M"
    key = vm.vm_id
    minutes = list(range(start, end, 60))
    assert _points(answer, "Percentage CPU", "average") == [(t, signal.level(key, "cpu", t)) for t in minutes]
    assert _points(answer, "Available Memory Percentage", "average") == [
        (t, pytest.approx(100 - signal.level(key, "memory", t))) for t in minutes]
    assert _points(answer, "Network In Total", "total") == [
        (t, pytest.approx(signal.level(key, "network_in", t) * 60)) for t in minutes]
    for _, value in _points(answer, "Percentage CPU", "average"):
        assert 5 <= value <= 70


def test_intervals_and_aggregations_are_honoured(mon):
    vm = mon.vm(age=HOUR)
    end = int(time.time()) // 300 * 300
    start = end - 30 * 60
    answer = mon.monitor.metrics.list(vm.id, timespan=_span(start, end), interval="PT5M",
                                      metricnames="Percentage CPU,Disk Write Bytes",
                                      aggregation="average,maximum,minimum,total,count")
    cpu = next(m for m in answer.value if m.name.value == "Percentage CPU").timeseries[0].data
    assert [int(p.time_stamp.timestamp()) for p in cpu] == list(range(start, end, 300))
    for point in cpu:
        t0 = int(point.time_stamp.timestamp())
        values = [signal.level(vm.vm_id, "cpu", t) for t in range(t0, t0 + 300, 60)]
        assert point.average == pytest.approx(sum(values) / 5) and point.count == 5
        assert point.maximum == max(values) and point.minimum == min(values)
    disk = next(m for m in answer.value if m.name.value == "Disk Write Bytes").timeseries[0].data[0]
    t0 = int(disk.time_stamp.timestamp())
    assert disk.total == pytest.approx(sum(signal.level(vm.vm_id, "disk_write", t) * 60 for t in range(t0, t0 + 300, 60)))


def test_container_group_metrics_scale_with_the_requested_resources(mon):
    group = mon.container_group(cpu=2.0, memory=4.0, age=HOUR)
    end = int(time.time()) // 60 * 60
    answer = mon.monitor.metrics.list(group.id, timespan=_span(end - 300, end), interval="PT1M", aggregation="average",
                                      metricnames="CpuUsage,MemoryUsage,NetworkBytesReceivedPerSecond,"
                                                  "NetworkBytesTransmittedPerSecond")
    assert {m.name.value: m.unit for m in answer.value} == {
        "CpuUsage": "Count", "MemoryUsage": "Bytes", "NetworkBytesReceivedPerSecond": "Bytes",
        "NetworkBytesTransmittedPerSecond": "Bytes"}
    key = group.id  # the collection's record id of a container group
    for t, value in _points(answer, "CpuUsage", "average"):
        assert value == pytest.approx(signal.level(key, "cpu", t) / 100 * 2000)  # millicores of 2 cores
    for t, value in _points(answer, "MemoryUsage", "average"):
        assert value == pytest.approx(signal.level(key, "memory", t) / 100 * 4 * 1024 ** 3)
    for t, value in _points(answer, "NetworkBytesReceivedPerSecond", "average"):
        assert value == pytest.approx(signal.level(key, "network_in", t)) and 1000 <= value <= 60000


def test_history_backfilled_nothing_while_stopped_and_404_when_absent(mon):
    vm = mon.vm(age=0)  # made just now
    end = int(time.time()) // 60 * 60
    span = _span(end - 600, end)
    points = _points(mon.monitor.metrics.list(vm.id, timespan=span, interval="PT1M", metricnames="Percentage CPU",
                                              aggregation="average"), "Percentage CPU", "average")
    assert len(points) == 10 and all(v is not None for _, v in points)  # the sandbox backfills history
    mon.lro(mon.compute.virtual_machines.begin_deallocate, RG, "vm1")
    stopped = mon.monitor.metrics.list(vm.id, timespan=span, interval="PT1M", metricnames="Percentage CPU",
                                       aggregation="average")
    assert len(_points(stopped, "Percentage CPU", "average")) == 10
    assert all(v is None for _, v in _points(stopped, "Percentage CPU", "average")), "a stopped VM has no data"
    group = mon.container_group(age=HOUR)
    mon.aci.container_groups.stop(RG, "web")
    quiet = mon.monitor.metrics.list(group.id, timespan=span, interval="PT1M", metricnames="CpuUsage")
    assert all(v is None for _, v in _points(quiet, "CpuUsage", "average"))
    with pytest.raises(ResourceNotFoundError):
        mon.monitor.metrics.list(vm.id.replace("vm1", "gone"), timespan=span, metricnames="Percentage CPU")


def test_unknown_metric_interval_or_aggregation_is_a_bad_request(mon):
    vm = mon.vm()
    end = int(time.time()) // 60 * 60
    for kwargs, text in (({"metricnames": "CPU Credits"}, "Valid metrics: Percentage CPU"),
                         ({"metricnames": "Percentage CPU", "interval": "PT2M"}, "Invalid interval"),
                         ({"metricnames": "Percentage CPU", "aggregation": "median"}, "Invalid aggregation")):
        with pytest.raises(HttpResponseError) as err:
            mon.monitor.metrics.list(vm.id, timespan=_span(end - 600, end), **kwargs)
        assert err.value.status_code == 400 and text in str(err.value)


# ---- metric alerts and action groups -------------------------------------------------------------
def test_alert_and_action_group_lifecycle_with_the_status_codes_the_sdk_accepts(mon):
    vm1, vm2 = mon.vm("vm1"), mon.vm("vm2")
    before = len(mon.log)
    group = mon.monitor.action_groups.create_or_update(RG, "cpu-high-notify", action_group_body())
    assert group.email_receivers[0].email_address == "ops@example.com"
    assert group.webhook_receivers[0].service_uri == "https://hooks.example.com/T0/secret"
    mon.monitor.action_groups.create_or_update(RG, "cpu-high-notify", action_group_body(webhooks=()))
    alert = mon.monitor.metric_alerts.create_or_update(RG, "cpu-high", alert_body([vm1.id], action_group=group.id))
    assert alert.criteria.all_of[0].metric_name == "Percentage CPU" and alert.location == "global"
    updated = mon.monitor.metric_alerts.create_or_update(RG, "cpu-high", alert_body([vm1.id, vm2.id], threshold=60))
    assert updated.id == alert.id and updated.criteria.all_of[0].threshold == 60 and len(updated.scopes) == 2
    assert updated.target_resource_type == "Microsoft.Compute/virtualMachines"
    patched = mon.monitor.metric_alerts.update(RG, "cpu-high", {"tags": {"team": "ops"}})
    assert patched.tags == {"team": "ops"} and patched.criteria.all_of[0].threshold == 60
    assert [a.name for a in mon.monitor.metric_alerts.list_by_resource_group(RG)] == ["cpu-high"]
    assert [a.name for a in mon.monitor.metric_alerts.list_by_subscription()] == ["cpu-high"]
    assert [g.name for g in mon.monitor.action_groups.list_by_resource_group(RG)] == ["cpu-high-notify"]
    assert [g.name for g in mon.monitor.action_groups.list_by_subscription_id()] == ["cpu-high-notify"]
    assert mon.monitor.metric_alerts.get(RG, "cpu-high").name == "cpu-high"
    assert mon.state()["metricAlerts"] == [alert.id] and mon.state()["actionGroups"] == [group.id]
    mon.monitor.metric_alerts.delete(RG, "cpu-high")
    mon.monitor.metric_alerts.delete(RG, "cpu-high")  # gone already
    mon.monitor.action_groups.delete(RG, "cpu-high-notify")
    with pytest.raises(ResourceNotFoundError):
        mon.monitor.metric_alerts.get(RG, "cpu-high")
    statuses = {}
    for name, status in mon.operations(before):
        statuses.setdefault(name, set()).add(status)
    assert statuses["metricAlerts.createOrUpdate"] == {200}, "create and update: 200 only (sdk-operation-table.json)"
    assert statuses["actionGroups.createOrUpdate"] == {201, 200}
    assert statuses["metricAlerts.delete"] == {200, 204} and statuses["actionGroups.delete"] == {200}
    assert not mon.state()["metricAlerts"] and not mon.state()["actionGroups"]


def test_status_evaluates_the_signal_per_scope(mon):
    vm1, vm2 = mon.vm("vm1", age=HOUR), mon.vm("vm2", age=HOUR)
    mon.monitor.metric_alerts.create_or_update(RG, "one", alert_body([vm1.id], threshold=80))
    signal.pin(vm1.vm_id, "cpu", 95.0)
    rows = mon.monitor.metric_alerts_status.list(RG, "one").value
    assert len(rows) == 1 and rows[0].properties.status == "Unhealthy" and rows[0].properties.dimensions == {}
    assert base64.b64decode(rows[0].name) == b"currentStatus"
    signal.pin(vm1.vm_id, "cpu", 10.0)
    assert mon.monitor.metric_alerts_status.list(RG, "one").value[0].properties.status == "Healthy"
    mon.monitor.metric_alerts.create_or_update(RG, "both", alert_body([vm1.id, vm2.id], threshold=50))
    signal.pin(vm2.vm_id, "cpu", 60.0)
    rows = mon.monitor.metric_alerts_status.list(RG, "both").value
    assert {r.properties.dimensions["resourceId"]: r.properties.status for r in rows} == {
        vm1.id: "Healthy", vm2.id: "Unhealthy"}
    fresh = mon.vm("vm3")  # no whole window of data: Azure cannot tell
    mon.compute.virtual_machines.begin_deallocate(RG, "vm3").result()
    mon.monitor.metric_alerts.create_or_update(RG, "idle", alert_body([fresh.id]))
    assert mon.monitor.metric_alerts_status.list(RG, "idle").value[0].properties.status == "Unknown"


def test_forced_state_sticks_until_the_alert_is_deleted_and_reset_clears_everything(mon):
    vm = mon.vm(age=HOUR)
    mon.monitor.metric_alerts.create_or_update(RG, "cpu-high", alert_body([vm.id], threshold=1000))
    mon.monitor.action_groups.create_or_update(RG, "cpu-high-notify", action_group_body())
    before = len(mon.log)
    answer = mon.sandbox_post("alarm-state", {"name": "cpu-high", "state": "alarm"})
    assert answer.status_code == 200 and answer.json()["status"] == "Unhealthy"
    assert mon.operations(before) == [("sandbox.alarm-state", 200)]
    assert mon.monitor.metric_alerts_status.list(RG, "cpu-high").value[0].properties.status == "Unhealthy"
    mon.sandbox_post("alarm-state", {"name": "cpu-high", "state": "insufficient_data"})
    assert mon.monitor.metric_alerts_status.list(RG, "cpu-high").value[0].properties.status == "Unknown"
    mon.sandbox_post("alarm-state", {"name": "cpu-high", "state": "ok"})
    assert mon.monitor.metric_alerts_status.list(RG, "cpu-high").value[0].properties.status == "Healthy"
    assert mon.sandbox_post("alarm-state", {"name": "nope", "state": "ok"}).status_code == 404
    assert mon.sandbox_post("alarm-state", {"name": "cpu-high", "state": "firing"}).status_code == 400
    signal.pin(vm.vm_id, "cpu", 99.0)
    assert mon.sandbox_post("reset").status_code == 200
    assert mon.state() == {key: [] for key in mon.state()}, "reset forgets alerts, action groups and everything else"
    assert signal.level(vm.vm_id, "cpu", 0) != 99.0, "reset clears the pins"


@pytest.mark.parametrize("change, text", [
    ({"frequency": "PT2M"}, "Invalid evaluationFrequency"),
    ({"frequency": "PT6H", "window": "PT6H"}, "Invalid evaluationFrequency"),
    ({"window": "PT10M"}, "Invalid windowSize"),
    ({"frequency": "PT15M", "window": "PT5M"}, "at least the evaluationFrequency"),
    ({"operator": "Above"}, "Invalid operator"),
    ({"aggregation": "Median"}, "Invalid timeAggregation"),
    ({"severity": 7}, "Invalid severity"),
])
def test_invalid_alerts_are_refused(mon, change, text):
    vm = mon.vm()
    with pytest.raises(HttpResponseError) as err:
        mon.monitor.metric_alerts.create_or_update(RG, "bad", alert_body([vm.id], **change))
    assert err.value.status_code == 400 and text in str(err.value)


def test_scopes_must_exist_and_several_need_the_multi_resource_criteria(mon):
    vm = mon.vm()
    with pytest.raises(HttpResponseError) as err:
        mon.monitor.metric_alerts.create_or_update(RG, "bad", alert_body([vm.id.replace("vm1", "gone")]))
    assert err.value.error.code == "ScopeNotFound"
    body = alert_body([vm.id, vm.id])
    body["properties"]["criteria"]["odata.type"] = "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    with pytest.raises(HttpResponseError, match="MultipleResourceMultipleMetricCriteria"):
        mon.monitor.metric_alerts.create_or_update(RG, "bad", body)
    body = alert_body([vm.id])
    body["location"] = LOCATION
    with pytest.raises(HttpResponseError, match="global"):
        mon.monitor.metric_alerts.create_or_update(RG, "bad", body)
    with pytest.raises(HttpResponseError, match="groupShortName"):
        mon.monitor.action_groups.create_or_update(RG, "g", dict(action_group_body(), properties={
            "groupShortName": "much-too-long-name", "enabled": True}))
    assert not mon.state()["metricAlerts"] and not mon.state()["actionGroups"]


def test_operation_names():
    rg = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    vm = f"{rg}/providers/Microsoft.Compute/virtualMachines/vm1"
    alerts = f"{rg}/providers/Microsoft.Insights/metricAlerts"
    groups = f"{rg}/providers/Microsoft.Insights/actionGroups"
    assert azure.operation("GET", vm + "/providers/Microsoft.Insights/metrics?api-version=2024-02-01") == "metrics.list"
    assert azure.operation("PUT", alerts + "/a") == "metricAlerts.createOrUpdate"
    assert azure.operation("PATCH", alerts + "/a") == "metricAlerts.update"
    assert azure.operation("GET", alerts + "/a/status") == "metricAlerts.status"
    assert azure.operation("GET", alerts) == "metricAlerts.listByResourceGroup"
    assert azure.operation("GET", f"/subscriptions/{SUB}/providers/Microsoft.Insights/metricAlerts") == \
        "metricAlerts.listBySubscription"
    assert azure.operation("PUT", groups + "/g") == "actionGroups.createOrUpdate"
    assert azure.operation("GET", f"/subscriptions/{SUB}/providers/microsoft.insights/actionGroups") == \
        "actionGroups.listBySubscriptionId"
    assert azure.operation("POST", "/_sandbox/alarm-state") == "sandbox.alarm-state"
    assert {"metrics.list", "metricAlerts.status", "actionGroups.delete", "sandbox.alarm-state"} <= set(
        azure.implemented_operations())
