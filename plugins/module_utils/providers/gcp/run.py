# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GCP containers: one Cloud Run (Admin API v2) service per deployment.

What the portable container spec becomes:

* The service `<name>` lives in the location that is the region of the deployment's zone
  (us-central1-a -> us-central1); records carry that region and no zone.
* image, port, env, command: the service template's one container (`command` sets the container's
  args, i.e. it replaces the image's CMD as on ECS; the entry point stays). Every change of the
  template makes Cloud Run roll out a new revision (<name>-00002-abc): updates are in place, never
  recreated.
* cpu, memory: the container's limits, cpu as millicores below 1 ("250m") and a whole number from 1
  ("2"), memory as "<MiB>Mi". Cloud Run takes 0.08 to 1 vCPU in steps of 0.001, or 1, 2, 4, 6 or 8;
  below 1 vCPU it demands one request at a time per instance, CPU only during requests and the first
  generation environment: the service is set up that way (maxInstanceRequestConcurrency 1, cpuIdle,
  EXECUTION_ENVIRONMENT_GEN1), and the memory ceilings of small CPUs are checked before any call.
* count: service-level manual scaling, exactly `count` instances (scalingMode MANUAL,
  manualInstanceCount), the Cloud Run equivalent of replicas; changing it makes no new revision.
* state stopped: manualInstanceCount 0. No instance runs and requests to the URL fail until started
  again; the service, its URL, revisions and IAM policy stay. The configured count is kept in the
  annotation `lxcri-replicas`, and a record reads `stopped` exactly when the service is manually
  scaled to zero. `running` puts the count back; `restarted` rolls out a new revision of the same
  configuration (annotation `lxcri-restarted-at` on the template) and starts a stopped service.
