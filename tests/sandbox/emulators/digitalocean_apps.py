"""App Platform of the DigitalOcean emulator: /v2/apps, deployments, restart, instance sizes, regions.

Follows the official OpenAPI description (``app``, ``app_spec``, ``apps_deployment``) and the behaviour
of the real service as documented:

* ``POST /v2/apps`` and ``PUT /v2/apps/{id}`` answer 200 with the app and its ``pending_deployment``;
  every create, update, restart and ``POST .../deployments`` starts a deployment whose ``phase`` goes
  ``PENDING_BUILD`` -> ``BUILDING`` -> ``DEPLOYING`` -> ``ACTIVE`` over ``provision_seconds``
  (0: ``ACTIVE`` on the next request). While it runs it is the app's ``in_progress_deployment``; once
  ``ACTIVE`` it is the ``active_deployment`` (the one before becomes ``SUPERSEDED``) and the app has a
  ``live_url`` (``https://<name>-<5 letters>.ondigitalocean.app``). A deployment started while another
  is running cancels that one (``CANCELED``).
* ``SECRET`` environment variables are encrypted on first submission: the API returns ``EV[1:...]``
  and accepts that value back unchanged on later submissions (any other ``EV[`` value is refused).
* ``maintenance.archive: true`` archives the app (a deployment like any other; the URL stays and shows an
  offline page); ``false`` restores it.
* ``instance_count`` is at least 1; the sizes that are ``single_instance_only`` refuse more than one.
* Only image-sourced services (``image`` with ``registry_type`` DOCKER_HUB, DOCR or GHCR) are emulated;
  git sources, static sites, workers, jobs, functions and databases are refused with 422.

Sandbox-only hook: an image whose tag ends in ``-sandbox-fail`` deploys to ``ERROR`` (the way an image
that cannot be pulled does), so that failure handling can be tested.

Errors: ``{"id": "invalid_argument", "message": ...}`` with 400 for an invalid spec, 409 ``conflict``
for a name already used in the account, 404 ``not_found``.
"""
import base64
import copy
import re
import secrets
import time
import uuid

from tests.sandbox.emulators.digitalocean_core import (
    ApiError, Response, Route, not_found, now_iso, paginate, unprocessable,
)

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
ENV_KEY_PATTERN = re.compile(r"^[_A-Za-z][_A-Za-z0-9]*$")
ENV_TYPES = ("GENERAL", "SECRET")
ENV_SCOPES = ("UNSET", "RUN_TIME", "BUILD_TIME", "RUN_AND_BUILD_TIME")
REGISTRY_TYPES = ("DOCKER_HUB", "DOCR", "GHCR")
FAIL_SUFFIX = "-sandbox-fail"
DEFAULT_SIZE = "apps-s-1vcpu-0.5gb"
OWNER_UUID = "ff36cbc6fd350fe12577f5123133bb5ba01a2419"
PROJECT_ID = "88b72d1a-b78a-4d9f-9090-b53c4399073f"
RUNNING_PHASES = ("PENDING_BUILD", "BUILDING", "PENDING_DEPLOY", "DEPLOYING")
NOT_EMULATED = ("static_sites", "workers", "jobs", "functions", "databases")
GIT_SOURCES = ("git", "github", "gitlab", "bitbucket")

# slug, label, flag, continent, data centers, default (the official example, plus syd and atl of the enum)
REGIONS = {
    slug: {"slug": slug, "label": label, "flag": flag, "continent": continent, "data_centers": centers,
           **({"default": True} if default else {})}
    for slug, label, flag, continent, centers, default in (
        ("ams", "Amsterdam", "netherlands", "Europe", ["ams3"], False),
        ("nyc", "New York", "usa", "North America", ["nyc1", "nyc3"], True),
        ("fra", "Frankfurt", "germany", "Europe", ["fra1"], False),
        ("sfo", "San Francisco", "usa", "North America", ["sfo3"], False),
        ("sgp", "Singapore", "singapore", "Asia", ["sgp1"], False),
        ("blr", "Bangalore", "india", "Asia", ["blr1"], False),
        ("tor", "Toronto", "canada", "North America", ["tor1"], False),
        ("lon", "London", "uk", "Europe", ["lon1"], False),
        ("syd", "Sydney", "australia", "Australia", ["syd1"], False),
        ("atl", "Atlanta", "usa", "North America", ["atl1"], False),
    )
}
DEFAULT_REGION = "nyc"

