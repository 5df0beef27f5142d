"""ARM engine of the Azure emulator: errors, requests, the in-memory store, long-running operations, paging,
subscriptions and resource groups, and the generic resource handlers that drive the registered
``ResourceType``s (azure_routes.py; types in azure_network.py and azure_compute.py).

Everything runs under ``Arm.lock``; long-running operations complete lazily: every request first calls
``Arm.tick()``, which finishes the operations whose time has come (``provision_seconds`` after they began
for ``slow`` types such as VMs; at the next request, i.e. the first poll, for the others).
"""
import copy
import datetime
import threading
import time
import uuid
from urllib.parse import quote

from .azure_routes import EXTENSIONS, STATE_KEYS, TYPES


class ArmError(Exception):
    """An ARM error response: ``{"error": {"code", "message", ...}}`` with an HTTP status."""

    def __init__(self, status, code, message, target=None, details=None, headers=None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.target, self.details, self.headers = target, details, headers or {}

    def body(self):
        error = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class Response:
    def __init__(self, status, body=None, headers=None):
        self.status, self.body, self.headers = status, body, dict(headers or {})


class Request:
    """One ARM request as the engine sees it (path already split off the query)."""

    def __init__(self, method, raw_path, raw_query, query, headers, body, base_url):
        self.method, self.headers, self.body, self.base_url = method, headers, body, base_url
        self.path = self.raw_path = raw_path  # as sent (still percent-encoded)
        self.raw_target = raw_path + ("?" + raw_query if raw_query else "")
        self.query = query  # name -> first value, names as sent
        self._lower = {k.lower(): v for k, v in query.items()}
        self.api_version = self._lower.get("api-version")

    def param(self, name, default=None):
        return self._lower.get(name.lower(), default)

    def json_object(self):
        if not isinstance(self.body, dict):
            raise ArmError(400, "InvalidRequestContent",
                           "The request content was invalid and could not be deserialized: "
                           "expected a JSON object.")
        return self.body


def now_iso(t=None):
    return datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.timezone.utc).isoformat()


def norm_location(location):
    return str(location).replace(" ", "").lower()


