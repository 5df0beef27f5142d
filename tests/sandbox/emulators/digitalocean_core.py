"""Building blocks of the DigitalOcean API v2 emulator (stdlib only).

A feature module (catalog, droplets, tags; later apps, monitoring) is a Python module with:

* ``ROUTES``: a list of :class:`Route` (method, path pattern, operation name, handler);
  a handler is ``handler(state, request) -> Response`` and raises :class:`ApiError` for errors;
* optionally ``setup(state)`` (create its collections in ``state.data``; also run on reset) and
  ``live_ids(state) -> {kind: [ids]}`` (what ``/_sandbox/state`` shows).

Path patterns use ``{name}`` (one segment) and ``{name:int}`` (digits only, passed as int).
Every handler runs with ``state.lock`` held, after ``state.advance()`` settled due actions.
"""
import re
import threading
import time
import urllib.parse
import uuid


def now_iso(epoch=None):
    """DigitalOcean timestamp: ``2020-07-21T18:37:44Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if epoch is None else epoch))


class ApiError(Exception):
    """An error answer: ``{"id": ..., "message": ..., "request_id": ...}`` or a raw body."""

    def __init__(self, status, error_id, message, body=None):
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.body = body  # a complete body that replaces the standard shape (e.g. tags 400)


def not_found():
    return ApiError(404, "not_found", "The resource you were accessing could not be found.")


def unprocessable(message):
    return ApiError(422, "unprocessable_entity", message)


def bad_request(message):
    return ApiError(400, "bad_request", message)


class Response:
    def __init__(self, status, body=None, headers=None):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class Request:
    """What a handler sees: method, path, query (name -> list of values), JSON body, base URL."""

    def __init__(self, method, path, query, body, headers, base_url, params=None):
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.headers = headers
        self.base_url = base_url
        self.params = params or {}

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    def int_arg(self, name, default, minimum=None, maximum=None):
        raw = self.arg(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(f"invalid value for {name}: {raw!r} is not an integer")
        if minimum is not None and value < minimum:
            raise bad_request(f"invalid value for {name}: must be at least {minimum}")
        if maximum is not None and value > maximum:
            value = maximum  # the API silently caps per_page at 200
        return value

    def json_object(self, required=True):
        if self.body is None:
            if required:
                raise bad_request("The request body is required and must be a JSON object.")
            return {}
        if not isinstance(self.body, dict):
            raise bad_request("The request body must be a JSON object.")
        return self.body

    def url(self, path):
        return self.base_url + path


class Route:
    def __init__(self, method, pattern, name, handler):
        self.method = method
        self.pattern = pattern
        self.name = name
        self.handler = handler
        self.converters = {}
        regex = ""
        for part in re.split(r"(\{[^}]+\})", pattern):
            if part.startswith("{"):
                field, _, kind = part[1:-1].partition(":")
                self.converters[field] = int if kind == "int" else str
                regex += f"(?P<{field}>[0-9]+)" if kind == "int" else f"(?P<{field}>[^/]+)"
            else:
                regex += re.escape(part)
        self.regex = re.compile(regex + "/?$")

    def match(self, path):
        found = self.regex.match(path)
        if not found:
            return None
        return {
            key: self.converters[key](urllib.parse.unquote(value)) for key, value in found.groupdict().items()
        }


class Router:
    def __init__(self, routes):
        # literal segments win over parameters (e.g. /v2/droplets/actions vs /v2/droplets/{id})
        self.routes = sorted(routes, key=lambda r: r.pattern.count("{"))

    def resolve(self, method, path):
        """(route, params) for a request, or (None, None)."""
        path = path.split("?", 1)[0]
        for route in self.routes:
            if route.method == method:
                params = route.match(path)
                if params is not None:
                    return route, params
        return None, None

    def operation(self, method, path):
        route, _ = self.resolve(method.upper(), path)
        return route.name if route else "unknown"


class State:
    """All emulated resources, guarded by one lock; actions complete after ``provision_seconds``."""

    def __init__(self, features, provision_seconds=0.0, droplet_limit=None):
        self.features = features
        self.provision_seconds = float(provision_seconds)
        self.droplet_limit = droplet_limit
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        with self.lock:
            self.data = {}
            self.actions = {}  # id -> action dict (public fields) plus "_due"/"_effect"/"_resource"
            self._next = {"droplet": 500000000, "action": 2000000000, "ip": 0}
            for feature in self.features:
                setup = getattr(feature, "setup", None)
                if setup:
                    setup(self)

    def next_id(self, kind):
        self._next[kind] = self._next.get(kind, 0) + 1
        return self._next[kind]

    # -- actions -------------------------------------------------------------------------------------
    def start_action(self, action_type, resource_id, resource_type, region, effect=None, error=None):
        """Record an in-progress action; ``effect()`` runs when it completes (``error``: fails at once)."""
        action_id = self.next_id("action")
        action = {
            "id": action_id,
            "status": "in-progress",
            "type": action_type,
            "started_at": now_iso(),
            "completed_at": None,
            "resource_id": resource_id,
            "resource_type": resource_type,
            "region": region,
            "region_slug": region["slug"] if region else None,
            "_due": time.monotonic() + self.provision_seconds,
            "_effect": effect,
        }
        if error:
            action.update(status="errored", completed_at=action["started_at"], _effect=None)
        self.actions[action_id] = action
        return action

    def pending_actions(self, resource_type, resource_id):
        return [
            a for a in self.actions.values()
            if a["status"] == "in-progress" and a["resource_type"] == resource_type and a["resource_id"] == resource_id
        ]

    def advance(self):
        """Complete every action whose time has come (in id order) and apply its effect."""
        now = time.monotonic()
        for action in sorted(self.actions.values(), key=lambda a: a["id"]):
            if action["status"] == "in-progress" and action["_due"] <= now:
                effect = action.pop("_effect", None)
                action["status"] = "completed"
                action["completed_at"] = now_iso()
                if effect:
                    effect()

    @staticmethod
    def public_action(action):
        return {key: value for key, value in action.items() if not key.startswith("_")}

    def live_ids(self):
        result = {}
        for feature in self.features:
            live = getattr(feature, "live_ids", None)
            if live:
                result.update(live(self))
        return result


def paginate(request, items, key, extra=None):
    """Page ``items`` the way the API does: ``page``/``per_page`` (max 200), ``links.pages``, ``meta.total``."""
    per_page = request.int_arg("per_page", 20, minimum=1, maximum=200)
    page = request.int_arg("page", 1, minimum=1)
    total = len(items)
    last = max(1, -(-total // per_page))
    chunk = items[(page - 1) * per_page: page * per_page]

    others = [(name, value) for name, values in request.query.items() if name not in ("page", "per_page")
              for value in values]

    def link(number):
        query = urllib.parse.urlencode([("page", number), ("per_page", per_page)] + others)
        return f"{request.url(request.path)}?{query}"

    pages = {}
    if page > 1:
        pages["first"] = link(1)
        pages["prev"] = link(min(page - 1, last))
    if page < last:
        pages["last"] = link(last)
        pages["next"] = link(page + 1)
    body = {key: chunk, "links": {"pages": pages} if pages else {}, "meta": {"total": total}}
    if extra:
        body.update(extra)
    return Response(200, body)


def new_request_id():
    return str(uuid.uuid4())
