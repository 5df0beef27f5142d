"""Cloud Run Admin API v2 (REST) service of the GCP emulator: services, their revisions, long-running
operations and the services' IAM policies.

What the official client (google-cloud-run, ``transport="rest"``) sees, as Cloud Run does it:

* ``services.create`` / ``patch`` / ``delete`` answer a ``google.longrunning.Operation``
  (``projects/P/locations/L/operations/<uuid>``) with the Service as ``metadata`` and ``done: false``
  (with ``provision_seconds`` 0 it is done in the answer already, like the Compute side); the client
  polls ``GET /v2/projects/*/locations/*/operations/*`` on the same endpoint. When the
  service has reconciled the operation is ``done`` with the Service as typed ``response``
  (``@type: type.googleapis.com/google.cloud.run.v2.Service``), or with ``error`` (google.rpc.Status).
* Enums: a request may spell them as names or as the proto numbers the client sends
  (``$alt=json;enum-encoding=int``); a response spells them as numbers when the request asked for
  ``enum-encoding=int``, else as names (``ENUMS`` holds the proto numbers).
* A service reconciles: ``reconciling: true``, ``terminalCondition`` Ready/CONDITION_RECONCILING and a
  ``generation`` ahead of ``observedGeneration`` until, after ``provision_seconds``, its latest revision
  is ready and serving: ``observedGeneration == generation``, ``terminalCondition`` CONDITION_SUCCEEDED,
  ``latestReadyRevision``, ``trafficStatuses`` and ``uri`` (``https://<service>-<hash>-<region code>.a.run.app``).
* Every change of ``template`` makes a new revision ``<service>-<generation, 5 digits>-<3 chars>``;
  changes elsewhere (labels, annotations, scaling, ingress, traffic) only bump ``generation``.
* Service-level ``scaling`` (``scalingMode`` AUTOMATIC or MANUAL with ``manualInstanceCount``, 0 allowed),
  CPU/memory limits checked as Cloud Run documents them (fractional CPU needs concurrency 1, CPU only
  during requests and the first generation environment), reserved env names, label rules.
* ``:getIamPolicy`` / ``:setIamPolicy`` with etags (a stale etag is ABORTED, as IAM answers it).
* An image whose registry host ends in ``.invalid`` (RFC 2606) does not exist: its revision fails
  (CONTAINER_MISSING), the service's reconciliation ends CONDITION_FAILED and so does the operation
  (``error``), as when Cloud Run does not find an image.
* Errors are google.rpc.Status JSON: ``{"error": {"code", "message", "status", "details"}}``.

``/_sandbox/state`` lists the live services as ``services: ["<location>/<name>", ...]``.
"""
import base64
import copy
import datetime
import hashlib
import heapq
import json
import re
import threading
import time
import uuid

from .gcp_common import ApiError, check_labels, compile_routes, operation_of


