# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the Azure backends and monitoring share about Resource Manager resources: their JSON documents,
ARM ids, locations, and tags (Azure's rules for them, and the collection's own among the user's)."""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, retagged
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, TAG_PREFIX, SpecError

# Azure tag names cannot hold these characters; names are at most 512 characters, values 256, 50 per resource.
TAG_FORBIDDEN = set('<>%&\\?/')
TAG_NAME_MAX = 512
TAG_VALUE_MAX = 256
TAGS_MAX = 50


def doc(model):
    """The JSON (wire) form of an SDK model or a dict."""
    if model is None:
        return None
    if isinstance(model, dict):
        return model
    if hasattr(model, "as_dict") and hasattr(model, "keys"):  # azure-mgmt-* on model_base: wire names
        return model.as_dict()
    if hasattr(model, "serialize"):  # msrest models (container instances, monitor, older SDKs)
        return model.serialize(keep_readonly=True)
    return dict(model)


def dig(document, *keys):
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def lower(text):
    """An ARM id as a key: ids are case-insensitive."""
    return str(text or "").rstrip("/").lower()


def split_id(arm_id):
    """(resource group, name) of a resource's ARM id."""
    parts = str(arm_id or "").split("/")
    return parts[4], parts[-1]


def normalize_location(location):
    """Azure's spelling of a location: 'West Europe' -> 'westeurope'."""
    return str(location or "").replace(" ", "").lower()


def user_tags(tags):
    return {key: value for key, value in (tags or {}).items() if not key.startswith(TAG_PREFIX)}


def every_tag(raw, tags, purge):
    """All the tags a resource that has `raw` should end with: the user's as asked, the collection's kept."""
    own = {key: value for key, value in (raw or {}).items() if key.startswith(TAG_PREFIX)}
    return {**retagged(user_tags(raw), tags, purge), **own}


def tag_problem(key, value):
    """Why a user tag cannot be an Azure tag, or None when it can."""
    bad = sorted(set(key) & TAG_FORBIDDEN)
    if not key.strip():
        return f"tags: key '{key}' is empty: Azure tag names need at least one character"
    if bad:
        return (f"tags: key '{key}' cannot be an Azure tag name: names may not contain "
                f"{' '.join(sorted(TAG_FORBIDDEN))} (found {' '.join(bad)})")
    if len(key) > TAG_NAME_MAX:
        return f"tags: key '{key[:40]}...' is {len(key)} characters; Azure tag names hold at most {TAG_NAME_MAX}"
    if len(value) > TAG_VALUE_MAX:
        return f"tags: value of '{key}' is {len(value)} characters; Azure tag values hold at most {TAG_VALUE_MAX}"
    return None


def validate_tags(tags, own):
    """User tags that Azure can hold next to `own` tags of the collection; raise SpecError."""
    seen = {}
    for key, value in tags.items():
        problem = tag_problem(key, value)
        if problem:
            raise SpecError(problem)
        if key.lower() in seen:
            raise SpecError(f"tags: '{key}' and '{seen[key.lower()]}' are the same Azure tag (tag names are "
                            "case-insensitive): keep one")
        seen[key.lower()] = key
    if len(tags) + own > TAGS_MAX:
        raise SpecError(f"tags: at most {TAGS_MAX - own} tags on azure (a resource holds {TAGS_MAX}, {own} are the "
                        "collection's)")


def elsewhere(what, location, group):
    """The error for a deployment's resource found in another location of its resource group."""
    return ProviderError(
        f"{what} already lives in location {location} (resource group {group}); a deployment name is unique per "
        f"resource group: use region {location}, another name, or another azure.resource_group"
    )


def taken(what, resource, deployment, group):
    """The error for a resource a create would overwrite: this deployment's in another location, or not ours."""
    if (resource.get("tags") or {}).get(DEPLOYMENT_TAG) == deployment:
        return elsewhere(f"{what} {resource['name']} of deployment '{deployment}'", resource.get("location"), group)
    return ProviderError(
        f"a {what} named {resource['name']} already exists in resource group {group} without the tag "
        f"{DEPLOYMENT_TAG}={deployment}: rename or delete it, or choose another deployment name"
    )
