"""Azure emulator: Azure AD (Entra ID) token endpoints plus Azure Resource Manager, stateful, in memory.

Serves what azure-identity's ClientSecretCredential and the azure-mgmt-* SDKs (compute, network) send:

* AAD: ``GET /{tenant}/v2.0/.well-known/openid-configuration``, ``POST /{tenant}/oauth2/v2.0/token``
  (client_credentials) and ``GET /common/discovery/instance`` (only reached by msal callers that pass
  ``instance_discovery="https://<this host>/common/discovery/instance"``; azure-identity can only
  disable discovery: pass ``disable_instance_discovery=True``). Tokens are HS256 JWTs signed with a
  per-server key. When ``AZURE_CLIENT_ID`` / ``AZURE_CLIENT_SECRET`` (/ ``AZURE_TENANT_ID``) are set (or
  given to make_server), other values are refused as AAD does (AADSTS700016 400, AADSTS7000215 401,
  AADSTS90002 400) and every ARM request needs ``Authorization: Bearer <token issued here>``.
* ARM: see azure_arm.py (engine), azure_network.py, azure_compute.py, azure_containers.py and
  azure_monitor.py (resource types: networks, VMs and disks, container groups, Microsoft.Insights metrics,
  metric alerts and action groups).
* ``POST /_sandbox/alarm-state`` ``{"name", "state"}``: the metric alerts of that name report that state
  (azure_monitor.force_state); ``/_sandbox/reset`` also clears the metric pins (tests/sandbox/metrics.py).

Contract: tests/sandbox/emulators/__init__.py.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .. import metrics as signal
from . import azure_compute, azure_containers, azure_monitor, azure_network  # noqa: F401  (register the resource types)
from .azure_arm import Arm, ArmError, Request
from .azure_routes import implemented_operations as _arm_operations, parse

_ENV = object()
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-(preview|beta|alpha|privatepreview))?$", re.I)
_OPENID = ["v2.0", ".well-known", "openid-configuration"]


def _split(target):
    parts = urlsplit(target)
    segs = [unquote(s) for s in parts.path.split("/") if s]
    return parts.path, parts.query, segs


def operation(method, path):
    """Name the API operation of a request, e.g. 'virtualMachines.createOrUpdate'."""
    _, _, segs = _split(path)
    low = [s.lower() for s in segs]
    if low[:1] == ["_sandbox"]:
        return "sandbox." + (low[1] if len(low) > 1 else "unknown")
    if low == ["common", "discovery", "instance"]:
        return "aad.instanceDiscovery"
    if len(low) == 4 and low[1:] == [s.lower() for s in _OPENID]:
        return "aad.openidConfiguration"
    if len(low) == 4 and low[1:] == ["oauth2", "v2.0", "token"]:
        return "aad.token"
    return parse(method.upper(), segs).op


def implemented_operations():
    """Names (as operation() gives them) of every operation this emulator implements."""
    return sorted(_arm_operations() + ["aad.instanceDiscovery", "aad.openidConfiguration", "aad.token",
                                       "sandbox.alarm-state", "sandbox.health", "sandbox.reset", "sandbox.state"])


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AzureEmulator:
    def __init__(self, provision_seconds=0.0, page_size=50, client_id=_ENV, client_secret=_ENV, tenant_id=_ENV):
        env = os.environ.get
        self.client_id = env("AZURE_CLIENT_ID") if client_id is _ENV else client_id
        self.client_secret = env("AZURE_CLIENT_SECRET") if client_secret is _ENV else client_secret
        self.tenant_id = env("AZURE_TENANT_ID") if tenant_id is _ENV else tenant_id
        self.key = os.urandom(32)
        self.arm = Arm(provision_seconds, page_size, self.tenant_id)

    @property
    def secured(self):
        return bool(self.client_id or self.client_secret)

    # ---- entry point ---------------------------------------------------------------------------
    def handle(self, method, target, headers, raw_body, base_url):
        """-> (status, headers dict, body: dict | bytes | None)"""
        path, query, segs = _split(target)
        low = [s.lower() for s in segs]
        if low[:1] == ["_sandbox"]:
            return self._sandbox(method, low, raw_body)
        if low == ["common", "discovery", "instance"] or (len(low) == 4 and (
                low[1:] == [s.lower() for s in _OPENID] or low[1:] == ["oauth2", "v2.0", "token"])):
            return self._aad(method, segs, low, query, headers, raw_body, base_url)
        request_id = str(uuid.uuid4())
        out = {"x-ms-request-id": request_id,
               "x-ms-correlation-request-id": headers.get("x-ms-correlation-request-id") or request_id}
        if headers.get("x-ms-client-request-id"):
            out["x-ms-client-request-id"] = headers["x-ms-client-request-id"]
        try:
            self._authenticate(headers, base_url)
            values = parse_qs(query, keep_blank_values=True)
            req_query = {k: v[0] for k, v in values.items()}
            api_version = {k.lower(): v for k, v in req_query.items()}.get("api-version")
            if not api_version:
                raise ArmError(400, "MissingApiVersionParameter",
                               "The api-version query parameter (?api-version=) is required for all requests.")
            if not _API_VERSION.match(api_version):
                raise ArmError(400, "InvalidApiVersionParameter",
                               f"The api-version '{api_version}' is invalid. The supported versions are "
                               "'yyyy-mm-dd' dates, optionally with a '-preview' suffix.")
            body = None
            if raw_body:
                try:
                    body = json.loads(raw_body)
                except ValueError as err:
                    raise ArmError(400, "InvalidRequestContent",
                                   f"The request content was invalid and could not be deserialized: {err}.")
            req = Request(method, path, query, req_query, headers, body, base_url)
            resp = self.arm.dispatch(req, parse(method, segs))
            out.update(resp.headers)
            return resp.status, out, resp.body
        except ArmError as err:
            out.update(err.headers)
            if err.status == 404:
                out["x-ms-failure-cause"] = "gateway"
            return err.status, out, (None if method == "HEAD" else err.body())

    # ---- sandbox -------------------------------------------------------------------------------
    def _sandbox(self, method, low, raw_body=b""):
        name = low[1] if len(low) == 2 else ""
        if name == "health" and method == "GET":
            return 200, {}, {"status": "ok"}
        if name == "state" and method == "GET":
            return 200, {}, self.arm.state()
        if name == "reset" and method == "POST":
            self.arm.reset()
            signal.reset()
            return 200, {}, {}
        if name == "alarm-state" and method == "POST":
            try:
                body = json.loads(raw_body or b"{}")
            except ValueError:
                body = None
            status, answer = azure_monitor.force_state(self.arm, body)
            return status, {}, answer
        return 404, {}, {"error": {"code": "NotFound", "message": f"No sandbox endpoint {method} /{'/'.join(low)}"}}

    # ---- Azure AD ------------------------------------------------------------------------------
    def _aad_error(self, status, error, code, message, base_url):
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        body = {"error": error,
                "error_description": f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {corr} "
                                     f"Timestamp: {stamp}",
                "error_codes": [code], "timestamp": stamp, "trace_id": trace, "correlation_id": corr,
                "error_uri": f"{base_url}/error?code={code}"}
        return status, {"Cache-Control": "no-store, no-cache"}, body

    def _tenant_error(self, tenant, base_url):
        if self.tenant_id and tenant.lower() not in (self.tenant_id.lower(), "organizations", "common"):
            return self._aad_error(400, "invalid_tenant", 90002,
                                   f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                                   "and are signing into the correct cloud.", base_url)
        return None

    def _aad(self, method, segs, low, query, headers, raw_body, base_url):
        if low == ["common", "discovery", "instance"]:
            endpoint = parse_qs(query).get("authorization_endpoint", [""])[0]
            tenant = (urlsplit(endpoint).path.strip("/").split("/") or ["common"])[0] or "common"
            host = urlsplit(base_url).netloc
            return 200, {}, {"tenant_discovery_endpoint": f"{base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                             "api-version": "1.1",
                             "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]}
        tenant = segs[0]
        failed = self._tenant_error(tenant, base_url)
        if failed:
            return failed
        if low[1] != "oauth2":
            if method != "GET":
                return 405, {}, None
            root = f"{base_url}/{tenant}"
            return 200, {}, {
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                          "client_secret_basic"],
                "jwks_uri": f"{root}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{root}/v2.0", "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base_url}/oidc/userinfo",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "http_logout_supported": True, "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "oid"],
                "kerberos_endpoint": f"{root}/kerberos", "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com", "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com", "rbac_url": "https://pas.windows.net"}
        if method != "POST":
            return 405, {}, None
        form = {k: v[0] for k, v in parse_qs((raw_body or b"").decode("utf-8", "replace")).items()}
        auth = headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                form.setdefault("client_id", unquote(user))
                form.setdefault("client_secret", unquote(password))
            except ValueError:
                pass
        grant = form.get("grant_type")
        if grant != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", 70003,
                                   f"The app requested an unsupported grant type '{grant}'.", base_url)
        client_id = form.get("client_id")
        if not client_id:
            return self._aad_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'client_id'.", base_url)
        if not form.get("scope"):
            return self._aad_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: 'scope'.", base_url)
        if self.client_id and client_id != self.client_id:
            return self._aad_error(400, "unauthorized_client", 700016,
                                   f"Application with identifier '{client_id}' was not found in the directory "
                                   f"'{tenant}'. This can happen if the application has not been installed by the "
                                   "administrator of the tenant or consented to by any user in the tenant. You may "
                                   "have sent your authentication request to the wrong tenant.", base_url)
        secret = form.get("client_secret")
        if self.client_secret and not secret and not form.get("client_assertion"):
            return self._aad_error(401, "invalid_client", 7000216,
                                   "'client_assertion', 'client_secret' or 'request' is required for the "
                                   "'client_credentials' grant type.", base_url)
        if self.client_secret and secret != self.client_secret:
            return self._aad_error(401, "invalid_client", 7000215,
                                   "Invalid client secret provided. Ensure the secret being sent in the request is "
                                   "the client secret value, not the client secret ID, for a secret added to app "
                                   f"'{client_id}'.", base_url)
        scope = form["scope"].split()[0]
        audience = scope[:-len(".default")] if scope.endswith(".default") else scope
        now = int(time.time())
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{tenant}/", "iat": now, "nbf": now,
                  "exp": now + 3599, "appid": client_id, "appidacr": "1", "idp": f"https://sts.windows.net/{tenant}/",
                  "idtyp": "app", "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
                  "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)), "tid": tenant, "ver": "1.0"}
        head = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        payload = _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(self.key, f"{head}.{payload}".encode(), hashlib.sha256).digest())
        return 200, {"Cache-Control": "no-store, no-cache"}, {
            "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
            "access_token": f"{head}.{payload}.{signature}"}

    def _authenticate(self, headers, base_url):
        if not self.secured:
            return
        challenge = {"WWW-Authenticate": f'Bearer authorization_uri="{base_url}/{self.tenant_id or "common"}", '
                                         'error="invalid_token", error_description="The authentication failed."'}
        auth = headers.get("Authorization") or ""
        if not auth:
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
                           headers=challenge)
        scheme, _, token = auth.partition(" ")
        parts = token.strip().split(".")
        if scheme.lower() != "bearer" or len(parts) != 3:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.", headers=challenge)
        expected = _b64(hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            raise ArmError(401, "InvalidAuthenticationToken",
                           "The access token is invalid: it was not issued by this sandbox's token endpoint.",
                           headers=challenge)
        claims = json.loads(_unb64(parts[1]))
        if claims.get("exp", 0) < time.time():
            raise ArmError(401, "ExpiredAuthenticationToken",
                           "The access token expiry UTC time is earlier than current UTC time.", headers=challenge)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lxcri-sandbox-azure/1.0"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):  # quiet; the sandbox proxy logs
        pass

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _base_url(self):
        proto = self.headers.get("X-Forwarded-Proto")
        if not proto:
            proto = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
        return f"{proto}://{host}"

    def _handle(self):
        raw = self._read_body()
        try:
            status, headers, body = self.server.emulator.handle(self.command, self.path, self.headers, raw,
                                                                self._base_url())
        except Exception as err:  # a bug in the emulator: say so in ARM's shape
            status, headers = 500, {}
            body = {"error": {"code": "InternalServerError", "message": f"sandbox emulator bug: {err!r}"}}
        data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() != "cache-control":
                self.send_header(key, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Cache-Control", headers.get("Cache-Control", "no-cache"))
        self.send_header("Content-Length", str(len(data)))
        # headers and body in one write: two small writes meet the client's delayed ACK (~40 ms each)
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle


def make_server(host, port, provision_seconds=0.0, *, page_size=50, client_id=_ENV, client_secret=_ENV,
                tenant_id=_ENV):
    """A ThreadingHTTPServer (plain HTTP/1.1) emulating AAD + ARM; ``server.emulator`` is its state.

    client_id/client_secret/tenant_id default to AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID;
    pass None to accept any. page_size is the list page size (``$top`` overrides it per request).
    """
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    server.emulator = AzureEmulator(provision_seconds, page_size, client_id, client_secret, tenant_id)
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--provision-seconds", type=float, default=0.0)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.provision_seconds, page_size=args.page_size)
    print(f"azure emulator listening on {server.server_address[0]}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