def rfc3339(epoch):
    """Cloud Run's timestamps: UTC with a Z and microseconds ("2025-01-10T11:04:05.123456Z")."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

_BASE = r"^/v2/projects/(?P<project>[^/:]+)/locations/(?P<location>[^/:]+)/"
_ROUTES = [  # (method, path after locations/{location}/, discovery method id, handler)
    ("POST", "services", "run.projects.locations.services.create", "services_create"),
    ("GET", "services", "run.projects.locations.services.list", "services_list"),
    ("GET", "services/{service}", "run.projects.locations.services.get", "services_get"),
    ("PATCH", "services/{service}", "run.projects.locations.services.patch", "services_patch"),
    ("DELETE", "services/{service}", "run.projects.locations.services.delete", "services_delete"),
    ("GET", "services/{service}:getIamPolicy", "run.projects.locations.services.getIamPolicy", "iam_get"),
    ("POST", "services/{service}:setIamPolicy", "run.projects.locations.services.setIamPolicy", "iam_set"),
    ("POST", "services/{service}:testIamPermissions", "run.projects.locations.services.testIamPermissions",
     "iam_test"),
    ("GET", "services/{service}/revisions", "run.projects.locations.services.revisions.list", "revisions_list"),
    ("GET", "services/{service}/revisions/{revision}", "run.projects.locations.services.revisions.get",
     "revisions_get"),
    ("GET", "operations", "run.projects.locations.operations.list", "ops_list"),
    ("GET", "operations/{operation}", "run.projects.locations.operations.get", "ops_get"),
    ("DELETE", "operations/{operation}", "run.projects.locations.operations.delete", "ops_delete"),
    ("POST", "operations/{operation}:wait", "run.projects.locations.operations.wait", "ops_wait"),
]
COMPILED = compile_routes(_BASE, _ROUTES)
PREFIX = "/v2/"
SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"

# Where Cloud Run runs, with the region code of its *.a.run.app URLs.
REGION_CODES = {
    "us-central1": "uc", "us-east1": "ue", "us-east4": "uk", "us-west1": "uw", "europe-west1": "ew",
    "europe-west2": "nw", "europe-west3": "ey", "europe-west4": "ez", "europe-north1": "lz", "asia-east1": "de",
    "asia-northeast1": "an", "asia-southeast1": "as", "asia-south1": "el", "australia-southeast1": "ts",
    "northamerica-northeast1": "nn", "southamerica-east1": "rj",
}
SERVICE_ID = re.compile(r"[a-z](?:[-a-z0-9]{0,47}[a-z0-9])?\Z")
RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
RESERVED_PREFIXES = ("run.googleapis.com", "cloud.googleapis.com", "serving.knative.dev", "autoscaling.knative.dev")
INVOKER_ROLES = {"roles/run.invoker", "roles/run.servicesInvoker"}
KNOWN_ROLES = INVOKER_ROLES | {"roles/run.admin", "roles/run.developer", "roles/run.viewer", "roles/viewer",
                               "roles/editor", "roles/owner"}
MEMBER = re.compile(r"(allUsers|allAuthenticatedUsers|(user|serviceAccount|group|domain):[^\s:]+|"
                    r"principal(Set)?://\S+)\Z")
PERMISSIONS = {"run.routes.invoke", "run.services.get", "run.services.update", "run.services.delete",
               "run.services.getIamPolicy", "run.services.setIamPolicy"}
PAGE_MAX = 500  # pageSize above this is treated as this

# Proto enum numbers (google.cloud.run.v2 and google.api): names -> numbers. The test checks them
# against the official client's enums.
ENUMS = {
    "IngressTraffic": {"INGRESS_TRAFFIC_UNSPECIFIED": 0, "INGRESS_TRAFFIC_ALL": 1, "INGRESS_TRAFFIC_INTERNAL_ONLY": 2,
                       "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER": 3, "INGRESS_TRAFFIC_NONE": 4},
    "LaunchStage": {"LAUNCH_STAGE_UNSPECIFIED": 0, "UNIMPLEMENTED": 6, "PRELAUNCH": 7, "EARLY_ACCESS": 1,
                    "ALPHA": 2, "BETA": 3, "GA": 4, "DEPRECATED": 5},
    "ExecutionEnvironment": {"EXECUTION_ENVIRONMENT_UNSPECIFIED": 0, "EXECUTION_ENVIRONMENT_GEN1": 1,
                             "EXECUTION_ENVIRONMENT_GEN2": 2},
    "EncryptionKeyRevocationAction": {"ENCRYPTION_KEY_REVOCATION_ACTION_UNSPECIFIED": 0, "PREVENT_NEW": 1,
                                      "SHUTDOWN": 2},
    "VpcEgress": {"VPC_EGRESS_UNSPECIFIED": 0, "ALL_TRAFFIC": 1, "PRIVATE_RANGES_ONLY": 2},
    "ScalingMode": {"SCALING_MODE_UNSPECIFIED": 0, "AUTOMATIC": 1, "MANUAL": 2},
    "TrafficTargetAllocationType": {"TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED": 0,
                                    "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST": 1,
                                    "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION": 2},
    "ConditionState": {"STATE_UNSPECIFIED": 0, "CONDITION_PENDING": 1, "CONDITION_RECONCILING": 2,
                       "CONDITION_FAILED": 3, "CONDITION_SUCCEEDED": 4},
    "Severity": {"SEVERITY_UNSPECIFIED": 0, "ERROR": 1, "WARNING": 2, "INFO": 3},
    "CommonReason": {"COMMON_REASON_UNDEFINED": 0, "UNKNOWN": 1, "REVISION_FAILED": 3,
                     "PROGRESS_DEADLINE_EXCEEDED": 4, "CONTAINER_MISSING": 6, "CONTAINER_PERMISSION_DENIED": 7,
                     "CONTAINER_IMAGE_UNAUTHORIZED": 8, "CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED": 9,
                     "ENCRYPTION_KEY_PERMISSION_DENIED": 10, "ENCRYPTION_KEY_CHECK_FAILED": 11,
                     "SECRETS_ACCESS_CHECK_FAILED": 12, "WAITING_FOR_OPERATION": 13, "IMMEDIATE_RETRY": 14,
                     "POSTPONED_RETRY": 15, "INTERNAL": 16, "VPC_NETWORK_NOT_FOUND": 17},
    "RevisionReason": {"REVISION_REASON_UNDEFINED": 0, "PENDING": 1, "RESERVE": 2, "RETIRED": 3, "RETIRING": 4,
                       "RECREATING": 5, "HEALTH_CHECK_CONTAINER_ERROR": 6, "CUSTOMIZED_PATH_RESPONSE_PENDING": 7,
                       "MIN_INSTANCES_NOT_PROVISIONED": 8, "ACTIVE_REVISION_LIMIT_REACHED": 9, "NO_DEPLOYMENT": 10,
                       "HEALTH_CHECK_SKIPPED": 11, "MIN_INSTANCES_WARMING": 12},
    "ExecutionReason": {"EXECUTION_REASON_UNDEFINED": 0, "JOB_STATUS_SERVICE_POLLING_ERROR": 1,
                        "NON_ZERO_EXIT_CODE": 2, "CANCELLED": 3, "CANCELLING": 4, "DELETED": 5,
                        "DELAYED_START_PENDING": 6},
}
# Which JSON fields hold an enum (a name in ENUMS) or a message (a name in MESSAGES), per message.
MESSAGES = {
    "Service": {"ingress": "IngressTraffic", "launchStage": "LaunchStage", "template": "RevisionTemplate",
                "traffic": "TrafficTarget", "trafficStatuses": "TrafficTarget", "scaling": "ServiceScaling",
                "terminalCondition": "Condition", "conditions": "Condition"},
    "RevisionTemplate": {"executionEnvironment": "ExecutionEnvironment", "vpcAccess": "VpcAccess",
                         "encryptionKeyRevocationAction": "EncryptionKeyRevocationAction"},
    "Revision": {"launchStage": "LaunchStage", "executionEnvironment": "ExecutionEnvironment",
                 "encryptionKeyRevocationAction": "EncryptionKeyRevocationAction", "vpcAccess": "VpcAccess",
                 "conditions": "Condition"},
    "VpcAccess": {"egress": "VpcEgress"},
    "TrafficTarget": {"type": "TrafficTargetAllocationType"},
    "ServiceScaling": {"scalingMode": "ScalingMode"},
    "Condition": {"state": "ConditionState", "severity": "Severity", "reason": "CommonReason",
                  "revisionReason": "RevisionReason", "executionReason": "ExecutionReason"},
    "Operation": {"metadata": "Service", "response": "Service"},
    "ListServices": {"services": "Service"},
    "ListRevisions": {"revisions": "Revision"},
    "ListOperations": {"operations": "Operation"},
}
_NUMBER_NAMES = {enum: {number: name for name, number in names.items()} for enum, names in ENUMS.items()}


def convert_enums(value, message, to_int):
    """A copy of the JSON value of `message` with its enums as numbers (to_int) or as names."""
    if isinstance(value, list):
        return [convert_enums(item, message, to_int) for item in value]
    if not isinstance(value, dict) or message not in MESSAGES:
        return value
    fields = MESSAGES[message]
    out = {}
    for key, item in value.items():
        kind = fields.get(key)
        if kind in ENUMS:
            out[key] = _enum(item, kind, to_int, key)
        elif kind in MESSAGES:
            out[key] = convert_enums(item, kind, to_int)
        else:
            out[key] = item
    return out


def _enum(item, kind, to_int, field):
    if to_int:
        return ENUMS[kind].get(item, item) if isinstance(item, str) else item
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise RunError(400, f"Invalid value at '{field}' ({kind}): {json.dumps(item)}", "INVALID_ARGUMENT")
    if isinstance(item, int):
        if item not in _NUMBER_NAMES[kind]:
            raise RunError(400, f"Invalid value at '{field}' ({kind}), {item}", "INVALID_ARGUMENT")
        return _NUMBER_NAMES[kind][item]
    if item not in ENUMS[kind]:
        raise RunError(400, f"Invalid value at '{field}' ({kind}), \"{item}\"", "INVALID_ARGUMENT")
    return item


def operation(method, path):
    return operation_of(COMPILED, method, path)


class RunError(ApiError):
    """A Cloud Run error: google.rpc.Status JSON (no legacy ``errors`` list)."""

    def __init__(self, code, message, status, details=None, headers=None):
        super().__init__(code, message, status.lower(), status=status, headers=headers)
        self.details = details or []

    def body(self):
        error = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def bad_request(message, field=None):
    details = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}]}] if field else None
    return RunError(400, message, "INVALID_ARGUMENT", details)


# ------------------------------------------------------------------------------------ quantities
_QUANTITY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>m|k|M|G|T|Ki|Mi|Gi|Ti)?\Z")
_UNITS = {None: 1, "m": 0.001, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "Ki": 2 ** 10,
          "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}


def quantity(text, field):
    """A Kubernetes quantity ('250m', '1', '512Mi', '1Gi') as a number."""
    match = _QUANTITY.match(text if isinstance(text, str) else "")
    if not match:
        raise bad_request(f"Invalid value specified for {field}: '{text}' is not a valid quantity.", field)
    return float(match.group("number")) * _UNITS[match.group("unit")]


def check_resources(template, field):
    """Cloud Run's CPU/memory rules (cloud.google.com/run/docs/configuring/services/cpu and memory-limits)."""
    concurrency = template.get("maxInstanceRequestConcurrency", 80)
    for index, container in enumerate(template["containers"]):
        where = f"{field}.containers[{index}].resources"
        resources = container.setdefault("resources", {})
        limits = resources.setdefault("limits", {})
        unknown = set(limits) - {"cpu", "memory", "nvidia.com/gpu"}
        if unknown:
            raise bad_request(f"Only memory, cpu and nvidia.com/gpu limits are supported, got {sorted(unknown)}.",
                              f"{where}.limits")
        limits.setdefault("cpu", "1000m")
        limits.setdefault("memory", "512Mi")
        cpu = quantity(limits["cpu"], f"{where}.limits.cpu")
        memory = quantity(limits["memory"], f"{where}.limits.memory") / 2 ** 20
        resources.setdefault("cpuIdle", True)
        if cpu < 0.08 or cpu > 8:
            raise bad_request(f"Invalid value specified for cpu: {limits['cpu']}. The CPU must be between 0.08 and 8.",
                              f"{where}.limits.cpu")
        if cpu > 1 and cpu not in (2, 4, 6, 8):
            raise bad_request(f"Invalid value specified for cpu: {limits['cpu']}. Values above 1 must be 2, 4, 6 or 8.",
                              f"{where}.limits.cpu")
        if memory < 128 or memory > 32768:
            raise bad_request(f"Invalid value specified for memory: {limits['memory']}. Memory must be between "
                              "128Mi and 32Gi.", f"{where}.limits.memory")
        if cpu < 1:
            if concurrency != 1:
                raise bad_request(f"Invalid value specified for cpu: {limits['cpu']}. Total CPU < 1 is not supported "
                                  "with concurrency > 1.", f"{field}.maxInstanceRequestConcurrency")
            if not resources["cpuIdle"]:
                raise bad_request(f"Invalid value specified for cpu: {limits['cpu']}. Total CPU < 1 needs CPU to be "
                                  "allocated only during request processing (cpuIdle).", f"{where}.cpuIdle")
            if template.get("executionEnvironment") == "EXECUTION_ENVIRONMENT_GEN2":
                raise bad_request(f"Invalid value specified for cpu: {limits['cpu']}. Total CPU < 1 is not supported "
                                  "by the second generation execution environment.", f"{field}.executionEnvironment")
            ceiling = 512 if cpu < 0.5 else 1024
            if memory > ceiling:
                raise bad_request(f"Invalid value specified for memory: {limits['memory']}. Memory above "
                                  f"{ceiling}Mi needs at least {0.5 if ceiling == 512 else 1} CPU.",
                                  f"{where}.limits.memory")
        else:
            ceiling, floor = {1: (4096, 128), 2: (8192, 128), 4: (16384, 2048), 6: (24576, 4096),
                              8: (32768, 4096)}[int(cpu)]
            if not floor <= memory <= ceiling:
                raise bad_request(f"Invalid value specified for memory: {limits['memory']}. With {int(cpu)} CPU the "
                                  f"memory must be between {floor}Mi and {ceiling}Mi.", f"{where}.limits.memory")


