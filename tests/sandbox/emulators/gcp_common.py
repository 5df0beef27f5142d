"""Shared pieces of the Google Cloud emulators: errors, links, ids, times, pages, list filters.

Stdlib only. Used by ``gcp.py`` (the server) and every service module (``gcp_compute.py`` now; Cloud
Run v2 and Monitoring v3 REST later).
"""
import base64
import datetime
import hashlib
import json
import random
import re

try:  # GCE writes timestamps in Pacific time ("2025-01-10T03:04:05.123-08:00").
    from zoneinfo import ZoneInfo

    _TZ = ZoneInfo("America/Los_Angeles")
except Exception:  # pragma: no cover - no tz database: UTC is still RFC 3339
    _TZ = datetime.timezone.utc

NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
NAME_REGEX_TEXT = "(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)"
EMPTY_FINGERPRINT = "42WmSpB8rSM="  # what GCE reports for an empty label set


def compile_routes(base, routes, segment=r"[^/:]+"):
    """[(verb, regex, operation id, handler)] of a route table whose paths follow `base` and name their
    variable segments {name} (a named group in the regex)."""
    return [(verb, re.compile(base + re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{segment})", pattern) + r"\Z"),
             op_id, handler) for verb, pattern, op_id, handler in routes]


def operation_of(compiled, method, path):
    """The operation id of the route a request takes, or None."""
    for verb, regex, op_id, _handler in compiled:
        if verb == method and regex.match(path):
            return op_id
    return None


class ApiError(Exception):
    """A Google API error. ``body()`` is the Compute (legacy ESF) shape; other services may subclass."""

    http_reasons = {400: "BAD REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT FOUND",
                    409: "CONFLICT", 412: "PRECONDITION FAILED", 501: "NOT IMPLEMENTED", 503: "SERVICE UNAVAILABLE"}

    def __init__(self, code, message, reason, status=None, headers=None, item_message=None, **extra):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason
        self.status, self.headers, self.extra = status, headers or {}, extra
        self.item_message = item_message or message

    def body(self):
        item = {"message": self.item_message, "domain": "global", "reason": self.reason}
        item.update(self.extra)
        error = {"code": self.code, "message": self.message, "errors": [item]}
        if self.status:
            error["status"] = self.status
        return {"error": error}


class AsyncFailure(Exception):
    """(GCE error code, HTTP status, message) of a call GCE accepts but whose operation ends in an error."""


def not_found(path):
    return ApiError(404, f"The resource '{path}' was not found", "notFound")


def already_exists(path):
    return ApiError(409, f"The resource '{path}' already exists", "alreadyExists")


def not_ready(path):
    return ApiError(400, f"The resource '{path}' is not ready", "resourceNotReady")


def invalid(field, value, why):
    return ApiError(400, f"Invalid value for field '{field}': '{value}'. {why}", "invalid")


def required(field):
    return ApiError(400, f"Required field '{field}' not specified", "required")


def check_name(name, field="resource.name"):
    if not name:
        raise required(field)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise invalid(field, name, f"Must be a match of regex '{NAME_REGEX_TEXT}'")


# --------------------------------------------------------------------------------------------- links
class Link(str):
    """A resource path ("projects/p/zones/z") rendered as an absolute URL when a response is written."""


