"""Acme Cloud through the standard library's HTTP client: one backend (machines)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    Backend,
    PartialFailure,
    Provider,
    ProviderError,
    record,
    retagged,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.acme import INFO
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, parse_retry_after
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, TAG_PREFIX

STATES = {"starting": "pending", "running": "running", "stopped": "stopped"}


class Machines(Backend):
    kind = "vm"

    def _record(self, machine):
        tags = machine["tags"]
        return record(self.p.name, native=machine, name=machine["name"], deployment=tags.get(DEPLOYMENT_TAG),
                      id=machine["id"], state=STATES.get(machine["state"], "unknown"), region=machine["zone"],
                      native_size=machine["size"], image=machine["image"],
                      tags={k: v for k, v in tags.items() if not k.startswith(TAG_PREFIX)})

    def _machines(self, **query):
        return self.p.paginate(lambda page: self.p.api("GET", "/v1/machines", query={**query, "page": page}),
                               token=1)

    def find(self, name, region):
        return [self._record(m) for m in self._machines(tag=f"{DEPLOYMENT_TAG}={name}", zone=region)]

    def list(self, region, tags):
        return [self._record(m) for m in self._machines(tag=DEPLOYMENT_TAG, zone=region)]

    def refresh(self, records):
        wanted = {rec["id"] for rec in records}
        return [self._record(m) for zone in {rec["region"] for rec in records}
                for m in self._machines(zone=zone) if m["id"] in wanted]

    def create(self, spec, region, names):
        def one(name):
            body = {"name": name, "zone": region, "size": self.native_size(spec), "image": spec["image"],
                    "tags": {**spec["tags"], DEPLOYMENT_TAG: spec["name"]}}
            return self._record(self.p.call(self.p.api, "POST", "/v1/machines", body=body))

        made, failures = self.p.each_settled(one, names)
        if failures:
            raise PartialFailure("; ".join(f"creating {name} failed: {exc}" for name, exc in failures), made)
        return made

    def delete_one(self, rec):
        self.p.unless_gone(self.p.api, "DELETE", f"/v1/machines/{rec['id']}")

    def _action(self, rec, action):
        self.p.call(self.p.api, "POST", f"/v1/machines/{rec['id']}/actions", body={"type": action})

    def start_one(self, rec):
        self._action(rec, "start")

    def stop_one(self, rec):
        self._action(rec, "stop")

    def restart_one(self, rec):
        self._action(rec, "reboot")

    def tag_one(self, rec, tags, purge):
        own = {DEPLOYMENT_TAG: rec["deployment"]}
        self.p.call(self.p.api, "PATCH", f"/v1/machines/{rec['id']}", body={"tags": {**retagged(rec["tags"], tags, purge), **own}})


class AcmeError(Exception):
    def __init__(self, status, message, retry_after=None):
        super().__init__(f"Acme answered {status}: {message}")
        self.status, self.retry_after = status, retry_after


class AcmeProvider(Provider):
    info = INFO
    BACKENDS = {"vm": Machines}
    POLL_MAX = 1.0

    def connect(self):
        if not self.connection.get("token"):
            raise ProviderError("no Acme credentials: set acme.token (or ACME_TOKEN)")
        if not self.connection.get("endpoint"):
            raise ProviderError("acme.endpoint is required (or LXCRI_ACME_ENDPOINT)")
        verify = self.verify
        self._context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            self._context.check_hostname, self._context.verify_mode = False, ssl.CERT_NONE

    def api(self, method, path, query=None, body=None):
        """One request; a list answer is (items, next page), anything else the JSON document."""
        url = self.connection["endpoint"].rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {self.connection['token']}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=30) as response:
                answer = json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise AcmeError(exc.code, exc.read().decode(errors="replace")[:200],
                            parse_retry_after(exc.headers.get("Retry-After"))) from None
        if isinstance(answer, dict) and "machines" in answer:
            return answer["machines"], answer.get("next")
        return answer

    def classify(self, exc):
        if isinstance(exc, AcmeError):
            if exc.status == 429:
                return THROTTLED, exc.retry_after
            return (TRANSIENT, exc.retry_after) if exc.status >= 500 else (FATAL, None)
        if isinstance(exc, (urllib.error.URLError, ConnectionError)) and not self.unreachable(exc):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        return isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, ConnectionRefusedError)

    def gone(self, exc):
        return isinstance(exc, AcmeError) and exc.status == 404