def _fingerprint(*parts):
    return base64.b64encode(hashlib.sha256("/".join(parts).encode()).digest()[:8]).decode()


def _project_hash(project):
    """The 10 characters of *.a.run.app host names that are the same for every service of a project."""
    digest = hashlib.sha256(f"run-hash/{project}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % 36] for b in digest[:10])


def _project_number(project):
    return str(100000000000 + int(hashlib.sha256(f"project/{project}".encode()).hexdigest(), 16) % 900000000000)


# ------------------------------------------------------------------------------------ the service
class RunService:
    routes = COMPILED
    prefix = PREFIX

    def __init__(self, provision_seconds=0.0, wait_seconds=2.0, link_base=None, clock=time.time):
        self.provision_seconds = float(provision_seconds)
        self.wait_seconds = float(wait_seconds)
        self.clock = clock
        self.lock = threading.RLock()
        self.reset()

    # ------------------------------------------------------------------------------ sandbox hooks
    def reset(self):
        with self.lock:
            self.services = {}     # (project, location, name) -> Service dict (private keys start with "_")
            self.revisions = {}    # (project, location, service) -> {revision name: Revision dict}
            self.policies = {}     # (project, location, name) -> Policy dict
            self.operations = {}   # full operation name -> Operation dict
            self.events = []
            self.seq = 0

    def state(self):
        with self.lock:
            self.tick()
            return {"services": sorted(f"{loc}/{name}" for (_p, loc, name) in self.services)}

    def handle(self, ctx, handler, groups):
        ints = "enum-encoding=int" in ",".join(ctx.query.get("$alt", []))
        with self.lock:
            self.tick()
            location = groups.pop("location")
            if location not in REGION_CODES:
                raise RunError(404, f"Location '{location}' is not a Cloud Run region (known: "
                               f"{', '.join(sorted(REGION_CODES))}).", "NOT_FOUND")
            status, body, message = getattr(self, handler)(ctx, groups.pop("project"), location, **groups)
            self.tick()
            if not callable(body):
                return status, self.out(body, message, ints)
        return status, self.out(body(), message, ints)  # a wait: it blocks outside the lock

    @staticmethod
    def out(body, message, ints):
        body = _public(body)
        return convert_enums(body, message, to_int=True) if ints and message else body

    # -------------------------------------------------------------------------------------- time
    def at(self, delay, fn, now=None):
        self.seq += 1
        heapq.heappush(self.events, ((self.clock() if now is None else now) + delay, self.seq, fn))

    def tick(self):
        now = self.clock()
        while self.events and self.events[0][0] <= now:
            when, _seq, fn = heapq.heappop(self.events)
            fn(when)

    # -------------------------------------------------------------------------------- operations
    def start_op(self, project, location, service, delay, finish):
        """An Operation not yet done, with the Service as metadata; finish(when) -> (response or None,
        error Status or None) runs after `delay` and completes it."""
        name = f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}"
        op = {"name": name, "metadata": dict(_public(service), **{"@type": SERVICE_TYPE}), "done": False,
              "_done_at": self.clock() + delay}
        self.operations[name] = op

        def done(when):
            response, error = finish(when)
            op["done"] = True
            if error:
                op["error"] = error
            else:
                op["response"] = dict(_public(response), **{"@type": SERVICE_TYPE})
        self.at(delay, done)
        return op

    def _op(self, project, location, operation):
        name = f"projects/{project}/locations/{location}/operations/{operation}"
        if name not in self.operations:
            raise RunError(404, f"Operation '{name}' not found.", "NOT_FOUND")
        return self.operations[name]

    def ops_get(self, ctx, project, location, operation):
        return 200, copy.deepcopy(self._op(project, location, operation)), "Operation"

    def ops_delete(self, ctx, project, location, operation):
        del self.operations[self._op(project, location, operation)["name"]]
        return 200, {}, None

    def ops_list(self, ctx, project, location):
        prefix = f"projects/{project}/locations/{location}/operations/"
        items = sorted((op for name, op in self.operations.items() if name.startswith(prefix)),
                       key=lambda op: op["name"])
        chunk, token = self.page(ctx, items, lambda op: op["name"])
        body = {"operations": copy.deepcopy(chunk)} if chunk else {}
        if token:
            body["nextPageToken"] = token
        return 200, body, "ListOperations"

    def ops_wait(self, ctx, project, location, operation):
        op = self._op(project, location, operation)
        timeout = (ctx.body or {}).get("timeout") if isinstance(ctx.body, dict) else None
        limit = self.wait_seconds
        if timeout:
            match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)s", str(timeout))
            if not match:
                raise bad_request(f"Invalid value at 'timeout' (google.protobuf.Duration), \"{timeout}\"", "timeout")
            limit = min(limit, float(match.group(1)))
        deadline = self.clock() + limit

        def finish():
            time.sleep(max(0.0, min(op["_done_at"], deadline) - self.clock()))
            while True:
                with self.lock:
                    self.tick()
                    if op["done"] or self.clock() >= deadline:
                        return copy.deepcopy(op)
                time.sleep(0.005)
        return 200, finish, "Operation"

    # ------------------------------------------------------------------------------------- pages
    @staticmethod
    def page(ctx, items, key):
        raw = (ctx.query.get("pageSize") or ["0"])[0]
        try:
            size = int(raw)
        except ValueError:
            raise bad_request(f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\"", "page_size") from None
        if size < 0:
            raise bad_request("page_size must not be negative.", "page_size")
        size = min(size or PAGE_MAX, PAGE_MAX)
        token = (ctx.query.get("pageToken") or [""])[0]
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()).decode())["after"]
            except Exception:
                raise bad_request("The page token is not valid.", "page_token") from None
            items = [item for item in items if key(item) > after]
        chunk = items[:size]
        if len(items) > size:
            return chunk, base64.urlsafe_b64encode(json.dumps({"after": key(chunk[-1])}).encode()).decode()
        return chunk, None

    # ---------------------------------------------------------------------------------- services
    def _service(self, project, location, name):
        found = self.services.get((project, location, name))
        if found is None or found.get("_deleted"):
            raise RunError(404, f"Resource '{name}' of kind 'SERVICE' in region '{location}' in project "
                           f"'{project}' does not exist.", "NOT_FOUND")
        return found

    def services_get(self, ctx, project, location, service):
        return 200, copy.deepcopy(self._service(project, location, service)), "Service"

    def services_list(self, ctx, project, location):
        items = sorted((svc for (p, loc, _n), svc in self.services.items() if p == project and loc == location
                        and not svc.get("_deleted")), key=lambda svc: svc["name"])
        chunk, token = self.page(ctx, items, lambda svc: svc["name"])
        body = {"services": copy.deepcopy(chunk)} if chunk else {}
        if token:
            body["nextPageToken"] = token
        return 200, body, "ListServices"

    def _body(self, ctx):
        if not isinstance(ctx.body, dict):
            raise bad_request("The request has no Service in its body.", "service")
        return convert_enums(ctx.body, "Service", to_int=False)

    def services_create(self, ctx, project, location):
        service_id = (ctx.query.get("serviceId") or [""])[0]
        if not service_id:
            raise bad_request("service_id is required.", "service_id")
        if not SERVICE_ID.match(service_id):
            raise bad_request(f"Invalid service id '{service_id}': it must use only lowercase alphanumeric "
                              "characters and dashes, cannot begin or end with a dash, and cannot be longer than "
                              "49 characters.", "service_id")
        body = self._body(ctx)
        key = (project, location, service_id)
        if key in self.services:
            raise RunError(409, f"Resource '{service_id}' already exists.", "ALREADY_EXISTS")
        spec = self.validate(body, project)
        if _flag(ctx, "validateOnly"):
            return 200, {"name": f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}", "done": True,
                         "response": dict(spec, **{"@type": SERVICE_TYPE})}, "Operation"
        return 200, self.create(ctx, project, location, service_id, spec), "Operation"

    def create(self, ctx, project, location, service_id, spec):
        now = self.clock()
        name = f"projects/{project}/locations/{location}/services/{service_id}"
        svc = dict(spec)
        svc.update({"name": name, "uid": str(uuid.uuid4()), "generation": "1", "createTime": rfc3339(now),
                    "updateTime": rfc3339(now), "creator": ctx.principal, "lastModifier": ctx.principal,
                    "_key": (project, location, service_id), "_revisions": 0})
        self.services[svc["_key"]] = svc
        self.revisions[svc["_key"]] = {}
        self.policies[svc["_key"]] = {"version": 1, "etag": _fingerprint(name, "policy", "0")}
        return self.reconcile(svc, template_changed=True)

    def services_patch(self, ctx, project, location, service):
        key = (project, location, service)
        body = self._body(ctx)
        if key not in self.services or self.services[key].get("_deleted"):
            if _flag(ctx, "allowMissing"):
                spec = self.validate(body, project)
                return 200, self.create(ctx, project, location, service, spec), "Operation"
            self._service(project, location, service)
        svc = self.services[key]
        if body.get("etag") and body["etag"] != svc["etag"]:
            raise RunError(409, "The etag of the request does not match the service: it was changed "
                           "concurrently. Read it again and retry.", "ABORTED")
        mask = [path.strip() for path in (ctx.query.get("updateMask") or [""])[0].split(",") if path.strip()]
        merged = {key_: copy.deepcopy(value) for key_, value in svc.items() if key_ in MUTABLE}
        if mask:
            for path in mask:
                top = path.split(".", 1)[0]
                if top not in MUTABLE:
                    raise bad_request(f"Field '{path}' in update_mask cannot be updated.", "update_mask")
                if top in body:
                    merged[top] = body[top]
                else:
                    merged.pop(top, None)
        else:
            merged = {key_: value for key_, value in body.items() if key_ in MUTABLE}
        spec = self.validate(merged, project)
        if _flag(ctx, "validateOnly"):
            return 200, {"name": f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}", "done": True,
                         "response": dict(_public(svc), **spec, **{"@type": SERVICE_TYPE})}, "Operation"
        before = {key_: svc.get(key_) for key_ in MUTABLE}
        if spec == {key_: value for key_, value in before.items() if value is not None}:
            # nothing changes: Cloud Run answers an operation that is done at once, with the service as it is
            return 200, self.start_op(project, location, svc, 0, lambda _when: (svc, None)), "Operation"
        template_changed = spec["template"] != svc["template"]
        for key_ in MUTABLE:
            svc.pop(key_, None)
        svc.update(spec)
        svc["generation"] = str(int(svc["generation"]) + 1)
        svc["updateTime"], svc["lastModifier"] = rfc3339(self.clock()), ctx.principal
        return 200, self.reconcile(svc, template_changed), "Operation"

    def reconcile(self, svc, template_changed):
        """Start reconciling the service's generation: a new revision when its template changed; the
        operation is done when the service serves it (after provision_seconds)."""
        now = self.clock()
        key = svc["_key"]
        generation = svc["generation"]
        if template_changed:
            svc["_revisions"] += 1
            revision = svc["template"].get("revision") or "%s-%05d-%s" % (
                key[2], int(generation), "".join(uuid.uuid4().hex[i] for i in range(3)))
            if revision in self.revisions[key]:
                raise RunError(409, f"Revision named '{revision}' with different configuration already exists.",
                               "ALREADY_EXISTS")
            self.revisions[key][revision] = self.new_revision(svc, revision, now)
            svc["latestCreatedRevision"] = f"{svc['name']}/revisions/{revision}"
        svc["reconciling"] = True
        svc["terminalCondition"] = _condition("Ready", "CONDITION_RECONCILING", now)
        svc["conditions"] = [_condition("RoutesReady", "CONDITION_RECONCILING", now),
                             _condition("ConfigurationsReady", "CONDITION_RECONCILING" if template_changed
                                        else "CONDITION_SUCCEEDED", now)]
        svc["etag"] = _etag(svc)

        def ready(when):
            if svc.get("_deleted") or svc["generation"] != generation:
                return svc, None  # a later change (or the deletion) finishes it
            created = svc["latestCreatedRevision"].rsplit("/", 1)[-1]
            revision = self.revisions[key][created]
            missing = [c["image"] for c in svc["template"]["containers"] if _image_missing(c["image"])]
            if missing:
                return self.failed(svc, revision, missing[0], when)
            revision.update({"reconciling": False, "observedGeneration": revision["generation"],
                             "conditions": [_condition("Ready", "CONDITION_SUCCEEDED", when),
                                            _condition("ContainerHealthy", "CONDITION_SUCCEEDED", when),
                                            _condition("ResourcesAvailable", "CONDITION_SUCCEEDED", when)]})
            svc.update({"reconciling": False, "observedGeneration": generation,
                        "terminalCondition": _condition("Ready", "CONDITION_SUCCEEDED", when),
                        "conditions": [_condition("RoutesReady", "CONDITION_SUCCEEDED", when),
                                       _condition("ConfigurationsReady", "CONDITION_SUCCEEDED", when)],
                        "latestReadyRevision": svc["latestCreatedRevision"],
                        "trafficStatuses": self.traffic_statuses(svc)})
            project, location, name = key
            host = f"{name}-{_project_hash(project)}-{REGION_CODES[location]}.a.run.app"
            svc["uri"] = f"https://{host}"
            svc["urls"] = [f"https://{name}-{_project_number(project)}.{location}.run.app", svc["uri"]]
            svc["etag"] = _etag(svc)
            return svc, None
        return self.start_op(key[0], key[1], svc, self.provision_seconds, ready)

    def failed(self, svc, revision, image, when):
        """The revision cannot start (its image does not exist): the service keeps serving what it served
        before (nothing, when new) and its reconciliation ends FAILED; so does the operation."""
        short = revision["name"].rsplit("/", 1)[-1]
        message = (f"Revision '{short}' is not ready and cannot serve traffic. Image '{image}' not found.")
        revision.update({"reconciling": False, "observedGeneration": revision["generation"], "conditions": [
            dict(_condition("Ready", "CONDITION_FAILED", when), reason="CONTAINER_MISSING", message=message,
                 severity="ERROR")]})
        svc.update({"reconciling": False, "terminalCondition": dict(
            _condition("Ready", "CONDITION_FAILED", when), reason="REVISION_FAILED", message=message, severity="ERROR"),
            "conditions": [dict(_condition("ConfigurationsReady", "CONDITION_FAILED", when), reason="REVISION_FAILED",
                                message=message, severity="ERROR")]})
        svc["etag"] = _etag(svc)
        return None, {"code": 9, "message": message}

    @staticmethod
    def traffic_statuses(svc):
        out = []
        for target in svc["traffic"]:
            status = {"type": target["type"], "percent": target.get("percent", 0)}
            if target.get("revision"):
                status["revision"] = target["revision"]
            if target.get("tag"):
                status["tag"] = target["tag"]
            out.append(status)
        return out

    def new_revision(self, svc, revision, now):
        project, location, service = svc["_key"]
        template = copy.deepcopy(svc["template"])
        rev = {"name": f"{svc['name']}/revisions/{revision}", "uid": str(uuid.uuid4()), "generation": "1",
               "createTime": rfc3339(now), "updateTime": rfc3339(now), "launchStage": svc["launchStage"],
               "service": svc["name"], "scaling": template.get("scaling", {}),
               "maxInstanceRequestConcurrency": template["maxInstanceRequestConcurrency"],
               "timeout": template["timeout"], "serviceAccount": template["serviceAccount"],
               "containers": template["containers"], "reconciling": True,
               "conditions": [_condition("Ready", "CONDITION_RECONCILING", now)],
               "logUri": f"https://console.cloud.google.com/logs/viewer?project={project}&resource=cloud_run_revision"
                         f"/service_name/{service}/revision_name/{revision}",
               "creator": svc["lastModifier"]}
        for field in ("labels", "annotations", "executionEnvironment", "vpcAccess", "volumes",
                      "encryptionKey", "sessionAffinity"):
            if field in template:
                rev[field] = template[field]
        rev["etag"] = _etag(rev)
        return rev

    def services_delete(self, ctx, project, location, service):
        svc = self._service(project, location, service)
        etag = (ctx.query.get("etag") or [""])[0]
        if etag and etag != svc["etag"]:
            raise RunError(409, "The etag of the request does not match the service: it was changed concurrently.",
                           "ABORTED")
        if _flag(ctx, "validateOnly"):
            return 200, {"name": f"projects/{project}/locations/{location}/operations/{uuid.uuid4()}", "done": True,
                         "response": dict(_public(svc), **{"@type": SERVICE_TYPE})}, "Operation"
        svc["_deleted"] = True  # gone for get/list at once; the operation finishes the deletion
        now = self.clock()
        svc["deleteTime"] = rfc3339(now)
        svc["expireTime"] = rfc3339(now + 30 * 86400)
        svc["reconciling"] = True

        def gone(_when):
            key = svc["_key"]
            self.services.pop(key, None)
            self.revisions.pop(key, None)
            self.policies.pop(key, None)
            return svc, None
        return 200, self.start_op(project, location, svc, self.provision_seconds / 2, gone), "Operation"

    # -------------------------------------------------------------------------------- validation
    def validate(self, body, project):
        """The mutable part of a Service request with Cloud Run's defaults filled in; raises what
        Cloud Run answers to an invalid one. Output-only fields in the body are ignored."""
        spec = {key: copy.deepcopy(body[key]) for key in MUTABLE if key in body and body[key] not in (None, {}, [])}
        check_labels(spec.get("labels"), "labels")
        _check_annotations(spec.get("annotations"), "annotations")
        spec.setdefault("ingress", "INGRESS_TRAFFIC_ALL")
        spec.setdefault("launchStage", "GA")
        template = spec.get("template")
        if not isinstance(template, dict) or not template.get("containers"):
            raise bad_request("service.template.containers: at least one container is required.",
                              "service.template.containers")
        check_labels(template.get("labels"), "template.labels")
        _check_annotations(template.get("annotations"), "template.annotations")
        if len(template["containers"]) > 10:
            raise bad_request("At most 10 containers are supported.", "service.template.containers")
        ports_seen = 0
        for index, container in enumerate(template["containers"]):
            field = f"service.template.containers[{index}]"
            if not container.get("image"):
                raise bad_request(f"{field}.image: an image is required.", f"{field}.image")
            names = [env.get("name") for env in container.get("env", [])]
            reserved = sorted(set(names) & set(RESERVED_ENV))
            if reserved:
                raise bad_request(f"The following reserved env names were provided: {', '.join(reserved)}. "
                                  "These values are automatically set by the system.", f"{field}.env")
            duplicate = sorted({name for name in names if names.count(name) > 1})
            if duplicate or not all(names):
                raise bad_request(f"{field}.env: names must be set and unique, got duplicates {duplicate}.",
                                  f"{field}.env")
            for env in container.get("env", []):
                if "value" in env and "valueSource" in env:
                    raise bad_request(f"{field}.env: '{env['name']}' has both value and valueSource.", f"{field}.env")
            ports = container.get("ports", [])
            if len(ports) > 1:
                raise bad_request(f"{field}.ports: at most one port is supported.", f"{field}.ports")
            for port in ports:
                if not 1 <= int(port.get("containerPort", 8080)) <= 65535:
                    raise bad_request(f"{field}.ports: containerPort must be between 1 and 65535.", f"{field}.ports")
                port.setdefault("name", "http1")
                port.setdefault("containerPort", 8080)
            ports_seen += len(ports)
        if ports_seen == 0:
            template["containers"][0]["ports"] = [{"name": "http1", "containerPort": 8080}]
        elif ports_seen > 1:
            raise bad_request("Exactly one container may have a port (the ingress container).",
                              "service.template.containers")
        template.setdefault("maxInstanceRequestConcurrency", 80)
        concurrency = template["maxInstanceRequestConcurrency"]
        if not isinstance(concurrency, int) or not 1 <= concurrency <= 1000:
            raise bad_request("maxInstanceRequestConcurrency must be between 1 and 1000.",
                              "service.template.maxInstanceRequestConcurrency")
        check_resources(template, "service.template")
        template.setdefault("timeout", "300s")
        template.setdefault("serviceAccount", f"{_project_number(project)}-compute@developer.gserviceaccount.com")
        template.setdefault("scaling", {"maxInstanceCount": 100})
        self.check_scaling(spec)
        spec.setdefault("traffic", [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}])
        total = sum(target.get("percent", 0) for target in spec["traffic"])
        if total != 100:
            raise bad_request(f"The traffic percentages must add up to 100, got {total}.", "service.traffic")
        return spec

    @staticmethod
    def check_scaling(spec):
        scaling = spec.get("scaling")
        if not scaling:
            return
        mode = scaling.get("scalingMode", "SCALING_MODE_UNSPECIFIED")
        for field in ("minInstanceCount", "maxInstanceCount", "manualInstanceCount"):
            if field in scaling and (not isinstance(scaling[field], int) or scaling[field] < 0):
                raise bad_request(f"scaling.{field} must be a number of instances, 0 or more.",
                                  f"service.scaling.{field}")
        if mode == "MANUAL":
            if "manualInstanceCount" not in scaling:
                scaling["manualInstanceCount"] = scaling.get("minInstanceCount", 0)
            scaling.pop("minInstanceCount", None)  # manual scaling unsets the service-level min and max
            scaling.pop("maxInstanceCount", None)
        else:
            if scaling.get("manualInstanceCount"):
                raise bad_request("scaling.manualInstanceCount needs scalingMode MANUAL.",
                                  "service.scaling.manualInstanceCount")
            if scaling.get("maxInstanceCount") and scaling.get("minInstanceCount", 0) > scaling["maxInstanceCount"]:
                raise bad_request("scaling.minInstanceCount must not be more than scaling.maxInstanceCount.",
                                  "service.scaling.minInstanceCount")

    # ------------------------------------------------------------------------------------ revisions
    def revisions_list(self, ctx, project, location, service):
        self._service(project, location, service)
        items = sorted(self.revisions[(project, location, service)].values(), key=lambda rev: rev["name"],
                       reverse=True)  # newest first, as Cloud Run lists them
        chunk, token = self.page(ctx, items, lambda rev: rev["name"])
        body = {"revisions": copy.deepcopy(chunk)} if chunk else {}
        if token:
            body["nextPageToken"] = token
        return 200, body, "ListRevisions"

    def revisions_get(self, ctx, project, location, service, revision):
        self._service(project, location, service)
        found = self.revisions[(project, location, service)].get(revision)
        if found is None:
            raise RunError(404, f"Resource '{revision}' of kind 'REVISION' in region '{location}' in project "
                           f"'{project}' does not exist.", "NOT_FOUND")
        return 200, copy.deepcopy(found), "Revision"

    # ------------------------------------------------------------------------------------------ IAM
    def iam_get(self, ctx, project, location, service):
        self._service(project, location, service)
        version = (ctx.query.get("options.requestedPolicyVersion") or ["0"])[0]
        if version not in ("0", "1", "3"):
            raise bad_request(f"Invalid requested policy version {version}: use 0, 1 or 3.",
                              "options.requested_policy_version")
        return 200, copy.deepcopy(self.policies[(project, location, service)]), None

    def iam_set(self, ctx, project, location, service):
        svc = self._service(project, location, service)
        body = ctx.body if isinstance(ctx.body, dict) else {}
        policy = body.get("policy")
        if not isinstance(policy, dict):
            raise bad_request("Policy is required.", "policy")
        key = (project, location, service)
        current = self.policies[key]
        if policy.get("etag") and policy["etag"] != current["etag"]:
            raise RunError(409, "There were concurrent policy changes. Please retry the whole read-modify-write "
                           "with exponential backoff.", "ABORTED")
        bindings = []
        for index, binding in enumerate(policy.get("bindings") or []):
            role, members = binding.get("role", ""), binding.get("members") or []
            if role not in KNOWN_ROLES:
                raise bad_request(f"Role {role} is not supported for this resource.", f"policy.bindings[{index}].role")
            for member in members:
                if not MEMBER.match(member):
                    raise bad_request(f"Invalid member '{member}' in the policy.", f"policy.bindings[{index}].members")
            if members:
                bindings.append({"role": role, "members": sorted(set(members))})
        count = int(current.get("_count", 0)) + 1
        new = {"version": 1, "etag": _fingerprint(svc["name"], "policy", str(count)), "_count": count}
        if bindings:
            new["bindings"] = bindings
        self.policies[key] = new
        return 200, copy.deepcopy(new), None

    def iam_test(self, ctx, project, location, service):
        self._service(project, location, service)
        asked = (ctx.body or {}).get("permissions") or [] if isinstance(ctx.body, dict) else []
        granted = [permission for permission in asked if permission in PERMISSIONS]
        return 200, {"permissions": granted} if granted else {}, None