def render(value, base):
    """Deep copy of value with every Link made absolute against base (".../compute/v1/") and the
    emulator's private keys (those starting with "_") left out."""
    if isinstance(value, Link):
        return base + value
    if isinstance(value, dict):
        return {k: render(v, base) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [render(v, base) for v in value]
    return value


_URL_PREFIX = re.compile(r"^(?:https?://[^/]+)?/*(?:compute/(?:v1|beta|alpha)/)?")


def rel_path(value, project):
    """'https://h/compute/v1/projects/p/zones/z/x', 'zones/z/x' or 'projects/p/...' -> 'projects/p/...'."""
    path = _URL_PREFIX.sub("", value or "", count=1)
    return path if path.startswith("projects/") else f"projects/{project}/{path}"


# ------------------------------------------------------------------------------------ ids and times
_rng = random.SystemRandom()


def new_id():
    """A decimal uint64 string, as GCE's resource ids (19 digits)."""
    return str(_rng.randrange(10 ** 18, 2 ** 63))


def stable_id(*parts):
    """A decimal uint64 string that is always the same for the same seed resource."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return str(10 ** 18 + int.from_bytes(digest[:8], "big") % (2 ** 63 - 10 ** 18))


def random_fingerprint():
    return base64.b64encode(_rng.randbytes(8)).decode()


def labels_fingerprint(labels):
    if not labels:
        return EMPTY_FINGERPRINT
    digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def rfc3339(epoch):
    moment = datetime.datetime.fromtimestamp(epoch, _TZ)
    return moment.isoformat(timespec="milliseconds")


def operation_name(epoch):
    return "operation-%d-%013x-%08x-%08x" % (int(epoch * 1000), _rng.getrandbits(52),
                                             _rng.getrandbits(32), _rng.getrandbits(32))


# ------------------------------------------------------------------------------------------ labels
def _key_char_ok(ch):
    return ch.islower() or ch.isdigit() or ch in "_-" or (ch.isalpha() and not ch.isupper())


def check_labels(labels, field):
    """Label rules of GCE (keys: lowercase start, [a-z0-9_-], <= 63; values: same chars, may be empty)."""
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise invalid(field, labels, "Labels must be a map.")
    if len(labels) > 64:
        raise invalid(field, "", "Too many labels: a resource can have at most 64 labels.")
    for key, value in labels.items():
        if (not key or len(key) > 63 or not (key[0].isalpha() and not key[0].isupper())
                or not all(_key_char_ok(ch) for ch in key)):
            raise invalid(field, "", f"Label key '{key}' violates format constraints. The key must start with a "
                          "lowercase character, can only contain lowercase letters, numeric characters, underscores "
                          "and dashes. The key can be at most 63 characters long. International characters are "
                          "allowed.")
        value = "" if value is None else value
        if not isinstance(value, str) or len(value) > 63 or not all(_key_char_ok(ch) for ch in value):
            raise invalid(field, "", f"Label value '{value}' violates format constraints. The value can only "
                          "contain lowercase letters, numeric characters, underscores and dashes. The value can be "
                          "at most 63 characters long. International characters are allowed.")


# -------------------------------------------------------------------------------------- pagination
def page(items, query, key):
    """Slice sorted items by maxResults/pageToken; returns (page_items, next_token or None).

    The token is a cursor (the key of the last item returned), so inserts or deletes between
    pages do not repeat or skip items that were already there.
    """
    raw_max = (query.get("maxResults") or ["500"])[0]
    try:
        limit = int(raw_max)
    except ValueError:
        raise invalid("maxResults", raw_max, "Must be an integer.") from None
    if limit < 0 or limit > 500:
        raise invalid("maxResults", raw_max, "Must be between 0 and 500, inclusive.")
    limit = limit or 500
    token = (query.get("pageToken") or [""])[0]
    if token:
        try:
            after = json.loads(base64.urlsafe_b64decode(token.encode()).decode())["after"]
        except Exception:
            raise invalid("pageToken", token, "Invalid page token.") from None
        keys = [list(key(item)) for item in items]
        if after in keys:
            items = items[keys.index(after) + 1:]
        else:  # the last item went away: continue after where it would be (lists are sorted by key)
            items = [item for item, item_key in zip(items, keys) if item_key > after]
    chunk = items[:limit]
    if len(items) > limit:
        cursor = json.dumps({"after": list(key(chunk[-1]))}).encode()
        return chunk, base64.urlsafe_b64encode(cursor).decode()
    return chunk, None


# ------------------------------------------------------------------------------------- list filter
_TOKEN_RE = re.compile(r"""\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>!=|>=|<=|=|>|<|:)|"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|(?P<word>[^\s()!=<>:"']+))""")


