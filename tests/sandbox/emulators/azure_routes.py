"""Registry and routing of the Azure emulator's ARM engine: resource types, operation names.

``ResourceType`` describes one ARM resource type; ``register()`` plugs it in. Adding a provider type later,
e.g. ``Microsoft.ContainerInstance/containerGroups`` or ``Microsoft.Insights/metricAlerts``, is one class:
set ``namespace``/``type_path``/``op``/``state_key`` and the PUT/DELETE/PATCH styles (for metric alerts:
``put_async = False``, ``create_status = 200``, ``delete_async = False``, ``provisioning_state = False``),
implement ``build()`` (validate the PUT body, return the stored document) and, where needed, ``render()``,
``check_delete()``, ``actions``/``views`` (POST/GET sub-paths, e.g. container group ``start``/``stop``).
Extension resources under any resource id (``{resourceId}/providers/Microsoft.Insights/metrics``) register
a handler with ``register_extension()``. ``parse()`` needs only this registry, so operation names can be
computed without a server.
"""
import copy

TYPES = {}  # (namespace lower, type path lower) -> ResourceType
EXTENSIONS = {}  # (namespace lower, type lower) -> (handler(arm, req, route) -> Response, {method: verb})
STATE_KEYS = ["resourceGroups"]  # keys of /_sandbox/state


def register(rtype):
    TYPES[(rtype.namespace.lower(), rtype.type_path.lower())] = rtype
    if rtype.state_key and rtype.state_key not in STATE_KEYS:
        STATE_KEYS.append(rtype.state_key)
    return rtype


def register_extension(namespace, type_name, handler, ops=None):
    """handler(arm, req, route) answers {resourceId}/providers/{namespace}/{type_name}[/...];
    ops maps an HTTP method to the operation name's verb (default: the method in lower case)."""
    EXTENSIONS[(namespace.lower(), type_name.lower())] = (handler, dict(ops or {}))


class ResourceType:
    """Behaviour of one ARM resource type; subclasses override the class attributes and hooks."""

    namespace = ""
    type_path = ""  # "virtualMachines", or "virtualNetworks/subnets" for a child type
    op = ""  # operation-name prefix, e.g. "virtualMachines"
    state_key = None  # key in /_sandbox/state
    tracked = True  # top-level resource with location and tags
    put_async = True  # PUT answers with Azure-AsyncOperation and provisioningState create/update_state
    create_status, update_status = 201, 200
    create_state, update_state = "Updating", "Updating"
    delete_async = True  # DELETE answers 202 (+ delete_headers) and completes later
    delete_headers = ("Azure-AsyncOperation", "Location")
    patch_mode = "tags"  # "tags": synchronous tag replacement; "merge": merged PUT (LRO); None
    patch_op = "updateTags"
    list_ops = ("list", "listAll")  # (by resource group, by subscription); None = not listable there
    slow = False  # operations take provision_seconds (else they complete at the first poll)
    provisioning_state = True  # the resource reports properties.provisioningState
    sync_delete_status = 200  # answer of a synchronous DELETE (delete_async False)
    actions = {}  # lower name -> (operation name, method name), POST .../{name}/{action}
    views = {}  # lower name -> (operation name, method name), GET .../{name}/{view}

    @property
    def full_type(self):
        return f"{self.namespace}/{self.type_path}"

    @property
    def child_name(self):
        return self.type_path.rsplit("/", 1)[-1]

    def build(self, arm, req, rid, existing, body):
        """Validate a PUT body; return (stored document, commit callable(resource) or None)."""
        raise NotImplementedError

    def render(self, arm, res, req):
        return copy.deepcopy(res.data)

    def check_delete(self, arm, res):
        """Raise ArmError when the resource may not be deleted now."""

    def on_provisioned(self, arm, res):
        """Called when the PUT operation completes."""

    def on_deleted(self, arm, res):
        """Called when the DELETE operation completes (the resource is already gone)."""


class Route:
    def __init__(self, kind, op="unknown", **kw):
        self.kind, self.op = kind, op
        self.sub = kw.get("sub")
        self.rg = kw.get("rg")
        self.ns = kw.get("ns")
        self.rtype = kw.get("rtype")
        self.pairs = kw.get("pairs", [])  # [(type segment, name), ...]
        self.extra = kw.get("extra")


_VERB = {"PUT": "createOrUpdate", "GET": "get", "DELETE": "delete"}


