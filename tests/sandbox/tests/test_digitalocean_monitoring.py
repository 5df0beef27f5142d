"""DigitalOcean monitoring in the emulator, through the official pydo client over TLS: droplet and App Platform
metrics derived from tests/sandbox/metrics.level, alert policy CRUD, forcing an alarm's state, reset and
state; then the collection's provider on the same emulator (metrics, one call per resource and native metric,
alarm create / unchanged / update in place / delete), and every exchange checked against the official
OpenAPI description (digitalocean/openapi, bundled under /work/shared/specs)."""
import json
import ssl
import time
import urllib.error
import urllib.request

import pydo
import pytest

from tests.sandbox import conformance, metrics, openapi_check
from tests.sandbox.emulators import digitalocean, digitalocean_monitoring
from tests.sandbox.tests.test_digitalocean_apps import _collection, app_spec, needs_spec, wait_deployment

TOKEN = "dop_v1_monitoring_sandbox"
IMAGE = "ubuntu-24-04-x64"
HOUR = 3600


class Emulator:
    """The emulator in this thread's process (so a test can make a resource look an hour old), its pydo client
    and the recorded exchanges."""

    def __init__(self, serve, ca):
        self.records = []
        self.ca = ca

        def make(host, port, **kwargs):
            self.server = digitalocean.make_server(host, port, **kwargs)
            return self.server

        self.endpoint = serve(make, token=TOKEN, recorder=self.records.append)
        self.client = pydo.Client(token=TOKEN, endpoint=self.endpoint, connection_verify=ca, retry_total=0)

    def droplet(self, name="mon-1", size="s-2vcpu-4gb", age=HOUR, tags=()):
        """An active droplet created `age` seconds ago."""
        droplet = self.client.droplets.create(body={"name": name, "region": "fra1", "size": size, "image": IMAGE,
                                                    "tags": list(tags)})["droplet"]
        self.client.droplets.get(droplet["id"])  # the create action completes: active
        self.backdate("droplets", droplet["id"], age)
        return droplet["id"]

    def app(self, name="mon-app", count=2, age=HOUR):
        app = self.client.apps.create(body={"spec": app_spec(name=name, count=count, size="apps-s-1vcpu-1gb")})["app"]
        wait_deployment(self.client, app["id"], app["pending_deployment"]["id"])
        self.backdate("apps", app["id"], age)
        return app["id"]

    def backdate(self, kind, key, age):
        with self.server.state.lock:
            self.server.state.data[kind][key]["created_at"] = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age))

    def sandbox(self, name, body=None):
        data = json.dumps(body).encode() if body is not None else (b"" if name != "state" else None)
        request = urllib.request.Request(f"{self.endpoint}/_sandbox/{name}", data=data,
                                         method="GET" if data is None else "POST")
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=self.ca)) as response:
            return json.load(response)


@pytest.fixture
def emulator(serve, sandbox_tls):
    yield Emulator(serve, sandbox_tls[0])
    metrics.reset()  # pins live in this process


def window(minutes=30):
    end = int(time.time()) // 60 * 60
    return {"start": str(end - minutes * 60), "end": str(end)}


def series(answer):
    assert answer["status"] == "success" and answer["data"]["resultType"] == "matrix"
    return answer["data"]["result"]


def floats(values):
    return {int(t): float(v) for t, v in values}


# -- droplet metrics -------------------------------------------------------------------------------------

def test_cpu_counters_give_the_busy_share_of_each_minute(emulator):
    host = emulator.droplet()
    result = series(emulator.client.monitoring.get_droplet_cpu_metrics(host_id=str(host), **window()))
    modes = {item["metric"]["mode"]: floats(item["values"]) for item in result}
    assert set(modes) == {"idle", "user", "system", "iowait", "steal", "nice", "softirq", "irq"}
    assert all(item["metric"]["host_id"] == str(host) for item in result)
    times = sorted(modes["idle"])
    assert len(times) == 31 and times[1] - times[0] == 60
    for before, after in zip(times, times[1:]):
        total = sum(mode[after] - mode[before] for mode in modes.values())
        assert total == pytest.approx(2 * 60, abs=0.01)  # two vCPUs for a minute
        busy = 1 - (modes["idle"][after] - modes["idle"][before]) / total
        assert busy * 100 == pytest.approx(metrics.level(str(host), "cpu", before), abs=0.01)