# The official example of GET /v2/apps/tiers/instance_sizes:
# slug, name, cpu type, cpus, memory MiB, $/month, $/second, tier, single instance only, bandwidth GiB
_SIZES = (
    ("apps-s-1vcpu-0.5gb", "Shared 1VCPU 0.5GB", "SHARED", 1, 512, "5.00", "0.000002066799", "basic", True, 50),
    ("apps-s-1vcpu-1gb-fixed", "Shared 1VCPU 1GB Fixed", "SHARED", 1, 1024, "10.00", "0.000004133598", "basic", True,
     100),
    ("apps-s-1vcpu-1gb", "Shared 1VCPU 1GB", "SHARED", 1, 1024, "12.00", "0.000004960317", "professional", False, 150),
    ("apps-s-1vcpu-2gb", "Shared 1VCPU 2GB", "SHARED", 1, 2048, "25.00", "0.000010333995", "professional", False, 200),
    ("apps-s-2vcpu-4gb", "Shared 2VCPU 4GB", "SHARED", 2, 4096, "50.00", "0.000020667989", "professional", False, 250),
    ("apps-d-1vcpu-0.5gb", "Dedicated 1VCPU 0.5GB", "DEDICATED", 1, 512, "29.00", "0.000011987434", "professional",
     False, 100),
    ("apps-d-1vcpu-1gb", "Dedicated 1VCPU 1GB", "DEDICATED", 1, 1024, "34.00", "0.000014054233", "professional", False,
     200),
    ("apps-d-1vcpu-2gb", "Dedicated 1VCPU 2GB", "DEDICATED", 1, 2048, "39.00", "0.000016121032", "professional", False,
     300),
    ("apps-d-1vcpu-4gb", "Dedicated 1VCPU 4GB", "DEDICATED", 1, 4096, "49.00", "0.000020254630", "professional", False,
     400),
    ("apps-d-2vcpu-4gb", "Dedicated 2VCPU 4GB", "DEDICATED", 2, 4096, "78.00", "0.000032242063", "professional", False,
     500),
    ("apps-d-2vcpu-8gb", "Dedicated 2VCPU 8GB", "DEDICATED", 2, 8192, "98.00", "0.000040509259", "professional", False,
     600),
    ("apps-d-4vcpu-8gb", "Dedicated 4VCPU 8GB", "DEDICATED", 4, 8192, "156.00", "0.000064484127", "professional",
     False, 700),
    ("apps-d-4vcpu-16gb", "Dedicated 4VCPU 16GB", "DEDICATED", 4, 16384, "196.00", "0.000081018519", "professional",
     False, 800),
    ("apps-d-8vcpu-32gb", "Dedicated 8VCPU 32GB", "DEDICATED", 8, 32768, "392.00", "0.000162037037", "professional",
     False, 900),
)
INSTANCE_SIZES = {}
for _slug, _name, _cpu_type, _cpus, _mib, _month, _second, _tier, _single, _bandwidth in _SIZES:
    INSTANCE_SIZES[_slug] = {
        "name": _name, "slug": _slug, "cpu_type": _cpu_type, "cpus": str(_cpus),
        "memory_bytes": str(_mib * 1024 * 1024), "usd_per_month": _month, "usd_per_second": _second,
        "tier_slug": _tier, "bandwidth_allowance_gib": str(_bandwidth),
        **({"single_instance_only": True} if _single else {}),
        **({"scalable": True} if _cpu_type == "DEDICATED" else {}),
    }
