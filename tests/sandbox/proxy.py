"""One process in front of every emulator: TLS, request counting and faults.

Each provider's public port relays to its backend on 127.0.0.1 (public port + 10000). Faults are decided
before relaying, so a faulted request never reaches the backend: added latency, throttling (429 with
Retry-After and a body the provider's SDK understands), 500/503 errors, connection reset (no answer). A
provider may answer some requests here itself (registry.Provider.answer: fakepve's rrddata); they are counted
and faulted like the others.
A control port (4560 + offset) serves GET /health, GET /requests, POST /requests/reset, GET|POST /faults,
POST /config, GET /scopes and POST /scopes/reset; scripts/sandbox uses it.

    python -m tests.sandbox.proxy --dir .sandbox [--offset N] [--latency-ms N] [--providers aws,proxmox]
"""
import argparse
import http.client
import json
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter
import dataclasses
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers (RFC 9110 7.6.1) stay on their hop; Expect is answered here (100-continue).
HOP = frozenset(("connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
                 "trailer", "transfer-encoding", "upgrade", "expect", "content-length"))
PROBE = "X-Sandbox-Probe"  # readiness probes: neither counted nor faulted
ERROR_HEADER = "X-Sandbox-Proxy-Error"  # on the proxy's own 502, to tell it from a backend's answer
IDLE_SECONDS = 300  # an idle keep-alive client connection ends after this
QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class Request:
    """What classify() and shape() see of a request."""

    __slots__ = ("method", "path", "headers", "body")

    def __init__(self, method, path, headers, body):
        self.method, self.path, self.headers, self.body = method, path, headers, body


@dataclass
class Faults:
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    reset_rate: float = 0.0
    latency_ms: float = 0.0
    seed: object = None
    retry_after: int = 1  # seconds, an integer: Azure's SDK parses it as one
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    injected: Counter = field(default_factory=Counter, compare=False)  # what draw() handed out, by kind

    def public(self):
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rng"}
        out["injected"] = dict(self.injected)
        return out

    def update(self, values):
        """Apply {name: value} from the control API; ValueError when the result makes no sense."""
        for name in ("error_rate", "throttle_rate", "reset_rate", "latency_ms"):
            if values.get(name) is not None:
                setattr(self, name, float(values[name]))
        if values.get("retry_after") is not None:
            self.retry_after = int(values["retry_after"])
        rates = (self.error_rate, self.throttle_rate, self.reset_rate)
        if min(rates) < 0 or sum(rates) > 1 or self.latency_ms < 0 or self.retry_after < 0:
            raise ValueError("rates must be >= 0 and add up to at most 1; latency and retry-after >= 0")
        if values.get("seed") is not None:
            self.seed = values["seed"]
            self.rng.seed(self.seed)

    def draw(self):
        """None, 'reset', ('throttle', 429) or ('error', 500|503): one draw, so the rates add up."""
        if not (self.error_rate or self.throttle_rate or self.reset_rate):
            return None
        roll = self.rng.random()
        fault = None
        if roll < self.reset_rate:
            fault = "reset"
        elif roll < self.reset_rate + self.throttle_rate:
            fault = ("throttle", 429)
        elif roll < self.reset_rate + self.throttle_rate + self.error_rate:
            fault = ("error", self.rng.choice((500, 503)))
        if fault:
            self.injected[fault if isinstance(fault, str) else fault[0]] += 1
        return fault


@dataclass
class Route:
    provider: object  # a registry.Provider
    public_port: int
    backend_port: int