# What a request may set on a Service; everything else in a body is output only and ignored.
MUTABLE = ("description", "labels", "annotations", "client", "clientVersion", "ingress", "launchStage",
           "binaryAuthorization", "template", "traffic", "scaling", "invokerIamDisabled", "defaultUriDisabled",
           "customAudiences", "iapEnabled", "multiRegionSettings", "buildConfig")


def _condition(kind, state, when):
    return {"type": kind, "state": state, "lastTransitionTime": rfc3339(when)}


def _etag(resource):
    blob = json.dumps(_public(resource), sort_keys=True, default=str)
    return base64.urlsafe_b64encode(hashlib.sha256(blob.encode()).digest()[:12]).decode()


def _public(value):
    """A deep copy without the emulator's private keys (those starting with "_")."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def _image_missing(image):
    """Whether an image cannot exist: its registry host is under .invalid (RFC 2606), the sandbox's way to
    have a revision fail as Cloud Run fails one whose image is not found."""
    first = image.split("/", 1)[0] if "/" in image else ""
    host = first.split(":", 1)[0]
    return host == "invalid" or host.endswith(".invalid")


def _flag(ctx, name):
    return (ctx.query.get(name) or ["false"])[0].lower() == "true"


def _check_annotations(annotations, field):
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        raise bad_request(f"{field} must be a map.", field)
    for key, value in annotations.items():
        prefix = key.split("/", 1)[0] if "/" in key else ""
        if prefix in RESERVED_PREFIXES:
            raise bad_request(f"Annotation '{key}' is not supported: the {prefix} namespace is reserved in Cloud Run "
                              "API v2.", field)
        if not isinstance(value, str):
            raise bad_request(f"{field}['{key}'] must be a string.", field)
