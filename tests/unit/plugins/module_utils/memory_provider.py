"""An in-memory cloud behind the real Provider base: the core (Convergence, dispatch, rollback, deadlines) is
tested without any SDK. Members of kind vm, one service per deployment of kind container; failures are injected
by name (`fail_create`, `fail_delete`) and members can be made to stay pending (`stuck`)."""
import itertools

from ansible_collections.lxcri.cloud.plugins.module_utils.info import ProviderInfo
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    Backend,
    PartialFailure,
    Provider,
    ProviderError,
    native_of,
    record,
    retagged,
)

INFO = ProviderInfo(name="memory", title="Memory", kinds=("vm", "container"), connection={}, connection_doc="",
                    sizes={"small": "m1"}, images={}, native_size=(r"^m[0-9]+$", "m2"), native_image=(r".+", "any"))


class Cloud:
    """What the API would hold: resources by id, and what was asked of it."""

    def __init__(self):
        self.resources = {}
        self.calls = []
        self.ids = itertools.count(1)
        self.fail_create = set()
        self.fail_delete = set()
        self.stuck = set()


class Members(Backend):
    kind = "vm"

    def _record(self, res):
        return record(self.p.name, native=dict(res), kind=self.kind, name=res["name"], deployment=res["deployment"],
                      id=res["id"], state=res["state"], region=res["region"], native_size=res["size"],
                      image=res["image"], tags=res["tags"])

    def _mine(self):
        return [res for res in self.p.cloud.resources.values() if res["kind"] == self.kind]

    def find(self, name, region):
        return [self._record(res) for res in self._mine() if res["deployment"] == name and res["region"] == region]

    def list(self, region, tags):
        return [self._record(res) for res in self._mine() if res["region"] == region]

    def refresh(self, records):
        ids = {rec["id"] for rec in records}
        return [self._record(res) for res in self._mine() if res["id"] in ids]

    def create(self, spec, region, names):
        def one(name):
            self.p.cloud.calls.append(("create", name))
            if name in self.p.cloud.fail_create:
                raise ProviderError(f"creating {name} failed: quota")
            res = {"id": f"m-{next(self.p.cloud.ids)}", "kind": self.kind, "name": name, "deployment": spec["name"],
                   "region": region, "size": self.native_size(spec), "image": spec["image"], "tags": dict(spec["tags"]),
                   "state": "pending" if name in self.p.cloud.stuck else "running"}
            self.p.cloud.resources[res["id"]] = res
            return self._record(res)

        made, failures = self.p.each_settled(one, names)
        if failures:
            raise PartialFailure("; ".join(str(exc) for _name, exc in failures), made)
        return made

    def delete_one(self, rec):
        self.p.cloud.calls.append(("delete", rec["name"]))
        if rec["name"] in self.p.cloud.fail_delete:
            raise ProviderError(f"deleting {rec['name']} failed: locked")
        self.p.cloud.resources.pop(rec["id"], None)

    def _set(self, rec, state):
        self.p.cloud.calls.append((state, rec["name"]))
        self.p.cloud.resources[rec["id"]]["state"] = state

    def start_one(self, rec):
        self._set(rec, "running")

    def stop_one(self, rec):
        self._set(rec, "stopped")

    def restart_one(self, rec):
        self._set(rec, "running")

    def tag_one(self, rec, tags, purge):
        self.p.cloud.calls.append(("tag", rec["name"]))
        self.p.cloud.resources[rec["id"]]["tags"] = retagged(rec["tags"], tags, purge)


class Services(Members):
    kind = "container"
    members = False

    def create(self, spec, region, names):
        made = super().create(dict(spec, image=spec["container"]["image"]), region, names)
        for rec in made:
            self.p.cloud.resources[rec["id"]]["settings"] = self._settings(spec)
        return self.refresh(made)

    @staticmethod
    def _settings(spec):
        container = spec["container"]
        return {"image": container["image"], "port": container["port"], "env": dict(container["env"]),
                "secret_env": "", "cpu": float(container["cpu"]), "memory": container["memory"],
                "command": list(container.get("command") or []), "public": container["public"], "replicas": spec["count"]}

    def config(self, rec):
        native = native_of(rec) or self.p.cloud.resources[rec["id"]]
        return dict(native["settings"])

    def update(self, rec, spec, changes):
        self.p.cloud.calls.append(("update", rec["name"]))
        self.p.cloud.resources[rec["id"]]["settings"] = self._settings(spec)
        return self.refresh([rec])[0], False


class MemoryProvider(Provider):
    info = INFO
    BACKENDS = {"vm": Members, "container": Services}
    POLL_MAX = 0.01

    def connect(self):
        self.cloud = self.connection.get("cloud") or Cloud()


def spec(**changes):
    """A validated deployment spec as spec.validate_deployment hands it to Convergence."""
    base = {"provider": "memory", "name": "web", "kind": "vm", "size": "small", "image": "ubuntu-24.04", "count": 1,
            "region": "r1", "tags": {}, "purge_tags": True, "state": "present", "wait": True, "wait_timeout": 30}
    base.update(changes)
    return base
