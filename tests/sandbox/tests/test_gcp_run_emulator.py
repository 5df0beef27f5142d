"""The Cloud Run v2 part of the GCP emulator, driven by the official google-cloud-run ServicesClient and
RevisionsClient (REST transport, enums as integers on the wire, as they send them), plus a check of
every body it wrote and read against the Cloud Run discovery document (run.v2.json)."""
import json
import os
import re
import threading
import types
import urllib.error
import urllib.request

import pytest
from google.api import launch_stage_pb2
from google.api_core import exceptions
from google.api_core.future import polling
from google.auth import jwt
from google.cloud import run_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.longrunning import operations_pb2
from google.oauth2 import service_account

from tests.sandbox.emulators import gcp, gcp_run
from tests.sandbox.tests.test_gcp_emulator import write_service_account

PROJECT = "lxcri-test"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
FAST = polling.DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.1, multiplier=1.5).with_timeout(10)
SPEC = os.environ.get("LXCRI_RUN_DISCOVERY", "/work/shared/specs/gcp/run.v2.json")
Scaling = run_v2.ServiceScaling


def start(tmp_path, provision_seconds=0.2):
    key_file = write_service_account(tmp_path / "sa.json")
    server = gcp.make_server("127.0.0.1", 0, provision_seconds=provision_seconds, credentials_file=key_file,
                             record=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    credentials = service_account.Credentials.from_service_account_file(key_file)
    kw = {"transport": "rest", "client_options": {"api_endpoint": url}, "credentials": credentials}
    return types.SimpleNamespace(server=server, url=url, credentials=credentials,
                                 services=run_v2.ServicesClient(**kw), revisions=run_v2.RevisionsClient(**kw))


@pytest.fixture
def run(tmp_path):
    api = start(tmp_path)
    yield api
    api.server.shutdown()
    api.server.server_close()


def service(image="nginx:1.27", cpu="1", memory="512Mi", labels=None, **template):
    """A Service as the collection builds one (fractional CPU: concurrency 1, gen1, CPU during requests)."""
    fractional = cpu.endswith("m")
    if fractional:
        template.setdefault("max_instance_request_concurrency", 1)
        template.setdefault("execution_environment", run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1)
    resources = run_v2.ResourceRequirements(limits={"cpu": cpu, "memory": memory}, cpu_idle=True)
    container = run_v2.Container(image=image, ports=[run_v2.ContainerPort(name="http1", container_port=80)],
                                 env=[run_v2.EnvVar(name="GREETING", value="hello")], resources=resources)
    return run_v2.Service(labels=labels or {"lxcri-deployment": "web"},
                          ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
                          template=run_v2.RevisionTemplate(containers=[container], **template),
                          scaling=Scaling(scaling_mode=Scaling.ScalingMode.MANUAL, manual_instance_count=1))


def create(api, name="web", **kw):
    return api.services.create_service(parent=PARENT, service=service(**kw), service_id=name).result(polling=FAST)


def state(api):
    with urllib.request.urlopen(api.url + "/_sandbox/state") as response:
        return json.loads(response.read())


def raw(api, method, path, body=None):
    """A request as plain JSON with a self-signed JWT of the client's key, answered as (status, JSON)."""
    token = jwt.Credentials.from_signing_credentials(api.credentials, audience="https://run.googleapis.com/")
    token.refresh(None)  # signs locally
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api.url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token.token.decode() if isinstance(token.token, bytes) else token.token}",
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