# Legacy plans the spec still accepts (basic-xxs ...): accepted, priced like their successors.
LEGACY_SIZES = {"basic-xxs": "apps-s-1vcpu-0.5gb", "basic-xs": "apps-s-1vcpu-1gb-fixed", "basic-s": "apps-s-1vcpu-2gb",
                "basic-m": "apps-s-2vcpu-4gb", "professional-xs": "apps-s-1vcpu-1gb",
                "professional-s": "apps-s-1vcpu-2gb", "professional-m": "apps-s-2vcpu-4gb",
                "professional-1l": "apps-d-1vcpu-2gb", "professional-l": "apps-d-2vcpu-8gb",
                "professional-xl": "apps-d-4vcpu-16gb"}


def setup(state):
    state.data["apps"] = {}             # id -> app (public fields + "_" private ones)
    state.data["app_deployments"] = {}  # id -> deployment (public fields + "_app", "_schedule")
    state.data["app_ciphertexts"] = set()


def live_ids(state):
    return {"apps": sorted(state.data["apps"])}


def invalid(message):
    return ApiError(400, "invalid_argument", message)


# -- spec validation ----------------------------------------------------------------------------------
def _size(slug):
    return INSTANCE_SIZES.get(LEGACY_SIZES.get(slug, slug))


def _check_name(value, field):
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise invalid(f"error validating app spec field \"{field}\": {value!r} must be 2 to 32 lower-case letters, "
                      "digits and dashes, starting with a letter and not ending with a dash")


def _check_image(image, field):
    if not isinstance(image, dict):
        raise invalid(f"error validating app spec field \"{field}\": must be an object")
    kind = image.get("registry_type")
    if kind not in REGISTRY_TYPES:
        raise invalid(f"error validating app spec field \"{field}.registry_type\": must be one of "
                      f"{', '.join(REGISTRY_TYPES)}")
    if kind == "DOCR" and image.get("registry"):
        raise invalid(f"error validating app spec field \"{field}.registry\": must be empty for the DOCR registry type")
    if kind in ("DOCKER_HUB", "GHCR") and not image.get("registry"):
        raise invalid(f"error validating app spec field \"{field}.registry\": is required for {kind} images")
    if not isinstance(image.get("repository"), str) or not image["repository"]:
        raise invalid(f"error validating app spec field \"{field}.repository\": is required")
    if image.get("tag") and image.get("digest"):
        raise invalid(f"error validating app spec field \"{field}\": only one of tag and digest may be set")
    if image.get("deploy_on_push", {}).get("enabled") and kind != "DOCR":
        raise invalid(f"error validating app spec field \"{field}.deploy_on_push\": only DOCR images deploy on push")


def _check_envs(state, envs, field):
    if envs is None:
        return []
    if not isinstance(envs, list):
        raise invalid(f"error validating app spec field \"{field}\": must be an array")
    seen, out = set(), []
    for index, env in enumerate(envs):
        where = f"{field}[{index}]"
        if not isinstance(env, dict) or not isinstance(env.get("key"), str) or not ENV_KEY_PATTERN.match(env["key"]):
            raise invalid(f"error validating app spec field \"{where}.key\": must match {ENV_KEY_PATTERN.pattern}")
        if env["key"] in seen:
            raise invalid(f"error validating app spec field \"{where}.key\": duplicate environment variable "
                          f"{env['key']}")
        seen.add(env["key"])
        kind = env.get("type", "GENERAL")
        scope = env.get("scope", "RUN_AND_BUILD_TIME")
        if kind not in ENV_TYPES:
            raise invalid(f"error validating app spec field \"{where}.type\": must be one of {', '.join(ENV_TYPES)}")
        if scope not in ENV_SCOPES:
            raise invalid(f"error validating app spec field \"{where}.scope\": must be one of {', '.join(ENV_SCOPES)}")
        value = env.get("value", "")
        if not isinstance(value, str):
            raise invalid(f"error validating app spec field \"{where}.value\": must be a string")
        env = dict(env)
        if kind == "SECRET" and value:
            if value.startswith("EV["):
                if value not in state.data["app_ciphertexts"]:
                    raise invalid(f"error validating app spec field \"{where}.value\": the encrypted value of "
                                  f"{env['key']} was not issued for this account")
            else:
                env["value"] = _encrypt(state)
        out.append(env)
    return out