def test_memory_is_bytes_of_the_size_and_bandwidth_is_mbps(emulator):
    host = emulator.droplet()
    args = dict(host_id=str(host), **window())
    total = floats(series(emulator.client.monitoring.get_droplet_memory_total_metrics(**args))[0]["values"])
    available = floats(series(emulator.client.monitoring.get_droplet_memory_available_metrics(**args))[0]["values"])
    assert set(total.values()) == {4096 * 1024 * 1024}
    for t, value in available.items():
        assert 100 * (1 - value / total[t]) == pytest.approx(metrics.level(str(host), "memory", t), abs=1e-6)
        assert 5 <= 100 * (1 - value / total[t]) <= 70
    for direction, metric in (("inbound", "network_in"), ("outbound", "network_out")):
        found = series(emulator.client.monitoring.get_droplet_bandwidth_metrics(
            interface="public", direction=direction, **args))
        assert found[0]["metric"] == {"host_id": str(host), "interface": "public", "direction": direction}
        for t, mbps in floats(found[0]["values"]).items():
            assert mbps * 1e6 / 8 == pytest.approx(metrics.level(str(host), metric, t))
            assert 0.008 <= mbps <= 0.48


def test_history_backfilled_for_a_live_droplet_and_nothing_for_a_stopped_or_absent_one(emulator):
    host = emulator.droplet(age=0)
    cpu = series(emulator.client.monitoring.get_droplet_cpu_metrics(host_id=str(host), **window(60)))
    assert cpu and len(cpu[0]["values"]) == 61  # a whole hour of a droplet made just now
    action = emulator.client.droplet_actions.post(host, body={"type": "power_off"})["action"]
    emulator.client.actions.get(action["id"])
    assert series(emulator.client.monitoring.get_droplet_cpu_metrics(host_id=str(host), **window())) == []
    for absent in ("999999999", "not-a-droplet"):
        assert series(emulator.client.monitoring.get_droplet_memory_total_metrics(host_id=absent, **window())) == []


def test_long_windows_are_served_in_coarser_steps(emulator):
    host = emulator.droplet(age=3 * 24 * HOUR)
    end = int(time.time()) // 60 * 60
    values = series(emulator.client.monitoring.get_droplet_bandwidth_metrics(
        host_id=str(host), interface="public", direction="inbound", start=str(end - 2 * 24 * HOUR),
        end=str(end)))[0]["values"]
    assert len(values) <= 1441 and int(values[1][0]) - int(values[0][0]) == 120


# -- App Platform metrics ----------------------------------------------------------------------------------

def test_app_metrics_per_instance_of_the_component_and_none_when_archived(emulator):
    app_id = emulator.app(count=2)
    client = emulator.client
    for method, metric in ((client.monitoring.get_app_cpu_percentage_metrics, "cpu"),
                           (client.monitoring.get_app_memory_percentage_metrics, "memory")):
        result = series(method(app_id=app_id, app_component="mon-app", **window()))
        assert [item["metric"]["app_component_instance"] for item in result] == ["mon-app-0", "mon-app-1"]
        for t, value in floats(result[0]["values"]).items():
            assert value == pytest.approx(metrics.level(app_id, metric, t)) and 5 <= value <= 70
    assert series(client.monitoring.get_app_cpu_percentage_metrics(app_id=app_id, app_component="other",
                                                                    **window())) == []
    spec = dict(app_spec(name="mon-app", count=2, size="apps-s-1vcpu-1gb"), maintenance={"archive": True})
    archived = client.apps.update(app_id, body={"spec": spec})["app"]
    wait_deployment(client, app_id, archived["pending_deployment"]["id"])
    assert series(client.monitoring.get_app_cpu_percentage_metrics(app_id=app_id, **window())) == []


# -- alert policies, forced states, reset ------------------------------------------------------------------

def policy_body(host, name="web-cpu", **changes):
    body = {"type": "v1/insights/droplet/cpu", "compare": "GreaterThan", "value": 60, "window": "5m",
            "entities": [str(host)], "tags": [], "enabled": True,
            "description": f"lxcri-alarm {name} (region=fra1 kind=vm deployments=web period=60s evaluation_periods=5)",
            "alerts": {"email": ["ops@example.com"], "slack": []}}
    body.update(changes)
    return body


