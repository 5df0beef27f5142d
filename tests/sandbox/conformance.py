"""Honesty checks over a whole sandbox run: what our emulators said, checked against the official descriptions.

    SANDBOX_RECORD_DIR=/tmp/rec scripts/sandbox up     # the own emulators append every exchange to
                                                       # /tmp/rec/<provider>.jsonl (see JsonlRecorder)
    ... run anything against the sandbox ...
    python -m tests.sandbox.conformance [--providers "gcp digitalocean"] /tmp/rec

* digitalocean.jsonl: every request and response against the OpenAPI description
  (``openapi_check``: strict, ratelimit headers required; the same settings as
  tests/sandbox/tests/test_digitalocean_conformance.py).
* gcp.jsonl: every response (2xx against the discovery method's response schema, errors against
  Google's error envelope) and every request body (``discovery_check``): Compute against
  compute.v1.json, Cloud Run against run.v2.json, Cloud Monitoring against monitoring.v3.json. A call of
  no described method is a violation.

Prints a summary per provider and each distinct violation as ``PROVIDER METHOD PATH: field: message``
(PATH is the template of the operation, e.g. ``/v2/droplets/{droplet_id}``), with ``(xN)`` when seen
N times. Exit status: 0 when clean or when the specs are not there (../shared/specs, or
$SANDBOX_SPECS_DIR): "skipped: ..."; 1 on any violation; 2 when there is nothing to check (no
record directory, no recording of a provider named in --providers, or, without --providers, no
recording at all).
"""
import argparse
import json
import os
import sys
import threading
import urllib.parse
from collections import Counter
from pathlib import Path

SPECS_DIR = Path(os.environ.get("SANDBOX_SPECS_DIR") or Path(__file__).resolve().parents[3] / "shared" / "specs")
SPEC_FILES = {"digitalocean": SPECS_DIR / "digitalocean" / "DigitalOcean-public.v2.bundled.json",
              "gcp": SPECS_DIR / "gcp" / "compute.v1.json"}
# the other Google APIs the GCP emulator may serve, checked when their discovery document is there too
GCP_MORE_SPECS = (SPECS_DIR / "gcp" / "run.v2.json", SPECS_DIR / "gcp" / "monitoring.v3.json")
CHECKED = tuple(SPEC_FILES)  # the providers whose recordings this module checks
_BYTES = ("request_body", "response_body")  # DigitalOcean's recorder hands bodies over as bytes
_REDACTED = "<redacted>"


# ------------------------------------------------------------------ recording (used by the emulators' main())


def _redact(value):
    """The exchange without live credentials: bearer tokens and issued access tokens are sandbox secrets."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() == "authorization" and isinstance(item, str):
                scheme, _, credential = item.partition(" ")
                out[key] = f"{scheme} {_REDACTED}" if credential else _REDACTED
            elif key == "access_token" and isinstance(item, str):
                out[key] = _REDACTED
            else:
                out[key] = _redact(item)
        return out
    if isinstance(value, list):
        return [_redact(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")  # lossless; read_exchanges turns it back
    return value


class JsonlRecorder:
    """A ``recorder`` for the emulators' make_server: one JSON line per exchange, appended to ``path``.

    Thread-safe (the servers are threading servers); the file is opened for each line, so every line
    is on disk when the call returns, and a record directory removed between runs is made again.
    """

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.lock = threading.Lock()

    def __call__(self, exchange):
        line = json.dumps(_redact(exchange), separators=(",", ":"), default=str) + "\n"
        with self.lock:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line)


def recorder_from_env(provider):
    """A JsonlRecorder writing $SANDBOX_RECORD_DIR/<provider>.jsonl, or None when the variable is unset."""
    directory = os.environ.get("SANDBOX_RECORD_DIR")
    return JsonlRecorder(os.path.join(directory, f"{provider}.jsonl")) if directory else None


def read_exchanges(path):
    """The exchanges of a recording, bodies of DigitalOcean's exchanges as bytes again."""
    exchanges = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                exchange = json.loads(line)
            except ValueError as exc:  # a line cut short by a killed emulator: say where
                raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from None
            for key in _BYTES:
                if isinstance(exchange.get(key), str):
                    exchange[key] = exchange[key].encode("utf-8", "surrogateescape")
            exchanges.append(exchange)
    return exchanges


