"""Validate JSON bodies against the schemas of a Google API discovery document (stdlib only).

    doc = Discovery.load("/work/shared/specs/gcp/compute.v1.json")
    problems = doc.validate_response("GET", "/compute/v1/projects/p/zones/z/instances/x", body)
    # ["compute.instances.get $.networkInterfaces[0].accessConfigs[0].natIP: expected string, got int"]

Rules (what the wire format of these APIs promises):
* types: string, integer (a JSON number without fraction; int32/uint32 ranges), number, boolean,
  array, object, any; ``$ref`` to ``schemas``.
* formats: int64/uint64 are *strings* of decimal digits in range; byte is base64; google-datetime
  is RFC 3339; google-duration is "<seconds>s"; int32/uint32 ranges are checked.
* ``enum`` values must be listed.
* objects: a field not in ``properties`` (and no ``additionalProperties``) is a violation.
* required: a property whose ``annotations.required`` names the method is required in that method's
  *request* body (discovery documents carry no other notion of "required").
"""
import base64
import binascii
import json
import re

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})\Z")
_DURATION = re.compile(r"-?\d+(?:\.\d{1,9})?s\Z")
_RANGES = {"int32": (-2 ** 31, 2 ** 31 - 1), "uint32": (0, 2 ** 32 - 1),
           "int64": (-2 ** 63, 2 ** 63 - 1), "uint64": (0, 2 ** 64 - 1)}


def _kind(value):
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


