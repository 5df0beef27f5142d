"""Our own emulators (tests/sandbox/emulators/<p>.py) as sandbox providers, and what each needs from the sandbox:
credentials, the environment that points its SDK here, and the error bodies its SDK understands."""
import importlib
import json
import os
import secrets
import time
import urllib.request
import uuid
from http import HTTPStatus

HEALTH_PATH = "/_sandbox/health"


def sandbox_call(url, method="GET", body=None):
    """GET or POST (JSON `body`) one of the /_sandbox/ endpoints of a backend; the decoded JSON answer (or None)."""
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return json.loads(body) if body.strip() else None


class OwnEmulator:
    """Start with `python -m <module>`, name requests with its operation(), state/reset through /_sandbox/."""

    def __init__(self, name, module, env):
        self.name = name
        self.module = module
        self.env = env

    def command(self, ctx):
        argv = [ctx.python, "-m", self.module, "--host", "127.0.0.1", "--port", str(ctx.backend_port(self.name)),
                "--provision-seconds", str(ctx.provision_seconds)]
        env = self.env(ctx)  # the credentials it must accept, under the names the SDK reads
        if ctx.record_dir:  # in the config digest: `up` restarts the emulator when the record dir changes
            env = dict(env, SANDBOX_RECORD_DIR=ctx.record_dir)
        return argv, env

    def classify(self, req):
        # imported in the proxy at first use only: the proxy stays up if one emulator fails to import
        return importlib.import_module(self.module).operation(req.method, req.path.split("?", 1)[0])

    def state(self, ctx):
        return sandbox_call(ctx.backend_url(self.name) + "/_sandbox/state")

    def reset(self, ctx):
        sandbox_call(ctx.backend_url(self.name) + "/_sandbox/reset", "POST")

    def force_alarm(self, ctx, name, state):
        return sandbox_call(ctx.backend_url(self.name) + "/_sandbox/alarm-state", "POST", {"name": name, "state": state})


def _json_fault(status, body, headers):
    headers = dict(headers, **{"Content-Type": "application/json"})
    return status, HTTPStatus(status).phrase, headers, json.dumps(body).encode()


# ------------------------------------------------------------------ Azure (ARM)


def azure_secrets(ctx):
    return {"tenant_id": str(uuid.uuid4()), "client_id": str(uuid.uuid4()), "subscription_id": str(uuid.uuid4()),
            "client_secret": secrets.token_urlsafe(30)}


def azure_env(ctx):
    mine, url = ctx.secrets["azure"], ctx.public_url("azure")
    return {"AZURE_TENANT_ID": mine["tenant_id"], "AZURE_CLIENT_ID": mine["client_id"],
            "AZURE_CLIENT_SECRET": mine["client_secret"], "AZURE_SUBSCRIPTION_ID": mine["subscription_id"],
            "AZURE_AUTHORITY_HOST": url, "LXCRI_AZURE_ENDPOINT": url, "LXCRI_AZURE_CA_BUNDLE": ctx.ca}


def azure_shape(kind, status, req, retry_after):
    code = "TooManyRequests" if kind == "throttle" else {500: "InternalServerError", 503: "ServiceUnavailable"}[status]
    message = ("The request is being throttled." if kind == "throttle"
               else "The server encountered an internal error. Please retry the request.")
    # azure-core reads Retry-After as an integer number of seconds
    return _json_fault(status, {"error": {"code": code, "message": message}},
                       {"Retry-After": str(retry_after), "x-ms-request-id": str(uuid.uuid4())})


# ------------------------------------------------------------------ GCP


def gcp_secrets(ctx):
    """A service-account key file with a fresh RSA key whose token_uri is the emulator."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = "lxcri-sandbox@lxcri-sandbox.iam.gserviceaccount.com"
    document = {
        "type": "service_account", "project_id": "lxcri-sandbox", "private_key_id": secrets.token_hex(20),
        "private_key": pem, "client_email": email, "client_id": str(secrets.randbelow(10 ** 21)),
        "auth_uri": ctx.public_url("gcp") + "/o/oauth2/auth", "token_uri": ctx.public_url("gcp") + "/token",
        "auth_provider_x509_cert_url": ctx.public_url("gcp") + "/oauth2/v1/certs",
        "client_x509_cert_url": ctx.public_url("gcp") + "/robot/v1/metadata/x509/" + email,
        "universe_domain": "googleapis.com",
    }
    path = os.path.join(ctx.dir, "gcp-service-account.json")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(document, handle, indent=2)
    return {"credentials_file": path}


def gcp_env(ctx):
    return {"GOOGLE_APPLICATION_CREDENTIALS": ctx.secrets["gcp"]["credentials_file"],
            "GOOGLE_CLOUD_PROJECT": "lxcri-sandbox", "LXCRI_GCP_ENDPOINT": ctx.public_url("gcp")}


def gcp_shape(kind, status, req, retry_after):
    if kind == "throttle":
        error = {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Quota exceeded: rate limit.",
                 "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate limit exceeded"}]}
    else:
        name = {500: "INTERNAL", 503: "UNAVAILABLE"}[status]
        error = {"code": status, "status": name, "message": f"{HTTPStatus(status).phrase}: please retry.",
                 "errors": [{"domain": "global", "reason": "backendError", "message": "Backend Error"}]}
    return _json_fault(status, {"error": error}, {"Retry-After": str(retry_after)})


# ------------------------------------------------------------------ DigitalOcean


def do_secrets(ctx):
    return {"token": "dop_v1_" + secrets.token_hex(32)}


def do_env(ctx):
    return {"DIGITALOCEAN_TOKEN": ctx.secrets["digitalocean"]["token"],
            "LXCRI_DIGITALOCEAN_ENDPOINT": ctx.public_url("digitalocean"), "LXCRI_DIGITALOCEAN_CA_BUNDLE": ctx.ca}


def do_shape(kind, status, req, retry_after):
    if kind == "throttle":
        body = {"id": "too_many_requests", "message": "API Rate limit exceeded."}
        headers = {"ratelimit-limit": "5000", "ratelimit-remaining": "0",
                   "ratelimit-reset": str(int(time.time()) + retry_after), "Retry-After": str(retry_after)}
    else:
        body = {"id": "server_error" if status == 500 else "service_unavailable",
                "message": "Server was unable to give you a response."}
        headers = {"Retry-After": str(retry_after)} if status == 503 else {}
    body["request_id"] = str(uuid.uuid4())
    return _json_fault(status, body, headers)


AZURE = {"env": azure_env, "make_secrets": azure_secrets, "shape": azure_shape}
GCP = {"env": gcp_env, "make_secrets": gcp_secrets, "shape": gcp_shape}
DIGITALOCEAN = {"env": do_env, "make_secrets": do_secrets, "shape": do_shape}