# ------------------------------------------------------------------ checks


class Report:
    """What one provider's recording came to."""

    def __init__(self, provider):
        self.provider = provider
        self.checked = 0
        self.not_api = 0  # /_sandbox/ and token endpoints: not part of the described API
        self.operations = Counter()
        self.violations = Counter()

    def add(self, method, template, problems):
        for problem in problems:
            field, _, message = problem.partition(": ")
            self.violations[f"{self.provider} {method} {template}: {field}: {message}"] += 1

    def summary(self):
        distinct, total = len(self.violations), sum(self.violations.values())
        return (f"{self.provider}: {self.checked} exchanges checked ({self.not_api} outside the API skipped), "
                f"{len(self.operations)} operations seen, {total} violations ({distinct} distinct)")

    def lines(self):
        return [text if count == 1 else f"{text} (x{count})" for text, count in sorted(self.violations.items())]


def _decoded_path(path):
    """The request path as the server reads it: each path segment percent-decoded (pydo sends the tag
    'env:test' as 'env%3Atest'; the DigitalOcean API and the emulator decode it before matching the
    parameter's pattern, openapi-core does not). A segment that would decode to a '/' stays as it was;
    the query string is left alone (openapi_check parses it, decoding included)."""
    path, mark, query = path.partition("?")
    segments = [urllib.parse.unquote(s) if "/" not in urllib.parse.unquote(s) else s for s in path.split("/")]
    return "/".join(segments) + mark + query


def check_digitalocean(exchanges, checker=None):
    """Every request and response, as strict as tests/sandbox/tests/test_digitalocean_conformance.py."""
    from tests.sandbox import openapi_check

    checker = checker or openapi_check.checker(SPEC_FILES["digitalocean"])
    report = Report("digitalocean")
    for exchange in exchanges:
        if exchange["path"].startswith("/_sandbox/"):
            report.not_api += 1
            continue
        report.checked += 1
        exchange = dict(exchange, path=_decoded_path(exchange["path"]))
        template, operation = checker.find(exchange["method"], exchange["path"])
        if operation is not None:
            report.operations[operation.get("operationId") or f"{exchange['method']} {template}"] += 1
        for violation in checker.check_exchange(exchange, required_headers=openapi_check.RATELIMIT_HEADERS,
                                                strict=True, undeclared_ok=openapi_check.DIGITALOCEAN_UNDECLARED_OK):
            # openapi_check already writes "METHOD TEMPLATE: field: message"
            report.violations[f"digitalocean {violation}"] += 1
    return report


GCP_NOT_API = ("/_sandbox/", "/token", "/oauth2/")  # the emulator's own endpoints and the OAuth token endpoint


def _find_gcp_method(documents, http_method, path):
    """(document, method, path template) of a request path, from the first document describing it."""
    for document in documents:
        # a document with an empty servicePath (run.v2.json) has paths like "v2/projects/..." from the root
        relative = path if document.service_path != "/" else path.lstrip("/")
        method = document.find_method(http_method, relative)
        if method is not None:
            template = document.service_path.rstrip("/") + "/" + (method.get("flatPath") or method["path"])
            return document, method, template
    return None, None, None


def _enum_numbers_as_names(document, value, schema):
    """``value`` with the enum fields it spells as numbers spelt as names, for validation.

    Allowance, not a spec error: a client that asks for ``$alt=json;enum-encoding=int`` (what the
    google-cloud-* REST transports send) gets enums as proto numbers from the real API (proto3 JSON
    mapping); discovery documents list the names only, not the numbers. A number is taken for the
    name at that position of the list (the lists follow the proto declaration order, which is not
    always the number order: google.api.LaunchStage), so what is checked of a number is that it is
    within the list; one outside stays a number, and so a violation. Only fields whose schema has an
    ``enum`` are touched, and only in exchanges whose request asked for enum-encoding=int.
    """
    while isinstance(schema, dict) and "$ref" in schema:
        schema = document.schemas.get(schema["$ref"], {})
    if not isinstance(schema, dict):
        return value
    if "enum" in schema and isinstance(value, int) and not isinstance(value, bool):
        return schema["enum"][value] if 0 <= value < len(schema["enum"]) else value
    if isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        return {key: _enum_numbers_as_names(document, item, props[key] if key in props else extra or {})
                for key, item in value.items()}
    if isinstance(value, list):
        return [_enum_numbers_as_names(document, item, schema.get("items") or {}) for item in value]
    return value


