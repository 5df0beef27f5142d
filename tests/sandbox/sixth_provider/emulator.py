"""The Acme Cloud emulator (tests/sandbox/emulators/acme.py once the test copies it there): machines in memory,
the contract of tests/sandbox/emulators/__init__.py, and SANDBOX for the sandbox registry's own_emulator."""
import argparse
import itertools
import json
import os
import re
import secrets
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE_SIZE = 2  # small, so that every listing of the contract test follows pages


def operation(method, path):
    if path.startswith("/_sandbox/"):
        return "sandbox"
    return f"{method} " + re.sub(r"/m-[0-9]+", "/{id}", path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _route(self):
        url = urllib.parse.urlsplit(self.path)
        machines, lock = self.server.machines, self.server.lock
        if url.path == "/_sandbox/health":
            return self._send(200, {"ok": True})
        if url.path == "/_sandbox/state":
            return self._send(200, {"machines": sorted(machines)})
        if url.path == "/_sandbox/reset":
            machines.clear()
            return self._send(200, {})
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._send(401, {"message": "bad token"})
        match = re.fullmatch(r"/v1/machines(?:/(m-[0-9]+))?(/actions)?", url.path)
        if not match:
            return self._send(404, {"message": f"no route {url.path}"})
        machine_id, actions = match.groups()
        with lock:
            if self.command == "GET" and not machine_id:
                query = dict(urllib.parse.parse_qsl(url.query))
                found = [m for _, m in sorted(machines.items(), key=lambda item: int(item[0][2:]))
                         if query.get("zone") in (None, m["zone"]) and _tagged(m, query.get("tag"))]
                page = int(query.get("page") or 1)
                chunk = found[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
                return self._send(200, {"machines": chunk, "next": page + 1 if page * PAGE_SIZE < len(found) else None})
            if self.command == "POST" and not machine_id:
                body = self._body()
                machine = {"id": f"m-{next(self.server.ids)}", "state": "running", **body}
                machines[machine["id"]] = machine
                return self._send(201, machine)
            if machine_id not in machines:
                return self._send(404, {"message": f"machine {machine_id} not found"})
            if self.command == "DELETE":
                del machines[machine_id]
                return self._send(204)
            if self.command == "PATCH":
                machines[machine_id]["tags"] = self._body()["tags"]
                return self._send(200, machines[machine_id])
            if self.command == "POST" and actions:
                kind = self._body().get("type")
                machines[machine_id]["state"] = {"start": "running", "stop": "stopped", "reboot": "running"}[kind]
                return self._send(200, machines[machine_id])
        return self._send(405, {"message": "method not allowed"})

    do_GET = do_POST = do_PATCH = do_DELETE = _route


def _tagged(machine, tag):
    if not tag:
        return True
    key, _sep, value = tag.partition("=")
    return key in machine["tags"] and (not _sep or machine["tags"][key] == value)


def make_server(host, port, provision_seconds=0.0):
    server = ThreadingHTTPServer((host, port), Handler)
    server.machines, server.lock, server.ids = {}, threading.Lock(), itertools.count(1)
    server.token = os.environ.get("ACME_TOKEN", "")
    return server


# What the sandbox needs of it (tests/sandbox/registry.py own_emulator): credentials, environment, error bodies.
def _secrets(ctx):
    return {"token": secrets.token_urlsafe(24)}


def _env(ctx):
    return {"ACME_TOKEN": ctx.secrets["acme"]["token"], "LXCRI_ACME_ENDPOINT": ctx.public_url("acme"),
            "LXCRI_ACME_CA_BUNDLE": ctx.ca}


def _shape(kind, status, req, retry_after):
    return status, HTTPStatus(status).phrase, {"Content-Type": "application/json", "Retry-After": str(retry_after)}, \
        json.dumps({"message": "slow down" if kind == "throttle" else "try again"}).encode()


SANDBOX = {"env": _env, "make_secrets": _secrets, "shape": _shape}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--provision-seconds", type=float, default=0.0)
    args = parser.parse_args()
    make_server(args.host, args.port, args.provision_seconds).serve_forever()
