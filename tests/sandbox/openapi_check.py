"""In-process OpenAPI 3.0 request/response validator for sandbox tests (openapi-core + jsonschema).

    from tests.sandbox.openapi_check import digitalocean_checker
    checker = digitalocean_checker()            # the 3 MB spec is loaded once per process
    checker.check_response("GET", "/v2/droplets", 200, headers, body)
    -> ["GET /v2/droplets: droplets[0].size: 'available' is a required property", ...]

Each violation reads ``<METHOD> <spec path template>: <field>: <message>``; the field is a dotted
path into the JSON body (``droplet.networks.v4[0].ip_address``), ``request body...``,
``query <name>``, ``path <name>``, ``header <name>``, ``status`` or ``operation``.

Validation is per operation: only the matched operation's parameters, request body and
response are resolved, so errors elsewhere in a big description (DigitalOcean's gen-ai part)
do not get in the way; the document as a whole is not validated (``spec_validator_cls=None``).

``strict=True`` also reports properties of a response body that the schema does not declare
(where the schema lists properties and does not allow additional ones explicitly) — useful to
catch fields an emulator invented.
"""
import functools
import json
import os
import re
import threading
import urllib.parse
from collections import defaultdict
from pathlib import Path

SPECS_DIR = Path(os.environ.get("SANDBOX_SPECS_DIR") or Path(__file__).resolve().parents[3] / "shared" / "specs")
DIGITALOCEAN_SPEC = SPECS_DIR / "digitalocean" / "DigitalOcean-public.v2.bundled.json"
RATELIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")
# Fields the real API returns although the description does not declare them (strict mode only):
# dotted field suffix (list indices dropped) -> why it is accepted.
DIGITALOCEAN_UNDECLARED_OK = {
    "tag.resources.images": "spec typo: the schema says 'imgages', its own examples and the API say 'images'",
    "tags.resources.images": "same typo, in the tags list",
}
_MAX_MESSAGE = 300
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _field(path):
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(message):
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "..."


