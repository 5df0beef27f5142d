# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The common argument spec: connection options for the five providers and the portable deployment."""

from __future__ import annotations

import re

from ansible.module_utils.basic import env_fallback

from ansible_collections.lxcri.cloud.plugins.module_utils.catalog import PORTABLE_IMAGES, PORTABLE_SIZES

PROVIDERS = ("aws", "azure", "gcp", "digitalocean", "proxmox")
KINDS = ("vm",)
STATES = ("present", "absent", "running", "stopped", "restarted")
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
TAG_PREFIX = "lxcri-"
DEPLOYMENT_TAG = "lxcri-deployment"
KIND_TAG = "lxcri-kind"
IMAGE_TAG = "lxcri-image"


def _opt(kind="str", env=(), secret=False, default=None, **extra):
    option = {"type": kind, **extra}
    if env:
        option["fallback"] = (env_fallback, list(env))
    if secret:
        option["no_log"] = True
    if default is not None:
        option["default"] = default
    return option


def _tls(provider):
    """endpoint, validate_certs and ca_bundle: the same three fields on every provider."""
    upper = provider.upper()
    return {
        "endpoint": _opt(env=[f"LXCRI_{upper}_ENDPOINT"]),
        "validate_certs": _opt("bool", default=True),
        "ca_bundle": _opt("path", env=[f"LXCRI_{upper}_CA_BUNDLE"]),
    }


# Every field falls back to the provider SDK's usual environment variable, so that module_defaults
# (or nothing at all) is enough.
CONNECTION_FIELDS = {
    "aws": {
        "access_key": _opt(env=["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"], no_log=False),
        "secret_key": _opt(env=["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"], secret=True),
        "session_token": _opt(env=["AWS_SESSION_TOKEN"], secret=True),
        "profile": _opt(env=["AWS_PROFILE"]),
        "region": _opt(env=["AWS_REGION", "AWS_DEFAULT_REGION"]),
    },
    "azure": {
        "subscription_id": _opt(env=["AZURE_SUBSCRIPTION_ID"]),
        "tenant_id": _opt(env=["AZURE_TENANT_ID"]),
        "client_id": _opt(env=["AZURE_CLIENT_ID"]),
        "client_secret": _opt(env=["AZURE_CLIENT_SECRET"], secret=True),
        "authority_host": _opt(env=["AZURE_AUTHORITY_HOST"]),
        "resource_group": _opt(),
        "region": _opt(env=["AZURE_LOCATION"]),
    },
    "gcp": {
        "project": _opt(env=["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"]),
        "credentials_file": _opt("path", env=["GOOGLE_APPLICATION_CREDENTIALS"]),
        "region": _opt(env=["CLOUDSDK_COMPUTE_ZONE", "CLOUDSDK_COMPUTE_REGION"]),
    },
    "digitalocean": {
        "token": _opt(env=["DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "DO_API_TOKEN"], secret=True),
        "region": _opt(env=["DIGITALOCEAN_REGION"]),
    },
    "proxmox": {
        "user": _opt(env=["PROXMOX_USER"]),
        "password": _opt(env=["PROXMOX_PASSWORD"], secret=True),
        "token_id": _opt(env=["PROXMOX_TOKEN_ID"], no_log=False),
        "token_secret": _opt(env=["PROXMOX_TOKEN_SECRET"], secret=True),
        "region": _opt(env=["PROXMOX_NODE"]),
        "templates": _opt("dict"),
        "storage": _opt(),
    },
}


def connection_argument_spec():
    """One optional dict per provider, so that module_defaults can carry all five at once."""
    return {
        provider: {"type": "dict", "apply_defaults": True, "options": {**fields, **_tls(provider)}}
        for provider, fields in CONNECTION_FIELDS.items()
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
    native = getattr(provider_class, f"NATIVE_{option.upper()}")
    if value in portable or native.match(value or ""):
        return value
    example = getattr(provider_class, f"NATIVE_{option.upper()}_EXAMPLE")
    raise SpecError(
        f"{option} '{value}' is not valid for {provider_class.name}: use one of {', '.join(portable)} "
        f"or a native {provider_class.title} {option} such as {example}"
    )


def validate_deployment(params, provider_class):
    """Check everything that can be checked without calling the provider; return normalized params."""
    spec = dict(params)
    validate_name(spec["name"])
    if spec["count"] < 0:
        raise SpecError(f"count must be 0 or more, got {spec['count']}")
    spec["tags"] = validate_tags(spec.get("tags") or {})
    if spec.get("wait_timeout", 1) <= 0:
        raise SpecError(f"wait_timeout must be more than 0 seconds, got {spec['wait_timeout']}")
    spec["size"] = validate_choice("size", spec["size"], PORTABLE_SIZES, provider_class)
    spec["image"] = validate_choice("image", spec["image"], PORTABLE_IMAGES, provider_class)
    if spec.get("ssh_public_key") and spec.get("user_data"):
        raise SpecError("ssh_public_key and user_data are mutually exclusive: put the key into your cloud-config user_data")
    spec["cloud_init"] = cloud_init(spec)
    provider_class.validate(spec)
    return spec


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