def _encrypt(state):
    """A stand-in for DigitalOcean's encryption: an opaque EV[1:...] value (the plain text is not kept)."""
    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    sealed = base64.b64encode(secrets.token_bytes(30)).decode()
    value = f"EV[1:{nonce}:{sealed}]"
    state.data["app_ciphertexts"].add(value)
    return value


def _validated_spec(state, body, current=None):
    """The stored form of a submitted app spec (SECRET values encrypted), or ApiError."""
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise invalid("spec is required and must be an object")
    spec = copy.deepcopy(spec)
    _check_name(spec.get("name"), "name")
    region = spec.get("region")
    if region is not None and region not in REGIONS:
        raise invalid(f"error validating app spec field \"region\": {region!r} is not an App Platform region; use "
                      f"one of {', '.join(REGIONS)}")
    if current is not None and region and region != current["region"]["slug"]:
        raise unprocessable("The region of an existing app cannot be changed; create a new app in that region.")
    for field in NOT_EMULATED:
        if spec.get(field):
            raise unprocessable(f"app spec field \"{field}\" is not emulated by the sandbox (image services only)")
    services = spec.get("services") or []
    if not isinstance(services, list) or not services:
        raise invalid("error validating app spec: an app needs at least one component (services)")
    names = set()
    for index, service in enumerate(services):
        where = f"services[{index}]"
        if not isinstance(service, dict):
            raise invalid(f"error validating app spec field \"{where}\": must be an object")
        _check_name(service.get("name"), f"{where}.name")
        if service["name"] in names:
            raise invalid(f"error validating app spec field \"{where}.name\": component names must be unique")
        names.add(service["name"])
        if any(service.get(source) for source in GIT_SOURCES):
            raise unprocessable("git sources are not emulated by the sandbox: deploy an image")
        if "image" not in service:
            raise invalid(f"error validating app spec field \"{where}\": a source is required (image)")
        _check_image(service["image"], f"{where}.image")
        count = service.get("instance_count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise invalid(f"error validating app spec field \"{where}.instance_count\": must be at least 1 "
                          f"(got {count!r}); to take an app offline, archive it (maintenance.archive)")
        slug = service.get("instance_size_slug", DEFAULT_SIZE)
        size = _size(slug) if isinstance(slug, str) else None
        if size is None:
            raise invalid(f"error validating app spec field \"{where}.instance_size_slug\": unknown instance size "
                          f"{slug!r}")
        if count > 1 and size.get("single_instance_only"):
            raise invalid(f"error validating app spec field \"{where}.instance_count\": instance size {slug} "
                          "allows only one instance; choose a larger size to scale out")
        for field in ("http_port",):
            port = service.get(field)
            if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
                raise invalid(f"error validating app spec field \"{where}.{field}\": must be a port 1-65535")
        if service.get("run_command") is not None and not isinstance(service["run_command"], str):
            raise invalid(f"error validating app spec field \"{where}.run_command\": must be a string")
        service["envs"] = _check_envs(state, service.get("envs"), f"{where}.envs")
        if not service["envs"]:
            del service["envs"]
    for index, rule in enumerate((spec.get("ingress") or {}).get("rules") or []):
        component = (rule or {}).get("component") or {}
        if component and component.get("name") not in names:
            raise invalid(f"error validating app spec field \"ingress.rules[{index}].component.name\": no component "
                          f"named {component.get('name')!r}")
    maintenance = spec.get("maintenance")
    if maintenance is not None:
        if not isinstance(maintenance, dict) or any(
                not isinstance(maintenance.get(flag, False), bool) for flag in ("enabled", "archive")):
            raise invalid("error validating app spec field \"maintenance\": enabled and archive are booleans")
    name_taken = next((a for a in state.data["apps"].values()
                       if a["spec"]["name"] == spec["name"] and (current is None or a["id"] != current["id"])), None)
    if name_taken is not None:
        raise ApiError(409, "conflict", f"an app named {spec['name']} already exists in this account")
    spec.setdefault("region", current["region"]["slug"] if current else DEFAULT_REGION)
    return spec


