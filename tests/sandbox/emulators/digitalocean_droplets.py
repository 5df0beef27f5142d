"""Droplets, droplet actions and the account-wide actions list of the DigitalOcean emulator."""
import ipaddress
import re
import uuid

from tests.sandbox.emulators.digitalocean_catalog import REGIONS, SIZES, find_image, public_image
from tests.sandbox.emulators.digitalocean_core import (
    ApiError, Response, Route, State, bad_request, not_found, now_iso, paginate, unprocessable,
)
from tests.sandbox.emulators.digitalocean_tags import ensure_tag, find_tag, tag_error, valid_tag

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")
NAME_ERROR = "Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)"
DEFAULT_REGION = "nyc3"
MAX_MULTI_CREATE = 10
PUBLIC_POOLS = [ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")]
BULK_TYPES = ("power_cycle", "power_on", "power_off", "shutdown", "enable_ipv6", "enable_backups",
              "disable_backups", "snapshot")
NOT_EMULATED = ("restore", "snapshot", "change_kernel", "change_backup_policy")


def setup(state):
    state.data["droplets"] = {}  # id -> droplet (public fields + "_" private ones)
    state.data["public_ips"] = set()


def live_ids(state):
    return {"droplets": sorted(state.data["droplets"])}


# -- rendering ----------------------------------------------------------------------------------------
def vpc_uuid(region_slug):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://sandbox.invalid/vpc/default/{region_slug}"))


def render(droplet):
    return {key: value for key, value in droplet.items() if not key.startswith("_")}


def _size_fields(droplet, size, resize_disk):
    droplet.update(size=dict(size), size_slug=size["slug"], memory=size["memory"], vcpus=size["vcpus"])
    if resize_disk:
        droplet["disk"] = size["disk"]
        droplet["disk_info"] = [{"type": "local", "size": {"amount": size["disk"], "unit": "gib"}}]


def _allocate_public_ip(state):
    used = state.data["public_ips"]
    for pool in PUBLIC_POOLS:
        for host in list(pool.hosts())[1:]:  # .1 is the gateway
            if str(host) not in used:
                used.add(str(host))
                return str(host), str(next(pool.hosts()))
    raise ApiError(422, "unprocessable_entity", "No public IPv4 addresses left in the sandbox pool.")


def _ipv6(droplet_id):
    return {"ip_address": f"2604:a880:400:d1::{droplet_id % 65536:x}:{droplet_id // 65536 % 65536:x}",
            "netmask": 64, "gateway": "2604:a880:400:d1::1", "type": "public"}


def _bring_up(state, droplet):
    """Create finished: the droplet gets its addresses and becomes active."""
    public, gateway = _allocate_public_ip(state)
    number = droplet["id"] - 500000000
    private = f"10.{108 + list(REGIONS).index(droplet['region']['slug'])}.{number // 250 % 16}.{number % 250 + 2}"
    droplet["networks"] = {
        "v4": [
            {"ip_address": private, "netmask": "255.255.240.0", "gateway": "nil", "type": "private"},
            {"ip_address": public, "netmask": "255.255.255.0", "gateway": gateway, "type": "public"},
        ],
        "v6": [_ipv6(droplet["id"])] if "ipv6" in droplet["features"] else [],
    }
    droplet["status"] = "active"


def _release(state, droplet):
    for network in droplet["networks"]["v4"]:
        if network["type"] == "public":
            state.data["public_ips"].discard(network["ip_address"])


# -- droplets -----------------------------------------------------------------------------------------
def _invalid(what, value):
    return unprocessable(f"You specified an invalid {what} for Droplet creation. ({what} {value!r} does not exist)")


def _flag(body, name):
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean")
    return value


def _validate_create(state, body):
    if "name" in body and "names" in body:
        raise unprocessable("Specify either name or names, not both.")
    names = body.get("names") if "names" in body else [body.get("name")]
    if not isinstance(names, list) or not names:
        raise unprocessable("names must be a non-empty array of Droplet names.")
    if len(names) > MAX_MULTI_CREATE:
        raise unprocessable(f"You can only create up to {MAX_MULTI_CREATE} Droplets at a time.")
    for name in names:
        if not isinstance(name, str) or not name:
            raise unprocessable("Name is required.")
        if len(name) > 255 or not NAME_PATTERN.match(name):
            raise unprocessable(NAME_ERROR)
    region_slug = body.get("region") or DEFAULT_REGION
    region = REGIONS.get(region_slug) if isinstance(region_slug, str) else None
    if region is None:
        raise _invalid("region", region_slug)
    if not region["available"]:
        raise unprocessable("Region is not available.")
    size = SIZES.get(body.get("size")) if isinstance(body.get("size"), str) else None
    if size is None:
        raise _invalid("size", body.get("size"))
    image = find_image(body.get("image"))
    if image is None:
        raise _invalid("image", body.get("image"))
    if region_slug not in size["regions"]:
        raise unprocessable("Size is not available in this region.")
    if region_slug not in image["regions"]:
        raise unprocessable("The image you specified is not available in the selected region, you can transfer it "
                            "to this region from the images pages.")
    if (image["min_disk_size"] or 0) > size["disk"]:
        raise unprocessable("The image you specified requires a larger disk than the selected size provides.")
    tags = body.get("tags") or []
    if not isinstance(tags, list):
        raise bad_request("tags must be an array of strings")
    for tag in tags:
        if not valid_tag(tag):
            raise bad_request(tag_error(tag if isinstance(tag, str) else ""))
    if body.get("volumes"):
        raise unprocessable("You specified an invalid volume for Droplet creation (volumes are not emulated).")
    vpc = body.get("vpc_uuid")
    if vpc is not None:
        try:
            uuid.UUID(str(vpc))
        except ValueError:
            raise unprocessable(f"You specified an invalid VPC for Droplet creation. ({vpc!r})")
    flags = {name: _flag(body, name) for name in ("backups", "ipv6", "monitoring", "private_networking")}
    flags["with_droplet_agent"] = body.get("with_droplet_agent", True)
    if not isinstance(flags["with_droplet_agent"], bool):
        raise bad_request("with_droplet_agent must be a boolean")
    if state.droplet_limit is not None and len(state.data["droplets"]) + len(names) > state.droplet_limit:
        raise unprocessable("creating this/these droplet(s) will exceed your droplet limit")
    return names, region, size, image, tags, vpc, flags


def create_droplets(state, request):
    body = request.json_object()
    names, region, size, image, tags, vpc, flags = _validate_create(state, body)
    tags = list(dict.fromkeys(ensure_tag(state, tag) for tag in tags))
    features = ["private_networking"]
    features += [name for name in ("backups", "ipv6", "monitoring") if flags[name]]
    if flags["with_droplet_agent"]:
        features.append("droplet_agent")
    droplets, links = [], []
    for name in names:
        droplet_id = state.next_id("droplet")
        droplet = {
            "id": droplet_id, "name": name, "memory": size["memory"], "vcpus": size["vcpus"], "disk": size["disk"],
            "disk_info": [{"type": "local", "size": {"amount": size["disk"], "unit": "gib"}}],
            "locked": False, "status": "new", "kernel": None, "created_at": now_iso(), "features": list(features),
            "backup_ids": [], "next_backup_window": _backup_window() if flags["backups"] else None,
            "snapshot_ids": [], "image": public_image(image), "volume_ids": [], "size": dict(size),
            "size_slug": size["slug"], "networks": {"v4": [], "v6": []}, "region": dict(region),
            "tags": list(tags), "vpc_uuid": vpc or vpc_uuid(region["slug"]),
        }
        state.data["droplets"][droplet_id] = droplet
        action = state.start_action("create", droplet_id, "droplet", dict(region),
                                    effect=lambda d=droplet: _bring_up(state, d))
        droplets.append(render(droplet))
        links.append({"id": action["id"], "rel": "create", "href": request.url(f"/v2/actions/{action['id']}")})
    if "names" in body:
        return Response(202, {"droplets": droplets, "links": {"actions": links}})
    return Response(202, {"droplet": droplets[0], "links": {"actions": links}})


def _backup_window():
    day = now_iso()[:10]
    return {"start": f"{day}T00:00:00Z", "end": f"{day}T23:00:00Z"}


def list_droplets(state, request):
    tag_name, name, kind = request.arg("tag_name"), request.arg("name"), request.arg("type")
    if tag_name is not None and (name is not None or kind is not None):
        raise unprocessable("tag_name can not be combined with name or type.")
    if kind not in (None, "droplets", "gpus"):
        raise bad_request(f"invalid value for type: {kind!r}")
    droplets = list(state.data["droplets"].values())
    if tag_name is not None:
        canonical = find_tag(state, tag_name)
        droplets = [d for d in droplets if canonical is not None and canonical in d["tags"]]
    if name is not None:
        droplets = [d for d in droplets if d["name"].lower() == name.lower()]
    if kind == "gpus":
        droplets = []  # no GPU sizes are emulated
    return paginate(request, [render(d) for d in droplets], "droplets")


def _droplet(state, request):
    droplet = state.data["droplets"].get(request.params["droplet_id"])
    if droplet is None:
        raise not_found()
    return droplet


def get_droplet(state, request):
    return Response(200, {"droplet": render(_droplet(state, request))})


def _destroy(state, droplet):
    state.start_action("destroy", droplet["id"], "droplet", dict(droplet["region"]))
    for action in state.pending_actions("droplet", droplet["id"]):
        action["_effect"] = None
    _release(state, droplet)
    del state.data["droplets"][droplet["id"]]


def delete_droplet(state, request):
    _destroy(state, _droplet(state, request))
    return Response(204)


def delete_droplets_by_tag(state, request):
    tag_name = request.arg("tag_name")
    if not tag_name:
        raise bad_request("tag_name is required to delete Droplets by tag.")
    canonical = find_tag(state, tag_name)
    if canonical is None:
        raise not_found()
    for droplet in [d for d in state.data["droplets"].values() if canonical in d["tags"]]:
        _destroy(state, droplet)
    return Response(204)


# -- droplet actions ----------------------------------------------------------------------------------
def _plan(state, droplet, body):
    """Validate one action; return (action type, effect) or raise ApiError as the API does."""
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise unprocessable("Action type is required.")
    if state.pending_actions("droplet", droplet["id"]):
        raise unprocessable("Droplet already has a pending event.")
    status = droplet["status"]

    def set_status(value):
        return lambda: droplet.update(status=value)

    if kind in ("power_off", "shutdown"):
        if status == "off":
            raise unprocessable("The droplet is already off.")
        return set_status("off")
    if kind == "power_on":
        if status == "active":
            raise unprocessable("Droplet is already powered on")
        return set_status("active")
    if kind in ("reboot", "power_cycle"):
        return set_status("active")
    if kind == "resize":
        size = SIZES.get(body.get("size")) if isinstance(body.get("size"), str) else None
        if size is None:
            raise unprocessable(f"You specified an invalid size for Droplet resize. (size {body.get('size')!r} "
                                "does not exist)")
        disk = body.get("disk", False)
        if not isinstance(disk, bool):
            raise bad_request("disk must be a boolean")
        if status != "off":
            raise unprocessable("Droplet is currently on. Please power it off to run this event.")
        if size["slug"] == droplet["size_slug"]:
            raise unprocessable("The droplet is already set to this size.")
        if droplet["region"]["slug"] not in size["regions"]:
            raise unprocessable("Size is not available in this region.")
        if size["disk"] < droplet["disk"]:
            raise unprocessable("Size can not decrease size of Droplet's disk image")
        droplet["locked"] = True

        def resize():
            _size_fields(droplet, size, disk)
            droplet["locked"] = False
        return resize
    if kind == "rename":
        name = body.get("name")
        if not isinstance(name, str) or len(name) > 255 or not NAME_PATTERN.match(name):
            raise unprocessable(NAME_ERROR)
        return lambda: droplet.update(name=name)
    if kind == "rebuild":
        image = find_image(body.get("image"))
        if image is None:
            raise unprocessable(f"You specified an invalid image for Droplet rebuild. ({body.get('image')!r})")
        return lambda: droplet.update(image=public_image(image), status="active")
    if kind == "enable_backups":
        def enable():
            if "backups" not in droplet["features"]:
                droplet["features"].append("backups")
            droplet["next_backup_window"] = _backup_window()
        return enable
    if kind == "disable_backups":
        if "backups" not in droplet["features"]:
            raise unprocessable("Backups have already been disabled on this Droplet.")
        return lambda: (droplet["features"].remove("backups"), droplet.update(next_backup_window=None))
    if kind == "enable_ipv6":
        def enable_ipv6():
            if "ipv6" not in droplet["features"]:
                droplet["features"].append("ipv6")
                droplet["networks"]["v6"] = [_ipv6(droplet["id"])]
        return enable_ipv6
    if kind == "password_reset":
        return None
    if kind in NOT_EMULATED:
        raise unprocessable(f"The {kind} action is not emulated by the sandbox.")
    raise unprocessable(f"{kind!r} is not a valid action type.")


def post_droplet_action(state, request):
    droplet = _droplet(state, request)
    body = request.json_object()
    effect = _plan(state, droplet, body)
    action = state.start_action(body["type"], droplet["id"], "droplet", dict(droplet["region"]), effect=effect)
    return Response(201, {"action": State.public_action(action)})


def post_action_by_tag(state, request):
    tag_name = request.arg("tag_name")
    if not tag_name:
        raise bad_request("tag_name is required to act on Droplets by tag.")
    body = request.json_object()
    if body.get("type") not in BULK_TYPES:
        raise unprocessable(f"{body.get('type')!r} can not be performed on tagged Droplets; supported: "
                            + ", ".join(BULK_TYPES))
    canonical = find_tag(state, tag_name)
    actions = []
    for droplet in [d for d in state.data["droplets"].values() if canonical is not None and canonical in d["tags"]]:
        try:
            effect, error = _plan(state, droplet, body), None
        except ApiError as exc:
            effect, error = None, exc.message
        action = state.start_action(body["type"], droplet["id"], "droplet", dict(droplet["region"]), effect=effect,
                                    error=error)
        actions.append(State.public_action(action))
    return Response(201, {"actions": actions})


def _newest_first(actions):
    return [State.public_action(a) for a in sorted(actions, key=lambda a: a["id"], reverse=True)]


def list_droplet_actions(state, request):
    droplet = _droplet(state, request)
    mine = [a for a in state.actions.values() if a["resource_type"] == "droplet" and a["resource_id"] == droplet["id"]]
    return paginate(request, _newest_first(mine), "actions")


def get_droplet_action(state, request):
    droplet = _droplet(state, request)
    action = state.actions.get(request.params["action_id"])
    if action is None or action["resource_type"] != "droplet" or action["resource_id"] != droplet["id"]:
        raise not_found()
    return Response(200, {"action": State.public_action(action)})


def list_actions(state, request):
    return paginate(request, _newest_first(state.actions.values()), "actions")


def get_action(state, request):
    action = state.actions.get(request.params["action_id"])
    if action is None:
        raise not_found()
    return Response(200, {"action": State.public_action(action)})


ROUTES = [
    Route("GET", "/v2/droplets", "droplets.list", list_droplets),
    Route("POST", "/v2/droplets", "droplets.create", create_droplets),
    Route("DELETE", "/v2/droplets", "droplets.destroy_byTag", delete_droplets_by_tag),
    Route("GET", "/v2/droplets/{droplet_id:int}", "droplets.get", get_droplet),
    Route("DELETE", "/v2/droplets/{droplet_id:int}", "droplets.destroy", delete_droplet),
    Route("POST", "/v2/droplets/actions", "dropletActions.post_byTag", post_action_by_tag),
    Route("GET", "/v2/droplets/{droplet_id:int}/actions", "dropletActions.list", list_droplet_actions),
    Route("POST", "/v2/droplets/{droplet_id:int}/actions", "dropletActions.post", post_droplet_action),
    Route("GET", "/v2/droplets/{droplet_id:int}/actions/{action_id:int}", "dropletActions.get", get_droplet_action),
    Route("GET", "/v2/actions", "actions.list", list_actions),
    Route("GET", "/v2/actions/{action_id:int}", "actions.get", get_action),
]