# --------------------------------------------------------------------------------------- behaviour
def test_create_reconciles_then_serves_at_a_run_app_uri(run):
    op = run.services.create_service(parent=PARENT, service=service(cpu="250m"), service_id="web")
    assert not op.done() and re.fullmatch(rf"{PARENT}/operations/[0-9a-f-]{{36}}", op.operation.name)
    assert op.metadata.name == f"{PARENT}/services/web"  # the Service as metadata
    seen = run.services.get_service(name=f"{PARENT}/services/web")
    assert seen.reconciling and seen.terminal_condition.state == run_v2.Condition.State.CONDITION_RECONCILING
    assert seen.generation == 1 and seen.observed_generation == 0 and not seen.uri

    svc = op.result(polling=FAST)
    assert re.fullmatch(r"https://web-[a-z0-9]{10}-uc\.a\.run\.app", svc.uri)
    assert re.fullmatch(rf"{PARENT}/services/web/revisions/web-00001-[a-z0-9]{{3}}", svc.latest_ready_revision)
    assert svc.latest_created_revision == svc.latest_ready_revision
    assert not svc.reconciling and svc.observed_generation == svc.generation == 1
    assert svc.terminal_condition.type_ == "Ready"
    assert svc.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    assert [(t.type_, t.percent) for t in svc.traffic_statuses] == [
        (run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, 100)]
    template = svc.template
    assert template.containers[0].resources.limits == {"cpu": "250m", "memory": "512Mi"}
    assert template.max_instance_request_concurrency == 1 and template.timeout.total_seconds() == 300
    assert template.execution_environment == run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1
    assert svc.scaling.scaling_mode == Scaling.ScalingMode.MANUAL and svc.scaling.manual_instance_count == 1
    assert svc.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL and svc.uid and svc.etag
    assert svc.creator.endswith(".iam.gserviceaccount.com") and svc.create_time.tzinfo is not None
    assert state(run)["services"] == ["us-central1/web"]


def test_a_template_change_rolls_out_a_new_revision_and_other_changes_do_not(run):
    svc = create(run)
    svc.template.containers[0].image = "nginx:1.28"
    updated = run.services.update_service(service=svc).result(polling=FAST)
    assert updated.generation == updated.observed_generation == 2
    assert re.fullmatch(r".*/revisions/web-00002-[a-z0-9]{3}", updated.latest_ready_revision)
    assert updated.template.containers[0].image == "nginx:1.28"

    updated.labels = {**updated.labels, "env": "prod"}
    updated.scaling = Scaling(scaling_mode=Scaling.ScalingMode.MANUAL, manual_instance_count=0)
    relabelled = run.services.update_service(service=updated).result(polling=FAST)
    assert relabelled.generation == 3 and relabelled.latest_created_revision == updated.latest_created_revision
    assert relabelled.labels["env"] == "prod" and relabelled.scaling.manual_instance_count == 0

    same = run.services.update_service(service=relabelled).result(polling=FAST)
    assert same.generation == 3  # nothing changed: no new generation

    revisions = list(run.revisions.list_revisions(parent=f"{PARENT}/services/web"))
    assert [r.name.rsplit("/", 1)[-1][:10] for r in revisions] == ["web-00002-", "web-00001-"]  # newest first
    newest = run.revisions.get_revision(name=revisions[0].name)
    assert newest.containers[0].image == "nginx:1.28" and newest.service == f"{PARENT}/services/web"
    assert newest.conditions[0].state == run_v2.Condition.State.CONDITION_SUCCEEDED


def test_manual_scaling_unsets_min_and_max_and_automatic_refuses_a_manual_count(run):
    svc = create(run)
    svc.scaling = Scaling(scaling_mode=Scaling.ScalingMode.AUTOMATIC, min_instance_count=2, max_instance_count=4)
    auto = run.services.update_service(service=svc).result(polling=FAST)
    assert (auto.scaling.min_instance_count, auto.scaling.max_instance_count) == (2, 4)
    auto.scaling = Scaling(scaling_mode=Scaling.ScalingMode.MANUAL, manual_instance_count=3, min_instance_count=1)
    manual = run.services.update_service(service=auto).result(polling=FAST)
    assert manual.scaling.manual_instance_count == 3 and manual.scaling.min_instance_count == 0
    manual.scaling = Scaling(scaling_mode=Scaling.ScalingMode.AUTOMATIC, manual_instance_count=3)
    with pytest.raises(exceptions.BadRequest, match="manualInstanceCount needs scalingMode MANUAL"):
        run.services.update_service(service=manual)


