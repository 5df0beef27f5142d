# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The common argument spec: connection options of every registered provider and the portable deployment."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import zipfile

from ansible.module_utils.basic import env_fallback

from ansible_collections.lxcri.cloud.plugins.module_utils import registry
from ansible_collections.lxcri.cloud.plugins.module_utils.catalog import PORTABLE_IMAGES, PORTABLE_SIZES

PROVIDERS = registry.NAMES
KINDS = ("vm", "container", "function")
SERVICE_KINDS = ("container", "function")
STATES = ("present", "absent", "running", "stopped", "restarted")
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
TAG_PREFIX = "lxcri-"
DEPLOYMENT_TAG = "lxcri-deployment"
KIND_TAG = "lxcri-kind"
IMAGE_TAG = "lxcri-image"


def _option(field):
    """The argument spec of one connection field; every field falls back to the provider SDK's usual
    environment variables, so that module_defaults (or nothing at all) is enough."""
    option = {"type": field.type, "no_log": field.secret}
    if field.env:
        option["fallback"] = (env_fallback, list(field.env))
    if field.default is not None:
        option["default"] = field.default
    return option


def selection_argument_spec():
    """How the info modules choose deployments (doc fragment lxcri.cloud.read_only.DEPLOYMENTS)."""
    return {
        "name": {"type": "str"},
        "kind": {"type": "str", "choices": list(KINDS)},
        "tags": {"type": "dict", "default": {}},
        "region": {"type": "str"},
    }


def connection_argument_spec():
    """One optional dict per provider, so that module_defaults can carry all five at once."""
    return {
        provider: {"type": "dict", "apply_defaults": True,
                   "options": {name: _option(field) for name, field in registry.connection_fields(provider).items()}}
        for provider in PROVIDERS
    }


CONTAINER_OPTIONS = {
    "image": {"type": "str"},
    "port": {"type": "int", "default": 80},
    "env": {"type": "dict", "default": {}},
    "secret_env": {"type": "dict", "default": {}, "no_log": True},
    "cpu": {"type": "float", "default": 0.25},
    "memory": {"type": "int", "default": 512},
    "command": {"type": "list", "elements": "str"},
    "public": {"type": "bool", "default": True},
}

FUNCTION_OPTIONS = {
    "runtime": {"type": "str"},
    "handler": {"type": "str"},
    "code": {"type": "path"},
    "env": {"type": "dict", "default": {}},
    "memory": {"type": "int", "default": 128},
    "timeout": {"type": "int", "default": 3},
    "url": {"type": "bool", "default": False},
}


def deployment_argument_spec():
    return {
        "provider": {"type": "str", "required": True, "choices": list(PROVIDERS)},
        "name": {"type": "str", "required": True},
        "kind": {"type": "str", "default": "vm", "choices": list(KINDS)},
        "size": {"type": "str", "default": "small"},
        "image": {"type": "str", "default": "ubuntu-24.04"},
        "count": {"type": "int", "default": 1},
        "region": {"type": "str"},
        "tags": {"type": "dict", "default": {}},
        "purge_tags": {"type": "bool", "default": True},
        "ssh_public_key": {"type": "str", "no_log": False},
        "user_data": {"type": "str"},
        "container": {"type": "dict", "options": CONTAINER_OPTIONS},
        "function": {"type": "dict", "options": FUNCTION_OPTIONS},
        "state": {"type": "str", "default": "present", "choices": list(STATES)},
        "wait": {"type": "bool", "default": True},
        "wait_timeout": {"type": "int", "default": 600},
        **connection_argument_spec(),
    }


class SpecError(ValueError):
    """Bad input: the message names the option and what would be accepted."""


def validate_name(name, option="name"):
    if not NAME_PATTERN.match(name or ""):
        raise SpecError(
            f"{option} '{name}' is not valid: use 1 to 40 lower-case letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen (it becomes a host name on every provider)"
        )


def validate_tags(tags):
    for key, value in tags.items():
        if str(key).startswith(TAG_PREFIX):
            raise SpecError(f"tags: key '{key}' is reserved: keys starting with '{TAG_PREFIX}' belong to the collection")
        if not isinstance(value, (str, int, float, bool)):
            raise SpecError(f"tags: value of '{key}' must be a string, number or boolean, not {type(value).__name__}")
    return {str(key): str(value) for key, value in tags.items()}


def validate_choice(option, value, portable, provider_class):
    """A portable value, or a value that looks like the provider's own; anything else is an error."""
    info = registry.INFO[provider_class.name]
    pattern, example = getattr(info, f"native_{option}")
    if value in portable or re.match(pattern, value or ""):
        return value
    raise SpecError(
        f"{option} '{value}' is not valid for {info.name}: use one of {', '.join(portable)} "
        f"or a native {info.title} {option} such as {example}"
    )


# Which providers deploy which kind: validation answers from here before any SDK loads.
KIND_PROVIDERS = {kind: registry.providers_for(kind) for kind in KINDS}