def parse(method, segs):
    """Classify an ARM path (decoded segments) -> Route; Route.kind 'unknown' when not understood."""
    low = [s.lower() for s in segs]
    if not segs or low[0] != "subscriptions":
        return Route("unknown")
    if len(segs) == 1:
        return Route("subscriptions", "subscriptions.list")
    sub, rest, lrest = segs[1], segs[2:], low[2:]
    if not rest:
        return Route("subscription", "subscriptions.get", sub=sub)
    if lrest[0] == "operationresults" and len(rest) == 2:
        return Route("rgOperationResult", "operationResults.get", sub=sub, extra=rest[1])
    if lrest[0] == "resourcegroups":
        if len(rest) == 1:
            return Route("resourceGroups", "resourceGroups.list", sub=sub)
        rg = rest[1]
        if len(rest) == 2:
            names = {"PUT": "createOrUpdate", "GET": "get", "HEAD": "checkExistence", "DELETE": "delete",
                     "PATCH": "update"}
            return Route("resourceGroup", "resourceGroups." + names.get(method, method.lower()), sub=sub, rg=rg)
        if len(rest) == 3 and lrest[2] == "resources":
            return Route("rgResources", "resources.listByResourceGroup", sub=sub, rg=rg)
        if lrest[2] == "providers" and len(rest) >= 5:
            return _parse_provider(method, sub, rg, rest[3:])
        return Route("unknown", sub=sub, rg=rg)
    if lrest[0] == "providers" and len(rest) >= 3:
        tail, ltail = rest[1:], lrest[1:]
        if len(tail) == 5 and ltail[1] == "locations" and ltail[3] in ("operations", "operationresults"):
            kind = "operationStatus" if ltail[3] == "operations" else "operationResult"
            op = "operations.get" if kind == "operationStatus" else "operationResults.get"
            return Route(kind, op, sub=sub, ns=tail[0], extra=(tail[2], tail[4]))
        return _parse_provider(method, sub, None, tail)
    return Route("unknown", sub=sub)


def _parse_provider(method, sub, rg, tail):
    ns, rest = tail[0], tail[1:]
    lrest = [s.lower() for s in rest]
    if "providers" in lrest:  # extension resource under a resource id
        i = lrest.index("providers")
        ext = rest[i + 1:]
        if len(ext) >= 2:
            handler_key = (ext[0].lower(), ext[1].lower())
            verbs = EXTENSIONS.get(handler_key, (None, {}))[1]
            op = f"{ext[1]}.{verbs.get(method, method.lower())}"
            return Route("extension", op, sub=sub, rg=rg, ns=ns, extra=(handler_key, rest[:i], ext))
        return Route("unknown", sub=sub, rg=rg, ns=ns)
    if rg is None and len(rest) != 1:
        return Route("unknown", sub=sub, ns=ns)  # subscription-level resources: not emulated
    pairs = [(rest[i], rest[i + 1]) for i in range(0, len(rest) - 1, 2)]
    trailing = rest[-1] if len(rest) % 2 else None
    type_path = "/".join(t for t, _ in pairs)
    if not pairs:  # collection of a top-level type
        rtype = TYPES.get((ns.lower(), trailing.lower()))
        if rtype is None:
            return Route("unknownType", sub=sub, rg=rg, ns=ns, extra=trailing)
        index = 0 if rg is not None else 1
        name = rtype.list_ops[index]
        if method != "GET" or not name:
            return Route("badMethod", sub=sub, rg=rg, ns=ns, rtype=rtype)
        return Route("list", f"{rtype.op}.{name}", sub=sub, rg=rg, ns=ns, rtype=rtype)
    rtype = TYPES.get((ns.lower(), type_path.lower()))
    if rtype is None:
        return Route("unknownType", sub=sub, rg=rg, ns=ns, extra=type_path)
    if trailing is None:
        if method in _VERB:
            return Route("resource", f"{rtype.op}.{_VERB[method]}", sub=sub, rg=rg, ns=ns, rtype=rtype, pairs=pairs)
        if method == "PATCH" and rtype.patch_mode:
            return Route("resource", f"{rtype.op}.{rtype.patch_op}", sub=sub, rg=rg, ns=ns, rtype=rtype, pairs=pairs)
        return Route("badMethod", sub=sub, rg=rg, ns=ns, rtype=rtype, pairs=pairs)
    child = TYPES.get((ns.lower(), f"{type_path}/{trailing}".lower()))
    if child is not None:
        if method != "GET":
            return Route("badMethod", sub=sub, rg=rg, ns=ns, rtype=child, pairs=pairs)
        return Route("childList", f"{child.op}.list", sub=sub, rg=rg, ns=ns, rtype=child, pairs=pairs)
    table = rtype.actions if method == "POST" else rtype.views if method == "GET" else {}
    entry = table.get(trailing.lower())
    if entry is None:
        return Route("unknownAction", sub=sub, rg=rg, ns=ns, rtype=rtype, pairs=pairs, extra=trailing)
    return Route("action", f"{rtype.op}.{entry[0]}", sub=sub, rg=rg, ns=ns, rtype=rtype, pairs=pairs, extra=entry)


ENGINE_OPERATIONS = ("subscriptions.list", "subscriptions.get", "resourceGroups.list", "resourceGroups.createOrUpdate",
                     "resourceGroups.get", "resourceGroups.checkExistence", "resourceGroups.delete",
                     "resourceGroups.update", "resources.listByResourceGroup", "operations.get",
                     "operationResults.get")


def implemented_operations():
    """Every ARM operation name this engine answers with its registered resource types."""
    names = set(ENGINE_OPERATIONS)
    for rtype in TYPES.values():
        names |= {f"{rtype.op}.createOrUpdate", f"{rtype.op}.get", f"{rtype.op}.delete"}
        if rtype.patch_mode:
            names.add(f"{rtype.op}.{rtype.patch_op}")
        if "/" in rtype.type_path:
            names.add(f"{rtype.op}.list")
        else:
            names |= {f"{rtype.op}.{name}" for name in rtype.list_ops if name}
        names |= {f"{rtype.op}.{op}" for op, _ in list(rtype.actions.values()) + list(rtype.views.values())}
    for (_, type_name), (_, verbs) in EXTENSIONS.items():
        names |= {f"{type_name}.{verb}" for verb in verbs.values()}
    return sorted(names)