def gcp_documents():
    """The discovery documents the GCP recording is checked against: Compute, and those of GCP_MORE_SPECS there."""
    from tests.sandbox.discovery_check import Discovery

    return [Discovery.load(path) for path in (SPEC_FILES["gcp"],) + GCP_MORE_SPECS if path.is_file()]


def check_gcp(exchanges, documents=None):
    """Every response (2xx: the method's schema; errors: Google's envelope) and request body of the
    Google APIs in ``documents`` (default: gcp_documents())."""
    from tests.sandbox.discovery_check import check_google_error

    documents = documents or gcp_documents()
    report = Report("gcp")
    for record in exchanges:
        method_name, path = record["method"], record["path"].split("?", 1)[0]
        if path.startswith(GCP_NOT_API):
            report.not_api += 1
            continue
        report.checked += 1
        document, method, template = _find_gcp_method(documents, method_name, path)
        if method is None:
            names = ", ".join(f"{d.doc.get('name')}.{d.doc.get('version')}" for d in documents)
            report.add(method_name, path, [f"operation: not described by the discovery documents ({names})"])
            continue
        report.operations[method["id"]] += 1
        body, request = record.get("response"), record.get("request")
        numbers = "enum-encoding=int" in ",".join((record.get("query") or {}).get("$alt", []))
        if record["status"] >= 300:
            problems = check_google_error(body)
        elif "response" in method:
            schema = method["response"]["$ref"]
            if numbers:
                body = _enum_numbers_as_names(document, body, {"$ref": schema})
            problems = document.validate(body, schema)
        else:
            problems = [] if body in (None, {}) else ["$: the method has no response body"]
        if request is not None:
            if "request" in method:
                schema = method["request"]["$ref"]
                if numbers:  # the client sends what it asks for: numbers
                    request = _enum_numbers_as_names(document, request, {"$ref": schema})
                problems += ["request " + p for p in document.validate(request, schema, method["id"])]
            elif request != {}:
                problems.append("request $: the method takes no request body")
        report.add(method_name, template, problems)
    return report


CHECKS = {"digitalocean": check_digitalocean, "gcp": check_gcp}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.conformance", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("directory", help="the SANDBOX_RECORD_DIR of the run: <provider>.jsonl files")
    parser.add_argument("--providers", default="",
                        help="providers that must have a recording (space or comma separated, e.g. "
                             "\"$LXCRI_TEST_PROVIDERS\"; those without a check here are ignored)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list the operations seen")
    args = parser.parse_args(argv)

    if not SPECS_DIR.is_dir():
        print(f"conformance: skipped: ../shared/specs not found at {SPECS_DIR} (set SANDBOX_SPECS_DIR to check)")
        return 0
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"conformance: no record directory {directory}: was the sandbox started with SANDBOX_RECORD_DIR?",
              file=sys.stderr)
        return 2
    required = {p for p in args.providers.replace(",", " ").split() if p in CHECKS}
    failed = missing = False
    checked = 0
    for provider, check in CHECKS.items():
        recording = directory / f"{provider}.jsonl"
        if not SPEC_FILES[provider].is_file():
            print(f"{provider}: skipped: {SPEC_FILES[provider]} not found")
            continue
        if not recording.is_file() or recording.stat().st_size == 0:
            where = sys.stderr if provider in required else sys.stdout
            print(f"{provider}: nothing recorded at {recording}", file=where)
            missing = missing or provider in required
            continue
        try:
            report = check(read_exchanges(recording))
        except ValueError as exc:
            print(f"{provider}: {exc}", file=sys.stderr)
            failed = True
            continue
        checked += 1
        print(report.summary())
        if not report.checked and provider in required:  # health probes only: the run never reached it
            print(f"{provider}: no API exchange recorded at {recording}", file=sys.stderr)
            missing = True
        if args.verbose:
            for name, count in sorted(report.operations.items()):
                print(f"  {name} x{count}")
        for line in report.lines():
            print(line)
        failed = failed or bool(report.violations)
    if failed:
        return 1
    if missing or (not checked and not args.providers):
        return 2  # a check that saw nothing must not pass as a clean one
    return 0


if __name__ == "__main__":
    sys.exit(main())