class Proxy:
    """The shared state of every port (counters, faults, scopes) and its servers."""

    def __init__(self, routes, control_port, certfile=None, keyfile=None, latency_ms=0.0, scopes_file=None):
        self.routes = {route.provider.name: route for route in routes}
        self.control_port = control_port
        self.latency_ms = float(latency_ms)
        self.lock = threading.Lock()
        self.counts = {name: Counter() for name in self.routes}
        self.faults = {name: Faults() for name in self.routes}
        self.scopes_file = scopes_file
        self.scopes = {name: set() for name in self.routes}
        if scopes_file and os.path.exists(scopes_file):
            with open(scopes_file) as handle:
                for name, found in json.load(handle).items():
                    self.scopes.setdefault(name, set()).update(found)
        self.tls = None
        if certfile:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(certfile, keyfile)
        self.backend_tls = ssl._create_unverified_context()  # internal hop to fakepve's own https only
        self.servers = []
        self.started = time.time()

    # ------------------------------------------------------------- lifecycle

    def start(self):
        for route in self.routes.values():
            context = self.tls if route.provider.https else None
            server = _RelayServer(("127.0.0.1", route.public_port), self, route, context)
            route.public_port = server.server_address[1]
            self.servers.append(server)
        control = ThreadingHTTPServer(("127.0.0.1", self.control_port), _control_handler(self))
        control.daemon_threads = True
        self.control_port = control.server_address[1]
        self.servers.append(control)
        for server in self.servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        threading.Thread(target=self._warm, daemon=True).start()
        return self

    def _warm(self):
        """Load what classify() needs (e.g. PVE's API schema) before the first real request waits for it."""
        for route in self.routes.values():
            try:
                route.provider.classify(Request("GET", route.provider.health_path, http.client.HTTPMessage(), b""))
            except Exception:  # noqa: BLE001 - warming is best effort; a real request will report the error
                pass

    def stop(self):
        stopping = [threading.Thread(target=server.shutdown) for server in self.servers]  # each waits a poll
        for thread in stopping:
            thread.start()
        for thread, server in zip(stopping, self.servers):
            thread.join()
            server.server_close()

    # ------------------------------------------------------------- decisions

    def admit(self, name, req):
        """Count the request; (seconds of latency to add, fault or None, Retry-After seconds)."""
        provider = self.routes[name].provider
        try:
            operation = provider.classify(req)
        except Exception as exc:  # noqa: BLE001 - a naming bug must not break the relay
            print(f"proxy: {name}: cannot classify {req.method} {req.path}: {exc!r}", file=sys.stderr, flush=True)
            operation = f"{req.method} (unclassified)"
        scope = provider.scope(req) if provider.scope else None
        with self.lock:
            self.counts[name][operation] += 1
            faults = self.faults[name]
            fault = faults.draw()
            delay = (self.latency_ms + faults.latency_ms) / 1000.0
            retry_after = faults.retry_after
            if scope and scope not in self.scopes[name]:
                self.scopes[name].add(scope)
                self._save_scopes()
        return delay, fault, retry_after

    def _save_scopes(self):
        if not self.scopes_file:
            return
        temporary = self.scopes_file + ".tmp"
        with open(temporary, "w") as handle:
            json.dump({name: sorted(found) for name, found in self.scopes.items()}, handle)
        os.replace(temporary, self.scopes_file)

    # ------------------------------------------------------------- control

    def requests(self, reset=False):
        with self.lock:
            out = {name: dict(sorted(counts.items())) for name, counts in self.counts.items()}
            if reset:
                for counts in self.counts.values():
                    counts.clear()
        return out

    def set_faults(self, values):
        target = values.get("provider") or "all"
        names = list(self.routes) if target == "all" else [target]
        if any(name not in self.routes for name in names):
            raise ValueError(f"unknown provider {target!r}; known: {', '.join(self.routes)}")
        with self.lock:
            for name in names:
                # a copy shares the random generator: a seeded sequence goes on through later changes
                updated = Faults() if values.get("reset") else dataclasses.replace(self.faults[name])
                updated.update(values)
                self.faults[name] = updated
            return {name: self.faults[name].public() for name in names}

    def reset_scopes(self):
        with self.lock:
            self.scopes = {name: set() for name in self.routes}
            self._save_scopes()


class _RelayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address, proxy, route, tls):
        self.proxy, self.route, self.tls = proxy, route, tls
        self.scheme = "https" if tls else "http"
        super().__init__(address, _RelayHandler)

    def connect_backend(self):
        port = self.route.backend_port
        if self.route.provider.backend_https:
            return http.client.HTTPSConnection("127.0.0.1", port, timeout=600, context=self.proxy.backend_tls)
        return http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def handle_error(self, request, client_address):
        kind = sys.exc_info()[0]
        if kind and issubclass(kind, (ConnectionError, ssl.SSLError, TimeoutError, ValueError)):
            return  # clients hang up, fail handshakes, or get reset on purpose: not our error
        super().handle_error(request, client_address)


