"""Google Cloud emulator for the sandbox: Compute Engine v1 REST (see ``gcp_compute.py``), Cloud Run v2
(``gcp_run.py``) and Cloud Monitoring v3 (``gcp_monitoring.py``).

Follows the contract of ``tests/sandbox/emulators/__init__.py``. Plain HTTP; point the official
clients at it with ``client_options={"api_endpoint": "http://HOST:PORT"}`` and ``transport="rest"``.

Operations (read this before writing a provider):

* Every mutating call answers a ``compute#operation`` (decimal ``id``). With ``provision_seconds=0``
  it is already ``DONE`` in the answer of the call, so ``insert(...).result()`` (ExtendedOperation)
  works. With ``provision_seconds > 0`` it is ``RUNNING``: poll it with ``insert_unary`` +
  ``ZoneOperationsClient(..., client_options=same).wait(...)`` (or ``GlobalOperationsClient`` for
  firewalls) in a loop until ``status == DONE``. ``ExtendedOperation.result()`` would poll through an
  operations client the SDK builds *without* your client_options, i.e. https://compute.googleapis.com.
* ``.../operations/{op}/wait`` returns when the operation is DONE, or after ``wait_seconds``
  (default 2 s; GCE: about 2 minutes) with the operation still RUNNING, exactly like GCE.

Auth: with GOOGLE_APPLICATION_CREDENTIALS set (or ``credentials_file=``), a request must carry a
self-signed RS256 JWT (what gapic clients send) signed by that file's key, or an access token got
from this emulator's ``POST /token`` (JWT-bearer grant, for a key file whose token_uri points
here); otherwise any bearer token is accepted. No ``Authorization: Bearer`` -> GCE's 401.

Adding another API: write ``gcp_<api>.py`` with a service class like ``gcp_compute.ComputeService``
(``prefix``, ``routes``, ``handle``, ``reset``, ``state``; ``watch(services)`` when it needs its siblings)
and a module ``operation(method, path)``, then list it in ``SERVICES`` below. Errors of those APIs use
google.rpc.Status (``{"error": {"code", "message", "status", "details"}}``): subclass
``gcp_common.ApiError`` and override ``body()`` (as ``gcp_run.RunError``).
``POST /_sandbox/alarm-state {"name", "state"}`` forces an alert policy's state (gcp_monitoring.py).
"""
import argparse
import base64
import json
import os
import secrets
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import gcp_compute, gcp_monitoring, gcp_run
from .gcp_common import ApiError

SERVICES = [(gcp_compute, gcp_compute.ComputeService),  # (module with operation(), service class)
            (gcp_run, gcp_run.RunService),
            (gcp_monitoring, gcp_monitoring.MonitoringService)]
DEFAULT_PRINCIPAL = "sandbox-user@lxcri.invalid"
TOKEN_PATHS = ("/token", "/oauth2/v4/token")  # a key file's token_uri may point here
_SEE = ("Expected OAuth 2 access token, login cookie or other valid authentication credential. "
        "See https://developers.google.com/identity/sign-in/web/devconsole-project.")


def operation(method, path):
    """The API method id of a request, e.g. "compute.instances.insert" ("unknown" when unknown)."""
    path = urllib.parse.urlsplit(path).path
    if path.startswith("/_sandbox/"):
        return "sandbox." + path[len("/_sandbox/"):]
    if path in TOKEN_PATHS:
        return "oauth2.token"
    for module, _cls in SERVICES:
        name = module.operation(method, path)
        if name:
            return name
    return "unknown"


def _unauthenticated(invalid_token):
    if invalid_token:
        return ApiError(401, "Request had invalid authentication credentials. " + _SEE, "authError",
                        status="UNAUTHENTICATED", item_message="Invalid Credentials", location="Authorization",
                        locationType="header", headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", '
                                                                            'error="invalid_token"'})
    return ApiError(401, "Request is missing required authentication credential. " + _SEE, "required",
                    status="UNAUTHENTICATED", item_message="Login Required.", location="Authorization",
                    locationType="header", headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})