def test_alert_policy_crud(emulator):
    client = emulator.client
    host = emulator.droplet()
    created = client.monitoring.create_alert_policy(body=policy_body(host))["policy"]
    assert created["uuid"] and created["entities"] == [str(host)] and created["window"] == "5m"
    assert client.monitoring.get_alert_policy(created["uuid"])["policy"] == created
    updated = client.monitoring.update_alert_policy(created["uuid"], body=policy_body(host, value=75.5,
                                                                                      window="1h"))["policy"]
    assert (updated["uuid"], updated["value"], updated["window"]) == (created["uuid"], 75.5, "1h")
    listed = client.monitoring.list_alert_policy(per_page=1)
    assert listed["policies"] == [updated] and listed["meta"]["total"] == 1
    assert emulator.sandbox("state")["alert_policies"] == [created["uuid"]]
    client.monitoring.delete_alert_policy(created["uuid"])
    assert client.monitoring.get_alert_policy(created["uuid"])["id"] == "not_found"  # pydo returns 404 bodies
    assert client.monitoring.delete_alert_policy(created["uuid"])["id"] == "not_found"


@pytest.mark.parametrize("change, status", [
    ({"window": "15m"}, 400), ({"compare": "Above"}, 400), ({"value": "80"}, 400),
    ({"entities": ["123"]}, 422), ({"alerts": {"email": ["not-an-address"], "slack": []}}, 400),
    ({"alerts": {"email": [], "slack": []}}, 400),
    ({"type": "v1/dbaas/alerts/cpu_alerts"}, 422),
])
def test_invalid_policies_are_refused(emulator, change, status):
    from azure.core.exceptions import HttpResponseError

    host = emulator.droplet()
    with pytest.raises(HttpResponseError) as err:
        emulator.client.monitoring.create_alert_policy(body=policy_body(host, **change))
    assert err.value.status_code == status
    assert emulator.sandbox("state")["alert_policies"] == []


def busy_minute(emulator, host):
    """(busy percent, minute start) of the last whole minute of the droplet's CPU counters, or None."""
    result = series(emulator.client.monitoring.get_droplet_cpu_metrics(host_id=str(host), **window(2)))
    if not result:
        return None
    modes = {item["metric"]["mode"]: floats(item["values"]) for item in result}
    before, after = sorted(modes["idle"])[-2:]
    total = sum(mode[after] - mode[before] for mode in modes.values())
    return 100 * (1 - (modes["idle"][after] - modes["idle"][before]) / total), before


def busy_percent(emulator, host):
    found = busy_minute(emulator, host)
    return found and found[0]


def test_alarm_state_pins_the_watched_metric_of_the_entities(emulator):
    hosts = [emulator.droplet("mon-1"), emulator.droplet("mon-2")]
    client = emulator.client
    client.monitoring.create_alert_policy(body=dict(policy_body(hosts[0]), entities=[str(h) for h in hosts]))
    bandwidth = client.monitoring.create_alert_policy(body=policy_body(
        hosts[0], name="web-net", type="v1/insights/droplet/public_inbound_bandwidth", compare="LessThan",
        value=0.2))["policy"]  # Mbps: 25,000 bytes/s

    answer = emulator.sandbox("alarm-state", {"name": "web-cpu", "state": "alarm"})
    assert {pin["entity"] for pin in answer["pinned"]} == {str(h) for h in hosts}
    assert all(busy_percent(emulator, host) > 60 for host in hosts)
    emulator.sandbox("alarm-state", {"name": "web-cpu", "state": "ok"})
    assert all(busy_percent(emulator, host) < 60 for host in hosts)
    emulator.sandbox("alarm-state", {"name": "web-cpu", "state": "insufficient_data"})
    assert [busy_percent(emulator, host) for host in hosts] == [None, None]

    emulator.sandbox("alarm-state", {"name": "web-net", "state": "alarm"})
    mbps = series(client.monitoring.get_droplet_bandwidth_metrics(
        host_id=str(hosts[0]), interface="public", direction="inbound", **window(2)))[0]["values"]
    assert all(float(v) < bandwidth["value"] for _t, v in mbps)

    with pytest.raises(urllib.error.HTTPError) as err:
        emulator.sandbox("alarm-state", {"name": "nope", "state": "alarm"})
    assert err.value.code == 404

    client.monitoring.delete_alert_policy(bandwidth["uuid"])  # its pin ends with it
    assert metrics.level(str(hosts[0]), "network_in", time.time()) != pytest.approx(0.16 * 1e6 / 8)


def test_a_forced_state_shows_at_once_on_a_new_droplet(emulator):
    host = emulator.droplet(age=0)
    emulator.client.monitoring.create_alert_policy(body=policy_body(host))
    args = dict(host_id=str(host), **window(10))
    assert busy_percent(emulator, host) < 70
    emulator.sandbox("alarm-state", {"name": "web-cpu", "state": "alarm"})
    assert len(series(emulator.client.monitoring.get_droplet_cpu_metrics(**args))[0]["values"]) == 11
    assert busy_percent(emulator, host) > 60


