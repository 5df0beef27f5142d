# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DigitalOcean App Platform: a `kind: container` deployment is one app with one service component.

The container backend of the digitalocean provider (provider.py): it holds no client of its own and makes
every call through the provider's retry policy. A record's native is the app it was read from.

How the portable container maps onto the app spec:

- the app and its one service are both named after the deployment (App Platform names: 2 to 32
  characters), in the App Platform region of the deployment's region (fra1 -> fra, nyc3 -> nyc, ...);
- container.image -> the service's `image` source: `nginx:1.27` is Docker Hub (registry `library`),
  `acme/api:2` Docker Hub (registry `acme`), `ghcr.io/acme/api:2` GHCR, `registry.digitalocean.com/reg/api:2`
  DOCR; a tag (default `latest`) or a digest (`...@sha256:...`). App Platform pulls from no other registry;
- port -> http_port, with an ingress rule sending `/` to the service; count -> instance_count;
  command -> run_command (shell-quoted); env -> GENERAL variables, secret_env -> SECRET variables
  (App Platform encrypts them and returns only the ciphertext), both with scope RUN_TIME;
- cpu/memory -> instance_size_slug, the smallest size that fits (table SIZES below, from the sizes
  App Platform lists): the shared apps-s-* sizes first, the dedicated apps-d-* ones only for more than
  2 vCPU or 4 GiB. The two smallest shared sizes run one instance only, so count > 1 starts at
  apps-s-1vcpu-1gb;
- public must stay true: an App Platform service is reached through the app's live URL (url = live_url).

