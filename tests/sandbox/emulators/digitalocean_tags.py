"""Tags of the DigitalOcean emulator: /v2/tags, /v2/tags/{tag}, /v2/tags/{tag}/resources.

Which droplet carries which tag is stored once, in each droplet's ``tags`` list; tag objects only
remember that the tag exists (tags outlive their resources, as in the real API).
"""
import re

from tests.sandbox.emulators.digitalocean_core import ApiError, Response, Route, bad_request, not_found, paginate

TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_\-:]+$")
RESOURCE_TYPES = ("droplet", "image", "volume", "volume_snapshot", "database")


def setup(state):
    state.data["tags"] = {}  # name -> {"name": ...}


def live_ids(state):
    bindings = [
        f"{tag}/droplet/{droplet['id']}"
        for droplet in state.data["droplets"].values() for tag in droplet["tags"]
    ]
    return {"tags": list(state.data["tags"]), "tag_resources": sorted(bindings)}


def tag_error(name):
    """The message the API gives for a malformed tag name."""
    return f'Error validating resource tag: "tag-name \\"{name}\\" contains invalid characters"'


def valid_tag(name):
    return isinstance(name, str) and 0 < len(name) <= 255 and bool(TAG_PATTERN.match(name))


def ensure_tag(state, name):
    """Create the tag if needed (droplet create and tag create); returns the stored name."""
    tags = state.data["tags"]
    for existing in tags:
        if existing.lower() == name.lower():  # tag names are case-insensitive, the first spelling wins
            return existing
    tags[name] = {"name": name}
    return name


def find_tag(state, name):
    for existing in state.data["tags"]:
        if existing.lower() == name.lower():
            return existing
    return None


def render_tag(state, request, name):
    droplets = [d for d in state.data["droplets"].values() if name in d["tags"]]
    droplet_meta = {"count": len(droplets)}
    if droplets:
        droplet_meta["last_tagged_uri"] = request.url(f"/v2/droplets/{droplets[-1]['id']}")
    resources = {"count": len(droplets)}
    if droplets:
        resources["last_tagged_uri"] = droplet_meta["last_tagged_uri"]
    resources.update(droplets=droplet_meta, images={"count": 0}, volumes={"count": 0},
                     volume_snapshots={"count": 0}, databases={"count": 0})
    return {"name": name, "resources": resources}


def create_tag(state, request):
    body = request.json_object()
    name = body.get("name")
    if not valid_tag(name):
        message = tag_error(name if isinstance(name, str) else "")
        raise ApiError(400, "bad_request", message, body={
            "error": message, "messages": None,
            "root_causes": [f"rpc error: code = InvalidArgument desc = {message}"],
        })
    name = ensure_tag(state, name)
    return Response(201, {"tag": render_tag(state, request, name)})


def list_tags(state, request):
    return paginate(request, [render_tag(state, request, name) for name in state.data["tags"]], "tags")


def _existing(state, request):
    name = find_tag(state, request.params["tag_id"])
    if name is None:
        raise not_found()
    return name


def get_tag(state, request):
    return Response(200, {"tag": render_tag(state, request, _existing(state, request))})


def delete_tag(state, request):
    name = _existing(state, request)
    for droplet in state.data["droplets"].values():
        if name in droplet["tags"]:
            droplet["tags"].remove(name)
    del state.data["tags"][name]
    return Response(204)


def _resources(state, request):
    body = request.json_object()
    resources = body.get("resources")
    if not isinstance(resources, list) or not resources:
        raise bad_request("resources must be a non-empty array of {resource_id, resource_type} objects")
    droplets = []
    for item in resources:
        if not isinstance(item, dict) or item.get("resource_type") not in RESOURCE_TYPES:
            raise bad_request(f"invalid resource: {item!r}")
        resource_id = str(item.get("resource_id", ""))
        droplet = state.data["droplets"].get(int(resource_id)) if resource_id.isdigit() else None
        if item["resource_type"] != "droplet" or droplet is None:
            raise not_found()
        droplets.append(droplet)
    return droplets


def tag_resources(state, request):
    name = _existing(state, request)
    for droplet in _resources(state, request):
        if name not in droplet["tags"]:
            droplet["tags"].append(name)
    return Response(204)


def untag_resources(state, request):
    name = _existing(state, request)
    for droplet in _resources(state, request):
        if name in droplet["tags"]:
            droplet["tags"].remove(name)
    return Response(204)


ROUTES = [
    Route("GET", "/v2/tags", "tags.list", list_tags),
    Route("POST", "/v2/tags", "tags.create", create_tag),
    Route("GET", "/v2/tags/{tag_id}", "tags.get", get_tag),
    Route("DELETE", "/v2/tags/{tag_id}", "tags.delete", delete_tag),
    Route("POST", "/v2/tags/{tag_id}/resources", "tags.assign_resources", tag_resources),
    Route("DELETE", "/v2/tags/{tag_id}/resources", "tags.unassign_resources", untag_resources),
]
