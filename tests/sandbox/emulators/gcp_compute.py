"""Compute Engine v1 (REST) service of the GCP emulator: instances, zonal/global operations, disks,
firewalls, and read-only zones, regions, machine types, images, networks and subnetworks.

Time: every state change is an event on one heap, applied lazily (under the lock) when a request
arrives, so nothing runs in the background. With ``provision_seconds`` p:

* instances.insert / start: PROVISIONING, STAGING at p/2, RUNNING at p; the operation is DONE at p.
* instances.stop: STOPPING, TERMINATED at p. instances.delete: STOPPING, gone at p. reset: op only.
* setLabels, setMachineType, firewalls.insert/delete, disks.delete: applied at once, op DONE at p/4.
* p = 0: everything, operations included, is DONE/RUNNING in the response of the call itself.
"""
import copy
import heapq
import re
import threading
import time

from . import gcp_compute_catalog as cat
from . import gcp_compute_network
from .gcp_compute_network import assign_nat, release_nat, resolve_image
from .gcp_common import (
    ApiError, AsyncFailure, Link, already_exists, check_labels, check_name, compile_filter, compile_routes, invalid,
    labels_fingerprint, new_id, not_found, not_ready, operation_name, operation_of, page, random_fingerprint, rel_path,
    render, required, rfc3339, stable_id,
)

_P = r"^/compute/v1/projects/(?P<project>[^/]+)/"
ROUTES = [  # (method, path pattern after projects/{project}/, operation id, handler)
    ("GET", "zones", "compute.zones.list", "zones_list"),
    ("GET", "zones/{zone}", "compute.zones.get", "zones_get"),
    ("GET", "regions", "compute.regions.list", "regions_list"),
    ("GET", "regions/{region}", "compute.regions.get", "regions_get"),
    ("GET", "zones/{zone}/machineTypes", "compute.machineTypes.list", "machine_types_list"),
    ("GET", "zones/{zone}/machineTypes/{name}", "compute.machineTypes.get", "machine_types_get"),
    ("GET", "global/images", "compute.images.list", "images_list"),
    ("GET", "global/images/family/{name}", "compute.images.getFromFamily", "images_from_family"),
    ("GET", "global/images/{name}", "compute.images.get", "images_get"),
    ("GET", "aggregated/instances", "compute.instances.aggregatedList", "instances_aggregated"),
    ("GET", "zones/{zone}/instances", "compute.instances.list", "instances_list"),
    ("POST", "zones/{zone}/instances", "compute.instances.insert", "instances_insert"),
    ("GET", "zones/{zone}/instances/{name}", "compute.instances.get", "instances_get"),
    ("DELETE", "zones/{zone}/instances/{name}", "compute.instances.delete", "instances_delete"),
    ("POST", "zones/{zone}/instances/{name}/start", "compute.instances.start", "instances_start"),
    ("POST", "zones/{zone}/instances/{name}/stop", "compute.instances.stop", "instances_stop"),
    ("POST", "zones/{zone}/instances/{name}/reset", "compute.instances.reset", "instances_reset"),
    ("POST", "zones/{zone}/instances/{name}/setLabels", "compute.instances.setLabels", "instances_set_labels"),
    ("POST", "zones/{zone}/instances/{name}/setMachineType", "compute.instances.setMachineType",
     "instances_set_machine_type"),
    ("GET", "zones/{zone}/operations", "compute.zoneOperations.list", "zone_ops_list"),
    ("GET", "zones/{zone}/operations/{name}", "compute.zoneOperations.get", "zone_ops_get"),
    ("POST", "zones/{zone}/operations/{name}/wait", "compute.zoneOperations.wait", "zone_ops_wait"),
    ("DELETE", "zones/{zone}/operations/{name}", "compute.zoneOperations.delete", "zone_ops_delete"),
    ("GET", "global/operations", "compute.globalOperations.list", "global_ops_list"),
    ("GET", "global/operations/{name}", "compute.globalOperations.get", "global_ops_get"),
    ("POST", "global/operations/{name}/wait", "compute.globalOperations.wait", "global_ops_wait"),
    ("DELETE", "global/operations/{name}", "compute.globalOperations.delete", "global_ops_delete"),
] + gcp_compute_network.ROUTES
COMPILED = compile_routes(_P, ROUTES, segment=r"[^/]+")
PREFIX = "/compute/"
_ORDER = ["kind", "id", "creationTimestamp", "name", "description", "tags", "machineType", "status", "zone",
          "canIpForward", "networkInterfaces", "disks", "metadata", "serviceAccounts", "selfLink", "scheduling",
          "cpuPlatform", "labels", "labelFingerprint", "startRestricted", "deletionProtection",
          "shieldedInstanceConfig", "shieldedInstanceIntegrityPolicy", "fingerprint"]