def deep_merge(base, patch):
    """JSON merge as ARM PATCH does it: objects merge recursively, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def new_etag():
    return f'W/"{uuid.uuid4()}"'


class Resource:
    def __init__(self, rid, rtype, sub, rg, parent_id=None):
        self.id, self.rtype, self.sub, self.rg, self.parent_id = rid, rtype, sub, rg, parent_id
        self.data = {}
        self.private = {}
        self.pending = None  # id of the operation in progress on this resource

    @property
    def name(self):
        return self.data.get("name") or self.id.rsplit("/", 1)[-1]

    @property
    def props(self):
        return self.data.setdefault("properties", {})

    @property
    def location(self):
        return self.data.get("location")


class Operation:
    def __init__(self, sub, namespace, location, done_at, on_done):
        self.id = str(uuid.uuid4())
        self.sub, self.namespace, self.location = sub, namespace, location
        self.start, self.done_at, self.end = time.time(), done_at, None
        self.status, self.error, self.on_done = "InProgress", None, on_done

    def status_body(self):
        body = {"name": self.id, "status": self.status, "startTime": now_iso(self.start)}
        if self.end is not None:
            body["endTime"] = now_iso(self.end)
        if self.error is not None:
            body["error"] = self.error.body()["error"]
        return body


class Arm:
    """The in-memory Azure Resource Manager (one subscription space, any subscription id)."""

    def __init__(self, provision_seconds=0.0, page_size=50, tenant_id=None):
        self.lock = threading.RLock()
        self.provision_seconds = float(provision_seconds)
        self.page_size = int(page_size)
        self.tenant_id = tenant_id or "72f988bf-86f1-41af-91ab-2d7cd011db47"
        self.reset()

    # ---- store ---------------------------------------------------------------------------------
    def reset(self):
        with self.lock:
            self.groups = {}  # (sub lower, rg lower) -> Resource (rtype None)
            self.resources = {}  # id lower -> Resource
            self.operations = {}
            self.counters = {}

    def counter(self, name):
        self.counters[name] = self.counters.get(name, 0) + 1
        return self.counters[name]

    def get(self, rid):
        return self.resources.get(str(rid).rstrip("/").lower()) if rid else None

    def of_type(self, namespace, type_path):
        rtype = TYPES.get((namespace.lower(), type_path.lower()))
        return [r for r in self.resources.values() if r.rtype is rtype]

    def children(self, res, child_segment=None):
        return [r for r in self.resources.values() if r.parent_id == res.id.lower()
                and (child_segment is None or r.rtype.child_name.lower() == child_segment.lower())]

    def insert(self, res):
        self.resources[res.id.lower()] = res

    def remove(self, res):
        for child in self.children(res):
            self.remove(child)
        self.resources.pop(res.id.lower(), None)

    def state(self):
        with self.lock:
            self.tick()
            out = {key: [] for key in STATE_KEYS}
            out["resourceGroups"] = [g.id for g in self.groups.values()]
            for res in self.resources.values():
                if res.rtype.state_key:
                    out[res.rtype.state_key].append(res.id)
            return out

    # ---- operations ----------------------------------------------------------------------------
    def tick(self):
        now = time.time()
        for op in list(self.operations.values()):
            if op.status == "InProgress" and op.done_at <= now:
                op.end = now
                try:
                    op.on_done()
                    op.status = "Succeeded"
                except ArmError as err:
                    op.status, op.error = "Failed", err
            elif op.end is not None and now - op.end > 3600:
                del self.operations[op.id]

    def begin(self, sub, namespace, location, on_done, res=None, slow=False):
        """Start an operation (preempting the one in progress on res, as Compute does).

        slow operations complete provision_seconds from now, the others at the next request."""
        if res is not None and res.pending in self.operations:
            old = self.operations[res.pending]
            if old.status == "InProgress":
                old.status, old.end = "Failed", time.time()
                old.error = ArmError(409, "OperationPreempted",
                                     "Operation execution has been preempted by a more recent operation.")
        delay = self.provision_seconds if slow else 0.0
        op = Operation(sub, namespace, norm_location(location or "global"), time.time() + delay, on_done)
        self.operations[op.id] = op
        if res is not None:
            res.pending = op.id
        return op

    def retry_ms(self, op):
        remaining = max(0.0, op.done_at - time.time())
        return max(10, min(1000, int(remaining * 250)))  # a quarter of what is left; never 0

    def lro_headers(self, req, op, names=("Azure-AsyncOperation",)):
        base = f"{req.base_url}/subscriptions/{op.sub}/providers/{op.namespace}/locations/{op.location}"
        version = quote(req.api_version or "", safe="")
        headers = {"retry-after-ms": str(self.retry_ms(op))}
        for name in names:
            if name == "Azure-AsyncOperation":
                headers[name] = f"{base}/operations/{op.id}?api-version={version}"
            elif name == "Location":
                headers[name] = f"{base}/operationResults/{op.id}?api-version={version}"
        return headers

    def _operation(self, route):
        op = self.operations.get(route.extra[1])
        if op is None or op.namespace.lower() != route.ns.lower() or op.sub.lower() != route.sub.lower():
            raise ArmError(404, "ResourceNotFound", f"The operation '{route.extra[1]}' was not found.")
        return op

    def operation_status(self, req, route):
        op = self._operation(route)
        headers = {"retry-after-ms": str(self.retry_ms(op))} if op.status == "InProgress" else {}
        return Response(200, op.status_body(), headers)

    def operation_result(self, req, op):
        if op.status == "InProgress":
            return Response(202, None, {"retry-after-ms": str(self.retry_ms(op)),
                                        "Location": req.base_url + req.raw_target})
        if op.status == "Failed":
            return Response(op.error.status, op.error.body())
        return Response(200)

    # ---- helpers for resource types ------------------------------------------------------------
    def require_group(self, sub, rg, writing=False):
        group = self.groups.get((sub.lower(), rg.lower()))
        if group is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        if writing and group.data["properties"]["provisioningState"] == "Deleting":
            raise ArmError(409, "ResourceGroupBeingDeleted",
                           f"The resource group '{group.name}' is in deprovisioning state and cannot perform "
                           "this operation.")
        return group

    def resource_id(self, route, group, upto=None):
        pairs = route.pairs if upto is None else route.pairs[:upto]
        tail = "/".join(f"{t}/{n}" for (t, n) in pairs)
        rtype = TYPES.get((route.ns.lower(), "/".join(t for t, _ in pairs).lower()))
        canonical = "/".join(f"{seg}/{n}" for seg, (_, n) in zip(rtype.type_path.split("/"), pairs)) if rtype else tail
        ns = rtype.namespace if rtype else route.ns
        return f"/subscriptions/{route.sub}/resourceGroups/{group.name}/providers/{ns}/{canonical}"

    def not_found(self, rtype, route, group):
        names = "/".join(n for _, n in route.pairs)
        return ArmError(404, "ResourceNotFound",
                        f"The Resource '{rtype.namespace}/{rtype.type_path.split('/')[0]}/{names}' under resource "
                        f"group '{group.name}' was not found. For more details please go to "
                        "https://aka.ms/ARMResourceNotFoundFix")

    def render(self, res, req):
        return res.rtype.render(self, res, req)

    def page(self, req, items):
        """One page of a list answer, with an absolute nextLink when more remain."""
        try:
            size = int(req.param("$top") or self.page_size)
            start = int(req.param("$skiptoken") or 0)
            if size < 1 or start < 0:
                raise ValueError
        except ValueError:
            raise ArmError(400, "InvalidQueryParameterValue", "The value of '$top' or '$skipToken' is not valid.")
        body = {"value": items[start:start + size]}
        if start + size < len(items):
            keep = [(k, v) for k, v in req.query.items() if k.lower() not in ("$skiptoken",)]
            keep.append(("$skiptoken", str(start + size)))
            query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in keep)
            body["nextLink"] = f"{req.base_url}{req.raw_path}?{query}"
        return body

    # ---- dispatch ------------------------------------------------------------------------------
    def dispatch(self, req, route):
        with self.lock:
            self.tick()
            handler = getattr(self, "_h_" + route.kind, None)
            if handler is None:
                raise ArmError(404, "NotFound", f"No route for {req.method} {req.path}.")
            return handler(req, route)

    def _h_unknown(self, req, route):
        raise ArmError(404, "NotFound", f"The sandbox has no ARM route for {req.method} {req.path}.")

    def _h_unknownType(self, req, route):
        raise ArmError(400, "InvalidResourceType",
                       f"The resource type '{route.extra}' could not be found in the namespace '{route.ns}' for api "
                       f"version '{req.api_version}'.")

    def _h_unknownAction(self, req, route):
        raise ArmError(501, "NotImplementedInSandbox",
                       f"The sandbox emulator does not implement {req.method} '{route.extra}' on "
                       f"{route.rtype.full_type}.")

    def _h_badMethod(self, req, route):
        raise ArmError(405, "MethodNotAllowed", f"The HTTP method '{req.method}' is not supported for {req.path}.")

    def _h_extension(self, req, route):
        handler = EXTENSIONS.get(route.extra[0], (None, None))[0]
        if handler is None:
            raise ArmError(400, "InvalidResourceType",
                           f"The resource type '{route.extra[2][1]}' could not be found in the namespace "
                           f"'{route.extra[2][0]}' for api version '{req.api_version}'.")
        return handler(self, req, route)

    def _h_operationStatus(self, req, route):
        return self.operation_status(req, route)

    def _h_operationResult(self, req, route):
        return self.operation_result(req, self._operation(route))

    def _h_rgOperationResult(self, req, route):
        op = self.operations.get(route.extra)
        if op is None or op.sub.lower() != route.sub.lower():
            raise ArmError(404, "ResourceNotFound", f"The operation '{route.extra}' was not found.")
        return self.operation_result(req, op)

    def _h_subscriptions(self, req, route):
        subs = sorted({g.sub for g in self.groups.values()})
        return Response(200, {"value": [self.subscription_body(s) for s in subs]})

    def _h_subscription(self, req, route):
        if req.method != "GET":
            return self._h_badMethod(req, route)
        return Response(200, self.subscription_body(route.sub))

    def subscription_body(self, sub):
        return {"id": f"/subscriptions/{sub}", "authorizationSource": "RoleBased", "managedByTenants": [],
                "subscriptionId": sub, "tenantId": self.tenant_id, "displayName": "lxcri sandbox subscription",
                "state": "Enabled",
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                         "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"}}

    # resource groups
    def _h_resourceGroups(self, req, route):
        if req.method != "GET":
            return self._h_badMethod(req, route)
        items = [copy.deepcopy(g.data) for g in self.groups.values() if g.sub.lower() == route.sub.lower()]
        return Response(200, self.page(req, items))

    def _h_resourceGroup(self, req, route):
        key = (route.sub.lower(), route.rg.lower())
        group = self.groups.get(key)
        method = req.method
        if method == "HEAD":
            return Response(204 if group else 404)
        if method == "GET":
            if group is None:
                self.require_group(route.sub, route.rg)
            return Response(200, copy.deepcopy(group.data))
        if method == "PUT":
            body = req.json_object()
            if not body.get("location"):
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            location = norm_location(body["location"])
            if group is not None:
                if group.data["properties"]["provisioningState"] == "Deleting":
                    self.require_group(route.sub, route.rg, writing=True)
                if group.data["location"] != location:
                    raise ArmError(409, "InvalidResourceGroupLocation",
                                   f"Invalid resource group location '{location}'. The Resource group already "
                                   f"exists in location '{group.data['location']}'.")
                self._rg_fields(group, body)
                return Response(200, copy.deepcopy(group.data))
            rid = f"/subscriptions/{route.sub}/resourceGroups/{route.rg}"
            group = Resource(rid, None, route.sub, route.rg)
            group.data = {"id": rid, "name": route.rg, "type": "Microsoft.Resources/resourceGroups",
                          "location": location, "properties": {"provisioningState": "Succeeded"}}
            self._rg_fields(group, body)
            self.groups[key] = group
            return Response(201, copy.deepcopy(group.data))
        if method == "PATCH":
            group = self.require_group(route.sub, route.rg, writing=True)
            self._rg_fields(group, req.json_object(), patch=True)
            return Response(200, copy.deepcopy(group.data))
        if method == "DELETE":
            group = self.require_group(route.sub, route.rg)
            group.data["properties"]["provisioningState"] = "Deleting"

            def done(group=group, key=key):
                for res in [r for r in self.resources.values()
                            if r.sub.lower() == key[0] and r.rg.lower() == key[1] and r.parent_id is None]:
                    self.remove(res)
                if self.groups.get(key) is group:
                    del self.groups[key]

            op = self.begin(route.sub, "Microsoft.Resources", group.location, done, res=group)
            version = quote(req.api_version or "", safe="")
            headers = {"Location": f"{req.base_url}/subscriptions/{route.sub}/operationresults/{op.id}"
                                   f"?api-version={version}",
                       "retry-after-ms": str(self.retry_ms(op))}
            return Response(202, None, headers)
        return self._h_badMethod(req, route)

    @staticmethod
    def _rg_fields(group, body, patch=False):
        for field in ("tags", "managedBy"):
            if field in body and body[field] is not None:
                group.data[field] = copy.deepcopy(body[field])
            elif not patch:
                group.data.pop(field, None)

    def _h_rgResources(self, req, route):
        self.require_group(route.sub, route.rg)
        items = []
        for res in self.resources.values():
            if res.parent_id is None and res.sub.lower() == route.sub.lower() and res.rg.lower() == route.rg.lower():
                item = {k: copy.deepcopy(res.data[k]) for k in ("id", "name", "type", "location", "tags", "sku",
                                                                 "managedBy", "zones") if k in res.data}
                items.append(item)
        return Response(200, self.page(req, items))

    # generic resources
    def _h_list(self, req, route):
        rtype = route.rtype
        if route.rg is not None:
            self.require_group(route.sub, route.rg)
        items = [self.render(r, req) for r in self.resources.values()
                 if r.rtype is rtype and r.sub.lower() == route.sub.lower()
                 and (route.rg is None or r.rg.lower() == route.rg.lower())]
        return Response(200, self.page(req, items))

    def _h_childList(self, req, route):
        group = self.require_group(route.sub, route.rg)
        parent = self.get(self.resource_id(route, group))
        if parent is None:
            raise self.not_found(parent_type(route.rtype), route, group)
        items = [self.render(r, req) for r in self.children(parent, route.rtype.child_name)]
        return Response(200, self.page(req, items))

    def _lookup(self, route, writing=False):
        group = self.require_group(route.sub, route.rg, writing=writing)
        rid = self.resource_id(route, group)
        return group, rid, self.get(rid)

    def _h_action(self, req, route):
        group, rid, res = self._lookup(route, writing=req.method != "GET")
        if res is None:
            raise self.not_found(route.rtype, route, group)
        return getattr(route.rtype, route.extra[1])(self, req, res)

    def _h_resource(self, req, route):
        rtype = route.rtype
        if req.method == "GET":
            group, rid, res = self._lookup(route)
            if res is None:
                raise self.not_found(rtype, route, group)
            return Response(200, self.render(res, req))
        if req.method == "DELETE":
            group, rid, res = self._lookup(route)
            if res is None:
                return Response(204)
            return self.delete(req, res)
        group, rid, existing = self._lookup(route, writing=True)
        body = req.json_object()
        if req.method == "PATCH":
            if existing is None:
                raise self.not_found(rtype, route, group)
            if rtype.patch_mode == "tags":
                existing.data["tags"] = copy.deepcopy(body.get("tags") or {})
                if "etag" in existing.data:
                    existing.data["etag"] = new_etag()
                return Response(200, self.render(existing, req))
            patch = body
            body = deep_merge(existing.data, patch)  # the stored document (render() may hide fields)
            if "tags" in patch:  # ARM replaces the tag set on PATCH, it does not merge it
                body["tags"] = copy.deepcopy(patch["tags"])
        parent = None
        if len(route.pairs) > 1:
            parent = self.get(self.resource_id(route, group, upto=len(route.pairs) - 1))
            if parent is None:
                raise ArmError(404, "ParentResourceNotFound",
                               f"Can not perform requested operation on nested resource. Parent resource "
                               f"'{'/'.join(n for _, n in route.pairs[:-1])}' not found.")
        if rtype.tracked:
            if not body.get("location"):
                raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
            body["location"] = norm_location(body["location"])
            if existing is not None and existing.location != body["location"]:
                raise ArmError(409, "InvalidResourceLocation",
                               f"The resource '{existing.name}' already exists in location '{existing.location}' in "
                               f"resource group '{group.name}'. A resource with the same name cannot be created in "
                               f"location '{body['location']}'. Please select a new resource name.")
        data, commit = rtype.build(self, req, rid, existing, body)
        res = existing or Resource(rid, rtype, route.sub, group.name, parent.id.lower() if parent else None)
        return self.store_put(req, res, data, commit, is_new=existing is None,
                              status=200 if req.method == "PATCH" else None)

    def store_put(self, req, res, data, commit, is_new, status=None):
        """Store a validated document and answer the PUT (also used for child resources synced by a parent)."""
        rtype = res.rtype
        res.data = data
        props = res.props
        headers = {}
        if rtype.put_async and req is not None:
            if rtype.provisioning_state:
                props["provisioningState"] = rtype.create_state if is_new else rtype.update_state
            op = self.begin(res.sub, rtype.namespace, res.location or self.location_of(res),
                            lambda: self._provisioned(res), res=res, slow=rtype.slow)
            headers = self.lro_headers(req, op)
        elif rtype.provisioning_state:
            props["provisioningState"] = "Succeeded"
        self.insert(res)
        if commit:
            commit(res)
        if req is None:
            return None
        code = status or (rtype.create_status if is_new else rtype.update_status)
        return Response(code, self.render(res, req), headers)

    def location_of(self, res):
        parent = self.get(res.parent_id)
        return parent.location if parent else None

    def _provisioned(self, res):
        if self.get(res.id) is not res:
            return
        if res.rtype.provisioning_state:
            res.props["provisioningState"] = "Succeeded"
        res.rtype.on_provisioned(self, res)

    def delete(self, req, res):
        res.rtype.check_delete(self, res)
        if not res.rtype.delete_async:
            self._removed(res)
            return Response(res.rtype.sync_delete_status)
        if res.rtype.provisioning_state:
            res.props["provisioningState"] = "Deleting"
        op = self.begin(res.sub, res.rtype.namespace, res.location or self.location_of(res),
                        lambda: self._removed(res), res=res, slow=res.rtype.slow)
        return Response(202, None, self.lro_headers(req, op, res.rtype.delete_headers))

    def _removed(self, res):
        if self.get(res.id) is not res:
            return
        self.remove(res)
        res.rtype.on_deleted(self, res)


def parent_type(rtype):
    return TYPES.get((rtype.namespace.lower(), rtype.type_path.rsplit("/", 1)[0].lower()))