# -- deployments --------------------------------------------------------------------------------------
def _tier(spec):
    slugs = [s.get("instance_size_slug", DEFAULT_SIZE) for s in spec.get("services") or []]
    return "professional" if any(_size(slug)["tier_slug"] == "professional" for slug in slugs) else "basic"


def _fails(spec):
    return any(str((s.get("image") or {}).get("tag", "")).endswith(FAIL_SUFFIX) for s in spec.get("services") or [])


def _step(name, status, started=None, ended=None, **extra):
    step = {"name": name, "status": status}
    if started:
        step["started_at"] = started
    if ended:
        step["ended_at"] = ended
    step.update(extra)
    return step


# (build, deploy, finalize) step status in each phase
_STEP_STATUS = {
    "PENDING_BUILD": ("PENDING", "PENDING", "PENDING"),
    "BUILDING": ("RUNNING", "PENDING", "PENDING"),
    "PENDING_DEPLOY": ("SUCCESS", "PENDING", "PENDING"),
    "DEPLOYING": ("SUCCESS", "RUNNING", "PENDING"),
    "ACTIVE": ("SUCCESS", "SUCCESS", "SUCCESS"),
    "SUPERSEDED": ("SUCCESS", "SUCCESS", "SUCCESS"),
    "ERROR": ("SUCCESS", "ERROR", "PENDING"),
}


def _progress(deployment):
    """build -> deploy -> finalize, as far as the phase has got (a canceled one stops where it was)."""
    phase, times = deployment["phase"], deployment["_times"]
    if phase == "CANCELED":
        statuses = tuple("PENDING" if s == "RUNNING" else s for s in _STEP_STATUS[deployment["_last_running"]])
    else:
        statuses = _STEP_STATUS.get(phase, ("PENDING",) * 3)
    build, deploy, final = statuses
    components = [s["name"] for s in deployment["spec"].get("services") or []]
    reason = {"code": "ImagePullFailed", "message": "The image could not be pulled from its registry."}
    steps = [
        _step("build", build, times.get("BUILDING"), times.get("DEPLOYING") if build == "SUCCESS" else None,
              steps=[_step("components", build, component_name=name, message_base="Pulling image")
                     for name in components]),
        _step("deploy", deploy, times.get("DEPLOYING"), times.get("ACTIVE") or times.get("ERROR"),
              **({"reason": reason} if deploy == "ERROR" else {}),
              steps=[_step("components", deploy, component_name=name, message_base="Deploying service")
                     for name in components]),
        _step("finalize", final, times.get("ACTIVE"), times.get("ACTIVE")),
    ]
    counts = {key: sum(1 for s in steps if s["status"] == value)
              for key, value in (("success_steps", "SUCCESS"), ("error_steps", "ERROR"),
                                 ("running_steps", "RUNNING"), ("pending_steps", "PENDING"))}
    return {**counts, "total_steps": len(steps), "steps": steps,
            "summary_steps": [_step(s["name"], s["status"]) for s in steps]}


def render_deployment(deployment):
    body = {key: copy.deepcopy(value) for key, value in deployment.items() if not key.startswith("_")}
    body["progress"] = _progress(deployment)
    return body


def _start_deployment(state, app, cause):
    """A new deployment of the app's current spec; a running one is canceled."""
    deployments = state.data["app_deployments"]
    running = deployments.get(app.get("_in_progress"))
    if running is not None and running["phase"] in RUNNING_PHASES:
        _set_phase(running, "CANCELED")
    now, stamp = time.monotonic(), now_iso()
    duration = state.provision_seconds
    spec = copy.deepcopy(app["spec"])
    deployment = {
        "id": str(uuid.uuid4()), "spec": spec, "services": [{"name": s["name"]} for s in spec.get("services", [])],
        "phase": "PENDING_BUILD", "phase_last_updated_at": stamp, "created_at": stamp, "updated_at": stamp,
        "cause": cause, "tier_slug": _tier(spec),
        "_app": app["id"], "_times": {"PENDING_BUILD": stamp}, "_last_running": "PENDING_BUILD",
        "_schedule": [(now + 0.2 * duration, "BUILDING"), (now + 0.6 * duration, "DEPLOYING"),
                      (now + duration, "ERROR" if _fails(spec) else "ACTIVE")],
    }
    deployments[deployment["id"]] = deployment
    app["_deployments"].append(deployment["id"])
    app["_in_progress"] = deployment["id"]
    app["last_deployment_created_at"] = stamp
    return deployment