def test_an_etag_guards_updates(run):
    svc = create(run)
    stale = run_v2.Service(svc)
    svc.labels = {"lxcri-deployment": "web", "a": "b"}
    run.services.update_service(service=svc).result(polling=FAST)
    stale.labels = {"lxcri-deployment": "web", "a": "c"}
    with pytest.raises(exceptions.Conflict, match="etag"):  # ABORTED; over REST every 409 is a Conflict
        run.services.update_service(service=stale)


def test_public_access_through_the_iam_policy(run):
    create(run)
    name = f"{PARENT}/services/web"
    policy = run.services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name))
    assert not policy.bindings and policy.etag
    policy.bindings.add(role="roles/run.invoker", members=["allUsers"])
    stored = run.services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))
    assert [(b.role, list(b.members)) for b in stored.bindings] == [("roles/run.invoker", ["allUsers"])]
    assert stored.etag != policy.etag
    assert run.services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(resource=name)) == stored
    with pytest.raises(exceptions.Conflict, match="concurrent policy changes"):
        run.services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))
    bad = policy_pb2.Policy(bindings=[policy_pb2.Binding(role="roles/storage.admin", members=["allUsers"])])
    with pytest.raises(exceptions.BadRequest, match="not supported for this resource"):
        run.services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=bad))
    bad = policy_pb2.Policy(bindings=[policy_pb2.Binding(role="roles/run.invoker", members=["everyone"])])
    with pytest.raises(exceptions.BadRequest, match="Invalid member"):
        run.services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=bad))
    cleared = run.services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(
        resource=name, policy=policy_pb2.Policy(etag=stored.etag)))
    assert not cleared.bindings


def test_list_pages_and_delete(run):
    for name in ("c", "a", "b"):
        run.services.create_service(parent=PARENT, service=service(), service_id=name)
    pager = run.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2))
    assert [svc.name.rsplit("/", 1)[-1] for svc in pager] == ["a", "b", "c"]
    pages = run.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=2)).pages
    assert len(list(pages)) == 2
    assert list(run.services.list_services(parent=f"projects/{PROJECT}/locations/europe-west1")) == []

    gone = run.services.delete_service(name=f"{PARENT}/services/b").result(polling=FAST)
    assert gone.name.endswith("/services/b") and gone.delete_time
    with pytest.raises(exceptions.NotFound, match="Resource 'b' of kind 'SERVICE'"):
        run.services.get_service(name=f"{PARENT}/services/b")
    with pytest.raises(exceptions.NotFound):
        run.services.delete_service(name=f"{PARENT}/services/b")
    assert sorted(state(run)["services"]) == ["us-central1/a", "us-central1/c"]


def test_operations_get_wait_list_delete(run):
    op = run.services.create_service(parent=PARENT, service=service(), service_id="web")
    name = op.operation.name
    fetched = run.services.get_operation(request=operations_pb2.GetOperationRequest(name=name))
    assert fetched.name == name and not fetched.done
    waited = run.services.wait_operation(
        request=operations_pb2.WaitOperationRequest(name=name, timeout={"seconds": 5}))
    assert waited.done and waited.response.type_url == "type.googleapis.com/google.cloud.run.v2.Service"
    listed = run.services.list_operations(request=operations_pb2.ListOperationsRequest(name=PARENT))
    assert name in [o.name for o in listed.operations]
    run.services.delete_operation(request=operations_pb2.DeleteOperationRequest(name=name))
    with pytest.raises(exceptions.NotFound):
        run.services.get_operation(request=operations_pb2.GetOperationRequest(name=name))