class _RelayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = IDLE_SECONDS
    server: _RelayServer

    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(self.timeout)
        if self.server.tls:  # the handshake runs in this connection's thread, not in the accept loop
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()
        self.backend = None

    def finish(self):
        if self.backend is not None:
            self.backend.close()
        try:
            super().finish()
        except OSError:
            pass
        if self.server.tls:
            self.connection.close()  # the server only closes the plain socket it accepted

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass  # thousands of requests: counts are in /requests, not in the log

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _relay(self):
        req = Request(self.command, self.path, self.headers, self._body())
        name = self.server.route.provider.name
        if self.headers.get(PROBE):
            delay, fault, retry_after = 0.0, None, 1
        else:
            delay, fault, retry_after = self.server.proxy.admit(name, req)
        if delay:
            time.sleep(delay)
        if fault == "reset":
            return self._reset()
        if fault:
            kind, status = fault
            return self._send(*self.server.route.provider.shape(kind, status, req, retry_after))
        try:
            status, reason, headers, body = self._answer(req) or self._forward(req)
        except (OSError, http.client.HTTPException) as exc:
            message = f"sandbox proxy: {name} backend on port {self.server.route.backend_port}: {exc}".encode()
            return self._send(502, "Bad Gateway", {ERROR_HEADER: "backend unreachable"}, message)
        self._send(status, reason, headers, body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _relay

    def _answer(self, req):
        """The provider's own answer to this request (registry.Provider.answer), or None to relay it."""
        answer = self.server.route.provider.answer
        if answer is None:
            return None
        try:
            return answer(req, lambda method, path: self._forward(Request(method, path, req.headers, b"")))
        except (OSError, http.client.HTTPException):
            raise  # the backend is unreachable: the relay's own 502
        except Exception as exc:  # noqa: BLE001 - a bug in an answer must show as one, not as a dropped connection
            return 502, "Bad Gateway", {ERROR_HEADER: "answer failed"}, f"sandbox proxy: answer failed: {exc!r}".encode()

    def _forward(self, req):
        """Relay on this client connection's own backend connection; once more on a fresh one if it was stale."""
        for attempt in range(2):
            reused = self.backend is not None
            if not reused:
                self.backend = self.server.connect_backend()
            try:
                return self._exchange(req)
            except (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError,
                    ConnectionResetError, ssl.SSLError):
                self.backend.close()
                self.backend = None
                if not reused or attempt:
                    raise
        raise AssertionError("unreachable")

    def _exchange(self, req):
        connection = self.backend
        connection.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
        for key, value in req.headers.items():
            if key.lower() not in HOP and key != PROBE:
                connection.putheader(key, value)
        connection.putheader("X-Forwarded-Proto", self.server.scheme)
        connection.putheader("X-Forwarded-For", self.client_address[0])
        if req.body or req.method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(req.body)))
        connection.endheaders(req.body or None)
        # A backend on http.server writes headers and body separately; with Nagle on its side, our delayed
        # ACK of the first write would hold the second for 40 ms on a kept-alive connection.
        if QUICKACK:
            connection.sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
        response = connection.getresponse()
        body = response.read()
        return response.status, response.reason, response.getheaders(), body

    def _send(self, status, reason, headers, body):
        """The whole answer in one write: status line with the backend's reason phrase (PVE's messages)."""
        items = headers.items() if isinstance(headers, dict) else headers
        lines = [f"HTTP/1.1 {status} {reason}"]
        head = self.command == "HEAD"
        for key, value in items:
            if key.lower() not in HOP or (head and key.lower() == "content-length"):
                lines.append(f"{key}: {value}")
        if not head and status >= 200 and status not in (204, 304):
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(data if head else data + body)

    def _reset(self):
        """Close with RST and no answer, as a dropped connection looks to a client."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()


def _control_handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status, payload):
            body = json.dumps(payload, indent=1).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                ports = {name: route.public_port for name, route in proxy.routes.items()}
                self._answer(200, {"ok": True, "pid": os.getpid(), "started": proxy.started, "ports": ports,
                                   "latency_ms": proxy.latency_ms})
            elif self.path == "/requests":
                self._answer(200, proxy.requests())
            elif self.path == "/faults":
                with proxy.lock:
                    self._answer(200, {name: faults.public() for name, faults in proxy.faults.items()})
            elif self.path == "/scopes":
                with proxy.lock:
                    self._answer(200, {name: sorted(found) for name, found in proxy.scopes.items()})
            else:
                self._answer(404, {"error": f"no such endpoint: GET {self.path}"})

        def do_POST(self):
            try:
                values = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/requests/reset":
                    self._answer(200, proxy.requests(reset=True))
                elif self.path == "/faults":
                    self._answer(200, proxy.set_faults(values))
                elif self.path == "/config":
                    proxy.latency_ms = float(values.get("latency_ms") or 0)
                    self._answer(200, {"latency_ms": proxy.latency_ms})
                elif self.path == "/scopes/reset":
                    proxy.reset_scopes()
                    self._answer(200, {})
                else:
                    self._answer(404, {"error": f"no such endpoint: POST {self.path}"})
            except (ValueError, TypeError) as exc:
                self._answer(400, {"error": str(exc)})

        def log_message(self, format, *args):  # noqa: A002
            pass

    return Handler


def main():
    from tests.sandbox import registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="the sandbox state directory (TLS files, scopes)")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--providers", help="comma-separated; default: every registered provider")
    args = parser.parse_args()
    names = args.providers.split(",") if args.providers else [p.name for p in registry.PROVIDERS]
    routes = [Route(p, registry.public_port(p, args.offset), registry.backend_port(p, args.offset))
              for p in map(registry.get, names)]
    tls = os.path.join(args.dir, "tls")
    proxy = Proxy(routes, registry.CONTROL_PORT + args.offset, os.path.join(tls, "server.pem"),
                  os.path.join(tls, "server.key"), args.latency_ms, os.path.join(args.dir, "scopes.json")).start()
    print(f"proxy: control on {proxy.control_port}; " + ", ".join(
        f"{r.provider.name} {r.public_port}->{r.backend_port}" for r in routes), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
