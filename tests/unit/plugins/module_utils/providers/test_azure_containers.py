"""The pure parts of Azure Container Instances support: spec checks, the group body, records, read-back config."""
import json

import pytest

from ansible_collections.lxcri.cloud.plugins.module_utils import spec as S
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import containers as aci
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.azure import provider as az
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import RetryPolicy

pytest.importorskip("azure.mgmt.compute")

CONNECTION = {
    "subscription_id": "00000000-0000-0000-0000-000000000001", "tenant_id": "00000000-0000-0000-0000-000000000002",
    "client_id": "00000000-0000-0000-0000-000000000003", "client_secret": "s3cr3t-value",
    "authority_host": "https://127.0.0.1:9", "endpoint": "https://127.0.0.1:9",
}
SECRET = "hunter2-never-shown"


@pytest.fixture
def provider():
    return az.AzureProvider(dict(CONNECTION), policy=RetryPolicy(attempts=1))


def _spec(count=1, state="present", tags=None, **container):
    settings = {"image": "nginx:1.27", "port": 80, "env": {"GREETING": "hello"}, "secret_env": {"API_KEY": SECRET},
                "cpu": 0.25, "memory": 512, "command": None, "public": True}
    settings.update(container)
    return {"name": "web", "kind": "container", "count": count, "state": state, "tags": tags or {"env": "test"},
            "purge_tags": True, "wait": True, "container": settings}


@pytest.mark.parametrize("mib, gb", [(512, 0.5), (1024, 1.0), (1000, 1.0), (1536, 1.5), (100, 0.1), (1, 0.1),
                                     (16384, 16.0), (1025, 1.1)])
def test_memory_is_rounded_up_to_a_tenth_of_a_gb(mib, gb):
    assert aci.memory_gb(mib) == gb


def test_dns_label_is_stable_short_and_a_valid_label():
    label = aci.dns_label("web", "SUB", "lxcri-web")
    assert label == aci.dns_label("web", "sub", "LXCRI-WEB") and label.startswith("web-") and len(label) == 12
    assert label != aci.dns_label("web", "sub", "other")
    assert len(aci.dns_label("a" * 40, "s", "g")) <= 63


@pytest.mark.parametrize("fqdn, ip, port, url", [
    ("web-1.westeurope.azurecontainer.io", "20.1.2.3", 80, "http://web-1.westeurope.azurecontainer.io"),
    ("web-1.westeurope.azurecontainer.io", None, 8080, "http://web-1.westeurope.azurecontainer.io:8080"),
    (None, "20.1.2.3", 8080, "http://20.1.2.3:8080"),
    (None, None, 80, None),
])
def test_url(fqdn, ip, port, url):
    assert aci.container_url(fqdn, ip, port) == url


@pytest.mark.parametrize("provisioning, view, state", [
    ("Succeeded", "Running", "running"), ("Succeeded", "Stopped", "stopped"), ("Pending", "Pending", "pending"),
    ("Pending", "Running", "pending"), ("Creating", None, "pending"), ("Failed", "Running", "error"),
    ("Deleting", "Running", "terminated"), ("Succeeded", "Failed", "error"), ("Succeeded", None, "running"),
    ("Succeeded", "Succeeded", "stopped"), ("Succeeded", "Whatever", "unknown"),
])
def test_group_state(provisioning, view, state):
    props = {"provisioningState": provisioning}
    if view:
        props["instanceView"] = {"state": view}
    assert aci.group_state(props) == state


@pytest.mark.parametrize("spec, words", [
    (_spec(count=2), ["Azure Container Instances runs one container group per deployment", "use count 1"]),
    (_spec(public=False), ["container.public false is not supported on azure", "virtual network"]),
    (_spec(cpu=4.5), ["at most 4 vCPUs"]),
    (_spec(memory=16385), ["16384 MiB"]),
    (_spec(env={"a.b": "x"}), ["container.env: 'a.b'"]),
    (_spec(secret_env={"1X": "x"}), ["container.secret_env: '1X'"]),
    (_spec(env={"K": "1"}, secret_env={"K": "2"}), ["both set K"]),
    (_spec(tags={f"t{i}": "x" for i in range(45)}), ["at most 44 tags"]),
    (_spec(tags={"a/b": "x"}), ["key 'a/b'"]),
])
def test_what_container_instances_cannot_run_is_refused(spec, words):
    with pytest.raises(S.SpecError) as error:
        az.AzureProvider.validate(spec)
    for word in words:
        assert word in str(error.value)


def test_good_container_specs_pass():
    az.AzureProvider.validate(_spec())
    az.AzureProvider.validate(_spec(count=0))
    az.AzureProvider.validate(_spec(cpu=4, memory=16384, env={"_x1": "y"}, command=["sh", "-c", "x"]))
    az.AzureProvider.validate(_spec(count=5, state="absent", public=False))  # removing checks nothing