def _set_phase(deployment, phase):
    stamp = now_iso()
    deployment["phase"] = phase
    deployment["phase_last_updated_at"] = deployment["updated_at"] = stamp
    deployment["_times"][phase] = stamp
    if phase in RUNNING_PHASES:
        deployment["_last_running"] = phase
    if phase not in RUNNING_PHASES:
        deployment["_schedule"].clear()


def advance(state):
    """Move every running deployment along its schedule; finish what is due."""
    now = time.monotonic()
    for deployment in list(state.data["app_deployments"].values()):
        schedule = deployment["_schedule"]
        while deployment["phase"] in RUNNING_PHASES and schedule and schedule[0][0] <= now:
            _due, phase = schedule.pop(0)
            _set_phase(deployment, phase)
            app = state.data["apps"].get(deployment["_app"])
            if app is None or phase in RUNNING_PHASES:
                continue
            if app.get("_in_progress") == deployment["id"]:
                app["_in_progress"] = None
            if phase == "ACTIVE":
                previous = state.data["app_deployments"].get(app.get("_active"))
                if previous is not None:
                    _set_phase(previous, "SUPERSEDED")
                app["_active"] = deployment["id"]
                app["tier_slug"] = deployment["tier_slug"]
                if not app.get("live_url"):
                    suffix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
                    domain = f"{app['spec']['name']}-{suffix}.ondigitalocean.app"
                    app.update(live_url=f"https://{domain}", live_url_base=f"https://{domain}", live_domain=domain,
                               default_ingress=f"https://{domain}")


# -- apps ---------------------------------------------------------------------------------------------
def render_app(state, app, request=None, pending=None):
    body = {key: copy.deepcopy(value) for key, value in app.items() if not key.startswith("_")}
    deployments = state.data["app_deployments"]
    if app.get("_active") in deployments:
        body["active_deployment"] = render_deployment(deployments[app["_active"]])
    if app.get("_in_progress") in deployments:
        body["in_progress_deployment"] = render_deployment(deployments[app["_in_progress"]])
    if pending is not None:
        body["pending_deployment"] = render_deployment(pending)
    if request is not None and request.arg("with_projects") in ("true", "1"):
        body["project_id"] = PROJECT_ID
    return body


def _app(state, request, key="id"):
    app = state.data["apps"].get(request.params[key])
    if app is None:
        raise not_found()
    return app


def create_app(state, request):
    advance(state)
    body = request.json_object()
    spec = _validated_spec(state, body)
    stamp = now_iso()
    app = {
        "id": str(uuid.uuid4()), "owner_uuid": OWNER_UUID, "spec": spec, "created_at": stamp, "updated_at": stamp,
        "region": copy.deepcopy(REGIONS[spec["region"]]), "tier_slug": _tier(spec),
        "_deployments": [], "_active": None, "_in_progress": None,
    }
    state.data["apps"][app["id"]] = app
    deployment = _start_deployment(state, app, "initial deployment")
    return Response(200, {"app": render_app(state, app, pending=deployment)})


def list_apps(state, request):
    advance(state)
    apps = list(state.data["apps"].values())  # oldest first
    return paginate(request, [render_app(state, app, request) for app in apps], "apps")


def get_app(state, request):
    advance(state)
    return Response(200, {"app": render_app(state, _app(state, request))})


def update_app(state, request):
    advance(state)
    app = _app(state, request)
    body = request.json_object()
    if not isinstance(body.get("update_all_source_versions", False), bool):
        raise invalid("update_all_source_versions must be a boolean")
    app["spec"] = _validated_spec(state, body, current=app)
    app["updated_at"] = now_iso()
    deployment = _start_deployment(state, app, "app spec updated")
    return Response(200, {"app": render_app(state, app, pending=deployment)})