Apps carry no tags or labels, so the collection keeps its own data as GENERAL variables with scope
BUILD_TIME: an image service is never built, so the running container never sees them. LXCRI_DEPLOYMENT and
LXCRI_KIND (identity, beside the app name), LXCRI_IMAGE (the image as written), LXCRI_CPU and LXCRI_MEMORY
(the request the size was chosen for), LXCRI_SECRET (the fingerprint of secret_env) and LXCRI_TAGS (the
user's tags as JSON). Keys starting with LXCRI_ are therefore reserved in env and secret_env.

Every change of the spec (image, env, tags, size, power) is an apps.update and makes a new deployment,
phases PENDING_BUILD -> BUILDING -> DEPLOYING -> ACTIVE; the previous deployment serves until the new one
is ACTIVE, and when it fails it keeps serving. `state: stopped` archives the app (maintenance.archive:
its components stop and stop being billed, the URL shows an offline page); running restores it;
restarted is App Platform's rolling restart.
"""

from __future__ import annotations

import copy
import json
import re
import shlex

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import Backend, ProviderError, iso_utc, native_of, record, retagged
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError, secret_fingerprint

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
ENV_KEY = re.compile(r"^[_A-Za-z][_A-Za-z0-9]*$")
META_PREFIX = "LXCRI_"
META_DEPLOYMENT = "LXCRI_DEPLOYMENT"
META_KIND = "LXCRI_KIND"
META_IMAGE = "LXCRI_IMAGE"
META_CPU = "LXCRI_CPU"
META_MEMORY = "LXCRI_MEMORY"
META_SECRET = "LXCRI_SECRET"
META_TAGS = "LXCRI_TAGS"
RUNNING_PHASES = ("UNKNOWN", "PENDING_BUILD", "BUILDING", "PENDING_DEPLOY", "DEPLOYING")
DONE_PHASES = ("ACTIVE", "SUPERSEDED")

# App Platform regions and the datacenters (droplet regions) in each.
APP_REGIONS = {
    "ams": ("ams2", "ams3"), "atl": ("atl1",), "blr": ("blr1",), "fra": ("fra1",), "lon": ("lon1",),
    "nyc": ("nyc1", "nyc2", "nyc3"), "sfo": ("sfo1", "sfo2", "sfo3"), "sgp": ("sgp1",), "syd": ("syd1",),
    "tor": ("tor1",),
}

# Instance sizes (GET /v2/apps/tiers/instance_sizes): slug, vCPUs, MiB, USD per second, one instance only.
# Chosen in this order: the first that holds cpu and memory (and count > 1 where it must).
#   apps-s-1vcpu-0.5gb      1 vCPU   512 MiB   $5/month   one instance only
#   apps-s-1vcpu-1gb-fixed  1 vCPU  1024 MiB  $10/month   one instance only
#   apps-s-1vcpu-1gb        1 vCPU  1024 MiB  $12/month
#   apps-s-1vcpu-2gb        1 vCPU  2048 MiB  $25/month
#   apps-s-2vcpu-4gb        2 vCPU  4096 MiB  $50/month
#   apps-d-2vcpu-8gb        2 vCPU  8192 MiB  $98/month   dedicated
#   apps-d-4vcpu-8gb        4 vCPU  8192 MiB $156/month   dedicated
#   apps-d-4vcpu-16gb       4 vCPU 16384 MiB $196/month   dedicated
#   apps-d-8vcpu-32gb       8 vCPU 32768 MiB $392/month   dedicated
SIZES = (
    ("apps-s-1vcpu-0.5gb", 1, 512, 0.000002066799, True),
    ("apps-s-1vcpu-1gb-fixed", 1, 1024, 0.000004133598, True),
    ("apps-s-1vcpu-1gb", 1, 1024, 0.000004960317, False),
    ("apps-s-1vcpu-2gb", 1, 2048, 0.000010333995, False),
    ("apps-s-2vcpu-4gb", 2, 4096, 0.000020667989, False),
    ("apps-d-2vcpu-8gb", 2, 8192, 0.000040509259, False),
    ("apps-d-4vcpu-8gb", 4, 8192, 0.000064484127, False),
    ("apps-d-4vcpu-16gb", 4, 16384, 0.000081018519, False),
    ("apps-d-8vcpu-32gb", 8, 32768, 0.000162037037, False),
)
SIZE_BY_SLUG = {size[0]: size for size in SIZES}
OTHER_SIZES = {  # sizes App Platform has that the collection does not choose: vCPUs, MiB
    "apps-d-1vcpu-0.5gb": (1, 512), "apps-d-1vcpu-1gb": (1, 1024), "apps-d-1vcpu-2gb": (1, 2048),
    "apps-d-1vcpu-4gb": (1, 4096), "apps-d-2vcpu-4gb": (2, 4096),
}
DEFAULT_SIZE = "apps-s-1vcpu-0.5gb"

DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
REPOSITORY = re.compile(r"^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


# -- pure mapping ---------------------------------------------------------------------------------------

def app_region(region):
    """The App Platform region of a DigitalOcean region: fra1 -> fra (an App Platform slug passes)."""
    region = (region or "").strip().lower()
    if region in APP_REGIONS:
        return region
    for slug, centers in APP_REGIONS.items():
        if region in centers:
            return slug
    return None


def region_problem(region):
    if app_region(region):
        return None
    return (f"region '{region}' has no App Platform: container deployments on DigitalOcean run in "
            f"{', '.join(sorted(APP_REGIONS))} (or a datacenter of one of them, e.g. fra1, nyc3, ams3)")


def parse_image(ref):
    """The App Platform image source of a container image reference, or SpecError."""
    text = (ref or "").strip()
    hint = ("App Platform deploys images from Docker Hub (nginx:1.27, acme/api:2), GitHub Container Registry "
            "(ghcr.io/acme/api:2) and DigitalOcean Container Registry (registry.digitalocean.com/<registry>/api:2)")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not DIGEST.match(digest):
            raise SpecError(f"container.image '{ref}': the digest must be sha256:<64 hex digits>")
    tag = None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        text, tag = text.rsplit(":", 1)
        if not TAG.match(tag):
            raise SpecError(f"container.image '{ref}': '{tag}' is not a valid image tag")
    if tag and digest:
        raise SpecError(f"container.image '{ref}': give a tag or a digest, not both (App Platform takes one)")
    parts = text.split("/")
    host = parts[0] if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost") else None
    path = parts[1:] if host else parts
    if host is None or host in DOCKER_HUB_HOSTS:
        kind = "DOCKER_HUB"
        registry, repository = ("library", path[0]) if len(path) == 1 else (path[0], "/".join(path[1:]))
    elif host == "ghcr.io" and len(path) >= 2:
        kind, registry, repository = "GHCR", path[0], "/".join(path[1:])
    elif host == "registry.digitalocean.com" and len(path) >= 2:
        kind, registry, repository = "DOCR", None, "/".join(path[1:])
    else:
        raise SpecError(f"container.image '{ref}' cannot be deployed on DigitalOcean: {hint}")
    if not repository or not REPOSITORY.match(repository) or (registry is not None and not REPOSITORY.match(registry)):
        raise SpecError(f"container.image '{ref}' is not a valid image reference: {hint}")
    image = {"registry_type": kind, "repository": repository}
    if registry is not None:
        image["registry"] = registry
    if digest:
        image["digest"] = digest
    else:
        image["tag"] = tag or "latest"
    return image


def _image_key(image):
    image = image or {}
    return (image.get("registry_type"), image.get("registry") or "", image.get("repository"),
            image.get("digest") or "", "" if image.get("digest") else image.get("tag") or "latest")


def image_ref(image):
    """A container image reference for an App Platform image source (the inverse of parse_image)."""
    image = image or {}
    kind, registry, repository = image.get("registry_type"), image.get("registry"), image.get("repository") or ""
    if kind == "GHCR":
        name = f"ghcr.io/{registry}/{repository}"
    elif kind == "DOCR":
        name = f"registry.digitalocean.com/{repository}"
    elif registry in (None, "", "library"):
        name = repository
    else:
        name = f"{registry}/{repository}"
    return f"{name}@{image['digest']}" if image.get("digest") else f"{name}:{image.get('tag') or 'latest'}"


def instance_size(cpu, memory, count):
    """The smallest App Platform instance size for cpu (vCPUs) and memory (MiB) at `count` instances."""
    for slug, vcpus, mib, _price, single in SIZES:
        if cpu <= vcpus and memory <= mib and not (single and count > 1):
            return slug
    return None


def size_problem(cpu, memory, count):
    if instance_size(cpu, memory, count):
        return None
    largest = SIZES[-1]
    return (f"container.cpu {cpu:g} and container.memory {memory} do not fit an App Platform instance: the largest, "
            f"{largest[0]}, has {largest[1]} vCPUs and {largest[2]} MiB")


def validate_container(spec):
    """Checks of a container deployment for App Platform; raise SpecError."""
    container = spec.get("container") or {}
    if spec.get("state") == "absent" or not container.get("image"):
        return  # removing needs no container settings
    if not APP_NAME.match(spec["name"]):
        raise SpecError(f"name '{spec['name']}' is too long or too short for DigitalOcean App Platform: app names have "
                        "2 to 32 characters")
    parse_image(container["image"])
    problem = size_problem(float(container["cpu"]), int(container["memory"]), max(1, spec["count"]))
    if problem:
        raise SpecError(problem)
    if not container.get("public", True):
        raise SpecError("container.public false is not supported on digitalocean: an App Platform service is always "
                        "reached through the app's public URL")
    for option in ("env", "secret_env"):
        for key in container[option]:
            if not ENV_KEY.match(key):
                raise SpecError(f"container.{option}: '{key}' is not a valid variable name on App Platform (letters, "
                                "digits and '_', not starting with a digit)")
            if key.upper().startswith(META_PREFIX):
                raise SpecError(f"container.{option}: '{key}' is reserved: names starting with {META_PREFIX} hold the "
                                "collection's own data on App Platform")
    both = sorted(set(container["env"]) & set(container["secret_env"]))
    if both:
        raise SpecError(f"container.env and container.secret_env both set {', '.join(both)}: give each variable once")
    if spec.get("region") and region_problem(spec["region"]):
        raise SpecError(region_problem(spec["region"]))


def _service(app_spec):
    services = (app_spec or {}).get("services") or []
    return services[0] if services else {}


def _envs(service):
    return service.get("envs") or []


def meta(app_spec):
    """The collection's own variables of an app spec: {key: value}."""
    return {env["key"]: env.get("value", "") for env in _envs(_service(app_spec))
            if env.get("key", "").startswith(META_PREFIX) and env.get("type", "GENERAL") == "GENERAL"}


def _tags(values):
    try:
        tags = json.loads(values.get(META_TAGS) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class Apps(Backend):
    """Container deployments as App Platform apps (one service component each)."""

    kind = "container"
    members = False

    @classmethod
    def validate(cls, spec):
        validate_container(spec)

    @property
    def api(self):
        return self.p.client.apps

    # -- reading ---------------------------------------------------------------------------------

    def _apps(self):
        """Every app of the account (an account without apps may get no "apps" at all)."""
        return self.p.pages(self.api.list, "apps", "listing apps", optional=True)

    def _get(self, app_id):
        """The app, or None when it is gone."""
        return self.p.unless_gone(self.p.checked(self.api.get, "app", f"app {app_id}"), app_id)

    def _app(self, rec):
        """The app of a record, read again; ProviderError when it is gone."""
        app = self._get(rec["id"])
        if app is None:
            raise ProviderError(f"app {rec['name']} ({rec['id']}) is gone")
        return app

    @staticmethod
    def _live_spec(app):
        """The spec that serves or is being deployed: the in-progress deployment's, else the active one's."""
        for key in ("in_progress_deployment", "active_deployment"):
            deployment = app.get(key) or {}
            if deployment.get("spec") and (key == "active_deployment" or deployment.get("phase") in RUNNING_PHASES):
                return deployment["spec"]
        return app.get("spec") or {}

    @staticmethod
    def _app_state(app):
        progress = app.get("in_progress_deployment") or {}
        if progress and progress.get("phase") in RUNNING_PHASES:
            return "pending"
        active = app.get("active_deployment") or {}
        if active.get("phase") in DONE_PHASES or (active and not active.get("phase")):
            archived = ((active.get("spec") or app.get("spec") or {}).get("maintenance") or {}).get("archive")
            return "stopped" if archived else "running"
        return "error"  # no deployment ever became active (the first one failed or was canceled)

    def _record(self, app):
        spec = self._live_spec(app)
        service = _service(spec)
        values = meta(spec)
        live_image = service.get("image") or {}
        written = values.get(META_IMAGE)
        try:
            same = written and _image_key(parse_image(written)) == _image_key(live_image)
        except SpecError:
            same = False
        state = self._app_state(app)
        slug = service.get("instance_size_slug") or DEFAULT_SIZE
        count = service.get("instance_count") or 1
        price = SIZE_BY_SLUG.get(slug, (None, None, None, None))[3]
        cost = 0.0 if state == "stopped" else (round(price * 3600 * count, 6) if price else None)
        return record(
            self.p.name, native=app, kind=values.get(META_KIND) or "container", name=spec.get("name") or app["id"],
            deployment=values.get(META_DEPLOYMENT), id=app["id"], state=state,
            region=(app.get("region") or {}).get("slug") or spec.get("region"), zone=None, size=None, native_size=slug,
            image=written if same else image_ref(live_image), url=app.get("live_url") or None,
            tags=_tags(values), created_at=iso_utc(app.get("created_at")), hourly_cost=cost,
        )

    @staticmethod
    def _ours(app, name=None, kind=None, region=None):
        """True for an app this collection made (of deployment `name`, `kind`, in `region` where given)."""
        spec = app.get("spec") or {}
        values = meta(spec)
        where = (app.get("region") or {}).get("slug") or spec.get("region")
        return bool(spec.get("name") and values.get(META_DEPLOYMENT) == spec["name"]
                    and (name is None or spec["name"] == name)
                    and (kind is None or values.get(META_KIND) == kind)
                    and (region is None or where == app_region(region)))

    def find(self, name, region):
        return [self._record(app) for app in self._apps() if self._ours(app, name, self.kind, region)]

    def list(self, region, tags):
        return [self._record(app) for app in self._apps() if self._ours(app, region=region)]

    def refresh(self, records):
        fresh = [self._get(rec["id"]) for rec in records]
        return [self._record(app) for app in fresh if app]

    def config(self, rec):
        app = native_of(rec) or self._app(rec)
        spec = self._live_spec(app)
        service = _service(spec)
        values = meta(spec)
        count = service.get("instance_count") or 1
        slug = service.get("instance_size_slug") or DEFAULT_SIZE
        cpu, memory = _float(values.get(META_CPU)), _float(values.get(META_MEMORY))
        if cpu is None or memory is None or instance_size(cpu, memory, count) != slug:
            # Not the size this collection would choose for what it asked: report the size itself.
            vcpus, mib = (SIZE_BY_SLUG[slug][1:3] if slug in SIZE_BY_SLUG else OTHER_SIZES.get(slug, (None, None)))
            cpu, memory = (float(vcpus) if vcpus else None), mib
        secrets = [env for env in _envs(service) if env.get("type") == "SECRET"]
        command = service.get("run_command")
        return {
            "image": rec["image"],
            "port": service.get("http_port"),
            "env": {env["key"]: env.get("value", "") for env in _envs(service)
                    if env.get("type", "GENERAL") == "GENERAL" and not env["key"].startswith(META_PREFIX)},
            "secret_env": values.get(META_SECRET, "") if secrets else "",
            "cpu": cpu,
            "memory": int(memory) if memory is not None else None,
            "command": shlex.split(command) if command else [],
            "public": service.get("http_port") is not None,
            "replicas": count,
        }

    # -- the app spec ----------------------------------------------------------------------------

    def _app_spec(self, spec, region, tags, current=None):
        """The app spec of a container deployment; `current` (an app spec) keeps what the collection does not
        manage (domains, maintenance, other service settings) and the ciphertexts of unchanged secrets."""
        container = spec["container"]
        name = spec["name"]
        base = copy.deepcopy(current) if current else {}
        old_service = _service(base)
        old_values = meta(base)
        fingerprint = secret_fingerprint(container["secret_env"])
        ciphertexts = {}
        if current and old_values.get(META_SECRET, "") == fingerprint:
            ciphertexts = {env["key"]: env.get("value") for env in _envs(old_service) if env.get("type") == "SECRET"}
        envs = [{"key": key, "value": value, "type": "GENERAL", "scope": "RUN_TIME"}
                for key, value in container["env"].items()]
        envs += [{"key": key, "value": ciphertexts.get(key) or value, "type": "SECRET", "scope": "RUN_TIME"}
                 for key, value in container["secret_env"].items()]
        own = {META_DEPLOYMENT: name, META_KIND: spec["kind"], META_IMAGE: container["image"],
               META_CPU: f"{float(container['cpu']):g}", META_MEMORY: str(int(container["memory"])),
               META_TAGS: json.dumps(tags, sort_keys=True, separators=(",", ":"))}
        if fingerprint:
            own[META_SECRET] = fingerprint
        envs += [{"key": key, "value": value, "type": "GENERAL", "scope": "BUILD_TIME"} for key, value in own.items()]
        service = {key: value for key, value in old_service.items()
                   if key not in ("name", "image", "http_port", "instance_count", "instance_size_slug", "envs",
                                  "run_command", "git", "github", "gitlab", "bitbucket", "internal_ports")}
        service.update(
            name=name, image=parse_image(container["image"]), http_port=int(container["port"]),
            instance_count=int(spec["count"]),
            instance_size_slug=instance_size(float(container["cpu"]), int(container["memory"]), int(spec["count"])),
            envs=envs,
        )
        if container.get("command"):
            service["run_command"] = shlex.join(container["command"])
        base.update(name=name, region=region, services=[service],
                    ingress={"rules": [{"match": {"path": {"prefix": "/"}}, "component": {"name": name}}]})
        return base

    @staticmethod
    def _with_meta(app_spec, key, value):
        """A copy of an app spec with one of the collection's variables set (ciphertexts kept as they are)."""
        app_spec = copy.deepcopy(app_spec)
        service = _service(app_spec)
        envs = [env for env in _envs(service) if env.get("key") != key]
        envs.append({"key": key, "value": value, "type": "GENERAL", "scope": "BUILD_TIME"})
        service["envs"] = envs
        return app_spec

    # -- deployments -----------------------------------------------------------------------------

    def _wait_deployment(self, app, what):
        """Wait for the deployment an app create/update/restart started; raise when it does not become ACTIVE."""
        pending = app.get("pending_deployment") or app.get("in_progress_deployment") or {}
        app_id = app["id"]
        if pending.get("id"):
            def fetch():
                return self.p.answer(self.api.get_deployment, app_id, pending["id"], key="deployment",
                                     what=f"deployment {pending['id']} of app {app_id}")
        else:
            def fetch():  # no deployment named: wait until the app has none in progress
                fresh = self._get(app_id) or {}
                return fresh.get("in_progress_deployment") or fresh.get("active_deployment") or {"phase": "ERROR"}
        deployment = self.p.wait(fetch, lambda d: d.get("phase") not in RUNNING_PHASES, what,
                                 describe=lambda d: f"phase {d.get('phase')}")
        if deployment.get("phase") not in DONE_PHASES:
            raise ProviderError(f"{what} ended {deployment.get('phase')}{self._deployment_reason(deployment)}")
        return deployment

    @staticmethod
    def _deployment_reason(deployment):
        reasons = []

        def walk(steps):
            for step in steps or []:
                if step.get("status") == "ERROR":
                    reason = step.get("reason") or {}
                    text = reason.get("message") or reason.get("code")
                    if text:
                        reasons.append(f"{step.get('name')}: {text}")
                walk(step.get("steps"))

        walk((deployment.get("progress") or {}).get("steps"))
        return f" ({'; '.join(dict.fromkeys(reasons))})" if reasons else ""

    def _update_app(self, app_id, app_spec, what, wait=True):
        app = self.p.answer(self.api.update, app_id, body={"spec": app_spec}, key="app", what=what)
        if wait:
            self._wait_deployment(app, what)
            app = self._get(app_id) or app
        return app

    # -- changing --------------------------------------------------------------------------------

    def create(self, spec, region, names):
        name = spec["name"]
        slug = app_region(region)
        if slug is None:
            raise ProviderError(region_problem(region))
        taken = next((app for app in self._apps() if (app.get("spec") or {}).get("name") == name), None)
        if taken is not None:
            where = (taken.get("region") or {}).get("slug") or (taken.get("spec") or {}).get("region")
            whose = "" if self._ours(taken) else ", not made by this collection"
            raise ProviderError(
                f"creating app {name} in {slug} failed: the account already has an App Platform app named {name} "
                f"(id {taken['id']}, region {where}{whose}); app names are unique per account"
            )
        app_spec = self._app_spec(spec, slug, dict(spec["tags"]))
        app = self.p.answer(self.api.create, body={"spec": app_spec}, key="app", what=f"creating app {name}")
        if spec.get("wait", True):
            try:
                self._wait_deployment(app, f"the first deployment of app {name}")
                app = self._get(app["id"]) or app
            except Exception as exc:
                raise ProviderError(self._undo(app, name, exc)) from exc
        return [self._record(app)]

    def _undo(self, app, name, exc):
        what = f"creating app {name} in DigitalOcean failed: {exc}"
        try:
            self.delete_one(app)
        except Exception as cleanup:
            return f"{what}; deleting the app this run created ({app['id']}) failed too, delete it: {cleanup}"
        return f"{what}; the app this run had created was deleted again ({app['id']})"

    def update(self, rec, spec, changes):
        app = self._get(rec["id"])
        if app is None:
            raise ProviderError(f"app {rec['name']} ({rec['id']}) disappeared while it was being updated")
        current = app.get("spec") or {}
        tags = retagged(_tags(meta(current)), spec["tags"], spec["purge_tags"])
        slug = (app.get("region") or {}).get("slug") or current.get("region")
        app_spec = self._app_spec(spec, slug, tags, current=current)
        try:
            app = self._update_app(
                rec["id"], app_spec, f"the new deployment of app {rec['name']} ({', '.join(changes) or 'tags'})",
                wait=spec.get("wait", True),
            )
        except ProviderError as exc:
            if not str(exc).startswith("the new deployment"):
                raise
            raise ProviderError(f"{exc}; the previous deployment keeps serving, and the next run tries again") from exc
        return self._record(app), False

    def delete_one(self, rec):
        self.p.unless_gone(self.p.checked(self.api.delete), rec["id"])

    def _set_archive(self, rec, archive):
        app = self._app(rec)
        current = copy.deepcopy(app.get("spec") or {})
        maintenance = dict(current.get("maintenance") or {})
        if bool(maintenance.get("archive")) == archive and self._app_state(app) in ("running", "stopped"):
            return
        if archive:
            maintenance["archive"] = True
        else:
            maintenance.pop("archive", None)
        if maintenance:
            current["maintenance"] = maintenance
        else:
            current.pop("maintenance", None)
        verb = "archiving" if archive else "restoring"
        self._update_app(rec["id"], current, f"{verb} app {rec['name']}")

    def stop_one(self, rec):
        self._set_archive(rec, True)

    def start_one(self, rec):
        self._set_archive(rec, False)

    def restart_one(self, rec):
        app = self._app(rec)
        if ((app.get("spec") or {}).get("maintenance") or {}).get("archive"):
            self._set_archive(rec, False)  # an archived app restarts by being restored
            return
        deployment = self.p.answer(self.api.restart, rec["id"], body={}, key="deployment",
                                   what=f"restarting app {rec['name']}")
        self._wait_deployment({"id": rec["id"], "pending_deployment": deployment}, f"the restart of app {rec['name']}")

    def tag_one(self, rec, tags, purge):
        app = self._app(rec)
        current = app.get("spec") or {}
        old = _tags(meta(current))
        wanted = retagged(old, tags, purge)
        if wanted == old:
            return
        value = json.dumps(wanted, sort_keys=True, separators=(",", ":"))
        self._update_app(rec["id"], self._with_meta(current, META_TAGS, value), f"tagging app {rec['name']}")