def test_cloud_runs_refusals(run):
    create(run)
    with pytest.raises(exceptions.Conflict, match="already exists"):
        run.services.create_service(parent=PARENT, service=service(), service_id="web")
    with pytest.raises(exceptions.BadRequest, match="concurrency > 1"):
        run.services.create_service(parent=PARENT, service=service(cpu="500m", max_instance_request_concurrency=80),
                                    service_id="frac")
    with pytest.raises(exceptions.BadRequest, match="Memory above 512Mi"):
        run.services.create_service(parent=PARENT, service=service(cpu="250m", memory="1Gi"), service_id="small")
    with pytest.raises(exceptions.BadRequest, match="Values above 1 must be 2, 4, 6 or 8"):
        run.services.create_service(parent=PARENT, service=service(cpu="3"), service_id="three")
    bad_env = service()
    bad_env.template.containers[0].env = [run_v2.EnvVar(name="PORT", value="80")]
    with pytest.raises(exceptions.BadRequest, match="reserved env names were provided: PORT"):
        run.services.create_service(parent=PARENT, service=bad_env, service_id="env")
    with pytest.raises(exceptions.BadRequest, match="lowercase alphanumeric"):
        run.services.create_service(parent=PARENT, service=service(), service_id="Web_1")
    with pytest.raises(exceptions.BadRequest, match="Label key 'Env'"):
        run.services.create_service(parent=PARENT, service=service(labels={"Env": "x"}), service_id="labels")
    with pytest.raises(exceptions.NotFound, match="not a Cloud Run region"):
        run.services.get_service(name=f"projects/{PROJECT}/locations/mars-north1/services/web")
    assert state(run)["services"] == ["us-central1/web"]  # nothing refused was made


def test_a_missing_image_fails_the_revision_and_the_operation(run):
    op = run.services.create_service(parent=PARENT, service=service(image="registry.invalid/app:1"), service_id="bad")
    with pytest.raises(exceptions.GoogleAPICallError, match="Image 'registry.invalid/app:1' not found"):
        op.result(polling=FAST)
    svc = run.services.get_service(name=f"{PARENT}/services/bad")
    assert svc.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED
    assert svc.terminal_condition.reason == run_v2.Condition.CommonReason.REVISION_FAILED
    assert not svc.reconciling and not svc.uri and not svc.latest_ready_revision


