# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DigitalOcean VMs: droplets, found by the tag lxcri-deployment:<name> and named <name>-<i>.

DigitalOcean tags are plain strings (letters, digits, colon, dash, underscore; at most 255), so every
key/value pair becomes one tag `key:value`: the collection's own `lxcri-deployment:<name>`,
`lxcri-kind:<kind>` and `lxcri-image:<portable image, encoded>`, and the user's tags. Tag names are
case-insensitive on DigitalOcean and keep the spelling they were first created with.

One create call makes up to ten members; power actions on a whole deployment are one call by its tag, and so is
destroying it; members that share a tag change share one assign (or unassign) call. A record's native is the
droplet it was read from: its tags as DigitalOcean spells them are what retagging and removing work from.
"""

from __future__ import annotations

import re

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    Backend,
    PartialFailure,
    ProviderError,
    iso_utc,
    native_of,
    record,
    retagged,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean.answers import body
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import DEPLOYMENT_TAG, IMAGE_TAG, KIND_TAG, TAG_PREFIX, SpecError

STATES = {"new": "pending", "active": "running", "off": "stopped", "archive": "terminated"}
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_:-]+$")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
VALUE_PATTERN = re.compile(r"^[A-Za-z0-9_:-]*$")
TAG_MAX = 255
MAX_PER_CREATE = 10  # the API's limit of names in one droplet create
USER_DATA_MAX = 64 * 1024
# Actions that /v2/droplets/actions?tag_name= accepts (reboot is not one of them).
BULK_ACTIONS = ("power_on", "power_off", "shutdown", "power_cycle")


# -- tags ----------------------------------------------------------------------------------------------

def encode_value(text):
    """A tag-safe, reversible spelling of `text`: '.' -> '_d', '_' -> '__', other characters -> '_xHH'.

    Letters, digits, '-' and ':' stay as they are, so ubuntu-24.04 becomes ubuntu-24_d04.
    """
    out = []
    for char in text:
        if char == "_":
            out.append("__")
        elif char == ".":
            out.append("_d")
        elif re.match(r"[A-Za-z0-9:-]", char):
            out.append(char)
        else:
            out.extend(f"_x{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_value(text):
    """The inverse of encode_value (unknown escapes are kept as they are)."""
    raw, index = bytearray(), 0
    while index < len(text):
        char = text[index]
        if char == "_" and text[index + 1:index + 2] == "_":
            raw += b"_"
            index += 2
        elif char == "_" and text[index + 1:index + 2] == "d":
            raw += b"."
            index += 2
        elif char == "_" and text[index + 1:index + 2] == "x" and re.match(r"[0-9a-f]{2}$", text[index + 2:index + 4]):
            raw.append(int(text[index + 2:index + 4], 16))
            index += 4
        else:
            raw += char.encode("utf-8")
            index += 1
    return raw.decode("utf-8", errors="replace")


def user_tag(key, value):
    """The DigitalOcean tag for a user tag: `key:value`, or just `key` when the value is empty."""
    return f"{key}:{value}" if value != "" else key


def tag_problem(key, value):
    """Why a user tag cannot be a DigitalOcean tag, or None when it can."""
    tag = user_tag(key, value)
    if not key or not KEY_PATTERN.match(key):
        return (f"tags: key '{key}' cannot be part of a DigitalOcean tag ('{tag}'): keys may hold only letters, "
                "digits, '-' and '_' (the ':' separates key and value)")
    if not VALUE_PATTERN.match(value):
        return (f"tags: value '{value}' of '{key}' cannot be part of a DigitalOcean tag ('{tag}'): values may hold "
                "only letters, digits, ':', '-' and '_'")
    if len(tag) > TAG_MAX:
        return f"tags: '{key}' makes a DigitalOcean tag of {len(tag)} characters; at most {TAG_MAX} are allowed"
    return None


def split_tag(tag):
    """(key, value) of a tag: `key:value` splits at the first ':', a tag without ':' has the value ''."""
    key, _sep, value = tag.partition(":")
    return key, value


def lxcri_tags(tags):
    """The collection's own tags of a droplet as {key: value}: lxcri-deployment, lxcri-kind, lxcri-image."""
    return dict(split_tag(tag) for tag in tags if tag.startswith(TAG_PREFIX))