def test_the_group_body(provider):
    body = provider.backend("container").body(_spec(command=["nginx", "-g", "daemon off;"], memory=1000), "westeurope",
                                              "lxcri-web", {"env": "test"}, "2026-01-02T03:04:05Z")
    props = body["properties"]
    assert props["osType"] == "Linux" and props["restartPolicy"] == "Always" and body["location"] == "westeurope"
    (container,) = props["containers"]
    assert container["name"] == "web"
    cprops = container["properties"]
    assert cprops["image"] == "nginx:1.27" and cprops["command"] == ["nginx", "-g", "daemon off;"]
    assert cprops["resources"] == {"requests": {"cpu": 0.25, "memoryInGB": 1.0}}
    assert cprops["ports"] == [{"port": 80, "protocol": "TCP"}]
    assert cprops["environmentVariables"] == [{"name": "GREETING", "value": "hello"},
                                              {"name": "API_KEY", "secureValue": SECRET}]
    assert props["ipAddress"] == {"type": "Public", "ports": [{"port": 80, "protocol": "TCP"}],
                                  "dnsNameLabel": aci.dns_label("web", CONNECTION["subscription_id"], "lxcri-web")}
    assert body["tags"] == {"env": "test", "lxcri-deployment": "web", "lxcri-kind": "container", "lxcri-replicas": "1",
                            "lxcri-memory": "1000", "lxcri-created": "2026-01-02T03:04:05Z",
                            "lxcri-secret": S.secret_fingerprint({"API_KEY": SECRET})}
    assert SECRET not in json.dumps(body["tags"])
    without = provider.backend("container").body(_spec(secret_env={}), "westeurope", "g", {}, "t")
    assert "lxcri-secret" not in without["tags"] and "command" not in without["properties"]["containers"][0]["properties"]


def _as_returned(body, state="Running", ip="20.1.2.3"):
    """The group as ARM returns it: secure values by name only, ip and fqdn, instance view."""
    doc = json.loads(json.dumps(body))
    doc.update(id="/subscriptions/s/resourceGroups/lxcri-web/providers/Microsoft.ContainerInstance/containerGroups/web",
               name="web", type=aci.CONTAINER_GROUP)
    for var in doc["properties"]["containers"][0]["properties"]["environmentVariables"]:
        var.pop("secureValue", None)
    address = doc["properties"]["ipAddress"]
    address["fqdn"] = f"{address['dnsNameLabel']}.westeurope.azurecontainer.io"
    if ip:
        address["ip"] = ip
    doc["properties"].update(provisioningState="Succeeded", instanceView={"state": state})
    return doc


def test_record_and_config_read_back_what_the_spec_asked(provider):
    spec = _spec(memory=1000, command=["a", "b"])
    doc = _as_returned(provider.backend("container").body(spec, "westeurope", "lxcri-web", {"env": "test"}, "2026-01-02T03:04:05Z"))
    rec = provider.backend("container").record(doc)
    assert rec["kind"] == "container" and rec["name"] == rec["deployment"] == "web" and rec["state"] == "running"
    assert rec["image"] == "nginx:1.27" and rec["tags"] == {"env": "test"} and rec["public_ip"] == "20.1.2.3"
    assert rec["url"] == f"http://{doc['properties']['ipAddress']['fqdn']}" and rec["region"] == "westeurope"
    assert rec["native_size"] == "0.25 vCPU / 1000 MiB" and rec["created_at"] == "2026-01-02T03:04:05Z"
    assert rec["size"] is None and rec["zone"] is None and rec["hourly_cost"] is None
    assert provider.service_config(rec) == S.service_config(dict(spec, container=dict(spec["container"])))
    stopped = provider.backend("container").record(_as_returned(provider.backend("container").body(spec, "westeurope", "g", {}, "t"), "Stopped", None))
    assert stopped["state"] == "stopped" and stopped["hourly_cost"] == 0.0 and stopped["public_ip"] is None
    assert SECRET not in json.dumps([rec, stopped, provider.service_config(rec)])


def test_config_without_the_memory_tag_reads_memory_in_gb(provider):
    doc = _as_returned(provider.backend("container").body(_spec(), "westeurope", "g", {}, "t"))
    doc["tags"].pop("lxcri-memory")
    doc["properties"]["containers"][0]["properties"]["resources"]["requests"]["memoryInGB"] = 1.5
    rec = provider.backend("container").record(doc)
    assert provider.service_config(rec)["memory"] == 1536 and rec["native_size"] == "0.25 vCPU / 1536 MiB"


def test_secret_env_is_the_fingerprint_only_while_secure_variables_exist(provider):
    doc = _as_returned(provider.backend("container").body(_spec(), "westeurope", "g", {}, "t"))
    rec = provider.backend("container").record(doc)
    assert provider.service_config(rec)["secret_env"] == S.secret_fingerprint({"API_KEY": SECRET})
    doc["properties"]["containers"][0]["properties"]["environmentVariables"] = [{"name": "GREETING", "value": "hello"}]
    assert provider.service_config(provider.backend("container").record(doc))["secret_env"] == ""


def test_records_are_split_by_kind(provider):
    vm = {"kind": "vm", "name": "web-1"}
    group = {"kind": "container", "name": "web"}
    assert [(backend.kind, recs) for backend, recs in provider.by_kind([vm, group])] == [("vm", [vm]), ("container", [group])]