def test_reset_forgets_policies_pins_and_silences(emulator):
    host = emulator.droplet()
    emulator.client.monitoring.create_alert_policy(body=policy_body(host))
    emulator.sandbox("alarm-state", {"name": "web-cpu", "state": "insufficient_data"})
    emulator.sandbox("reset")
    assert emulator.sandbox("state")["alert_policies"] == []
    host = emulator.droplet()  # ids start again after a reset: the same droplet id as before
    busy, minute = busy_minute(emulator, host)
    assert busy == pytest.approx(metrics.level(str(host), "cpu", minute), abs=0.01)


def test_operations_are_named_for_request_counts():
    assert digitalocean.operation("GET", "/v2/monitoring/metrics/droplet/cpu?host_id=1") == \
        "monitoring.get_DropletCpuMetrics"
    assert digitalocean.operation("PUT", "/v2/monitoring/alerts/abc") == "monitoring.update_alertPolicy"
    assert digitalocean.operation("POST", "/_sandbox/alarm-state") == "sandbox.alarm-state"


# -- the collection's provider on this emulator ------------------------------------------------------------

def provider(emulator):
    """The collection's provider on this emulator, and the collection's monitoring and spec modules."""
    _converge, spec, provider_class = _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring

    connection = {"token": TOKEN, "endpoint": emulator.endpoint, "ca_bundle": emulator.ca, "region": "fra1"}
    return provider_class(connection), monitoring, spec


def test_the_collection_reads_metrics_with_one_call_per_resource_and_native_metric(emulator):
    hosts = [str(emulator.droplet(f"mon-{i}", tags=["lxcri-deployment:mon"])) for i in range(1, 6)]
    app_id = emulator.app()
    do, monitoring, _spec = provider(emulator)
    # the test app carries none of the collection's variables, so it is given as the record find would make
    records = do.find("mon", "fra1", "vm") + [{"kind": "container", "id": app_id, "name": "mon-app"}]
    assert [rec["id"] for rec in records[:-1]] == hosts
    start, end, period = monitoring.time_range("30m", "5m")
    made, call = [], do.call
    do.call = lambda func, *args, **kwargs: made.append(func.__name__) or call(func, *args, **kwargs)
    answers = do.metrics(records, list(monitoring.METRICS), start, end, period)
    # droplets: cpu, memory_available, memory_total, bandwidth in and out; the app: cpu and memory percentage
    assert sorted(set(made)) == ["get_app_cpu_percentage_metrics", "get_app_memory_percentage_metrics",
                                 "get_droplet_bandwidth_metrics", "get_droplet_cpu_metrics",
                                 "get_droplet_memory_available_metrics", "get_droplet_memory_total_metrics"]
    assert len(made) == 5 * 5 + 2
    for rec, answer in zip(records, answers):
        for metric in ("cpu", "memory"):
            summary = monitoring.summarize(metric, answer[metric])
            assert len(summary["points"]) == 6 and 5 <= summary["average"] <= 70, (rec, metric, summary)
        if rec["kind"] == "vm":
            first = monitoring.summarize("network_in", answer["network_in"])["points"][0]["value"]
            expected = sum(metrics.level(rec["id"], "network_in", t) * 60 for t in range(start, start + period, 60))
            assert first == pytest.approx(expected, rel=1e-6) and answer["network_in"]["native_unit"] == "Mbps"
            assert answer["disk_read"]["points"] is None and "disk I/O" in answer["disk_read"]["reason"]
        else:
            assert answer["network_in"]["points"] is None and "cpu_percentage" in answer["network_in"]["reason"]
        assert answer["requests"]["points"] is None