class Discovery:
    def __init__(self, doc):
        self.doc = doc
        self.schemas = doc.get("schemas", {})
        self.service_path = "/" + doc.get("servicePath", "").strip("/")
        self.methods = {}
        self._routes = []
        self._collect(doc.get("resources", {}))

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle))

    def _collect(self, resources):
        for resource in resources.values():
            for method in resource.get("methods", {}).values():
                self.methods[method["id"]] = method
                template = method.get("flatPath") or method["path"]
                pattern = re.sub(r"\{\+?[^}]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
                literal = len(re.sub(r"\{[^}]+\}", "", template))
                self._routes.append((method["httpMethod"], re.compile(pattern + r"\Z"), literal, method))
            self._collect(resource.get("resources", {}))

    def find_method(self, http_method, path):
        """The discovery method of a request path like '/compute/v1/projects/p/zones/z/instances'."""
        rel = path.split("?", 1)[0]
        if rel.startswith(self.service_path + "/"):
            rel = rel[len(self.service_path) + 1:]
        best = None
        for verb, regex, literal, method in self._routes:
            if verb == http_method and regex.match(rel) and (best is None or literal > best[0]):
                best = (literal, method)
        return best[1] if best else None

    # ------------------------------------------------------------------------------------ validate
    def validate(self, value, schema, method_id=None, where="$"):
        """Violations (strings naming the JSON path) of value against a schema or schema name."""
        out = []
        self._check(value, {"$ref": schema} if isinstance(schema, str) else schema, method_id, where, out)
        return out

    def validate_response(self, http_method, path, body):
        method = self.find_method(http_method, path)
        if method is None:
            return [f"{http_method} {path}: no such method in the discovery document"]
        if "response" not in method:
            return [] if body in (None, {}) else [f"{method['id']} $: the method has no response body"]
        return [f"{method['id']} {v}" for v in self.validate(body, method["response"]["$ref"])]

    def validate_request(self, http_method, path, body):
        method = self.find_method(http_method, path)
        if method is None:
            return [f"{http_method} {path}: no such method in the discovery document"]
        if "request" not in method:
            return [] if body in (None, {}) else [f"{method['id']} $: the method takes no request body"]
        return [f"{method['id']} {v}" for v in self.validate(body, method["request"]["$ref"], method["id"])]

    def _check(self, value, schema, method_id, where, out):
        while "$ref" in schema:
            name = schema["$ref"]
            if name not in self.schemas:
                out.append(f"{where}: unknown schema {name!r}")
                return
            schema = self.schemas[name]
        kind = schema.get("type")
        if kind is None or kind == "any":
            return
        checker = getattr(self, "_check_" + kind, None)
        if checker is None:
            out.append(f"{where}: schema type {kind!r} is not supported by the checker")
            return
        checker(value, schema, method_id, where, out)

    def _check_object(self, value, schema, method_id, where, out):
        if not isinstance(value, dict):
            out.append(f"{where}: expected object, got {_kind(value)}")
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                self._check(item, props[key], method_id, f"{where}.{key}", out)
            elif extra is not None:
                self._check(item, extra, method_id, f"{where}[{key!r}]", out)
            elif props is not None:
                out.append(f"{where}.{key}: unknown field (not in schema {schema.get('id', 'object')})")
        if method_id and props:
            for key, prop in props.items():
                if method_id in prop.get("annotations", {}).get("required", []) and key not in value:
                    out.append(f"{where}.{key}: required by {method_id} but missing")

    def _check_array(self, value, schema, method_id, where, out):
        if not isinstance(value, list):
            out.append(f"{where}: expected array, got {_kind(value)}")
            return
        for index, item in enumerate(value):
            self._check(item, schema.get("items", {}), method_id, f"{where}[{index}]", out)

    def _check_string(self, value, schema, _method_id, where, out):
        if not isinstance(value, str):
            fmt = schema.get("format")
            hint = f" ({fmt} values are JSON strings)" if fmt in ("int64", "uint64") else ""
            out.append(f"{where}: expected string, got {_kind(value)} {value!r}{hint}")
            return
        fmt = schema.get("format")
        if fmt in ("int64", "uint64"):
            low, high = _RANGES[fmt]
            if not re.fullmatch(r"-?\d+", value) or not low <= int(value) <= high:
                out.append(f"{where}: {value!r} is not a decimal {fmt}")
        elif fmt == "byte":
            try:
                base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
            except (binascii.Error, ValueError):
                out.append(f"{where}: {value!r} is not base64 (format byte)")
        elif fmt == "google-datetime" and not _RFC3339.match(value):
            out.append(f"{where}: {value!r} is not an RFC 3339 timestamp")
        elif fmt == "google-duration" and not _DURATION.match(value):
            out.append(f"{where}: {value!r} is not a duration like '3.5s'")
        if "enum" in schema and value not in schema["enum"]:
            shown = ", ".join(schema["enum"][:12]) + (", ..." if len(schema["enum"]) > 12 else "")
            out.append(f"{where}: {value!r} is not one of [{shown}]")

    def _check_integer(self, value, schema, _method_id, where, out):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):
            out.append(f"{where}: expected integer, got {_kind(value)} {value!r}")
            return
        low, high = _RANGES.get(schema.get("format", "int32"), _RANGES["int32"])
        if not low <= value <= high:
            out.append(f"{where}: {value} is out of range for {schema.get('format', 'int32')}")

    def _check_number(self, value, _schema, _method_id, where, out):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{where}: expected number, got {_kind(value)} {value!r}")

    def _check_boolean(self, value, _schema, _method_id, where, out):
        if not isinstance(value, bool):
            out.append(f"{where}: expected boolean, got {_kind(value)} {value!r}")


def check_google_error(body):
    """Violations of the error envelope Google APIs answer with (not described by discovery)."""
    out = []
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ["$.error: missing"]
    allowed = {"code", "message", "errors", "status", "details"}
    out += [f"$.error.{key}: unknown field" for key in error if key not in allowed]
    if not isinstance(error.get("code"), int):
        out.append("$.error.code: expected integer")
    if not isinstance(error.get("message"), str) or not error.get("message"):
        out.append("$.error.message: expected a non-empty string")
    for index, item in enumerate(error.get("errors", [])):
        for key in ("message", "domain", "reason"):
            if not isinstance(item.get(key), str):
                out.append(f"$.error.errors[{index}].{key}: expected string")
        out += [f"$.error.errors[{index}].{key}: unknown field" for key in item
                if key not in ("message", "domain", "reason", "location", "locationType")]
    return out
