"""The Cloud Monitoring v3 part of the GCP emulator, driven over REST with google-auth's AuthorizedSession
(google-cloud-monitoring speaks gRPC only) and a real service-account key, with VMs and Cloud Run services
made by the official google-cloud-compute and google-cloud-run clients; then the collection's GCP provider
against it (call counts, alarm lifecycle), and every exchange against monitoring.v3.json."""
import json
import math
import threading
import time
import types
import urllib.error
import urllib.request

import pytest
from google.auth.transport.requests import AuthorizedSession
from google.cloud import run_v2
from google.oauth2 import service_account

from tests.sandbox import conformance, metrics
from tests.sandbox.emulators import gcp
from tests.sandbox.tests.test_gcp_emulator import PROJECT, ZONE, clients, create, instance, wait, write_service_account
from tests.sandbox.tests.test_gcp_run_emulator import FAST, service

LOCATION = "us-central1"
CPU = "compute.googleapis.com/instance/cpu/utilization"
RECEIVED = "compute.googleapis.com/instance/network/received_bytes_count"
RUN_CPU = "run.googleapis.com/container/cpu/utilizations"
REQUESTS = "run.googleapis.com/request_count"
SPEC = conformance.SPECS_DIR / "gcp" / "monitoring.v3.json"


@pytest.fixture
def api(tmp_path):
    key_file = write_service_account(tmp_path / "sa.json")
    server = gcp.make_server("127.0.0.1", 0, credentials_file=key_file, record=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    credentials = service_account.Credentials.from_service_account_file(
        key_file, scopes=["https://www.googleapis.com/auth/cloud-platform"])
    kw = {"transport": "rest", "client_options": {"api_endpoint": url}, "credentials": credentials}
    yield types.SimpleNamespace(server=server, url=url, key_file=key_file, gce=clients(url, credentials),
                                run=run_v2.ServicesClient(**kw),
                                session=AuthorizedSession(credentials.with_always_use_jwt_access(True)))
    server.shutdown()
    server.server_close()
    metrics.reset()


def call(api, method, path, params=None, body=None):
    """(status, JSON) of a Monitoring REST call, as the provider makes it."""
    response = api.session.request(method, f"{api.url}/v3/projects/{PROJECT}/{path}", params=params, json=body)
    return response.status_code, response.json() if response.content else {}


def sandbox(api, path, body=None):
    """GET /_sandbox/state, or POST /_sandbox/<path> with a JSON body."""
    data = None if path == "state" else json.dumps(body or {}).encode()
    request = urllib.request.Request(f"{api.url}/_sandbox/{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def zulu(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def window(minutes=10):
    """(start, end) in epoch seconds, up to the end of the current minute (a VM made now has that one)."""
    end = (int(time.time()) // 60 + 1) * 60
    return end - minutes * 60, end


def series(api, metric_type, ids, label="instance_id", aligner="ALIGN_MEAN", reducer=None, group_by=(), **extra):
    start, end = window()
    values = ", ".join(json.dumps(i) for i in ids)
    resource = "gce_instance" if label == "instance_id" else "cloud_run_revision"
    params = {"filter": f'metric.type = "{metric_type}" AND resource.type = "{resource}" AND '
                        f'resource.labels.{label} = one_of({values})',
              "interval.startTime": zulu(start), "interval.endTime": zulu(end), "aggregation.alignmentPeriod": "60s",
              "aggregation.perSeriesAligner": aligner, **extra}
    if reducer:
        params.update({"aggregation.crossSeriesReducer": reducer, "aggregation.groupByFields": list(group_by)})
    return call(api, "GET", "timeSeries", params)


def vm(api, name, labels=None):
    create(api.gce, name, labels=labels or {})
    return str(api.gce.instances.get(project=PROJECT, zone=ZONE, instance=name).id)


def cloud_run(api, name, labels=None):
    return api.run.create_service(parent=f"projects/{PROJECT}/locations/{LOCATION}", service_id=name,
                                  service=service(labels=labels or {"lxcri-deployment": name})).result(polling=FAST)


# -- metrics ------------------------------------------------------------------------------------------

def test_a_running_vm_has_cpu_and_bytes_in_range_in_the_native_units(api):
    ids = [vm(api, "web-1"), vm(api, "web-2")]
    status, body = series(api, CPU, ids)
    assert status == 200, body
    assert sorted(s["resource"]["labels"]["instance_id"] for s in body["timeSeries"]) == sorted(ids)
    for item in body["timeSeries"]:
        assert item["metricKind"] == "GAUGE" and item["valueType"] == "DOUBLE" and item["unit"] == "10^2.%"
        assert item["metric"]["labels"]["instance_name"] in ("web-1", "web-2")
        ends = [p["interval"]["endTime"] for p in item["points"]]
        assert ends == sorted(ends, reverse=True) and len(ends) >= 1  # newest first; made this minute
        assert all(0.05 <= p["value"]["doubleValue"] <= 0.70 for p in item["points"])
    status, body = series(api, RECEIVED, ids[:1], aligner="ALIGN_SUM", reducer="REDUCE_SUM",
                          group_by=["resource.labels.instance_id"])
    assert status == 200, body
    (item,) = body["timeSeries"]
    assert item["resource"]["labels"] == {"instance_id": ids[0]} and item["valueType"] == "INT64"
    point = item["points"][0]
    assert isinstance(point["value"]["int64Value"], str)  # int64 is a decimal string on the wire
    assert 60_000 <= int(point["value"]["int64Value"]) <= 3_600_000  # 1,000..60,000 bytes/s over one minute
    start, end = (time.mktime(time.strptime(point["interval"][k], "%Y-%m-%dT%H:%M:%SZ")) for k in ("startTime", "endTime"))
    assert end - start == 60  # a DELTA point covers its alignment period


def test_stopped_and_absent_resources_have_no_data_and_history_is_backfilled(api):
    running, stopped = vm(api, "on"), vm(api, "off")
    wait(api.gce, api.gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="off"))
    status, body = series(api, CPU, [running, stopped, "1234567890123456789"])
    assert status == 200
    assert [s["resource"]["labels"]["instance_id"] for s in body["timeSeries"]] == [running]
    start, _end = window()
    params = {"filter": f'metric.type = "{CPU}" AND resource.labels.instance_id = "{running}"',
              "interval.startTime": zulu(start - 3600), "interval.endTime": zulu(start)}  # before it was made
    backfilled = call(api, "GET", "timeSeries", params)[1]["timeSeries"][0]["points"]
    assert len(backfilled) == 60  # every minute of the hour before: the sandbox backfills history
    memory = dict(params, filter='metric.type = "agent.googleapis.com/memory/percent_used"')
    assert call(api, "GET", "timeSeries", memory) == (200, {})  # a known metric: no Ops Agent runs here


def test_a_cloud_run_service_has_metrics_while_it_serves(api):
    svc = cloud_run(api, "api")
    status, body = series(api, RUN_CPU, ["api"], label="service_name", reducer="REDUCE_MEAN",
                          group_by=["resource.labels.service_name", "resource.labels.location"])
    assert status == 200, body
    (item,) = body["timeSeries"]
    assert item["resource"] == {"type": "cloud_run_revision", "labels": {"service_name": "api", "location": LOCATION}}
    assert item["valueType"] == "DOUBLE" and 0.05 <= item["points"][0]["value"]["doubleValue"] <= 0.70
    status, body = series(api, REQUESTS, ["api"], label="service_name", aligner="ALIGN_SUM")
    assert status == 200 and 30 <= int(body["timeSeries"][0]["points"][0]["value"]["int64Value"]) <= 360
    assert body["timeSeries"][0]["metric"]["labels"]["response_code_class"] == "2xx"
    status, body = series(api, RUN_CPU, ["api"], label="service_name", aligner="ALIGN_MAX")
    assert status == 400 and "ALIGN_MAX" in body["error"]["message"]  # a distribution has no max aligner
    svc.scaling = run_v2.ServiceScaling(scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL, manual_instance_count=0)
    api.run.update_service(service=svc).result(polling=FAST)
    assert series(api, RUN_CPU, ["api"], label="service_name") == (200, {})  # stopped: scaled to zero


@pytest.mark.parametrize("text", [
    f'metric.type = "{CPU}" OR resource.type = "gce_instance"',
    f'metric.type = starts_with("{CPU}")',
    f'metric.type = "{CPU}" AND resource.labels.zone != "x"',
    'resource.type = "gce_instance"',
    f'metric.type = "{CPU}" AND resource.labels.instance_id = one_of({", ".join(map(str, range(101)))})',
])
def test_a_filter_outside_what_the_sandbox_understands_is_a_400(api, text):
    status, body = call(api, "GET", "timeSeries", {"filter": text, "interval.endTime": zulu(time.time())})
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT", body


def test_time_series_come_in_pages_of_points(api):
    ids = [vm(api, f"p-{i}") for i in range(3)]
    seen, token, pages = [], None, 0
    while True:
        status, body = series(api, CPU, ids, pageSize=1, **({"pageToken": token} if token else {}))
        assert status == 200
        seen += [s["resource"]["labels"]["instance_id"] for s in body.get("timeSeries", [])]
        pages += 1
        token = body.get("nextPageToken")
        if not token:
            break
    assert sorted(seen) == sorted(ids) and pages == 3


# -- alert policies and notification channels -----------------------------------------------------------

def channel(api, kind="email", **labels):
    status, body = call(api, "POST", "notificationChannels", body={
        "type": kind, "displayName": "x", "labels": labels or {"email_address": "ops@example.com"},
        "userLabels": {"lxcri-alarm": "hot"}})
    assert status == 200, body
    return body


def policy_body(ids, channels=(), threshold=0.5):
    return {"displayName": "hot", "userLabels": {"lxcri-alarm": "hot", "team": "web"}, "combiner": "OR",
            "conditions": [{"displayName": "cpu above 50", "conditionThreshold": {
                "filter": f'metric.type = "{CPU}" AND resource.type = "gce_instance" AND '
                          f'resource.labels.instance_id = one_of({", ".join(json.dumps(i) for i in ids)})',
                "comparison": "COMPARISON_GT", "thresholdValue": threshold, "duration": "60s", "trigger": {"count": 1},
                "aggregations": [{"alignmentPeriod": "60s", "perSeriesAligner": "ALIGN_MEAN",
                                  "crossSeriesReducer": "REDUCE_MEAN", "groupByFields": ["resource.labels.instance_id"]}]}}],
            "notificationChannels": list(channels)}


def test_alert_policy_and_channel_crud(api):
    ids = [vm(api, "web-1")]
    email = channel(api)
    hook = channel(api, "webhook_tokenauth", url="https://hooks.example.com/x?token=1")
    assert email["name"].startswith(f"projects/{PROJECT}/notificationChannels/") and email["enabled"] is True
    status, created = call(api, "POST", "alertPolicies", body=policy_body(ids, [email["name"], hook["name"]]))
    assert status == 200, created
    name = created["name"].split("/", 2)[2]
    assert created["conditions"][0]["name"].startswith(created["name"] + "/conditions/")
    assert created["creationRecord"]["mutatedBy"] and created["enabled"] is True
    assert call(api, "GET", name)[1] == created
    status, listed = call(api, "GET", "alertPolicies", {"filter": 'user_labels.lxcri-alarm = "hot"'})
    assert status == 200 and [p["name"] for p in listed["alertPolicies"]] == [created["name"]]
    assert call(api, "GET", "alertPolicies", {"filter": 'user_labels.lxcri-alarm = "cold"'})[1] == {"totalSize": 0}
    assert call(api, "GET", "alertPolicies", {"filter": 'user_labels.lxcri-alarm:*'})[0] == 400
    changed = dict(policy_body(ids, [email["name"]], threshold=0.6), displayName="renamed-not-asked")
    status, patched = call(api, "PATCH", name, {"updateMask": "conditions,notificationChannels"}, changed)
    assert status == 200 and patched["name"] == created["name"] and patched["displayName"] == "hot"
    assert patched["conditions"][0]["conditionThreshold"]["thresholdValue"] == 0.6
    assert patched["notificationChannels"] == [email["name"]]
    channels = call(api, "GET", "notificationChannels", {"filter": 'type = "webhook_tokenauth"'})[1]
    assert [c["labels"]["url"] for c in channels["notificationChannels"]] == ["https://hooks.example.com/x?token=1"]
    status, error = call(api, "DELETE", email["name"].split("/", 2)[2])
    assert status == 400 and error["error"]["status"] == "FAILED_PRECONDITION"  # in use by the policy
    assert call(api, "DELETE", name) == (200, {})
    assert call(api, "GET", name)[0] == 404
    for made in (email, hook):
        assert call(api, "DELETE", made["name"].split("/", 2)[2]) == (200, {})
    assert sandbox(api, "state") == {"instances": [f"{ZONE}/web-1"], "disks": [f"{ZONE}/web-1"], "firewalls": [],
                                     "services": []}


@pytest.mark.parametrize("change,status", [
    ({"conditions": []}, 400),
    ({"notificationChannels": [f"projects/{PROJECT}/notificationChannels/1"]}, 404),
    ({"userLabels": {"Team": "web"}}, 400),
    ({"displayName": ""}, 400),
])
def test_an_alert_policy_the_api_would_refuse_is_refused(api, change, status):
    answer, body = call(api, "POST", "alertPolicies", body=dict(policy_body(["1"]), **change))
    assert answer == status and body["error"]["code"] == status


def test_forced_states_pin_the_watched_metric_of_the_targets(api):
    ids = [vm(api, "web-1"), vm(api, "web-2")]
    call(api, "POST", "alertPolicies", body=policy_body(ids, threshold=0.5))
    answer = sandbox(api, "alarm-state", {"name": "hot", "state": "alarm"})
    assert answer["state"] == "alarm" and set(answer["pinned"]) == set(ids)
    start, end = window(minutes=30)
    params = {"filter": f'metric.type = "{CPU}"', "interval.startTime": zulu(start), "interval.endTime": zulu(end),
              "aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": "ALIGN_MEAN"}
    body = call(api, "GET", "timeSeries", params)[1]
    values = [p["value"]["doubleValue"] for s in body["timeSeries"] for p in s["points"]]
    assert len(values) == 2 * 30 and min(values) > 0.5  # the whole window, though the VMs are new
    sandbox(api, "alarm-state", {"name": "hot", "state": "ok"})
    values = [p["value"]["doubleValue"] for s in call(api, "GET", "timeSeries", params)[1]["timeSeries"] for p in s["points"]]
    assert values and max(values) < 0.5
    sandbox(api, "alarm-state", {"name": "hot", "state": "insufficient_data"})
    assert call(api, "GET", "timeSeries", params) == (200, {})
    with pytest.raises(urllib.error.HTTPError) as missing:
        sandbox(api, "alarm-state", {"name": "nothing", "state": "alarm"})
    assert missing.value.code == 404
    policy = call(api, "GET", "alertPolicies")[1]["alertPolicies"][0]["name"]
    call(api, "DELETE", policy.split("/", 2)[2])
    assert not math.isnan(metrics.level(ids[0], "cpu", time.time()))  # deleting the policy unpinned its targets


def test_reset_clears_policies_channels_and_pins_and_state_lists_them(api):
    ids = [vm(api, "web-1")]
    made = channel(api)
    call(api, "POST", "alertPolicies", body=policy_body(ids, [made["name"]]))
    sandbox(api, "alarm-state", {"name": "hot", "state": "alarm"})
    state = sandbox(api, "state")
    assert state["notification_channels"] == [made["name"]] and len(state["alert_policies"]) == 1
    sandbox(api, "reset")
    assert sandbox(api, "state") == {"instances": [], "disks": [], "firewalls": [], "services": []}
    assert 5 <= metrics.level(ids[0], "cpu", time.time()) <= 70


# -- the collection's provider against it ----------------------------------------------------------------

def _collection():
    """lxcri.cloud from this checkout: tests/unit/conftest.py makes it importable."""
    import tests.unit.conftest  # noqa: F401
    from ansible_collections.lxcri.cloud.plugins.module_utils import monitoring
    from ansible_collections.lxcri.cloud.plugins.module_utils.provider import load
    return monitoring, load("gcp")


def _members(api, count):
    labels = {"lxcri-deployment": "web", "lxcri-kind": "vm", "lxcri-image": "ubuntu-24_04"}
    ops = [api.gce.instances.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance(f"web-{i}", labels=labels))
           for i in range(count)]
    for op in ops:
        wait(api.gce, op)


def _provider(api):
    monitoring, provider_class = _collection()
    return monitoring, provider_class, provider_class({"endpoint": api.url, "project": PROJECT,
                                                       "credentials_file": api.key_file})


def _counts(api, since):
    """Requests by operation since then, Cloud Monitoring's and token requests only (the server records an
    exchange after answering it, so the last call before `since` may still come in)."""
    out = {}
    for record in api.server.records[since:]:
        if record["operation"].startswith(("monitoring.", "oauth2.")):
            out[record["operation"]] = out.get(record["operation"], 0) + 1
    return out


def test_the_provider_reads_every_metric_of_many_resources_in_one_call_per_metric_and_resource_type(api):
    monitoring, _cls, provider = _provider(api)
    _members(api, 12)
    cloud_run(api, "api", labels={"lxcri-deployment": "api", "lxcri-kind": "container"})
    records = provider.find("web", ZONE) + provider.find("api", LOCATION, "container")
    start, end = window()
    since = len(api.server.records)
    answers = provider.metrics(records, list(monitoring.METRICS), start, end, 60)
    assert _counts(api, since) == {"monitoring.projects.timeSeries.list": 5 + 5}  # no token round trip either
    for rec, answer in zip(records, answers):
        cpu = monitoring.summarize("cpu", answer["cpu"])
        assert 5 <= cpu["latest"] <= 70 and cpu["unit"] == "percent", (rec["name"], cpu)
        network = monitoring.summarize("network_in", answer["network_in"])
        assert 60_000 <= network["latest"] <= 3_600_000 and network["statistic"] == "sum"
        gone = "memory" if rec["kind"] == "vm" else "disk_read"
        assert answer[gone]["points"] is None and answer[gone]["reason"]


def test_the_provider_manages_an_alarm_in_place_with_its_channels(api):
    monitoring, provider_class, provider = _provider(api)
    _members(api, 2)
    spec = {"name": "web-cpu", "metric": "cpu", "comparison": "above", "threshold": 80, "period": "5m",
            "evaluation_periods": 2, "statistic": "max", "deployments": ["web"], "kind": "vm",
            "notify": {"emails": ["ops@example.com"], "webhooks": ["https://hooks.example.com/t?token=s"]},
            "tags": {"team": "web"}, "description": "hot"}
    alarm = monitoring.validate_alarm(spec, provider_class)
    targets = provider.find("web", ZONE)
    created = provider.put_alarm(alarm, ZONE, targets, None)
    wanted = dict(alarm, targets=sorted(rec["id"] for rec in targets))
    assert monitoring.alarm_config(created) == monitoring.alarm_config(wanted)
    found = provider.find_alarm("web-cpu", ZONE)
    assert monitoring.alarm_config(found) == monitoring.alarm_config(wanted) and found["id"] == created["id"]
    assert found["state_source"] == "evaluated" and found["region"] == ZONE
    assert len(sandbox(api, "state")["notification_channels"]) == 2
    update = monitoring.validate_alarm(dict(spec, threshold=60, notify={"emails": ["ops@example.com"]}), provider_class)
    updated = provider.put_alarm(update, ZONE, targets, found)
    assert updated["id"] == created["id"] and updated["threshold"] == 60.0
    assert updated["notify"] == {"emails": ["ops@example.com"], "webhooks": []}
    assert len(sandbox(api, "state")["notification_channels"]) == 1  # the webhook's channel went
    sandbox(api, "alarm-state", {"name": "web-cpu", "state": "alarm"})
    assert provider.find_alarm("web-cpu", ZONE)["state"] == "alarm"
    assert [rec["name"] for rec in provider.list_alarms(LOCATION)] == ["web-cpu"]
    provider.delete_alarm(updated)
    assert provider.find_alarm("web-cpu", ZONE) is None
    assert "alert_policies" not in sandbox(api, "state") and "notification_channels" not in sandbox(api, "state")


# -- conformance ------------------------------------------------------------------------------------

@pytest.mark.skipif(not SPEC.is_file(), reason=f"{SPEC} not found: the Monitoring discovery document is needed")
def test_every_monitoring_exchange_conforms_to_the_discovery_document(api):
    test_the_provider_manages_an_alarm_in_place_with_its_channels(api)
    ids = [str(api.gce.instances.get(project=PROJECT, zone=ZONE, instance="web-0").id)]
    made = channel(api)
    call(api, "PATCH", made["name"].split("/", 2)[2], {"updateMask": "displayName"}, {"displayName": "y"})
    call(api, "GET", made["name"].split("/", 2)[2])
    call(api, "POST", "alertPolicies", body=policy_body(ids, ["nope"]))  # an error body
    _status, policy = call(api, "POST", "alertPolicies", body=policy_body(ids, [made["name"]]))
    call(api, "GET", policy["name"].split("/", 2)[2])
    series(api, CPU, ids, view="HEADERS")
    records = [r for r in api.server.records if r["path"].startswith("/v3/")]
    report = conformance.check_gcp(records)
    assert set(report.operations) == {f"monitoring.projects.{op}" for op in (
        "timeSeries.list", "alertPolicies.create", "alertPolicies.get", "alertPolicies.list", "alertPolicies.patch",
        "alertPolicies.delete", "notificationChannels.create", "notificationChannels.get", "notificationChannels.list",
        "notificationChannels.patch", "notificationChannels.delete")}
    assert not report.violations, "\n".join(report.lines())
    bad = json.loads(json.dumps(next(r for r in records if r["operation"].endswith("timeSeries.list")
                                     and r["response"].get("timeSeries"))))
    bad["response"]["timeSeries"][0]["points"][0]["value"] = {"int64Value": 5}
    assert conformance.check_gcp([bad]).violations  # the check can fail


# -- errors: retried, never doubled, undone --------------------------------------------------------------

def _answer(status, headers=None, message="boom"):
    """A Google API error as requests hands it over."""
    import requests

    response = requests.Response()
    response.status_code, response.url = status, "http://sandbox/v3/"
    response.headers.update(headers or {})
    response._content = json.dumps({"error": {"code": status, "message": message}}).encode()
    response.request = requests.Request("GET", response.url).prepare()
    return response


def _scripted(provider, script):
    """Make the provider's Monitoring session answer the first request matching each (method, path part) with
    the scripted action(send) instead; the rest go through."""
    session = provider.monitoring.session
    real = session.request

    def request(method, url, **kwargs):
        for entry in script:
            if entry[0] == method and entry[1] in url:
                script.remove(entry)
                return entry[2](lambda: real(method, url, **kwargs))
        return real(method, url, **kwargs)
    session.request = request


def test_throttled_and_failing_metric_calls_are_retried_honouring_retry_after(api):
    monitoring, provider_class = _collection()
    from ansible_collections.lxcri.cloud.plugins.module_utils.retry import RetryPolicy
    sleeps = []
    provider = provider_class({"endpoint": api.url, "project": PROJECT, "credentials_file": api.key_file},
                              policy=RetryPolicy(sleep=sleeps.append, base=0.001))
    _members(api, 1)
    _scripted(provider, [("GET", "/timeSeries", lambda send: _answer(429, {"Retry-After": "7"})),
                         ("GET", "/timeSeries", lambda send: _answer(503))])
    start, end = window()
    (answer,) = provider.metrics(provider.find("web", ZONE), ["cpu"], start, end, 60)
    assert monitoring.summarize("cpu", answer["cpu"])["latest"] is not None
    assert len(sleeps) == 2 and 7 <= sleeps[0] < 7.01  # Retry-After of the 429, then a backoff for the 503


def test_a_create_whose_answer_is_lost_is_not_made_twice_and_a_refused_one_leaves_nothing(api):
    import requests

    monitoring, provider_class, provider = _provider(api)
    _members(api, 1)
    spec = {"name": "web-cpu", "metric": "cpu", "comparison": "above", "threshold": 80, "period": "1m", "evaluation_periods": 1,
            "statistic": "average", "deployments": ["web"], "kind": "vm", "notify": {"emails": ["ops@example.com"]}}
    alarm = monitoring.validate_alarm(spec, provider_class)
    targets = provider.find("web", ZONE)

    def lost(send):  # the server made it, the answer never came back
        send()
        raise requests.exceptions.ConnectionError("Connection reset by peer")
    _scripted(provider, [("POST", "/alertPolicies", lost), ("POST", "/notificationChannels", lost)])
    made = provider.put_alarm(alarm, ZONE, targets, None)
    state = sandbox(api, "state")
    assert state["alert_policies"] == [made["id"]] and len(state["notification_channels"]) == 1
    provider.delete_alarm(made)

    _scripted(provider, [("POST", "/alertPolicies", lambda send: _answer(400, message="Field alert_policy is bad"))])
    with pytest.raises(Exception) as refused:
        provider.put_alarm(alarm, ZONE, targets, None)
    assert "Field alert_policy is bad" in str(refused.value) and "deleted again" in str(refused.value)
    assert "notification_channels" not in sandbox(api, "state") and "alert_policies" not in sandbox(api, "state")