def validate_deployment(params, provider_class):
    """Check everything that can be checked without calling the provider; return normalized params."""
    spec = dict(params)
    validate_name(spec["name"])
    if spec["count"] < 0:
        raise SpecError(f"count must be 0 or more, got {spec['count']}")
    spec["tags"] = validate_tags(spec.get("tags") or {})
    if spec.get("wait_timeout", 1) <= 0:
        raise SpecError(f"wait_timeout must be more than 0 seconds, got {spec['wait_timeout']}")
    kind = spec.get("kind") or "vm"
    if provider_class.name not in KIND_PROVIDERS[kind]:
        why = registry.INFO[provider_class.name].cannot.get(kind)
        raise SpecError(
            f"kind '{kind}' is not supported on {provider_class.name}{f' ({why})' if why else ''}: {kind} deployments "
            f"run on {', '.join(KIND_PROVIDERS[kind]) or 'no provider in this version'}"
        )
    if kind == "vm":
        spec["size"] = validate_choice("size", spec["size"], PORTABLE_SIZES, provider_class)
        spec["image"] = validate_choice("image", spec["image"], PORTABLE_IMAGES, provider_class)
        if spec.get("ssh_public_key") and spec.get("user_data"):
            raise SpecError("ssh_public_key and user_data are mutually exclusive: put the key into your cloud-config user_data")
        spec["cloud_init"] = cloud_init(spec)
    else:
        for option in ("ssh_public_key", "user_data"):
            if spec.get(option):
                raise SpecError(f"{option} applies to kind vm only, not to kind {kind}")
        # Removing needs only the name and kind: the rest of the spec is not checked then.
        settings = dict(spec.get(kind) or {})
        spec[kind] = settings if spec.get("state") == "absent" else VALIDATE_SERVICE[kind](settings)
        if kind == "function" and spec["count"] not in (0, 1):
            raise SpecError(f"count of a function is 1 (or 0 to remove it), got {spec['count']}")
    provider_class.validate(spec)
    return spec


def _validate_container(container):
    if not container.get("image"):
        raise SpecError("container.image is required for kind container, e.g. container: {image: nginx:1.27, port: 80}")
    if not 0 < container.get("port", 80) < 65536:
        raise SpecError(f"container.port must be between 1 and 65535, got {container['port']}")
    if container.get("cpu", 0.25) <= 0:
        raise SpecError(f"container.cpu must be more than 0 (vCPUs, e.g. 0.25), got {container['cpu']}")
    if container.get("memory", 512) <= 0:
        raise SpecError(f"container.memory must be more than 0 (MiB, e.g. 512), got {container['memory']}")
    for option in ("env", "secret_env"):
        container[option] = {str(k): str(v) for k, v in (container.get(option) or {}).items()}
    return container


def _validate_function(function):
    for option in ("runtime", "handler", "code"):
        if not function.get(option):
            raise SpecError(
                f"function.{option} is required for kind function, e.g. function: "
                "{runtime: python3.12, handler: app.handler, code: files/app}"
            )
    if not os.path.exists(function["code"]):
        raise SpecError(f"function.code '{function['code']}' does not exist: give a .zip file or a directory")
    if function.get("memory", 128) < 128 or function.get("timeout", 3) <= 0:
        raise SpecError(
            f"function.memory must be at least 128 (MiB) and function.timeout more than 0 (seconds), "
            f"got {function.get('memory')} and {function.get('timeout')}"
        )
    function["env"] = {str(k): str(v) for k, v in (function.get("env") or {}).items()}
    function["zip"] = package_code(function["code"])
    # Lambda reports its code as the base64 SHA-256 of the zip: the same digest tells "unchanged".
    function["code_sha256"] = base64.b64encode(hashlib.sha256(function["zip"]).digest()).decode()
    return function


def package_code(path):
    """The bytes of a zip of `path`: a .zip as it is; a directory zipped with fixed dates and order,
    so that the same files always give the same zip (and the same digest)."""
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            return handle.read()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder, dirs, files in sorted(os.walk(path)):
            dirs.sort()
            for filename in sorted(files):
                full = os.path.join(folder, filename)
                info = zipfile.ZipInfo(os.path.relpath(full, path), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if os.access(full, os.X_OK) else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(full, "rb") as handle:
                    archive.writestr(info, handle.read())
    return buffer.getvalue()


VALIDATE_SERVICE = {"container": _validate_container, "function": _validate_function}


def secret_fingerprint(secret_env):
    """A short digest of the secret environment: stored beside the service so changes show without the values."""
    blob = json.dumps(sorted((secret_env or {}).items())).encode()
    return hashlib.sha256(blob).hexdigest()[:16] if secret_env else ""


def service_config(spec):
    """The portable settings of a container or function, as providers report them back for comparison."""
    if spec["kind"] == "container":
        container = spec["container"]
        return {
            "image": container["image"], "port": container["port"], "env": container["env"],
            "secret_env": secret_fingerprint(container["secret_env"]), "cpu": float(container["cpu"]),
            "memory": container["memory"], "command": list(container.get("command") or []),
            "public": container["public"], "replicas": spec["count"],
        }
    function = spec["function"]
    return {
        "runtime": function["runtime"], "handler": function["handler"], "code": function.get("code_sha256"),
        "env": function["env"], "memory": function["memory"], "timeout": function["timeout"], "url": function["url"],
    }


def cloud_init(spec):
    """The cloud-init user data a VM boots with: the user's own, or one that installs the SSH key."""
    if spec.get("user_data"):
        return spec["user_data"]
    if spec.get("ssh_public_key"):
        return "#cloud-config\nssh_authorized_keys:\n  - " + spec["ssh_public_key"].strip() + "\n"
    return None


def member_names(name, count):
    """Members of a deployment of `count`: <name>-1 .. <name>-<count>."""
    return [f"{name}-{index}" for index in range(1, count + 1)]


def member_index(deployment, member):
    """The index of a member name of this deployment, or None when it is not one."""
    prefix = f"{deployment}-"
    if member and member.startswith(prefix) and member[len(prefix):].isdigit():
        return int(member[len(prefix):])
    return None