def operation(method, path):
    return operation_of(COMPILED, method, path)


class Project:
    def __init__(self, name):
        self.name = name
        self.number = str(100000000000 + int(stable_id("project", name)) % 900000000000)
        self.instances = {}   # (zone, name) -> Instance dict
        self.disks = {}       # (zone, name) -> Disk dict
        self.firewalls = cat.default_firewalls(name)
        self.seed_firewalls = set(self.firewalls)
        self.operations = {}  # name -> Operation dict (private keys: _done_at, _zone)
        self.request_ids = {}
        self.next_host = {}   # region -> next host number in the default subnet


class ComputeService(gcp_compute_network.NetworkHandlers):
    routes = COMPILED
    prefix = PREFIX

    def __init__(self, provision_seconds=0.0, wait_seconds=2.0, link_base=None, clock=time.time):
        self.provision_seconds = float(provision_seconds)
        self.wait_seconds = float(wait_seconds)
        self.link_base = link_base
        self.clock = clock
        self.lock = threading.RLock()
        self.reset()

    # ------------------------------------------------------------------------------ sandbox hooks
    def reset(self):
        with self.lock:
            self.projects = {}
            self.events = []
            self.seq = 0

    def state(self):
        with self.lock:
            self.tick()
            out = {"instances": [], "disks": [], "firewalls": []}
            for proj in self.projects.values():
                out["instances"] += [f"{zone}/{name}" for zone, name in sorted(proj.instances)]
                out["disks"] += [f"{zone}/{name}" for zone, name in sorted(proj.disks)]
                out["firewalls"] += sorted(set(proj.firewalls) - proj.seed_firewalls)
            return out

    def handle(self, ctx, handler, groups):
        base = self.link_base or ctx.base_url + "/compute/v1/"
        with self.lock:
            self.tick()
            project = self.project(groups.pop("project"))
            result = getattr(self, handler)(ctx, project, **groups)
            self.tick()
            if not callable(result):
                return 200, render(result, base)
        return 200, render(result(), base)  # a wait: it blocks outside the lock

    def project(self, name):
        if name not in self.projects:
            self.projects[name] = Project(name)
        return self.projects[name]

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
    def start_op(self, ctx, proj, kind, target, target_id, zone=None, delay=None, error=None, on_done=None):
        """A RUNNING operation that turns DONE (with error, if given) after delay (default p)."""
        now = self.clock()
        delay = self.provision_seconds if delay is None else delay
        name = operation_name(now)
        scope = f"projects/{proj.name}/zones/{zone}" if zone else f"projects/{proj.name}/global"
        op = {"kind": "compute#operation", "id": new_id(), "name": name}
        if zone:
            op["zone"] = Link(scope)
        op.update({"operationType": kind, "targetLink": Link(target), "targetId": target_id, "status": "RUNNING",
                   "user": ctx.principal, "progress": 0, "insertTime": rfc3339(now), "startTime": rfc3339(now),
                   "selfLink": Link(f"{scope}/operations/{name}"), "_done_at": now + delay, "_zone": zone})
        proj.operations[name] = op
        request_id = ctx.query.get("requestId", [""])[0]
        if request_id:
            proj.request_ids[request_id] = name

        def done(when):
            op.update({"status": "DONE", "progress": 100, "endTime": rfc3339(when)})
            if error:
                code, http_code, message = error
                op["error"] = {"errors": [{"code": code, "message": message}]}
                op["httpErrorStatusCode"] = http_code
                op["httpErrorMessage"] = ApiError.http_reasons.get(http_code, "ERROR")
            elif on_done:
                on_done(when)
        self.at(delay, done, now)
        return op

    def replayed(self, ctx, proj):
        name = proj.request_ids.get(ctx.query.get("requestId", [""])[0])
        return proj.operations.get(name) if name else None

    def _op(self, proj, name, zone):
        op = proj.operations.get(name)
        if not op or op["_zone"] != zone:
            scope = f"zones/{zone}" if zone else "global"
            raise not_found(f"projects/{proj.name}/{scope}/operations/{name}")
        return op

    def _wait(self, proj, name, zone):
        op = self._op(proj, name, zone)
        deadline = self.clock() + self.wait_seconds

        def finish():  # GCE's wait returns when DONE or after ~2 minutes (here: wait_seconds)
            time.sleep(max(0.0, min(op["_done_at"], deadline) - self.clock()))
            while True:
                with self.lock:
                    self.tick()
                    if op["status"] == "DONE" or self.clock() >= deadline:
                        return copy.deepcopy(op)
                time.sleep(0.005)
        return finish

    def _ops_list(self, ctx, proj, zone, kind):
        scope = f"projects/{proj.name}/zones/{zone}" if zone else f"projects/{proj.name}/global"
        items = sorted((op for op in proj.operations.values() if op["_zone"] == zone), key=lambda op: op["name"])
        return self.list_body(ctx, items, kind, scope + "/operations", key=lambda op: (op["name"],))

    def zone_ops_get(self, ctx, proj, zone, name):
        self.check_zone(zone)
        return self._op(proj, name, zone)

    def zone_ops_wait(self, ctx, proj, zone, name):
        self.check_zone(zone)
        return self._wait(proj, name, zone)

    def zone_ops_delete(self, ctx, proj, zone, name):
        self.check_zone(zone)
        del proj.operations[self._op(proj, name, zone)["name"]]
        return {}

    def zone_ops_list(self, ctx, proj, zone):
        self.check_zone(zone)
        return self._ops_list(ctx, proj, zone, "compute#operationList")

    def global_ops_get(self, ctx, proj, name):
        return self._op(proj, name, None)

    def global_ops_wait(self, ctx, proj, name):
        return self._wait(proj, name, None)

    def global_ops_delete(self, ctx, proj, name):
        del proj.operations[self._op(proj, name, None)["name"]]
        return {}

    def global_ops_list(self, ctx, proj):
        return self._ops_list(ctx, proj, None, "compute#operationList")

    # ------------------------------------------------------------------------------------ lists
    def list_body(self, ctx, items, kind, scope_path, key=lambda item: (item["name"],)):
        base = self.link_base or ctx.base_url + "/compute/v1/"
        predicate = compile_filter(ctx.query.get("filter", [""])[0])
        items = [item for item in items if predicate(render(item, base))]
        items = self.order(ctx, items)
        chunk, token = page(items, ctx.query, key)
        body = {"kind": kind, "id": scope_path}
        if chunk:
            body["items"] = chunk
        if token:
            body["nextPageToken"] = token
        body["selfLink"] = Link(scope_path)
        return body

    @staticmethod
    def order(ctx, items):
        order_by = ctx.query.get("orderBy", [""])[0].strip()
        if order_by in ("", "name"):
            return items
        if order_by == "creationTimestamp desc":
            return sorted(items, key=lambda item: item.get("creationTimestamp", ""), reverse=True)
        raise invalid("orderBy", order_by, "Only sorting by name or by creationTimestamp desc is supported.")

    # ------------------------------------------------------------------------ zones, types, images
    def check_zone(self, zone):
        if zone not in cat.ZONES:
            raise invalid("zone", zone, "Unknown zone.")

    def zones_list(self, ctx, proj):
        items = [cat.zone_res(proj.name, zone) for zone in sorted(cat.ZONES)]
        return self.list_body(ctx, items, "compute#zoneList", f"projects/{proj.name}/zones")

    def zones_get(self, ctx, proj, zone):
        if zone not in cat.ZONES:
            raise not_found(f"projects/{proj.name}/zones/{zone}")
        return cat.zone_res(proj.name, zone)

    def regions_list(self, ctx, proj):
        items = [cat.region_res(proj.name, region) for region in sorted(cat.REGIONS)]
        return self.list_body(ctx, items, "compute#regionList", f"projects/{proj.name}/regions")

    def regions_get(self, ctx, proj, region):
        if region not in cat.REGIONS:
            raise not_found(f"projects/{proj.name}/regions/{region}")
        return cat.region_res(proj.name, region)

    def machine_types_list(self, ctx, proj, zone):
        self.check_zone(zone)
        items = [cat.machine_type_res(proj.name, zone, name) for name in sorted(cat.MACHINE_TYPES)]
        return self.list_body(ctx, items, "compute#machineTypeList", f"projects/{proj.name}/zones/{zone}/machineTypes")

    def machine_types_get(self, ctx, proj, zone, name):
        self.check_zone(zone)
        if name not in cat.MACHINE_TYPES:
            raise not_found(f"projects/{proj.name}/zones/{zone}/machineTypes/{name}")
        return cat.machine_type_res(proj.name, zone, name)

    def images_list(self, ctx, proj):
        items = [cat.image_res(proj.name, entry) for entry in cat.PUBLIC_IMAGES.get(proj.name, [])]
        return self.list_body(ctx, sorted(items, key=lambda i: i["name"]), "compute#imageList",
                              f"projects/{proj.name}/global/images")

    def images_get(self, ctx, proj, name):
        image = cat.find_image(proj.name, name=name)
        if image is None:
            raise not_found(f"projects/{proj.name}/global/images/{name}")
        return image

    def images_from_family(self, ctx, proj, name):
        image = cat.find_image(proj.name, family=name)
        if image is None:
            raise not_found(f"projects/{proj.name}/global/images/family/{name}")
        return image

    def machine_type(self, proj, zone, value, field):
        if not value:
            raise required(field)
        match = re.fullmatch(r"projects/[^/]+/zones/([^/]+)/machineTypes/([^/]+)", rel_path(value, proj.name))
        if not match:
            raise invalid(field, value, "Must be a URL of a machine type, e.g. 'zones/ZONE/machineTypes/TYPE'.")
        mt_zone, name = match.groups()
        if mt_zone != zone or name not in cat.MACHINE_TYPES:
            raise invalid(field, value, f"Machine type with name '{name}' does not exist in zone '{zone}'.")
        return Link(f"projects/{proj.name}/zones/{zone}/machineTypes/{name}")

    # --------------------------------------------------------------------------------- instances
    def inst(self, proj, zone, name):
        self.check_zone(zone)
        res = proj.instances.get((zone, name))
        if res is None:
            raise not_found(f"projects/{proj.name}/zones/{zone}/instances/{name}")
        return res

    def instances_get(self, ctx, proj, zone, name):
        return self.inst(proj, zone, name)

    def instances_list(self, ctx, proj, zone):
        self.check_zone(zone)
        items = sorted((res for (z, _n), res in proj.instances.items() if z == zone), key=lambda r: r["name"])
        return self.list_body(ctx, items, "compute#instanceList", f"projects/{proj.name}/zones/{zone}/instances")

    def instances_aggregated(self, ctx, proj):
        key = lambda res: (res["_zone"], res["name"])  # noqa: E731
        items = sorted(proj.instances.values(), key=key)
        body = self.list_body(ctx, items, "compute#instanceAggregatedList",
                              f"projects/{proj.name}/aggregated/instances", key=key)
        scoped = {}
        for zone in sorted(cat.ZONES):
            found = [res for res in body.get("items", []) if res["_zone"] == zone]
            scope = f"zones/{zone}"
            scoped[scope] = {"instances": found} if found else {"warning": {
                "code": "NO_RESULTS_ON_PAGE", "message": f"There are no results for scope '{scope}' on this page.",
                "data": [{"key": "scope", "value": scope}]}}
        body["items"] = scoped
        return body

    def instances_insert(self, ctx, proj, zone):
        self.check_zone(zone)
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        body = ctx.body
        if not isinstance(body, dict) or not body:
            raise required("resource")
        name = body.get("name")
        check_name(name)
        machine_type = self.machine_type(proj, zone, body.get("machineType"), "resource.machineType")
        check_labels(body.get("labels"), "resource.labels")
        disks = body.get("disks") or []
        if not disks:
            raise required("resource.disks")
        nics = body.get("networkInterfaces") or []
        if not nics:
            raise required("resource.networkInterfaces")
        self_link = f"projects/{proj.name}/zones/{zone}/instances/{name}"
        if (zone, name) in proj.instances:
            raise already_exists(self_link)
        now = self.clock()
        res = copy.deepcopy(body)
        inst_id = new_id()
        try:
            res["networkInterfaces"] = self.attach_nics(proj, zone, nics)
            res["disks"] = self.attach_disks(proj, zone, name, disks, now)
        except AsyncFailure as failure:  # GCE accepts the call; its operation ends in an error
            return self.start_op(ctx, proj, "insert", self_link, inst_id, zone, error=failure.args)
        labels = body.get("labels") or {}
        res.update({"kind": "compute#instance", "id": inst_id, "creationTimestamp": rfc3339(now), "name": name,
                    "machineType": machine_type, "status": "PROVISIONING", "zone": Link(f"projects/{proj.name}/zones/{zone}"),
                    "selfLink": Link(self_link), "labelFingerprint": labels_fingerprint(labels),
                    "fingerprint": random_fingerprint(), "cpuPlatform": "Unknown CPU Platform",
                    "canIpForward": bool(body.get("canIpForward", False)),
                    "deletionProtection": bool(body.get("deletionProtection", False)),
                    "startRestricted": False, "satisfiesPzi": False, "_zone": zone})
        if not labels:
            res.pop("labels", None)
        res["tags"] = {"fingerprint": random_fingerprint(), **({"items": body["tags"]["items"]}
                                                               if (body.get("tags") or {}).get("items") else {})}
        res["metadata"] = {"kind": "compute#metadata", "fingerprint": random_fingerprint(),
                           **({"items": body["metadata"]["items"]} if (body.get("metadata") or {}).get("items") else {})}
        res["scheduling"] = {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False,
                             "provisioningModel": "STANDARD", **(body.get("scheduling") or {})}
        res["shieldedInstanceConfig"] = {"enableSecureBoot": False, "enableVtpm": True,
                                         "enableIntegrityMonitoring": True, **(body.get("shieldedInstanceConfig") or {})}
        res["shieldedInstanceIntegrityPolicy"] = {"updateAutoLearnPolicy": True}
        for account in res.get("serviceAccounts") or []:
            if account.get("email") in (None, "", "default"):
                account["email"] = f"{proj.number}-compute@developer.gserviceaccount.com"
        for key in ("status", "statusMessage", "lastStartTimestamp", "lastStopTimestamp", "lastSuspendedTimestamp"):
            res.pop(key, None)
        res["status"] = "PROVISIONING"
        res = {key: res[key] for key in _ORDER if key in res} | res  # GCE's field order, user extras last
        proj.instances[(zone, name)] = res
        self.boot(res)
        return self.start_op(ctx, proj, "insert", self_link, inst_id, zone)

    def attach_disks(self, proj, zone, inst_name, disks, now):
        out, created = [], []
        inst_link = Link(f"projects/{proj.name}/zones/{zone}/instances/{inst_name}")
        for index, disk in enumerate(disks):
            field = f"resource.disks[{index}]"
            boot = bool(disk.get("boot", index == 0))
            if boot and index != 0:
                raise invalid("resource.disks", "", "Boot disk must be the first disk attached to the instance.")
            params = disk.get("initializeParams")
            if not params and not disk.get("source"):
                raise required(f"{field}.source")
            if params:
                check_labels(params.get("labels"), f"{field}.initializeParams.labels")
                disk_name = params.get("diskName") or (inst_name if index == 0 else f"{inst_name}-{index}")
                check_name(disk_name, f"{field}.initializeParams.diskName")
                if not params.get("sourceImage") and boot:
                    raise required(f"{field}.initializeParams.sourceImage")
                image = resolve_image(proj, params["sourceImage"], field) if params.get("sourceImage") else {
                    "diskSizeGb": "0", "licenses": [], "guestOsFeatures": []}
                size = str(params.get("diskSizeGb") or int(image["diskSizeGb"]) or 500)
                if not size.isdigit() or int(size) < int(image["diskSizeGb"]):
                    raise invalid(f"{field}.initializeParams.diskSizeGb", size,
                                  f"Requested disk size cannot be smaller than the image size ({image['diskSizeGb']} GB)")
                if (zone, disk_name) in proj.disks or any(d["name"] == disk_name for d in created):
                    raise AsyncFailure("RESOURCE_ALREADY_EXISTS", 409,
                                        f"The resource 'projects/{proj.name}/zones/{zone}/disks/{disk_name}' already exists")
                disk_type = rel_path(params.get("diskType") or f"zones/{zone}/diskTypes/pd-standard", proj.name)
                created.append({
                    "kind": "compute#disk", "id": new_id(), "creationTimestamp": rfc3339(now), "name": disk_name,
                    "sizeGb": size, "zone": Link(f"projects/{proj.name}/zones/{zone}"), "status": "READY",
                    "selfLink": Link(f"projects/{proj.name}/zones/{zone}/disks/{disk_name}"),
                    **({"sourceImage": image["selfLink"], "sourceImageId": image["id"]} if "id" in image else {}),
                    "type": Link(disk_type),
                    "licenses": image["licenses"], "guestOsFeatures": image["guestOsFeatures"],
                    "lastAttachTimestamp": rfc3339(now), "users": [inst_link], "labelFingerprint":
                    labels_fingerprint(params.get("labels")), "physicalBlockSizeBytes": "4096",
                    "architecture": "X86_64", **({"labels": params["labels"]} if params.get("labels") else {})})
                record = created[-1]
            else:
                path = rel_path(disk["source"], proj.name)
                match = re.fullmatch(r"projects/[^/]+/zones/([^/]+)/disks/([^/]+)", path)
                record = proj.disks.get((match.group(1), match.group(2))) if match else None
                if record is None:
                    raise AsyncFailure("RESOURCE_NOT_FOUND", 404, f"The resource '{path}' was not found")
                if record.get("users"):
                    raise AsyncFailure("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", 400,
                                        f"The disk resource '{path}' is already being used by '{record['users'][0]}'")
            out.append({"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": disk.get("mode", "READ_WRITE"),
                        "source": record["selfLink"], "deviceName": disk.get("deviceName") or f"persistent-disk-{index}",
                        "index": index, "boot": boot, "autoDelete": bool(disk.get("autoDelete", False)),
                        "licenses": record.get("licenses", []), "interface": disk.get("interface", "SCSI"),
                        "guestOsFeatures": record.get("guestOsFeatures", []), "diskSizeGb": record["sizeGb"],
                        "architecture": "X86_64"})
        for record in created:
            proj.disks[(zone, record["name"])] = record
        for attached in out:
            disk = proj.disks[(zone, attached["source"].rsplit("/", 1)[-1])]
            disk["users"] = [inst_link]
        return out

    def boot(self, res, after_start=False):
        """PROVISIONING -> STAGING (p/2) -> RUNNING (p); external IPs are handed out again."""
        p = self.provision_seconds
        res["status"] = "PROVISIONING"
        assign_nat(res)

        def staging(_when):
            if res["status"] == "PROVISIONING":
                res["status"] = "STAGING"

        def running(when):
            if res["status"] in ("PROVISIONING", "STAGING"):
                res.update({"status": "RUNNING", "lastStartTimestamp": rfc3339(when), "cpuPlatform": "Intel Broadwell"})
        self.at(p / 2, staging)
        self.at(p, running)

    def _transition_check(self, proj, res, allowed):
        if res.get("_deleting") or res["status"] not in allowed:
            raise not_ready(str(res["selfLink"]))

    def instances_start(self, ctx, proj, zone, name):
        res = self.inst(proj, zone, name)
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        self._transition_check(proj, res, ("RUNNING", "TERMINATED"))
        if res["status"] == "RUNNING":
            return self.start_op(ctx, proj, "start", res["selfLink"], res["id"], zone, delay=0)
        self.boot(res)
        return self.start_op(ctx, proj, "start", res["selfLink"], res["id"], zone)

    def instances_stop(self, ctx, proj, zone, name):
        res = self.inst(proj, zone, name)
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        self._transition_check(proj, res, ("RUNNING", "TERMINATED"))
        if res["status"] == "TERMINATED":
            return self.start_op(ctx, proj, "stop", res["selfLink"], res["id"], zone, delay=0)
        res["status"] = "STOPPING"

        def stopped(when):
            res.update({"status": "TERMINATED", "lastStopTimestamp": rfc3339(when)})
            release_nat(res)
        return self.start_op(ctx, proj, "stop", res["selfLink"], res["id"], zone, on_done=stopped)

    def instances_reset(self, ctx, proj, zone, name):
        res = self.inst(proj, zone, name)
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        self._transition_check(proj, res, ("RUNNING",))
        return self.start_op(ctx, proj, "reset", res["selfLink"], res["id"], zone)

    def instances_delete(self, ctx, proj, zone, name):
        res = self.inst(proj, zone, name)
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        if res.get("_deleting"):
            raise not_ready(str(res["selfLink"]))
        if res.get("deletionProtection"):
            raise ApiError(400, f"Invalid resource usage: 'Resource cannot be deleted if it's protected against "
                           f"deletion.'.", "resourceInUseByAnotherResource")
        res["_deleting"] = True
        if res["status"] != "TERMINATED":
            res["status"] = "STOPPING"

        def gone(_when):
            proj.instances.pop((zone, name), None)
            for attached in res["disks"]:
                key = (zone, attached["source"].rsplit("/", 1)[-1])
                if attached.get("autoDelete"):
                    proj.disks.pop(key, None)
                elif key in proj.disks:
                    proj.disks[key]["users"] = []
                    proj.disks[key]["lastDetachTimestamp"] = rfc3339(_when)
        return self.start_op(ctx, proj, "delete", res["selfLink"], res["id"], zone, on_done=gone)

    def instances_set_labels(self, ctx, proj, zone, name):
        res = self.inst(proj, zone, name)
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        body = ctx.body if isinstance(ctx.body, dict) else {}
        labels = body.get("labels") or {}
        check_labels(labels, "labels")
        if body.get("labelFingerprint") != res["labelFingerprint"]:
            raise ApiError(412, "Labels fingerprint either invalid or resource labels have changed", "conditionNotMet")
        if labels:
            res["labels"] = dict(labels)
        else:
            res.pop("labels", None)
        res["labelFingerprint"] = labels_fingerprint(labels)
        return self.start_op(ctx, proj, "setLabels", res["selfLink"], res["id"], zone,
                             delay=self.provision_seconds / 4)

    def instances_set_machine_type(self, ctx, proj, zone, name):
        res = self.inst(proj, zone, name)
        replay = self.replayed(ctx, proj)
        if replay:
            return replay
        body = ctx.body if isinstance(ctx.body, dict) else {}
        machine_type = self.machine_type(proj, zone, body.get("machineType"), "resource.machineType")
        if res["status"] != "TERMINATED" or res.get("_deleting"):
            raise ApiError(400, "Invalid resource usage: 'Instance must be stopped (TERMINATED) to change its "
                           "machine type.'.", "invalidResourceUsage")
        res["machineType"] = machine_type
        return self.start_op(ctx, proj, "setMachineType", res["selfLink"], res["id"], zone,
                             delay=self.provision_seconds / 4)