def test_the_collection_alarm_lifecycle(emulator):
    for i in (1, 2):
        emulator.droplet(f"web-{i}", tags=["lxcri-deployment:web", "lxcri-kind:vm"])
    do, monitoring, spec = provider(emulator)
    targets = do.find("web", "fra1", "vm")
    params = {"name": "web-cpu", "state": "present", "metric": "cpu", "comparison": "above", "threshold": 80,
              "period": "1m", "evaluation_periods": 5, "statistic": "average", "deployments": ["web"], "kind": "vm",
              "notify": {"emails": ["ops@example.com"]}, "tags": {}, "description": "web runs hot"}
    alarm = monitoring.validate_alarm(params, type(do))
    wanted = monitoring.alarm_config(dict(alarm, targets=sorted(rec["id"] for rec in targets)))

    created = do.put_alarm(alarm, "fra1", targets, None)
    assert monitoring.alarm_config(created) == wanted and created["state_source"] == "evaluated"
    policy = emulator.client.monitoring.get_alert_policy(created["id"])["policy"]
    assert policy["description"] == ("lxcri-alarm web-cpu (region=fra1 kind=vm deployments=web period=60s "
                                     "evaluation_periods=5): web runs hot")
    assert monitoring.alarm_config(do.find_alarm("web-cpu", "fra1")) == wanted  # a re-run changes nothing
    assert do.find_alarm("web-cpu", "nyc3") is None

    emulator.sandbox("alarm-state", {"name": "web-cpu", "state": "alarm"})
    assert do.find_alarm("web-cpu", "fra1")["state"] == "alarm"
    emulator.sandbox("alarm-state", {"name": "web-cpu", "state": "insufficient_data"})
    assert do.list_alarms("fra1")[0]["state"] == "insufficient_data"

    network = monitoring.validate_alarm(dict(params, metric="network_in", threshold=3e6, period="5m",
                                             evaluation_periods=2), type(do))
    updated = do.put_alarm(network, "fra1", targets, do.find_alarm("web-cpu", "fra1"))
    assert updated["id"] == created["id"] and updated["threshold"] == pytest.approx(3e6)
    policy = emulator.client.monitoring.get_alert_policy(created["id"])["policy"]
    assert (policy["value"], policy["window"]) == (pytest.approx(0.08), "10m")  # 10,000 bytes/s in Mbps

    do.delete_alarm(updated)
    assert do.find_alarm("web-cpu", "fra1") is None and emulator.sandbox("state")["alert_policies"] == []
    for bad, needle in ((dict(params, period="2m", evaluation_periods=2), "5m, 10m, 30m or 1h"),
                        (dict(params, statistic="max"), "average"),
                        (dict(params, notify={"emails": ["a@example.com"], "webhooks": ["https://hooks.example.com/x"]}),
                         "email and Slack"),
                        (dict(params, notify={}), "at least one address"),
                        (dict(params, kind="container"), "app spec"), (dict(params, tags={"team": "a"}), "labels")):
        with pytest.raises(spec.SpecError, match=needle):
            monitoring.validate_alarm(bad, type(do))


# -- conformance -------------------------------------------------------------------------------------------

def recorded(emulator, predicate, until=bool):
    """The recorded exchanges that match, once `until` holds for them: the emulator records an exchange just
    after answering it, so the last one may still be on its way."""
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in emulator.records if predicate(r)]
        if (found and until(found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


@needs_spec
def test_every_monitoring_exchange_conforms_to_the_openapi_description(emulator):
    test_memory_is_bytes_of_the_size_and_bandwidth_is_mbps(emulator)
    test_cpu_counters_give_the_busy_share_of_each_minute(emulator)
    test_app_metrics_per_instance_of_the_component_and_none_when_archived(emulator)
    test_alert_policy_crud(emulator)
    test_the_collection_alarm_lifecycle(emulator)
    emulator.client.monitoring.list_alert_policy()  # the last exchange, waited for below
    exchanges = recorded(emulator, lambda r: r["path"].startswith("/v2/monitoring/"),
                         until=lambda found: found[-1]["path"].startswith("/v2/monitoring/alerts?"))
    seen = {digitalocean.operation(r["method"], r["path"]) for r in exchanges}
    routes = {route.name for route in digitalocean_monitoring.ROUTES}
    assert routes <= seen, sorted(routes - seen)
    report = conformance.check_digitalocean(exchanges)  # as the whole-run check does: strict, headers required
    assert report.checked == len(exchanges) and not report.violations, "\n".join(report.lines())


@needs_spec
def test_the_check_sees_a_broken_matrix_and_policy(emulator):
    test_alert_policy_crud(emulator)
    test_cpu_counters_give_the_busy_share_of_each_minute(emulator)
    checker = openapi_check.digitalocean_checker()
    cpu = recorded(emulator, lambda r: r["path"].startswith("/v2/monitoring/metrics/droplet/cpu"))[0]
    created = recorded(emulator, lambda r: r["method"] == "POST" and r["path"] == "/v2/monitoring/alerts")[0]
    assert checker.check_exchange(cpu) == [] and checker.check_exchange(created) == []
    body = json.loads(cpu["response_body"])
    body["data"]["resultType"] = "vector"
    assert checker.check_exchange(dict(cpu, response_body=json.dumps(body).encode()))
    body = json.loads(created["response_body"])
    body["policy"]["window"] = "15m"
    assert checker.check_exchange(dict(created, response_body=json.dumps(body).encode()))