def delete_app(state, request):
    advance(state)
    app = _app(state, request)
    for deployment_id in app["_deployments"]:
        state.data["app_deployments"].pop(deployment_id, None)
    del state.data["apps"][app["id"]]
    return Response(200, {"id": app["id"]})


def restart_app(state, request):
    advance(state)
    app = _app(state, request, "app_id")
    body = request.json_object(required=False)
    components = body.get("components")
    names = {s["name"] for s in app["spec"].get("services") or []}
    if components is not None and (not isinstance(components, list) or not set(components) <= names):
        raise invalid(f"components must name components of the app ({', '.join(sorted(names))})")
    if app.get("_active") is None:
        raise unprocessable("The app has no active deployment to restart.")
    if (app["spec"].get("maintenance") or {}).get("archive"):
        raise unprocessable("An archived app cannot be restarted; restore it first.")
    deployment = _start_deployment(state, app, "app restart")
    return Response(200, {"deployment": render_deployment(deployment)})


def list_deployments(state, request):
    advance(state)
    app = _app(state, request, "app_id")
    deployments = [state.data["app_deployments"][i] for i in reversed(app["_deployments"])]
    return paginate(request, [render_deployment(d) for d in deployments], "deployments")


def create_deployment(state, request):
    advance(state)
    app = _app(state, request, "app_id")
    body = request.json_object(required=False)
    if not isinstance(body.get("force_build", False), bool):
        raise invalid("force_build must be a boolean")
    return Response(200, {"deployment": render_deployment(_start_deployment(state, app, "manual"))})


def _deployment(state, request):
    app = _app(state, request, "app_id")
    deployment = state.data["app_deployments"].get(request.params["deployment_id"])
    if deployment is None or deployment["_app"] != app["id"]:
        raise not_found()
    return deployment


def get_deployment(state, request):
    advance(state)
    return Response(200, {"deployment": render_deployment(_deployment(state, request))})


def cancel_deployment(state, request):
    advance(state)
    deployment = _deployment(state, request)
    if deployment["phase"] not in RUNNING_PHASES:
        raise unprocessable(f"The deployment is {deployment['phase']} and can no longer be canceled.")
    _set_phase(deployment, "CANCELED")
    app = state.data["apps"][deployment["_app"]]
    if app.get("_in_progress") == deployment["id"]:
        app["_in_progress"] = None
    return Response(200, {"deployment": render_deployment(deployment)})


def list_instance_sizes(state, request):
    return Response(200, {"instance_sizes": [copy.deepcopy(size) for size in INSTANCE_SIZES.values()],
                          "discount_percent": 0})


def get_instance_size(state, request):
    size = INSTANCE_SIZES.get(request.params["slug"])
    if size is None:
        raise not_found()
    return Response(200, {"instance_size": copy.deepcopy(size)})


def list_regions(state, request):
    return Response(200, {"regions": [copy.deepcopy(region) for region in REGIONS.values()]})


ROUTES = [
    Route("GET", "/v2/apps", "apps.list", list_apps),
    Route("POST", "/v2/apps", "apps.create", create_app),
    Route("GET", "/v2/apps/regions", "apps.list_regions", list_regions),
    Route("GET", "/v2/apps/tiers/instance_sizes", "apps.list_instanceSizes", list_instance_sizes),
    Route("GET", "/v2/apps/tiers/instance_sizes/{slug}", "apps.get_instanceSize", get_instance_size),
    Route("GET", "/v2/apps/{id}", "apps.get", get_app),
    Route("PUT", "/v2/apps/{id}", "apps.update", update_app),
    Route("DELETE", "/v2/apps/{id}", "apps.delete", delete_app),
    Route("POST", "/v2/apps/{app_id}/restart", "apps.restart", restart_app),
    Route("GET", "/v2/apps/{app_id}/deployments", "apps.list_deployments", list_deployments),
    Route("POST", "/v2/apps/{app_id}/deployments", "apps.create_deployment", create_deployment),
    Route("GET", "/v2/apps/{app_id}/deployments/{deployment_id}", "apps.get_deployment", get_deployment),
    Route("POST", "/v2/apps/{app_id}/deployments/{deployment_id}/cancel", "apps.cancel_deployment", cancel_deployment),
]