def test_enums_on_the_wire_as_numbers_or_names(run):
    body = {"template": {"containers": [{"image": "nginx"}]}, "ingress": "INGRESS_TRAFFIC_INTERNAL_ONLY",
            "scaling": {"scalingMode": 2, "manualInstanceCount": 1}}
    status, op = raw(run, "POST", f"/v2/{PARENT}/services?serviceId=mixed", body)
    assert status == 200 and op["metadata"]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert op["metadata"]["scaling"]["scalingMode"] == "MANUAL"
    status, as_ints = raw(run, "GET", f"/v2/{PARENT}/services/mixed?%24alt=json%3Benum-encoding%3Dint")
    assert as_ints["ingress"] == 2 and as_ints["scaling"]["scalingMode"] == 2 and as_ints["launchStage"] == 4
    assert as_ints["terminalCondition"]["state"] in (2, 4)
    status, error = raw(run, "POST", f"/v2/{PARENT}/services?serviceId=wrong", dict(body, ingress=9))
    assert status == 400 and error["error"]["status"] == "INVALID_ARGUMENT"
    assert "IngressTraffic" in error["error"]["message"]
    assert set(error["error"]) == {"code", "message", "status"}  # google.rpc.Status, no legacy "errors"
    status, error = raw(run, "POST", f"/v2/{PARENT}/services?serviceId=nocpu", {
        "template": {"containers": [{"image": "nginx", "resources": {"limits": {"cpu": "lots"}}}]}})
    assert status == 400 and error["error"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


def test_the_emulators_enum_numbers_are_the_clients():
    enums = {"IngressTraffic": run_v2.IngressTraffic, "ExecutionEnvironment": run_v2.ExecutionEnvironment,
             "EncryptionKeyRevocationAction": run_v2.EncryptionKeyRevocationAction,
             "VpcEgress": run_v2.VpcAccess.VpcEgress, "ScalingMode": Scaling.ScalingMode,
             "TrafficTargetAllocationType": run_v2.TrafficTargetAllocationType,
             "ConditionState": run_v2.Condition.State, "Severity": run_v2.Condition.Severity,
             "CommonReason": run_v2.Condition.CommonReason, "RevisionReason": run_v2.Condition.RevisionReason,
             "ExecutionReason": run_v2.Condition.ExecutionReason}
    assert set(enums) | {"LaunchStage"} == set(gcp_run.ENUMS)
    for name, enum in enums.items():
        assert gcp_run.ENUMS[name] == {member.name: member.value for member in enum}, name
    assert gcp_run.ENUMS["LaunchStage"] == dict(launch_stage_pb2.LaunchStage.items())


# ------------------------------------------------------------------------- against run.v2.json
EXPECTED_OPERATIONS = {
    "run.projects.locations.services.create", "run.projects.locations.services.get",
    "run.projects.locations.services.list", "run.projects.locations.services.patch",
    "run.projects.locations.services.delete", "run.projects.locations.services.getIamPolicy",
    "run.projects.locations.services.setIamPolicy", "run.projects.locations.services.testIamPermissions",
    "run.projects.locations.services.revisions.list", "run.projects.locations.services.revisions.get",
    "run.projects.locations.operations.get", "run.projects.locations.operations.wait",
    "run.projects.locations.operations.list", "run.projects.locations.operations.delete",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A whole lifecycle through the official clients, recorded by the emulator."""
    api = start(tmp_path_factory.mktemp("run-conformance"), provision_seconds=0.1)
    try:
        op = api.services.create_service(parent=PARENT, service=service(cpu="250m"), service_id="web")
        api.services.get_service(name=f"{PARENT}/services/web")  # reconciling
        svc = op.result(polling=FAST)
        list(api.services.list_services(request=run_v2.ListServicesRequest(parent=PARENT, page_size=1)))
        svc.template.containers[0].image = "nginx:1.28"
        svc = api.services.update_service(service=svc).result(polling=FAST)
        svc.scaling = Scaling(scaling_mode=Scaling.ScalingMode.MANUAL, manual_instance_count=0)
        api.services.update_service(service=svc).result(polling=FAST)
        name = f"{PARENT}/services/web"
        policy = api.services.get_iam_policy(request=iam_policy_pb2.GetIamPolicyRequest(
            resource=name, options={"requested_policy_version": 3}))
        policy.bindings.add(role="roles/run.invoker", members=["allUsers"])
        api.services.set_iam_policy(request=iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))
        api.services.test_iam_permissions(request=iam_policy_pb2.TestIamPermissionsRequest(
            resource=name, permissions=["run.routes.invoke", "run.jobs.run"]))
        revisions = list(api.revisions.list_revisions(parent=name))
        api.revisions.get_revision(name=revisions[-1].name)
        pending = api.services.create_service(parent=PARENT, service=service(image="registry.invalid/x:1"),
                                              service_id="broken")
        api.services.wait_operation(request=operations_pb2.WaitOperationRequest(name=pending.operation.name))
        api.services.list_operations(request=operations_pb2.ListOperationsRequest(name=PARENT))
        api.services.delete_operation(request=operations_pb2.DeleteOperationRequest(name=pending.operation.name))
        for doomed in ("web", "broken"):
            api.services.delete_service(name=f"{PARENT}/services/{doomed}").result(polling=FAST)
        for call in (lambda: api.services.get_service(name=name),
                     lambda: api.services.create_service(parent=PARENT, service=service(cpu="3"), service_id="x")):
            with pytest.raises(exceptions.GoogleAPICallError):
                call()
        assert state(api)["services"] == []
        yield api.server.records
    finally:
        api.server.shutdown()
        api.server.server_close()


def _descriptor(message):
    return message.pb().DESCRIPTOR if hasattr(message, "pb") else message.DESCRIPTOR


ANY_TYPES = {"type.googleapis.com/google.cloud.run.v2.Service": _descriptor(run_v2.Service)}
RESPONSES = {  # discovery method id -> the client's message for the response body
    "create": operations_pb2.Operation, "patch": operations_pb2.Operation, "delete": operations_pb2.Operation,
    "get": run_v2.Service, "list": run_v2.ListServicesResponse, "getIamPolicy": policy_pb2.Policy,
    "setIamPolicy": policy_pb2.Policy, "testIamPermissions": iam_policy_pb2.TestIamPermissionsResponse,
}


def enum_names(value, descriptor):
    """The JSON value with every enum number written as its name, read with the client's own proto
    descriptors (not the emulator's table), so the discovery document's string enums can check it."""
    if isinstance(value, list):
        return [enum_names(item, descriptor) for item in value]
    if not isinstance(value, dict) or descriptor is None:
        return value
    if descriptor.full_name == "google.protobuf.Any":
        return enum_names(value, ANY_TYPES.get(value.get("@type")))
    out = {}
    for key, item in value.items():
        field = descriptor.fields_by_camelcase_name.get(key)
        if field is None:
            out[key] = item  # left for the discovery check to name
        elif field.enum_type is not None:
            names = field.enum_type.values_by_number
            convert = lambda v: names[v].name if isinstance(v, int) and v in names else v  # noqa: E731
            out[key] = [convert(v) for v in item] if isinstance(item, list) else convert(item)
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name["value"]
            out[key] = {k: enum_names(v, entry.message_type) for k, v in item.items()} if entry.message_type else item
        elif field.message_type is not None:
            out[key] = enum_names(item, field.message_type)
        else:
            out[key] = item
    return out


def message_for(method_id, request):
    short = method_id.rsplit(".", 1)[-1]
    if ".operations." in method_id:
        return operations_pb2.WaitOperationRequest if request else (
            operations_pb2.ListOperationsResponse if short == "list" else operations_pb2.Operation)
    if ".revisions." in method_id:
        return run_v2.ListRevisionsResponse if short == "list" else run_v2.Revision
    if request:
        return {"setIamPolicy": iam_policy_pb2.SetIamPolicyRequest,
                "testIamPermissions": iam_policy_pb2.TestIamPermissionsRequest}.get(short, run_v2.Service)
    return RESPONSES[short]


@pytest.mark.skipif(not os.path.exists(SPEC), reason=f"Cloud Run discovery document not found at {SPEC} "
                    "(set LXCRI_RUN_DISCOVERY to its path)")
def test_every_exchange_conforms_to_run_v2_discovery(recorded):
    from tests.sandbox.discovery_check import Discovery, check_google_error

    discovery = Discovery.load(SPEC)
    problems, seen, int_enums = [], set(), 0
    for record in recorded:
        path = record["path"]
        if not path.startswith("/v2/"):
            continue
        method = discovery.find_method(record["method"], path.lstrip("/"))  # run.v2 has no servicePath
        assert method is not None, f"{record['method']} {path} is not a Cloud Run v2 method"
        seen.add(method["id"])
        where = f"{record['method']} {path}"
        body, request = record["response"], record["request"]
        int_enums += "enum-encoding=int" in ",".join(record["query"].get("$alt", []))
        if record["status"] >= 300:
            problems += [f"{where} {p}" for p in check_google_error(body)]
        elif "response" in method:
            body = enum_names(body, _descriptor(message_for(method["id"], False)))
            problems += [f"{where} {p}" for p in discovery.validate(body, method["response"]["$ref"])]
            for key in ("metadata", "response"):  # an Operation's typed Any: the Service itself
                if method["response"]["$ref"] == "GoogleLongrunningOperation" and key in body:
                    typed = dict(body[key])
                    assert typed.pop("@type") == "type.googleapis.com/google.cloud.run.v2.Service"
                    problems += [f"{where} {key} {p}" for p in discovery.validate(typed, "GoogleCloudRunV2Service")]
        if request is not None and "request" in method:
            request = enum_names(request, _descriptor(message_for(method["id"], True)))
            problems += [f"{where} request {p}" for p in discovery.validate(request, method["request"]["$ref"],
                                                                             method["id"])]
    assert not problems, "\n".join(problems)
    assert seen == EXPECTED_OPERATIONS, sorted(EXPECTED_OPERATIONS - seen)
    assert int_enums > 10  # the client really asked for integer enums, and got them