def _b64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Auth:
    """Checks bearer tokens. When a service-account key file is known, a token must be a self-signed
    RS256 JWT of that key (what gapic clients send) or an access token this emulator issued at
    ``POST /token`` for such a JWT (what google-auth's token flow does). The file is (re)read
    lazily, so it may be written after the emulator started; while it is missing any bearer token
    is accepted."""

    def __init__(self, credentials_file=None):
        self.path, self.stamp = credentials_file, None
        self.public_key = self.email = self.key_id = None
        self.issued = {}  # access token -> (principal, expiry)
        self.lock = threading.Lock()

    def _load(self):
        if not self.path:
            return
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except OSError:
            if self.stamp != "missing":
                print(f"gcp emulator: {self.path} not found: accepting any bearer token", file=sys.stderr)
            self.stamp, self.public_key = "missing", None
            return
        if stamp == self.stamp:
            return
        with open(self.path, encoding="utf-8") as handle:
            info = json.load(handle)
        self.stamp, self.public_key = stamp, None
        if info.get("private_key"):
            from cryptography.hazmat.primitives import serialization  # only needed to verify
            private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
            self.public_key = private.public_key()
            self.email, self.key_id = info.get("client_email"), info.get("private_key_id")

    def check(self, header):
        """The caller's e-mail (or a placeholder); raises the 401 GCE would answer."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated(invalid_token=False)
        with self.lock:
            self._load()
            issued = self.issued.get(token)
            if issued and issued[1] > time.time():
                return issued[0]
            claims = self._claims(token)
            if self.public_key is not None and not self._valid(token, claims):
                raise _unauthenticated(invalid_token=True)
        return claims.get("email") or claims.get("sub") or claims.get("iss") or DEFAULT_PRINCIPAL

    def token(self, form):
        """OAuth 2.0 JWT-bearer grant (RFC 7523), as oauth2.googleapis.com/token answers it."""
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not form.get("assertion"):
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "
                         + form.get("grant_type", "")}
        assertion = form["assertion"]
        with self.lock:
            self._load()
            claims = self._claims(assertion)
            if not claims or (self.public_key is not None and not self._valid(assertion, claims)):
                return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            access = "ya29.sandbox-" + secrets.token_urlsafe(48)
            self.issued[access] = (claims.get("iss") or DEFAULT_PRINCIPAL, time.time() + 3599)
        return 200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}

    @staticmethod
    def _claims(token):
        parts = token.split(".")
        try:
            return json.loads(_b64(parts[1])) if len(parts) == 3 else {}
        except ValueError:
            return {}

    def _valid(self, token, claims):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        parts = token.split(".")
        try:
            if len(parts) != 3:
                return False
            header = json.loads(_b64(parts[0]))
            if header.get("alg") != "RS256" or (self.key_id and header.get("kid", self.key_id) != self.key_id):
                return False
            self.public_key.verify(_b64(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
            now = time.time()
            return (float(claims.get("exp", 0)) >= now - 30 and float(claims.get("iat", now)) <= now + 300
                    and (not self.email or claims.get("iss") == self.email))
        except (ValueError, TypeError, InvalidSignature):
            return False


class Ctx:
    """One request as the services see it."""

    def __init__(self, method, path, query, body, base_url, principal):
        self.method, self.path, self.query, self.body = method, path, query, body
        self.base_url, self.principal = base_url, principal


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ESF"
    sys_version = ""

    def log_message(self, *_args):
        pass

    def do_GET(self):
        self._dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def _dispatch(self):
        split = urllib.parse.urlsplit(self.path)
        path, query = split.path, urllib.parse.parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request_json, headers = None, {}
        try:
            if path.startswith("/_sandbox/"):
                status, body = self._sandbox(path, raw)
            elif path in TOKEN_PATHS and self.command == "POST":
                form = dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace")))
                status, body = self.server.auth.token(form)
            else:
                principal = self.server.auth.check(self.headers.get("Authorization"))
                if raw.strip():
                    try:
                        request_json = json.loads(raw)
                    except ValueError as exc:
                        raise ApiError(400, f"Invalid JSON payload received. {exc}", "parseError",
                                       status="INVALID_ARGUMENT") from None
                proto = self.headers.get("X-Forwarded-Proto") or (
                    "https" if isinstance(self.connection, ssl.SSLSocket) else "http")
                host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
                ctx = Ctx(self.command, path, query, request_json, f"{proto}://{host}", principal)
                status, body = self.server.route(ctx)
        except ApiError as err:
            status, body, headers = err.code, err.body(), err.headers
        except Exception as exc:  # an emulator bug: say so, GCE-shaped
            traceback.print_exc()
            status, body = 500, ApiError(500, f"Internal error in the GCP emulator: {exc!r}", "backendError").body()
        data = json.dumps(body, indent=2).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if self.server.recorder is not None:
            self.server.recorder({"method": self.command, "path": path, "query": query,
                                  "operation": operation(self.command, path), "status": status,
                                  "request": request_json, "response": body})

    def _sandbox(self, path, raw=b""):
        server = self.server
        if path == "/_sandbox/health" and self.command == "GET":
            return 200, {"status": "ok"}
        if path == "/_sandbox/state" and self.command == "GET":
            state = {}
            for service in server.services:
                state.update(service.state())
            return 200, state
        if path == "/_sandbox/reset" and self.command == "POST":
            for service in server.services:
                service.reset()
            return 200, {}
        if path == "/_sandbox/alarm-state" and self.command == "POST":  # {"name", "state"}: see gcp_monitoring
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                request = None
            if not isinstance(request, dict):
                raise ApiError(400, "Expected a JSON object {\"name\": ..., \"state\": ...}", "parseError")
            monitoring = next(s for s in server.services if isinstance(s, gcp_monitoring.MonitoringService))
            return monitoring.force_alarm(request.get("name"), request.get("state"))
        raise ApiError(404, f"No sandbox endpoint {self.command} {path}", "notFound")


class GcpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def serve_forever(self, poll_interval=0.05):  # shutdown() returns within 50 ms, not 500
        super().serve_forever(poll_interval)

    def route(self, ctx):
        for service in self.services:
            if not ctx.path.startswith(service.prefix):
                continue
            for verb, regex, _op_id, handler in service.routes:
                match = regex.match(ctx.path)
                if match and verb == ctx.method:
                    return service.handle(ctx, handler, match.groupdict())
            raise ApiError(501, f"{ctx.method} {ctx.path} is not emulated by the lxcri sandbox", "notImplemented")
        raise ApiError(404, f"The requested URL {ctx.path} was not found on this server.", "notFound")


def make_server(host, port, provision_seconds=0.0, *, wait_seconds=2.0, credentials_file=None, link_base=None,
                record=False, recorder=None):
    """A GCP emulator server (not yet serving).

    credentials_file: service-account JSON whose key must sign the callers' JWTs; default
    $GOOGLE_APPLICATION_CREDENTIALS at the time of this call. link_base: e.g.
    "https://www.googleapis.com/compute/v1/" to write GCE's canonical selfLinks instead of links to
    this server. record: keep every request/response in ``server.records`` (for conformance tests).
    recorder: optional callable receiving the same dict per exchange (method, path, query, operation,
    status, request and response JSON); ignored when record is true.
    """
    server = GcpServer((host, port), Handler)
    if credentials_file is None:
        credentials_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or None
    server.auth = Auth(credentials_file)
    server.services = [cls(provision_seconds=provision_seconds, wait_seconds=wait_seconds, link_base=link_base)
                       for _module, cls in SERVICES]
    for service in server.services:  # Monitoring serves metrics of the others' instances and services
        if hasattr(service, "watch"):
            service.watch(server.services)
    server.records = [] if record else None
    server.recorder = server.records.append if record else recorder
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--provision-seconds", type=float, default=0.0)
    parser.add_argument("--wait-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    # $SANDBOX_RECORD_DIR: append every exchange to <dir>/gcp.jsonl (python -m tests.sandbox.conformance)
    from tests.sandbox.conformance import recorder_from_env  # stdlib only at import
    recorder = recorder_from_env("gcp")
    server = make_server(args.host, args.port, args.provision_seconds, wait_seconds=args.wait_seconds,
                         recorder=recorder)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