* public: true grants roles/run.invoker to allUsers in the service's IAM policy (anyone may call the
  URL); false removes that member (callers then need roles/run.invoker and an identity token). The URL
  (`uri`, https://<name>-<hash>-<region code>.a.run.app) exists either way.
* secret_env: there is no Secret Manager in this collection yet, so secret values are plain
  environment variables of the revision (readable by anyone allowed run.services.get on the service):
  only the names (annotation `lxcri-secret-env`) and a digest (annotation `lxcri-secret`) are read
  back, never the values. Use Secret Manager references by hand where that matters.
* Identity: labels lxcri-deployment and lxcri-kind, user tags as the other labels (goog-* kept).

Every change is a long-running operation, polled with the client's own operations methods
(ServicesClient.get_operation: the same endpoint) under the collection's retry policy, until the task's
deadline. Changes are read-modify-write with the service's etag; a concurrent change is read again and
retried. A record's native is the run_v2.Service it was read from (config() reads its settings from it).

google-cloud-run is imported at first use: a VM-only task never loads it, and list() finds no service
where it is not installed.
"""

from __future__ import annotations

import datetime
import json
import re

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import Backend, MissingSDK, ProviderError, iso_utc, native_of, record
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.errors import api_disabled, cleanup, refusal
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.labels import labelable, relabelled, user_tags
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.gcp.places import location_of
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    DEPLOYMENT_TAG,
    KIND_TAG,
    SpecError,
    secret_fingerprint,
)

# google-cloud-run is imported at first use (load_sdk), so that VM tasks do not pay for it.
run_v2 = api_exceptions = iam_policy_pb2 = operations_pb2 = None


def load_sdk():
    """Import google-cloud-run (and what it brings); False when it is not installed."""
    global run_v2, api_exceptions, iam_policy_pb2, operations_pb2
    if run_v2 is None:
        try:
            from google.api_core import exceptions as api_exceptions
            from google.cloud import run_v2
            from google.iam.v1 import iam_policy_pb2
            from google.longrunning import operations_pb2
        except ImportError:
            return False
    return True


SECRET_ANNOTATION = "lxcri-secret"
SECRET_NAMES_ANNOTATION = "lxcri-secret-env"
REPLICAS_ANNOTATION = "lxcri-replicas"
RESTART_ANNOTATION = "lxcri-restarted-at"
INVOKER_ROLE = "roles/run.invoker"
PUBLIC_MEMBER = "allUsers"
RESERVED_ENV = ("PORT", "K_SERVICE", "K_REVISION", "K_CONFIGURATION")
DEFAULT_CONCURRENCY = 80
# vCPUs above 1 that Cloud Run accepts, with the memory (MiB) each allows: (least, most)
WHOLE_CPUS = {1: (128, 4096), 2: (128, 8192), 4: (2048, 16384), 6: (4096, 24576), 8: (4096, 32768)}
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
UNITS = {None: 1, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2 ** 10, "Mi": 2 ** 20,
         "Gi": 2 ** 30, "Ti": 2 ** 40}
CONCURRENT_CHANGE_ATTEMPTS = 4


# -- the portable settings on Cloud Run -------------------------------------------------------------

def cpu_text(cpu):
    """Cloud Run's cpu limit for a number of vCPUs: millicores below 1, a whole number from 1."""
    return f"{round(cpu * 1000)}m" if cpu < 1 else str(int(cpu))


def parse_quantity(text):
    match = QUANTITY.match(text or "")
    return float(match.group(1)) * UNITS[match.group(2)] if match else None


def parse_cpu(text):
    value = parse_quantity(text)
    if value is None:
        return None
    return round(value * 1000) / 1000  # "250m" -> 0.25 exactly as the spec spells it


def parse_memory(text):
    value = parse_quantity(text)
    return None if value is None else int(round(value / 2 ** 20))


def validate_container(spec):
    """What Cloud Run would refuse, said before any call (raises SpecError)."""
    container = spec["container"]
    cpu, memory = float(container["cpu"]), container["memory"]
    choices = "0.08 to 1 in steps of 0.001, or 1, 2, 4, 6 or 8"
    if cpu < 0.08 or (cpu > 1 and cpu not in WHOLE_CPUS) or abs(round(cpu * 1000) - cpu * 1000) > 1e-6:
        raise SpecError(f"container.cpu {cpu:g} is not possible on Cloud Run (gcp): use {choices} vCPUs")
    if cpu < 1:
        least, most = 128, (512 if cpu < 0.5 else 1024)
    else:
        least, most = WHOLE_CPUS[int(cpu)]
    if not least <= memory <= most:
        raise SpecError(
            f"container.memory {memory} does not fit container.cpu {cpu:g} on Cloud Run (gcp): use {least} to {most} "
            "MiB, or change cpu (below 0.5 vCPU at most 512 MiB, below 1 vCPU at most 1024, 1 vCPU at most 4096, "
            "2 at most 8192, 4 from 2048 to 16384, 6 and 8 from 4096)"
        )
    names = set(container["env"]) | set(container["secret_env"])
    reserved = sorted(names & set(RESERVED_ENV))
    if reserved:
        raise SpecError(
            f"container env: {', '.join(reserved)} cannot be set on Cloud Run (gcp): Cloud Run sets them itself "
            "(PORT is container.port)"
        )
    both = sorted(set(container["env"]) & set(container["secret_env"]))
    if both:
        raise SpecError(f"container.env and container.secret_env both set {', '.join(both)}: set each variable once")


def rpc_status(exc):
    """The google.rpc status name of an API error ("ABORTED", "ALREADY_EXISTS" ...): over REST every 409 is
    a Conflict, whatever Cloud Run meant by it."""
    try:
        return exc.response.json()["error"].get("status")
    except Exception:  # no JSON body: no status to tell
        return None


def _stopped(svc):
    scaling = svc.scaling
    return scaling.scaling_mode == run_v2.ServiceScaling.ScalingMode.MANUAL and scaling.manual_instance_count == 0


def _replicas(svc):
    """The instances the service runs when it is not stopped (service-level scaling)."""
    if _stopped(svc):
        try:
            return int(svc.annotations.get(REPLICAS_ANNOTATION, "0"))
        except ValueError:
            return 0
    if svc.scaling.scaling_mode == run_v2.ServiceScaling.ScalingMode.MANUAL:
        return svc.scaling.manual_instance_count
    return svc.scaling.min_instance_count


def service_state(svc):
    condition = run_v2.Condition.State
    state = svc.terminal_condition.state
    if svc.delete_time:
        return "terminated"
    if state == condition.CONDITION_FAILED:
        return "error"
    if svc.reconciling or state in (condition.CONDITION_PENDING, condition.CONDITION_RECONCILING) or (
        svc.observed_generation != svc.generation
    ):
        return "pending"
    if state == condition.CONDITION_SUCCEEDED:
        return "stopped" if _stopped(svc) else "running"
    return "unknown"


class Services(Backend):
    """Container deployments as Cloud Run services: records, settings and changes."""

    kind = "container"
    members = False

    def __init__(self, provider):
        super().__init__(provider)
        self._client = None

    @classmethod
    def validate(cls, spec):
        if spec.get("container"):
            validate_container(spec)

    @property
    def services(self):
        """The ServicesClient, made at first use: only a task that deploys a container needs google-cloud-run."""
        if self._client is None:
            if not load_sdk():
                raise MissingSDK("containers on gcp need google-cloud-run: pip install -r requirements.txt")
            self._client = self.p.client(run_v2.ServicesClient)
        return self._client

    def locate(self, region):
        return region  # a Cloud Run location is a region: no zone to look up (nor Compute Engine to ask)

    # -- calls -------------------------------------------------------------------------------------

    def explain(self, exc):
        endpoint = self.p.connection.get("endpoint") or "run.googleapis.com"
        return refusal(exc, f"the Cloud Run API at {endpoint}", self.p.project,
                       enable=("Cloud Run Admin API", "run.googleapis.com to deploy containers"))

    def api(self, method, request, **kwargs):
        return self.p.rpc(method, request, explain=self.explain, **kwargs)

    def _wait(self, future, what):
        """The Service an operation ends with, polled with the client's own get_operation."""
        operation = future.operation
        if not operation.done:
            request = operations_pb2.GetOperationRequest(name=operation.name)
            operation = self.p.wait(
                lambda: self.api(self.services.get_operation, request),
                lambda op: op.done, f"Cloud Run operation {operation.name} ({what})",
                first=0.05, describe=lambda op: "done" if op.done else "running",
            )
        if operation.HasField("error"):
            raise ProviderError(f"Cloud Run {what} failed: {operation.error.message} (code {operation.error.code})")
        if not operation.HasField("response"):
            return None
        message = run_v2.Service.pb()()
        operation.response.Unpack(message)
        return run_v2.Service.wrap(message)

    def _name(self, region, name):
        return f"projects/{self.p.project}/locations/{location_of(region)}/services/{name}"

    def _get(self, name, missing_ok=False):
        return self.api(self.services.get_service, run_v2.GetServiceRequest(name=name), missing_ok=missing_ok)

    # -- reading -----------------------------------------------------------------------------------

    def _record(self, svc):
        labels = dict(svc.labels)
        container = svc.template.containers[0] if svc.template.containers else None
        limits = dict(container.resources.limits) if container else {}
        cpu = parse_cpu(limits.get("cpu", "1000m"))
        memory = parse_memory(limits.get("memory", "512Mi"))
        return record(
            self.p.name,
            native=svc,
            kind=labels.get(KIND_TAG, "container"),
            name=svc.name.rsplit("/", 1)[-1],
            deployment=labels.get(DEPLOYMENT_TAG),
            id=svc.uid,
            state=service_state(svc),
            region=svc.name.split("/")[3],
            zone=None,
            size=None,
            native_size=f"{cpu:g} vCPU / {memory} MiB" if cpu is not None and memory is not None else None,
            image=container.image if container else None,
            url=svc.uri or None,
            tags=user_tags(labels),
            created_at=iso_utc(svc.create_time),
        )

    def find(self, name, region):
        try:
            svc = self._get(self._name(region, name), missing_ok=True)
        except ProviderError as exc:
            if api_disabled(exc.__cause__):
                return []  # Cloud Run is off in this project: no container deployment can exist
            raise
        if svc is None:
            return []
        labels = dict(svc.labels)
        if labels.get(DEPLOYMENT_TAG) != name or labels.get(KIND_TAG, "container") != self.kind or svc.delete_time:
            return []  # not ours (create says so), or on its way out
        return [self._record(svc)]

    def list(self, region, tags):
        if not load_sdk() or not labelable(tags):
            return []  # no google-cloud-run: no container deployments to see; no label holds such a tag
        request = run_v2.ListServicesRequest(parent=f"projects/{self.p.project}/locations/{location_of(region)}",
                                             page_size=100)
        try:
            found = self.p.listing(self.services.list_services, request, "services", explain=self.explain)
        except ProviderError as exc:
            if api_disabled(exc.__cause__):
                return []
            raise
        return [self._record(svc) for svc in found if DEPLOYMENT_TAG in svc.labels and not svc.delete_time]

    def refresh_one(self, rec):
        svc = self._get(self._name(rec["region"], rec["name"]), missing_ok=True)
        if svc is None or (rec.get("id") and svc.uid != rec["id"]):  # one deleted and made again is someone else
            return []
        fresh = self._record(svc)
        return [] if fresh["state"] == "terminated" else [fresh]

    def config(self, rec):
        svc = native_of(rec) or self._get(self._name(rec["region"], rec["name"]))
        container = svc.template.containers[0] if svc.template.containers else run_v2.Container()
        annotations = dict(svc.annotations)
        try:
            secret_names = set(json.loads(annotations.get(SECRET_NAMES_ANNOTATION, "[]")))
        except ValueError:
            secret_names = set()
        limits = dict(container.resources.limits)
        return {
            "image": container.image,
            "port": container.ports[0].container_port if container.ports else 8080,
            "env": {env.name: env.value for env in container.env if env.name not in secret_names and "value_source" not in env},
            "secret_env": annotations.get(SECRET_ANNOTATION, ""),
            "cpu": parse_cpu(limits.get("cpu", "1000m")),
            "memory": parse_memory(limits.get("memory", "512Mi")),
            "command": list(container.args),
            "public": self._public(svc.name),
            "replicas": _replicas(svc),
        }

    def _policy(self, name):
        return self.api(self.services.get_iam_policy, iam_policy_pb2.GetIamPolicyRequest(resource=name))

    def _public(self, name):
        return any(
            binding.role == INVOKER_ROLE and PUBLIC_MEMBER in binding.members for binding in self._policy(name).bindings
        )

    # -- changing ----------------------------------------------------------------------------------

    def _apply(self, svc, spec, stopped=False):
        """Put the spec's container settings on a Service (a new one, or one just read)."""
        container_spec = spec["container"]
        cpu = float(container_spec["cpu"])
        secrets = container_spec["secret_env"]
        annotations = dict(svc.annotations)
        for key in (SECRET_ANNOTATION, SECRET_NAMES_ANNOTATION):
            annotations.pop(key, None)
        if secrets:
            annotations[SECRET_ANNOTATION] = secret_fingerprint(secrets)
            annotations[SECRET_NAMES_ANNOTATION] = json.dumps(sorted(secrets))
        annotations[REPLICAS_ANNOTATION] = str(spec["count"])
        svc.annotations = annotations
        template = svc.template
        if not template.containers:
            template.containers = [run_v2.Container()]
        container = template.containers[0]
        container.image = container_spec["image"]
        container.args = list(container_spec.get("command") or [])
        container.ports = [run_v2.ContainerPort(name="http1", container_port=container_spec["port"])]
        plain = [run_v2.EnvVar(name=key, value=value) for key, value in sorted(container_spec["env"].items())]
        hidden = [run_v2.EnvVar(name=key, value=value) for key, value in sorted(secrets.items())]
        container.env = plain + hidden
        limits = dict(container.resources.limits)
        limits.update({"cpu": cpu_text(cpu), "memory": f"{container_spec['memory']}Mi"})
        container.resources = run_v2.ResourceRequirements(
            limits=limits, cpu_idle=True, startup_cpu_boost=container.resources.startup_cpu_boost
        )
        if cpu < 1:  # Cloud Run's conditions for less than one vCPU
            template.max_instance_request_concurrency = 1
            template.execution_environment = run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN1
        elif template.max_instance_request_concurrency in (0, 1):
            template.max_instance_request_concurrency = DEFAULT_CONCURRENCY
        svc.scaling = run_v2.ServiceScaling(
            scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL, manual_instance_count=0 if stopped else spec["count"]
        )
        return svc

    def _modify(self, rec, change, what):
        """Read the service, let change(svc) edit it (False: nothing to do), write it back with its etag
        and wait until it is rolled out. A concurrent change is read again and retried."""
        name = self._name(rec["region"], rec["name"])
        for _attempt in range(CONCURRENT_CHANGE_ATTEMPTS):
            svc = self._get(name)
            if change(svc) is False:
                return svc
            try:
                future = self.api(self.services.update_service, run_v2.UpdateServiceRequest(service=svc))
            except (api_exceptions.Conflict, api_exceptions.PreconditionFailed) as exc:
                if rpc_status(exc) in ("ABORTED", "FAILED_PRECONDITION") or "etag" in (exc.message or "").lower():
                    continue  # changed by someone else since it was read (its etag): read it again
                raise ProviderError(f"Cloud Run refused the {what} of {rec['name']}: {exc.message}") from exc
            except api_exceptions.BadRequest as exc:
                raise ProviderError(f"Cloud Run refused the {what} of {rec['name']}: {exc.message}") from exc
            return self._wait(future, f"{what} of {rec['name']}") or self._get(name)
        raise ProviderError(f"the service {rec['name']} kept changing while its {what} was written: try again")

    def _set_public(self, name, public, attempts=CONCURRENT_CHANGE_ATTEMPTS):
        """Grant (or take back) roles/run.invoker of allUsers: read-modify-write of the IAM policy."""
        for _attempt in range(attempts):
            policy = self._policy(name)
            bindings = [binding for binding in policy.bindings if binding.role == INVOKER_ROLE]
            has = any(PUBLIC_MEMBER in binding.members for binding in bindings)
            if has == public:
                return
            if public and bindings:
                bindings[0].members.append(PUBLIC_MEMBER)
            elif public:
                policy.bindings.add(role=INVOKER_ROLE, members=[PUBLIC_MEMBER])
            else:
                for binding in bindings:
                    while PUBLIC_MEMBER in binding.members:
                        binding.members.remove(PUBLIC_MEMBER)
                kept = [binding for binding in policy.bindings if binding.members]
                del policy.bindings[:]
                policy.bindings.extend(kept)
            try:
                self.api(self.services.set_iam_policy, iam_policy_pb2.SetIamPolicyRequest(resource=name, policy=policy))
                return
            except api_exceptions.Conflict:
                continue  # the policy changed in between (ABORTED, etag): read it again
            except (api_exceptions.BadRequest, api_exceptions.FailedPrecondition) as exc:
                raise ProviderError(
                    f"container.public: {'granting' if public else 'removing'} {INVOKER_ROLE} for {PUBLIC_MEMBER} on "
                    f"{name.rsplit('/', 1)[-1]} was refused: {exc.message} (an organization policy such as "
                    "iam.allowedPolicyMemberDomains may forbid public services: set public: false)"
                ) from exc
        raise ProviderError(f"the IAM policy of {name.rsplit('/', 1)[-1]} kept changing while it was written: try again")

    def create(self, spec, region, names):
        return [self._create_one(spec, region, name) for name in names]

    def _create_one(self, spec, region, name):
        location = location_of(region)
        parent = f"projects/{self.p.project}/locations/{location}"
        labels = {**spec["tags"], DEPLOYMENT_TAG: spec["name"], KIND_TAG: spec["kind"]}
        svc = self._apply(run_v2.Service(labels=labels, ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL), spec)
        request = run_v2.CreateServiceRequest(parent=parent, service=svc, service_id=name)
        full = self._name(location, name)
        try:
            future = self.api(self.services.create_service, request)
        except api_exceptions.Conflict:  # ALREADY_EXISTS (over REST every 409 is a Conflict)
            # Ours when it carries our label (a retried create whose first answer was lost): adopt it.
            existing = self.find(spec["name"], location)
            if not existing:
                raise ProviderError(
                    f"creating {name} failed: a Cloud Run service named {name} already exists in {location} without "
                    f"the label {DEPLOYMENT_TAG}={spec['name']}: delete or rename it, or choose another deployment name"
                ) from None
            return self._settled(existing[0], spec)
        except api_exceptions.GoogleAPICallError as exc:
            raise ProviderError(f"creating the Cloud Run service {name} in {location} failed: {exc.message}") from exc
        try:
            created = self._wait(future, f"creation of {name}") or self._get(full)
            if spec["container"]["public"]:
                self._set_public(full, True)
        except Exception as exc:  # nothing half-made stays behind: say what became of it
            left = cleanup(f"service {name}", "the ", lambda: self._get(full, missing_ok=True),
                           lambda: self.delete_one({"region": location, "name": name}))
            raise ProviderError(f"{exc}; {left}") from exc
        return self._record(created)

    def _settled(self, rec, spec):
        if spec["container"]["public"] and not self._public(self._name(rec["region"], rec["name"])):
            self._set_public(self._name(rec["region"], rec["name"]), True)
        return rec

    def update(self, rec, spec, changes):
        name = self._name(rec["region"], rec["name"])
        if set(changes) - {"public"}:  # a new revision where the template changes; replicas only: scaling
            def change(svc):
                self._apply(svc, spec, stopped=_stopped(svc))  # a stopped service stays stopped
            self._modify(rec, change, "update")
        if "public" in changes:
            self._set_public(name, spec["container"]["public"])
        return self._record(self._get(name)), False

    def delete_one(self, rec):
        name = self._name(rec["region"], rec["name"])
        future = self.api(self.services.delete_service, run_v2.DeleteServiceRequest(name=name), missing_ok=True)
        if future is not None:  # None: already gone, that is what was asked
            self._wait(future, f"deletion of {rec['name']}")

    def stop_one(self, rec):
        def change(svc):
            if _stopped(svc):
                return False
            svc.annotations = {**dict(svc.annotations), REPLICAS_ANNOTATION: str(_replicas(svc))}
            svc.scaling = run_v2.ServiceScaling(scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL, manual_instance_count=0)
            return True
        self._modify(rec, change, "stop")

    def start_one(self, rec):
        def change(svc):
            if not _stopped(svc):
                return False
            svc.scaling = run_v2.ServiceScaling(
                scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL, manual_instance_count=max(1, _replicas(svc))
            )
            return True
        self._modify(rec, change, "start")

    def restart_one(self, rec):
        def change(svc):
            now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            svc.template.annotations = {**dict(svc.template.annotations), RESTART_ANNOTATION: now}
            if _stopped(svc):
                svc.scaling = run_v2.ServiceScaling(
                    scaling_mode=run_v2.ServiceScaling.ScalingMode.MANUAL, manual_instance_count=max(1, _replicas(svc))
                )
            return True
        self._modify(rec, change, "restart")

    def tag_one(self, rec, tags, purge):
        def change(svc):
            labels = dict(svc.labels)
            wanted = relabelled(labels, tags, purge)
            if wanted == labels:
                return False
            svc.labels = wanted
            return True
        self._modify(rec, change, "relabelling")
