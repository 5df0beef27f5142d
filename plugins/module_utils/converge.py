# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Converge a deployment to its spec through any provider: plan, act, wait, report.

The plan is computed from what exists, so running the same spec twice changes nothing the second time.
"""

from __future__ import annotations

from ansible_collections.lxcri.cloud.plugins.module_utils.provider import PartialFailure, ProviderError, record, retagged, undo
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import member_index, member_names, service_config

# The states a member should reach under each requested state, and what to do with members outside it.
TARGET = {"present": None, "running": "running", "stopped": "stopped", "restarted": "running"}
SETTLED = {"running", "stopped", "terminated", "error"}


wanted_tags = retagged


def plan(current, spec, resize_to=None):
    """What to do to turn the `current` member records into `spec`. Pure: no API call.

    `resize_to` is the native size that staying members are resized to in place, where the provider can
    (None: a differing size is only reported as drift)."""
    state = spec["state"]
    by_name = {rec["name"]: rec for rec in current}
    if state == "absent":
        return {"create": [], "delete": sorted(current, key=_order), "resize": [], "tag": [], "start": [], "stop": [], "restart": []}
    desired = member_names(spec["name"], spec["count"])
    keep = [by_name[name] for name in desired if name in by_name]
    steps = {
        "create": [name for name in desired if name not in by_name],
        "delete": sorted((rec for rec in current if rec["name"] not in desired), key=_order),
        "resize": [rec for rec in keep if resize_to and rec["native_size"] != resize_to],
        "tag": [rec for rec in keep if wanted_tags(rec["tags"], spec["tags"], spec["purge_tags"]) != rec["tags"]],
        "start": [],
        "stop": [],
        "restart": [],
    }
    if state == "restarted":
        steps["restart"] = [rec for rec in keep if rec["state"] == "running"]
        steps["start"] = [rec for rec in keep if rec["state"] == "stopped"]
    elif state == "running":
        steps["start"] = [rec for rec in keep if rec["state"] == "stopped"]
    elif state == "stopped":
        steps["stop"] = [rec for rec in keep if rec["state"] in ("running", "pending")]
    return steps


def _order(rec):
    index = member_index(rec.get("deployment") or "", rec["name"])
    return (index is None, index or 0, rec["name"])


def _summary(rec):
    return {"state": rec["state"], "native_size": rec["native_size"], "image": rec["image"], "tags": rec["tags"]}


def predict(provider, current, steps, spec, region):
    """The records as they will be after the plan runs (for check mode and the diff)."""
    target = TARGET.get(spec["state"])
    deleted = {rec["name"] for rec in steps["delete"]}
    resized = {rec["name"] for rec in steps["resize"]}
    after = []
    for rec in current:
        if rec["name"] in deleted:
            continue
        rec = dict(rec, tags=wanted_tags(rec["tags"], spec["tags"], spec["purge_tags"]))
        if rec["name"] in resized:
            fields = {key: value for key, value in rec.items() if key != "provider"}
            rec = record(provider.name, **dict(fields, native_size=provider.native_size(spec), size=None, hourly_cost=None))
        if target and rec["state"] in ("running", "stopped", "pending"):
            rec["state"] = target
        after.append(rec)
    for name in steps["create"]:
        after.append(
            record(
                provider.name, kind=spec["kind"], name=name, deployment=spec["name"], state=target or "running",
                region=region, native_size=provider.native_size(spec), image=spec["image"], tags=spec["tags"],
            )
        )
    return sorted(after, key=_order)


class Convergence:
    """Run one deployment task against one provider."""

    def __init__(self, provider, spec, check_mode=False):
        self.provider = provider
        self.spec = spec
        self.check_mode = check_mode

    def run(self):
        if not self.provider.members(self.spec["kind"]):
            return self.run_service()
        spec = self.spec
        region = self.provider.region(spec)
        current = sorted(self.provider.find(spec["name"], region, spec["kind"]), key=_order)
        resize_to = self.provider.native_size(spec) if self.provider.resizes(spec["kind"]) else None
        steps = plan(current, spec, resize_to)
        predicted = predict(self.provider, current, steps, spec, region)
        changed = any(steps.values())
        result = {
            "changed": changed,
            "drift": self.drift(current, steps),
            "actions": {step: [rec if isinstance(rec, str) else rec["name"] for rec in items] for step, items in steps.items() if items},
            "diff": {
                "before": {rec["name"]: _summary(rec) for rec in current},
                "after": {rec["name"]: _summary(rec) for rec in predicted},
            },
        }
        if self.check_mode or not changed:
            result["deployments"] = predicted if self.check_mode else current
            return result
        result["deployments"] = self.apply(steps, region)
        return result

    def drift(self, current, steps):
        """Members that stay but differ from the spec in size (where not resized in place) or image."""
        if self.spec["state"] == "absent":
            return []
        leaving = {rec["name"] for rec in steps["delete"]}
        resized = {rec["name"] for rec in steps["resize"]}
        native = self.provider.native_size(self.spec)
        return [
            rec["name"] for rec in current
            if rec["name"] not in leaving
            and ((rec["native_size"] != native and rec["name"] not in resized) or rec["image"] != self.spec["image"])
        ]

    def apply(self, steps, region):
        provider, spec = self.provider, self.spec
        if steps["delete"]:
            provider.delete(steps["delete"])
            if spec["wait"]:
                self.settle(steps["delete"], {"terminated"}, "deletion of")
        if steps["resize"]:
            provider.resize(steps["resize"], spec)
        if steps["tag"]:
            provider.update_tags(steps["tag"], spec["tags"], spec["purge_tags"])
        for step in ("start", "stop", "restart"):
            if steps[step]:
                getattr(provider, step)(steps[step])
        created = self.create(steps["create"], region) if steps["create"] else []
        if spec["state"] == "stopped" and created:
            if spec["wait"]:
                created = self.settle(created, {"running"}, "creation of")
            provider.stop(created)
        if spec["state"] == "absent":
            return [dict(rec, state="terminated", public_ip=None, hourly_cost=None) for rec in steps["delete"]]
        members = sorted(provider.find(spec["name"], region, spec["kind"]), key=_order)
        if spec["wait"]:
            target = TARGET.get(spec["state"])
            members = self.settle(members, {target} if target else {"running", "stopped"}, "")
        return members

    def create(self, names, region):
        """The provider's create; when some members failed, the ones this task did make are removed again
        (the deployment is left as it was before the task) and the error says what was removed and what is left."""
        try:
            return self.provider.create(self.spec, region, names)
        except PartialFailure as exc:
            if not exc.done:
                raise ProviderError(str(exc)) from exc
            made = ", ".join(rec["name"] for rec in exc.done)

            def remove():
                self.provider.delete(exc.done)
                if self.spec["wait"]:
                    self.settle(exc.done, {"terminated"}, "deletion of")

            undone, left = undo([(made, remove)])
            if left:
                raise ProviderError(f"{exc}; removing the members this task had made failed, remove them or run "
                                    f"state=absent: {', '.join(left)}") from exc
            raise ProviderError(f"{exc}; the members this task had made were removed again: {made}") from exc

    def settle(self, records, states, verb):
        """Wait until every record is in one of `states`; vanished records count as terminated."""
        if not records:
            return records
        names = ", ".join(rec["name"] for rec in records)
        what = f"{verb} {names}".strip() + f" to be {' or '.join(sorted(states))}"

        def done(fresh):
            seen = {rec["name"]: rec["state"] for rec in fresh}
            return all(seen.get(rec["name"], "terminated") in states for rec in records)

        def describe(fresh):
            return ", ".join(f"{rec['name']}={rec['state']}" for rec in fresh) or "nothing"

        return self.provider.wait(lambda: self.provider.refresh(records), done, what, describe=describe)

    # -- containers and functions: one resource per deployment, `count` replicas ---------------------

    def run_service(self):
        """Converge a container or function deployment: create, update in place (or recreate where the
        provider cannot update, saying so), tag, power, remove."""
        provider, spec = self.provider, self.spec
        region = provider.region(spec)
        found = provider.find(spec["name"], region, spec["kind"])
        current = found[0] if found else None
        have = provider.service_config(current) if current else {}
        want = service_config(spec) if spec["state"] != "absent" else {}
        target = TARGET.get(spec["state"])
        steps = {step: [] for step in ("create", "update", "delete", "tag", "start", "stop", "restart")}
        changes = []
        if spec["state"] == "absent" or spec["count"] == 0:
            if current:
                steps["delete"] = [current]
        elif current is None:
            steps["create"] = [spec["name"]]
        else:
            changes = sorted(key for key in want if have.get(key) != want[key])
            if changes:
                steps["update"] = [current]
            if wanted_tags(current["tags"], spec["tags"], spec["purge_tags"]) != current["tags"]:
                steps["tag"] = [current]
            if spec["state"] == "restarted":
                steps["restart"] = [current]
            elif target == "running" and current["state"] == "stopped":
                steps["start"] = [current]
            elif target == "stopped" and current["state"] != "stopped":
                steps["stop"] = [current]
        before = dict(have, state=current["state"], tags=current["tags"]) if current else {}
        after = {} if steps["delete"] or (not current and not steps["create"]) else dict(
            want, state=target or (current or {}).get("state") or "running",
            tags=wanted_tags(current["tags"] if current else {}, spec["tags"], spec["purge_tags"]),
        )
        result = {
            "changed": any(steps.values()),
            "actions": {step: [spec["name"]] for step, items in steps.items() if items},
            "changes": changes,
            "recreated": False,
            "drift": [],
            "diff": {"before": {spec["name"]: before} if before else {}, "after": {spec["name"]: after} if after else {}},
        }
        if self.check_mode or not result["changed"]:
            result["deployments"] = [current] if current and not (self.check_mode and steps["delete"]) else []
            return result
        result["deployments"] = self.apply_service(steps, region, current, changes, result)
        return result

    def apply_service(self, steps, region, current, changes, result):
        provider, spec = self.provider, self.spec
        if steps["delete"]:
            provider.delete(steps["delete"])
            if spec["wait"]:
                self.settle(steps["delete"], {"terminated"}, "deletion of")
            return [dict(current, state="terminated", url=None, public_ip=None, hourly_cost=None)]
        if steps["create"]:
            current = self.create(steps["create"], region)[0]
        if steps["update"]:
            current, result["recreated"] = provider.update_service(current, spec, changes)
        if steps["tag"]:
            provider.update_tags([current], spec["tags"], spec["purge_tags"])
        target = TARGET.get(spec["state"])
        if target == "stopped" and (steps["create"] or steps["update"] or steps["stop"]):
            if spec["wait"] and (steps["create"] or steps["update"]):
                self.settle([current], {"running", "stopped"}, "deployment of")
            provider.stop([current])
        for step in ("start", "restart"):
            if steps[step]:
                getattr(provider, step)([current])
        if not spec["wait"]:
            return provider.refresh([current])
        return self.settle([current], {target} if target else {"running", "stopped"}, "")