def user_tags(tags):
    """The user's tags of a droplet as {key: value} (every tag but the collection's own)."""
    return dict(split_tag(tag) for tag in tags if not tag.startswith(TAG_PREFIX))


def deployment_tag(name):
    return f"{DEPLOYMENT_TAG}:{name}"


def image_tag(image):
    return f"{IMAGE_TAG}:{encode_value(image)}"


def _str(value):
    return None if value is None else str(value)


def _names(records):
    return ", ".join(sorted(rec["name"] for rec in records))


class Droplets(Backend):
    kind = "vm"

    @classmethod
    def validate(cls, spec):
        seen = {}
        for key, value in spec["tags"].items():
            problem = tag_problem(key, value)
            if problem:
                raise SpecError(problem)
            tag = user_tag(key, value)
            if tag.lower() in seen:
                raise SpecError(
                    f"tags: '{tag}' and '{seen[tag.lower()]}' are the same DigitalOcean tag (tag names are "
                    "case-insensitive): keep one"
                )
            seen[tag.lower()] = tag
        image = image_tag(spec["image"])
        if len(image) > TAG_MAX:
            raise SpecError(f"image '{spec['image']}' is too long for DigitalOcean's image tag ({len(image)} > {TAG_MAX} characters)")
        size = len((spec.get("cloud_init") or "").encode("utf-8"))
        if size > USER_DATA_MAX:
            raise SpecError(f"user_data is {size} bytes; DigitalOcean accepts at most {USER_DATA_MAX}")

    @property
    def api(self):
        return self.p.client

    # -- reading ---------------------------------------------------------------------------------

    def _list(self, tag):
        """Every droplet that carries `tag`, in every region."""
        return self.p.pages(self.api.droplets.list, "droplets", f"listing droplets tagged {tag}", tag_name=tag)

    def _get(self, rec, gone_ok=False):
        """The droplet of a record read again (None when it is gone and gone_ok)."""
        read = self.p.checked(self.api.droplets.get, "droplet", f"droplet {rec['name']} ({rec['id']})")
        return (self.p.unless_gone if gone_ok else self.p.call)(read, int(rec["id"]))

    def _tags_of(self, rec, gone_ok=False):
        """Every tag of a record's droplet as DigitalOcean spells them: from what the record was read from,
        else read again."""
        droplet = native_of(rec) or self._get(rec, gone_ok) or {}
        return list(droplet.get("tags") or [])

    def _record(self, droplet, name=None):
        tags = droplet.get("tags") or []
        own = lxcri_tags(tags)
        image = droplet.get("image") or {}
        v4 = (droplet.get("networks") or {}).get("v4") or []
        public = [net["ip_address"] for net in v4 if net.get("type") == "public"]
        private = [net["ip_address"] for net in v4 if net.get("type") == "private"]
        state = STATES.get(droplet.get("status"), "unknown")
        native = droplet.get("size_slug") or (droplet.get("size") or {}).get("slug")
        cost = None
        if state != "terminated":
            cost = catalog.hourly_cost(self.p.name, native)
            if cost is None:
                cost = (droplet.get("size") or {}).get("price_hourly")
        return record(
            self.p.name,
            native=droplet,
            kind=own.get(KIND_TAG, "vm"),
            name=name or droplet.get("name"),
            deployment=own.get(DEPLOYMENT_TAG),
            id=str(droplet["id"]),
            state=state,
            region=(droplet.get("region") or {}).get("slug"),
            zone=None,
            native_size=native,
            image=decode_value(own[IMAGE_TAG]) if own.get(IMAGE_TAG) else (image.get("slug") or _str(image.get("id"))),
            public_ip=public[0] if public else None,
            private_ip=private[0] if private else None,
            tags=user_tags(tags),
            created_at=iso_utc(droplet.get("created_at")),
            hourly_cost=cost,
        )

    def _records(self, droplets):
        """Records of live droplets; a second droplet with a member's name (a create retried after a lost
        answer) is reported as <name>#<id>, which is not a member name, so that converging removes it."""
        records, seen = [], set()
        for droplet in sorted(droplets, key=lambda d: d["id"]):
            if STATES.get(droplet.get("status")) == "terminated":
                continue
            name = droplet.get("name")
            records.append(self._record(droplet, name=f"{name}#{droplet['id']}" if name in seen else name))
            seen.add(name)
        return records

    def find(self, name, region):
        droplets = [d for d in self._list(deployment_tag(name)) if (d.get("region") or {}).get("slug") == region]
        return self._records(droplets)

    def list(self, region, tags):
        if tags:
            key, value = next(iter(tags.items()))
            if tag_problem(key, str(value)):
                return []  # no droplet can carry it
            server_tag = user_tag(key, str(value))
        else:
            server_tag = f"{KIND_TAG}:vm"
        droplets = [
            d for d in self._list(server_tag)
            if (d.get("region") or {}).get("slug") == region and DEPLOYMENT_TAG in lxcri_tags(d.get("tags") or [])
        ]
        return self._records(droplets)

    def refresh(self, records):
        """Fresh records: one listing per deployment tag, droplets.get for records without a deployment."""
        by_tag, loose = {}, []
        for rec in records:
            if rec.get("deployment"):
                by_tag.setdefault(deployment_tag(rec["deployment"]), set()).add(rec["id"])
            else:
                loose.append(rec)
        fresh = []
        for tag, ids in by_tag.items():
            fresh += [self._record(d) for d in self._list(tag) if str(d["id"]) in ids]
        fresh += [self._record(d) for d in self.p.each(lambda rec: self._get(rec, gone_ok=True), loose) if d]
        # Keep the <name>#<id> names that find gave to duplicates, so that waiting matches them up.
        names = {rec["id"]: rec["name"] for rec in records}
        for rec in fresh:
            rec["name"] = names.get(rec["id"], rec["name"])
        return fresh

    # -- actions ---------------------------------------------------------------------------------

    def _wait_actions(self, actions, what, final=None):
        """Wait until every action (dicts with id and status) ended; return {action id: final action}. The
        dict `final`, when given, is filled as the actions are seen: it says how far they got if the wait fails."""
        final = {} if final is None else final
        final.update({a["id"]: a for a in actions})

        def poll():
            open_ids = [i for i, a in final.items() if a.get("status") == "in-progress"]

            def get(action_id):
                return self.p.answer(self.api.actions.get, action_id, key="action", what=f"action {action_id}")

            for action in self.p.each(get, open_ids):
                final[action["id"]] = action
            return final

        def describe(result):
            return ", ".join(f"{a.get('type')} of {a.get('resource_id')}={a.get('status')}" for a in result.values())

        if any(a.get("status") == "in-progress" for a in actions):
            self.p.wait(poll, lambda result: all(a.get("status") != "in-progress" for a in result.values()),
                        what, describe=describe)
        return final

    def _tag_carriers(self, records, minimum=2):
        """({deployment tag: records}, [records]): the groups (of at least `minimum`) whose deployment tag is
        carried by exactly these droplets, in any region, can be acted on with one call by tag; the rest not."""
        groups, rest = {}, []
        for rec in records:
            if rec.get("deployment"):
                groups.setdefault(deployment_tag(rec["deployment"]), []).append(rec)
            else:
                rest.append(rec)
        whole = {}
        for tag, members in groups.items():
            if len(members) >= minimum and {str(d["id"]) for d in self._list(tag)} == {rec["id"] for rec in members}:
                whole[tag] = members
            else:
                rest += members
        return whole, rest

    def _act(self, records, kind):
        """Run one droplet action on every record (by tag where a whole deployment is affected), wait for it
        and return the actions that errored as [(record, action)]."""
        by_id = {rec["id"]: rec for rec in records}
        whole, rest = self._tag_carriers(records) if kind in BULK_ACTIONS else ({}, list(records))
        actions = []
        for tag in whole:
            actions += self.p.answer(self.api.droplet_actions.post_by_tag, body={"type": kind}, tag_name=tag,
                                     key="actions", what=f"{kind} of the droplets tagged {tag}")

        def post(rec):
            return self.p.answer(self.api.droplet_actions.post, int(rec["id"]), body={"type": kind},
                                 key="action", what=f"{kind} of droplet {rec['name']} ({rec['id']})")

        actions += self.p.each(post, rest)
        final = self._wait_actions(actions, f"{kind} of {_names(records)}")
        return [(by_id.get(str(a.get("resource_id"))), a) for a in final.values() if a.get("status") == "errored"]

    def _run(self, records, kind):
        failures = self._act(records, kind)
        if failures:
            names = ", ".join(f"{rec['name'] if rec else '?'} ({action.get('resource_id')})" for rec, action in failures)
            raise ProviderError(f"DigitalOcean {kind} failed (action errored) on {names}")

    def start(self, records):
        self._run(records, "power_on")

    def stop(self, records):
        # A graceful shutdown first; where it errored, power off (as DigitalOcean recommends).
        failures = self._act(records, "shutdown")
        if not failures:
            return
        fresh = {rec["id"]: rec for rec in self.refresh([rec for rec, _action in failures if rec])}
        still_on = [rec for rec in fresh.values() if rec["state"] != "stopped"]
        if still_on:
            self._run(still_on, "power_off")

    def restart(self, records):
        self._run(records, "reboot")

    # -- creating --------------------------------------------------------------------------------

    def create(self, spec, region, names):
        image = catalog.native_image(self.p.name, spec["image"])
        tags = [deployment_tag(spec["name"]), f"{KIND_TAG}:{spec['kind']}", image_tag(spec["image"])]
        tags += [user_tag(key, value) for key, value in spec["tags"].items()]
        request = {
            "region": region,
            "size": self.native_size(spec),
            "image": int(image) if str(image).isdigit() else image,
            "tags": tags,
            # The metrics agent, so that droplet metrics (CPU, memory, disk) exist for monitoring.
            "monitoring": True,
        }
        if spec.get("cloud_init"):
            request["user_data"] = spec["cloud_init"]
        # Tags first: a tag that exists in another spelling (names are case-insensitive) fails here, before
        # any droplet exists, rather than turning up re-spelled on the droplets.
        self.p.each(self._ensure_tag, [user_tag(key, value) for key, value in spec["tags"].items()])

        def post(batch):
            answer = self.p.answer(self.api.droplets.create, body={**request, "names": batch})
            droplets = body(answer, "droplets", f"creating {', '.join(batch)}")
            links = (answer.get("links") or {}).get("actions") or []
            return droplets, [{"id": link["id"], "status": "in-progress"} for link in links if link.get("rel") == "create"]

        batches = [names[start:start + MAX_PER_CREATE] for start in range(0, len(names), MAX_PER_CREATE)]
        posted, refused = self.p.each_settled(post, batches)
        failed = {name: exc for batch, exc in refused for name in batch}  # member -> why; nothing made for these
        records = [self._record(droplet) for droplets, _actions in posted for droplet in droplets]
        if spec.get("wait", True) and records:
            records, late = self._wait_created(records, [a for _droplets, actions in posted for a in actions])
            failed.update(late)
        if not failed:
            return records
        made = {droplet["name"]: droplet for droplets, _actions in posted for droplet in droplets}
        messages = self.p.each(lambda name: self._undo(name, made.get(name), failed[name]), [n for n in names if n in failed])
        done = [rec for rec in records if rec["name"] not in failed]
        if made and not done:
            try:
                tag = deployment_tag(spec["name"])
                if not self._list(tag):  # a deployment that had no other member: its tag goes too
                    self.p.unless_gone(self.p.checked(self.api.tags.delete), tag)
            except Exception:  # best effort: an empty tag costs nothing
                pass
        raise PartialFailure("; ".join(messages), done)

    def _wait_created(self, records, actions):
        """Wait for the create actions (or, without them, for the droplets to be active): (fresh records of the
        members that came up, {member: why it did not})."""
        what = f"creation of {', '.join(rec['name'] for rec in records)}"
        failed = {}
        if actions:
            final = {}
            try:
                self._wait_actions(actions, what, final)
            except Exception as exc:  # the members whose create did not end (successfully) failed with it
                done = {str(a.get("resource_id")) for a in final.values() if a.get("status") == "completed"}
                failed.update({rec["name"]: exc for rec in records if rec["id"] not in done})
            for action in final.values():
                if action.get("status") == "errored":
                    rec = next((r for r in records if r["id"] == str(action.get("resource_id"))), None)
                    if rec is not None:
                        failed[rec["name"]] = ProviderError(f"the create action of droplet {rec['name']} errored")
        waiting = [rec for rec in records if rec["name"] not in failed]
        seen = []

        def fetch():
            seen[:] = self.refresh(waiting)
            return seen

        def up(fresh):
            return {rec["id"] for rec in fresh if rec["state"] != "pending"}

        try:
            if waiting:
                self.p.wait(fetch, lambda fresh: len(up(fresh)) == len(waiting), what,
                            describe=lambda fresh: ", ".join(f"{rec['name']}={rec['state']}" for rec in fresh) or "nothing")
        except Exception as exc:
            failed.update({rec["name"]: exc for rec in waiting if rec["id"] not in up(seen)})
        return [rec for rec in seen if rec["name"] not in failed], failed

    def _undo(self, name, droplet, exc):
        """Destroy what a failed create made for member `name`; the message says what was removed and what may remain."""
        what = f"creating {name} in DigitalOcean failed: {exc}"
        if droplet is None:
            return what
        made = f"{droplet['name']} ({droplet['id']})"
        try:
            self.p.unless_gone(self.p.checked(self.api.droplets.destroy), int(droplet["id"]))
        except Exception as cleanup:
            return f"{what}; removing the droplet this run created ({made}) failed too, remove it: {cleanup}"
        return f"{what}; the droplet this run had created was destroyed again: {made}"

    # -- removing --------------------------------------------------------------------------------

    def delete(self, records):
        gone = {rec["id"] for rec in records}
        used = {tag for tags in self.p.each(lambda rec: self._tags_of(rec, gone_ok=True), records) for tag in tags}
        whole, rest = self._tag_carriers(records, minimum=1)
        for tag, members in whole.items():
            if len(members) > 1:
                self.p.unless_gone(self.p.checked(self.api.droplets.destroy_by_tag), tag_name=tag)
            else:
                rest += members
        destroy = self.p.checked(self.api.droplets.destroy)
        self.p.each(lambda rec: self.p.unless_gone(destroy, int(rec["id"])), rest)
        self.p.each(lambda tag: self._drop_if_unused(tag, gone), sorted(used | set(whole)))

    def _drop_if_unused(self, tag, gone):
        """Delete a tag the removed droplets carried, once nothing else in the account carries it.

        Droplets being destroyed may still be listed for a moment, so they are left out of the count.
        """
        found = self.p.unless_gone(self.p.checked(self.api.tags.get, "tag", f"tag {tag}"), tag)
        if found is None:
            return  # gone already
        resources = found.get("resources") or {}
        others = resources.get("count", 0) - (resources.get("droplets") or {}).get("count", 0)
        if others > 0 or any(str(d["id"]) not in gone for d in self._list(tag)):
            return
        self.p.unless_gone(self.p.checked(self.api.tags.delete), tag)

    # -- tags ------------------------------------------------------------------------------------

    def _ensure_tag(self, tag):
        """Create the tag if needed; refuse it when DigitalOcean has it in another spelling."""
        created = self.p.answer(self.api.tags.create, body={"name": tag}, key="tag", what=f"creating tag {tag}")
        if created.get("name") != tag:
            raise ProviderError(
                f"tags: DigitalOcean already has the tag '{tag}' spelled '{created.get('name')}' (tag names are "
                "case-insensitive): use that spelling in tags"
            )

    def tag(self, records, tags, purge):
        add, remove = {}, {}
        for rec, raw in zip(records, self.p.each(self._tags_of, records)):
            current = [tag for tag in raw if not tag.startswith(TAG_PREFIX)]
            wanted = {user_tag(key, value) for key, value in retagged(user_tags(current), tags, purge).items()}
            for tag in wanted - set(current):
                add.setdefault(tag, []).append(rec)
            for tag in current:
                if tag not in wanted:
                    remove.setdefault(tag, []).append(rec)

        def resources(recs):
            return {"resources": [{"resource_id": rec["id"], "resource_type": "droplet"} for rec in recs]}

        for tag, recs in sorted(add.items()):
            self._ensure_tag(tag)
            self.p.answer(self.api.tags.assign_resources, tag, body=resources(recs),
                          what=f"tagging {', '.join(rec['name'] for rec in recs)} with {tag}")
        unassign = self.p.checked(self.api.tags.unassign_resources)
        for tag, recs in sorted(remove.items()):
            self.p.unless_gone(unassign, tag, body=resources(recs))  # the tag or droplet is gone: nothing to remove
        self.p.each(lambda tag: self._drop_if_unused(tag, set()), sorted(remove))
        for rec in records:  # what they were read from is not what they carry now: read again when asked
            if native_of(rec) is not None:
                rec.native = None