def _leaves(error):
    """The errors that explain a jsonschema error; for oneOf/anyOf, those of the closest branch."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        branches = defaultdict(list)
        for sub in error.context:
            branches[sub.relative_schema_path[0]].append(sub)
        best = max(branches.values(), key=lambda errs: (max(len(e.absolute_path) for e in errs), -len(errs)))
        return [leaf for sub in best for leaf in _leaves(sub)]
    return [error]


def _schema_errors(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        errors = getattr(exc, "schema_errors", None)
        if errors:
            return list(errors)
        exc = exc.__cause__ or exc.__context__
    return None


def _root_message(exc):
    messages = []
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc).strip()
        if text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return messages[-1] if messages else type(exc).__name__


class OpenAPIChecker:
    """Validates requests and responses against one OpenAPI 3.0 document."""

    def __init__(self, spec_path):
        from openapi_core import Config, OpenAPI

        with open(spec_path, encoding="utf-8") as handle:
            self.spec = json.load(handle)
        self.server = self.spec.get("servers", [{"url": "http://localhost"}])[0]["url"].rstrip("/")
        self.app = OpenAPI.from_dict(self.spec, config=Config(spec_validator_cls=None))
        self._templates = []
        for template, item in self.spec["paths"].items():
            regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
            self._templates.append((template.count("{"), template, re.compile(regex + "$"), item))
        self._templates.sort(key=lambda entry: entry[0])

    # -- lookup ---------------------------------------------------------------------------------------
    def find(self, method, path):
        """(template, operation object) for a concrete request path, or (None, None)."""
        path = urllib.parse.urlsplit(path).path
        for _, template, regex, item in self._templates:
            if regex.match(path) and method.lower() in item:
                return template, item[method.lower()]
        return None, None

    def _resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            target = self.spec
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def response_schema(self, method, path, status):
        """The JSON schema of a response (for tests and the strict check), or None."""
        _, operation = self.find(method, path)
        if operation is None:
            return None
        responses = operation.get("responses", {})
        response = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
        response = self._resolve(response or {})
        return (response.get("content") or {}).get("application/json", {}).get("schema")

    # -- checks ---------------------------------------------------------------------------------------
    def _mock_request(self, method, path, headers, body):
        from openapi_core.testing import MockRequest

        split = urllib.parse.urlsplit(path)
        headers = dict(headers or {})
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        return MockRequest(self.server, method.lower(), split.path,
                           args=urllib.parse.parse_qsl(split.query, keep_blank_values=True),
                           headers=headers, data=body or b"", content_type=content_type.split(";")[0].strip())

    def check_request(self, method, path, headers=None, body=b""):
        """Violations of one request (path may carry the query string)."""
        template, operation = self.find(method, path)
        name = f"{method.upper()} {template or urllib.parse.urlsplit(path).path}"
        if operation is None:
            return [f"{name}: operation: not described by the OpenAPI document"]
        request = self._mock_request(method, path, headers, body)
        return [f"{name}: {line}" for exc in self.app.iter_request_errors(request) for line in self._explain(exc, True)]

    def check_response(self, method, path, status, headers=None, body=b"", request_headers=None,
                       required_headers=(), strict=False, undeclared_ok=()):
        """Violations of one response to ``method path``; ``required_headers`` must be present.

        ``strict``: also report undeclared properties, except fields ending with one of ``undeclared_ok``
        (dotted paths without list indices).
        """
        from openapi_core.testing import MockResponse

        template, operation = self.find(method, path)
        name = f"{method.upper()} {template or urllib.parse.urlsplit(path).path}"
        if operation is None:
            return [f"{name}: operation: not described by the OpenAPI document"]
        headers = {str(k): str(v) for k, v in (headers or {}).items()}
        lowered = {k.lower() for k in headers}
        violations = [f"{name}: header {h}: missing" for h in required_headers if h.lower() not in lowered]
        declared = [code for code in operation.get("responses", {}) if code != "default"]
        if 200 <= int(status) < 300 and str(status) not in declared and f"{str(status)[0]}XX" not in declared:
            violations.append(f"{name}: status: {status} is not a declared success status "
                              f"(declared: {', '.join(declared)})")
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
        request = self._mock_request(method, path, request_headers, b"")
        response = MockResponse(body or b"", status_code=int(status), headers=headers,
                                content_type=content_type.split(";")[0].strip())
        for exc in self.app.iter_response_errors(request, response):
            violations += [f"{name}: {line}" for line in self._explain(exc, False)]
        if strict and body:
            schema = self.response_schema(method, path, status)
            if schema is not None:
                try:
                    document = json.loads(body)
                except ValueError:
                    document = None
                for field in self.undeclared(schema, document):
                    plain = re.sub(r"\[\d+\]", "", field)
                    if not any(plain == ok or plain.endswith("." + ok) for ok in undeclared_ok):
                        violations.append(f"{name}: {field or 'response body'}: undeclared property")
        return violations

    def check_exchange(self, exchange, required_headers=(), strict=False, undeclared_ok=()):
        """Violations of a recorded exchange (dict as produced by the emulators' ``recorder``)."""
        violations = self.check_request(exchange["method"], exchange["path"], exchange.get("request_headers"),
                                        exchange.get("request_body") or b"")
        violations += self.check_response(exchange["method"], exchange["path"], exchange["status"],
                                          exchange.get("response_headers"), exchange.get("response_body") or b"",
                                          exchange.get("request_headers"), required_headers, strict,
                                          undeclared_ok)
        return violations

    # -- explanations ---------------------------------------------------------------------------------
    def _explain(self, exc, is_request):
        kind = type(exc).__name__
        errors = _schema_errors(exc)
        location = getattr(exc, "location", None)
        param = getattr(exc, "name", None)
        if kind in ("PathNotFound", "OperationNotFound", "ServerNotFound"):
            return [f"operation: {_short(_root_message(exc))}"]
        if kind == "ResponseNotFound":
            return [f"status: {_short(_root_message(exc))}"]
        if "Security" in kind:
            return [f"security: {_short(_root_message(exc))}"]
        if "Header" in kind:
            prefix = f"header {param}"
        elif param is not None and location is not None:
            prefix = f"{getattr(location, 'value', location)} {param}"
        elif is_request:
            prefix = "request body"
        else:
            prefix = ""
        if errors:
            lines = []
            for error in errors:
                for leaf in _leaves(error):
                    path = _field(leaf.absolute_path)
                    field = ".".join(p for p in (prefix, path) if p) if prefix != "" else path
                    lines.append(f"{field or 'response body'}: {_short(leaf.message)}")
            return lines
        return [f"{prefix or 'response body'}: {_short(_root_message(exc))}"]

    def _flatten(self, schema, seen=()):
        """Every (sub)schema reachable through allOf/oneOf/anyOf, $refs resolved."""
        schema = self._resolve(schema)
        if not isinstance(schema, dict) or id(schema) in seen:
            return []
        parts = [schema]
        for key in ("allOf", "oneOf", "anyOf"):
            for branch in schema.get(key, []):
                parts += self._flatten(branch, seen + (id(schema),))
        return parts

    def undeclared(self, schema, instance, path=()):
        """Fields of ``instance`` that ``schema`` (and its allOf/oneOf/anyOf branches) does not declare."""
        parts = self._flatten(schema)
        found = []
        if isinstance(instance, dict):
            declared = {}
            for part in parts:
                for key, value in part.get("properties", {}).items():
                    declared.setdefault(key, value)
            open_ended = not declared or any(part.get("additionalProperties") not in (None, False) for part in parts)
            for key, value in instance.items():
                if key in declared:
                    found += self.undeclared(declared[key], value, path + (key,))
                elif not open_ended:
                    found.append(_field(path + (key,)))
        elif isinstance(instance, list):
            items = [part["items"] for part in parts if part.get("items")]
            if items:
                for index, value in enumerate(instance):
                    found += self.undeclared(items[0], value, path + (index,))
        return found


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _load(spec_path):
    return OpenAPIChecker(spec_path)


def checker(spec_path):
    """A cached :class:`OpenAPIChecker` for ``spec_path`` (one load per process)."""
    with _LOCK:
        return _load(str(spec_path))


def digitalocean_checker():
    return checker(DIGITALOCEAN_SPEC)


def spec_available(spec_path=DIGITALOCEAN_SPEC):
    return Path(spec_path).is_file()
