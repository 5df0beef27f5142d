"""DigitalOcean API v2 emulator (stdlib only): droplets, droplet actions, actions, tags, sizes, regions, images.

Follows the official OpenAPI description (digitalocean/openapi) and the behaviour of the real API
as seen by pydo: 202 on droplet create with ``links.actions``, actions that go ``in-progress`` ->
``completed`` after ``provision_seconds`` (0: on the next request), droplets ``new`` -> ``active``,
``ratelimit-*`` headers on every answer, errors as ``{"id", "message", "request_id"}``.

Auth: ``Authorization: Bearer <token>``. If ``token`` is given to :func:`make_server`, or the env
variable ``DIGITALOCEAN_TOKEN`` is set in the emulator process, any other token gets 401;
otherwise any non-empty token is accepted.

Features live in ``digitalocean_<feature>.py`` modules (see ``digitalocean_core``); to add one, write the
module and append it to ``FEATURES``. A feature's ``SANDBOX`` dict adds ``POST /_sandbox/<name>`` hooks
(monitoring: ``alarm-state``).
"""
import argparse
import json
import os
import ssl
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.sandbox.emulators import (
    digitalocean_apps, digitalocean_catalog, digitalocean_droplets, digitalocean_monitoring, digitalocean_tags,
)
from tests.sandbox.emulators.digitalocean_core import (
    ApiError, Request, Router, State, bad_request, new_request_id, not_found,
)

FEATURES = [digitalocean_droplets, digitalocean_tags, digitalocean_catalog, digitalocean_apps, digitalocean_monitoring]
SANDBOX_HOOKS = {name: hook for feature in FEATURES for name, hook in getattr(feature, "SANDBOX", {}).items()}
ROUTER = Router([route for feature in FEATURES for route in feature.ROUTES])

RATE_LIMIT = 5000  # requests per hour, as the real API
_UNAUTHORIZED = ApiError(401, "Unauthorized", "Unable to authenticate you")


def operation(method, path):
    """Operation name of a request, e.g. ``droplets.create`` or ``dropletActions.post``."""
    path = urllib.parse.urlsplit(path).path
    if path.startswith("/_sandbox/"):
        return "sandbox." + path[len("/_sandbox/"):].strip("/")
    return ROUTER.operation(method, path)


class _RateLimit:
    """Fixed one-hour windows per token: ``ratelimit-limit/remaining/reset`` and 429 when exhausted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.windows = {}

    def take(self, token):
        now = int(time.time())
        with self.lock:
            start, used = self.windows.get(token, (now, 0))
            if now >= start + 3600:
                start, used = now, 0
            used += 1
            self.windows[token] = (start, used)
        return {"ratelimit-limit": str(RATE_LIMIT), "ratelimit-remaining": str(max(0, RATE_LIMIT - used)),
                "ratelimit-reset": str(start + 3600)}, used > RATE_LIMIT


class DigitalOceanServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # parallel Ansible forks connect at once; the default backlog of 5 resets them

    def __init__(self, address, provision_seconds=0.0, token=None, recorder=None, droplet_limit=None):
        self.state = State(FEATURES, provision_seconds, droplet_limit)
        self.token = token
        self.recorder = recorder
        self.rate_limit = _RateLimit()
        super().__init__(address, _Handler)

    def serve_forever(self, poll_interval=0.05):  # quick shutdown() for in-process test fixtures
        super().serve_forever(poll_interval)

    def expected_token(self):
        return self.token if self.token is not None else os.environ.get("DIGITALOCEAN_TOKEN") or None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "digitalocean-sandbox/1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr logging
        pass

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # ------------------------------------------------------------------------------------------------
    def _base_url(self):
        proto = self.headers.get("X-Forwarded-Proto")
        if not proto:
            proto = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
        return f"{proto}://{host}"

    def _handle(self):
        request_id = new_request_id()
        split = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {"x-request-id": request_id}
        try:
            if split.path.startswith("/_sandbox/"):
                status, body = self._sandbox(split.path, raw)
            else:
                status, body, extra = self._api(split, raw, headers)
                headers.update(extra)
        except ApiError as exc:
            status = exc.status
            body = exc.body if exc.body is not None else {"id": exc.error_id, "message": exc.message,
                                                          "request_id": request_id}
        except Exception:  # a bug in the emulator: say so loudly, as a DO-shaped 500
            status, body = 500, {"id": "server_error", "message": traceback.format_exc(), "request_id": request_id}
        self._send(status, body, headers, raw)

    def _api(self, split, raw, headers):
        authorization = self.headers.get("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        limits, exhausted = self.server.rate_limit.take(token)
        headers.update(limits)
        expected = self.server.expected_token()
        if scheme.lower() != "bearer" or not token or (expected is not None and token != expected):
            raise _UNAUTHORIZED
        if exhausted:
            raise ApiError(429, "too_many_requests", "API Rate limit exceeded.")
        route, params = ROUTER.resolve(self.command, split.path)
        if route is None:
            raise not_found()
        body = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise bad_request(f"The request body is not valid JSON: {exc}")
        request = Request(self.command, split.path, urllib.parse.parse_qs(split.query, keep_blank_values=True), body,
                          self.headers, self._base_url(), params)
        state = self.server.state
        with state.lock:
            state.advance()
            response = route.handler(state, request)
        return response.status, response.body, response.headers

    def _sandbox(self, path, raw):
        state = self.server.state
        name = path[len("/_sandbox/"):].strip("/")
        if name == "health" and self.command == "GET":
            return 200, {"status": "ok"}
        if name == "state" and self.command == "GET":
            with state.lock:
                state.advance()
                return 200, state.live_ids()
        if name == "reset" and self.command == "POST":
            state.reset()
            return 200, {"reset": True}
        if name in SANDBOX_HOOKS and self.command == "POST":
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise bad_request(f"The request body is not valid JSON: {exc}")
            with state.lock:
                state.advance()
                return 200, SANDBOX_HOOKS[name](state, body)
        raise not_found()

    def _send(self, status, body, headers, raw_request):
        payload = b"" if status == 204 or body is None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if status != 204:
            self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
        recorder = self.server.recorder
        if recorder is not None:
            recorder({
                "method": self.command, "path": self.path, "request_headers": dict(self.headers.items()),
                "request_body": raw_request, "status": status,
                "response_headers": {"Content-Type": "application/json; charset=utf-8", **headers},
                "response_body": payload,
            })


def make_server(host, port, provision_seconds=0.0, token=None, recorder=None, droplet_limit=None):
    """A ready-to-serve emulator (plain HTTP/1.1).

    ``recorder``: optional callable receiving one dict per exchange (method, path with query,
    request_headers, request_body bytes, status, response_headers, response_body bytes).
    ``droplet_limit``: optional account droplet limit (422 beyond it, as the real API).
    """
    return DigitalOceanServer((host, port), provision_seconds=provision_seconds, token=token, recorder=recorder,
                              droplet_limit=droplet_limit)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--provision-seconds", type=float, default=0.0)
    parser.add_argument("--droplet-limit", type=int, default=None)
    args = parser.parse_args(argv)
    # $SANDBOX_RECORD_DIR: append every exchange to <dir>/digitalocean.jsonl (python -m tests.sandbox.conformance)
    from tests.sandbox.conformance import recorder_from_env  # stdlib only at import
    recorder = recorder_from_env("digitalocean")
    server = make_server(args.host, args.port, provision_seconds=args.provision_seconds,
                         droplet_limit=args.droplet_limit, recorder=recorder)
    print(f"digitalocean emulator on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