def _tokens(text):
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"bad filter near {text[pos:]!r}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind in ("dq", "sq"):
            out.append(("str", value.replace('\\"', '"').replace("\\'", "'")))
        else:
            out.append((kind, value))
    return out


def _lookup(resource, path):
    """Values at a dotted path; lists fan out. Missing -> []."""
    values = [resource]
    for part in path.split("."):
        nxt = []
        for value in values:
            if isinstance(value, dict) and part in value:
                item = value[part]
                nxt.extend(item if isinstance(item, list) else [item])
        values = nxt
    return values


def _scalar_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compare(actual, op, wanted):
    if op == ":" and wanted == "*":
        return True
    text = _scalar_text(actual)
    if op in ("=", ":"):
        if op == ":" and isinstance(actual, str) and "/" in actual and text.rsplit("/", 1)[-1] == wanted:
            return True
        if "*" in wanted and isinstance(actual, str):
            return re.fullmatch(".*".join(re.escape(p) for p in wanted.split("*")), text) is not None
        return text == wanted
    if op == "!=":
        return text != wanted
    try:
        left, right = float(text), float(wanted)
    except ValueError:
        left, right = text, wanted
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]


class _Parser:
    """AIP-160 subset as GCE documents it: comparisons, implicit AND, AND, OR (binds tighter), NOT/-,
    parentheses, ``:*`` presence. Or the regex form: ``field eq|ne literal`` (RE2 full match)."""

    def __init__(self, tokens):
        self.toks, self.pos = tokens, 0

    def peek(self, offset=0):
        index = self.pos + offset
        return self.toks[index] if index < len(self.toks) else (None, None)

    def take(self):
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self):
        node = self.conj()
        if self.pos != len(self.toks):
            raise ValueError("trailing tokens")
        return node

    def conj(self):
        parts = [self.disj()]
        while self.peek()[0] not in (None, "rp"):
            if self.peek() == ("word", "AND"):
                self.take()
            parts.append(self.disj())
        return lambda r: all(p(r) for p in parts)

    def disj(self):
        parts = [self.unary()]
        while self.peek() == ("word", "OR"):
            self.take()
            parts.append(self.unary())
        return lambda r: any(p(r) for p in parts)

    def unary(self):
        if self.peek() == ("word", "NOT"):
            self.take()
            inner = self.primary()
            return lambda r: not inner(r)
        kind, value = self.peek()
        if kind == "word" and value.startswith("-") and len(value) > 1:
            self.toks[self.pos] = ("word", value[1:])
            inner = self.primary()
            return lambda r: not inner(r)
        return self.primary()

    def primary(self):
        kind, value = self.take()
        if kind == "lp":
            node = self.conj()
            if self.take()[0] != "rp":
                raise ValueError("missing )")
            return node
        if kind != "word":
            raise ValueError("field expected")
        field = value
        op_kind, op = self.take()
        if op_kind == "word" and op in ("eq", "ne"):
            return self._regex(field, op)
        if op_kind != "op":
            raise ValueError("operator expected")
        val_kind, wanted = self.take()
        if val_kind not in ("word", "str"):
            raise ValueError("value expected")
        if op == ":" and wanted == "*" or op != "!=":
            return lambda r: any(_compare(v, op, wanted) for v in _lookup(r, field))
        return lambda r: all(_compare(v, op, wanted) for v in _lookup(r, field))

    def _regex(self, field, op):
        words = []
        while self.peek()[0] in ("word", "str", "op") and self.peek() != ("word", "AND"):
            words.append(self.take()[1])
        pattern = re.compile(" ".join(words))
        negate = op == "ne"

        def match(resource):
            hit = any(pattern.fullmatch(_scalar_text(v)) for v in _lookup(resource, field))
            return hit != negate
        return match


def compile_filter(text):
    """A predicate over rendered resource dicts (``field:value`` also matches a URL's last segment)."""
    if not text or not text.strip():
        return lambda resource: True
    try:
        return _Parser(_tokens(text)).parse()
    except (ValueError, re.error, KeyError):
        raise invalid("filter", text, "Invalid list filter expression.") from None
