# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""DigitalOcean: VMs are droplets, found by the tag lxcri-deployment:<name> and named <name>-<i>;
containers are App Platform apps (digitalocean_apps.py, mixed into DigitalOceanProvider below); metrics
and alert policies live in digitalocean_monitoring.py (the monitoring methods below delegate to it).

DigitalOcean tags are plain strings (letters, digits, colon, dash, underscore; at most 255), so every
key/value pair becomes one tag `key:value`: the collection's own `lxcri-deployment:<name>`,
`lxcri-kind:<kind>` and `lxcri-image:<portable image, encoded>`, and the user's tags. Tag names are
case-insensitive on DigitalOcean and keep the spelling they were first created with.
"""

from __future__ import annotations

import re
import socket
import ssl
import time

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog
from ansible_collections.lxcri.cloud.plugins.module_utils.provider import (
    MissingSDK,
    Provider,
    ProviderError,
    iso_utc,
    record,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.providers import digitalocean_monitoring as do_monitoring
from ansible_collections.lxcri.cloud.plugins.module_utils.providers.digitalocean_apps import (
    AppPlatform,
    validate_container,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import FATAL, THROTTLED, TRANSIENT, exception_chain, parse_retry_after
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import (
    DEPLOYMENT_TAG,
    IMAGE_TAG,
    KIND_TAG,
    SERVICE_KINDS,
    TAG_PREFIX,
    SpecError,
)
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import wait_for

try:
    import pydo
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
except ImportError:
    pydo = None

DEFAULT_ENDPOINT = "https://api.digitalocean.com"
STATES = {"new": "pending", "active": "running", "off": "stopped", "archive": "terminated"}
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_:-]+$")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
VALUE_PATTERN = re.compile(r"^[A-Za-z0-9_:-]*$")
TAG_MAX = 255
MAX_PER_CREATE = 10  # the API's limit of names in one droplet create
USER_DATA_MAX = 64 * 1024
PAGE_SIZE = 200
# Actions that /v2/droplets/actions?tag_name= accepts (reboot is not one of them).
BULK_ACTIONS = ("power_on", "power_off", "shutdown", "power_cycle")
UNREACHABLE_TEXT = ("connection refused", "name or service not known", "nodename nor servname", "getaddrinfo failed")


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


def _error_body(exc):
    """(status, error id, message) of an HTTP error answer."""
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    error_id, message = None, None
    if response is not None:
        try:
            body = response.json()
        except Exception:  # not JSON: keep a little of the text
            try:
                body = {"message": response.text()[:300]}
            except Exception:
                body = {}
        if isinstance(body, dict):
            error_id = body.get("id")
            message = body.get("message") or body.get("error")
    return status, error_id, message or getattr(exc, "reason", None) or str(exc)


def _str(value):
    return None if value is None else str(value)


def _header(exc, name):
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        return headers.get(name)
    except Exception:
        return None


class DigitalOceanProvider(AppPlatform, Provider):
    name = "digitalocean"
    title = "DigitalOcean"
    NATIVE_SIZE = re.compile(r"^[a-z]+[0-9]*(_[0-9]+)?-[a-z0-9]+(-[a-z0-9]+)*$")
    NATIVE_SIZE_EXAMPLE = "s-1vcpu-1gb (or c-2, g-2vcpu-8gb, m-2vcpu-16gb, so-2vcpu-16gb)"
    NATIVE_IMAGE = re.compile(r"^([a-z0-9]+(-[a-z0-9]+)*|[0-9]+)$")
    NATIVE_IMAGE_EXAMPLE = "ubuntu-24-04-x64 (an image slug) or 160232537 (an image id)"
    POLL_MAX = 3.0
    ACTION_TIMEOUT = 600

    def __init__(self, connection, policy=None):
        super().__init__(connection, **({"policy": policy} if policy else {}))
        if pydo is None:
            raise MissingSDK("the digitalocean provider needs pydo: pip install -r requirements.txt")
        conn = self.connection
        if not conn.get("token"):
            raise ProviderError("no DigitalOcean credentials: set digitalocean.token (or DIGITALOCEAN_TOKEN)")
        endpoint = (conn.get("endpoint") or DEFAULT_ENDPOINT).rstrip("/")
        if not re.match(r"^https://[^/\s]+", endpoint):
            # pydo sends the token as a bearer token, which azure-core refuses to send over plain http.
            raise ProviderError(
                f"digitalocean.endpoint must be an https URL such as {DEFAULT_ENDPOINT}, got {conn['endpoint']}"
            )
        verify = False if conn.get("validate_certs") is False else (conn.get("ca_bundle") or True)
        # retry_total=0: azure-core's own retries are off, retry.py is the only policy at work.
        self.client = pydo.Client(
            token=conn["token"], endpoint=endpoint, connection_verify=verify, retry_total=0,
            connection_timeout=10, read_timeout=60, user_agent="lxcri.cloud",
        )
        self._raw_tags = {}  # droplet id -> its tags as last seen, for update_tags
        self._app_cache = {}  # app id -> the app as last seen, for service_config
        self.monitoring = do_monitoring.Monitoring(self)

    @classmethod
    def validate(cls, spec):
        kind = spec.get("kind") or "vm"
        if kind == "container":
            validate_container(spec)
            return
        if kind != "vm":
            raise SpecError(f"kind '{kind}' is not supported on digitalocean: it deploys vm and container")
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

    # -- errors ----------------------------------------------------------------------------------

    def classify(self, exc):
        if isinstance(exc, HttpResponseError) and getattr(exc, "response", None) is not None:
            status, _error_id, message = _error_body(exc)
            retry_after = parse_retry_after(_header(exc, "Retry-After"))
            if status == 429:
                if retry_after is None and str(_header(exc, "ratelimit-remaining")) == "0":
                    # The hourly budget is spent: wait for its reset (the policy's budget decides if that is too long).
                    reset = parse_retry_after(_header(exc, "ratelimit-reset"))
                    retry_after = max(0.0, reset - time.time()) if reset is not None else None
                return THROTTLED, retry_after
            if status and status >= 500:
                return TRANSIENT, retry_after
            if status == 422 and "pending event" in str(message).lower():
                # "Droplet already has a pending event": another action is still running; it will end.
                return TRANSIENT, None
            return FATAL, None
        if self.unreachable(exc) or any(isinstance(inner, ssl.SSLError) for inner in exception_chain(exc)):
            return FATAL, None
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return TRANSIENT, None
        return FATAL, None

    def unreachable(self, exc):
        if pydo is None or not isinstance(exc, ServiceRequestError):
            return False
        for inner in exception_chain(exc):
            if isinstance(inner, (ConnectionRefusedError, socket.gaierror)):
                return True
        return any(text in str(exc).lower() for text in UNREACHABLE_TEXT)

    def call(self, func, *args, **kwargs):
        try:
            return super().call(func, *args, **kwargs)
        except ServiceRequestError as exc:
            if not any(isinstance(inner, ssl.SSLError) for inner in exception_chain(exc)):
                raise
            endpoint = self.connection.get("endpoint") or DEFAULT_ENDPOINT
            raise ProviderError(
                f"TLS with the DigitalOcean API at {endpoint} failed: {exc}; trust its CA with digitalocean.ca_bundle "
                "(or LXCRI_DIGITALOCEAN_CA_BUNDLE), or set digitalocean.validate_certs false"
            ) from exc
        except HttpResponseError as exc:
            if getattr(exc, "response", None) is None:
                raise
            status, error_id, message = _error_body(exc)
            request = getattr(exc.response, "request", None)
            where = f" to {request.method} {re.sub(r'^https?://[^/]+', '', request.url)}" if request is not None else ""
            hint = " (check digitalocean.token or DIGITALOCEAN_TOKEN)" if status in (401, 403) else ""
            if status == 429:
                _kind, wait = self.classify(exc)
                hint = f" (the API's rate limit; it resets in about {wait:.0f} s)" if wait else " (the API's rate limit)"
            raise ProviderError(
                f"DigitalOcean answered {status}{' ' + error_id if error_id else ''}{where}: {message}{hint}"
            ) from exc

    @staticmethod
    def _body(result, key, what):
        """The `key` of an answer; pydo returns error bodies (404, 400) of some calls instead of raising."""
        if isinstance(result, dict) and key in result:
            return result[key]
        detail = result.get("message") or result.get("error") if isinstance(result, dict) else result
        error_id = result.get("id") if isinstance(result, dict) else None
        raise ProviderError(f"{what}: DigitalOcean answered {error_id or 'without ' + key}: {detail}")

    # -- reading ---------------------------------------------------------------------------------

    def _list(self, tag):
        """Every droplet that carries `tag`, in every region, following the pages."""
        droplets, page = [], 1
        while True:
            answer = self.call(self.client.droplets.list, tag_name=tag, per_page=PAGE_SIZE, page=page)
            chunk = self._body(answer, "droplets", f"listing droplets tagged {tag}")
            droplets += chunk
            if not chunk or not (answer.get("links") or {}).get("pages", {}).get("next"):
                return droplets
            page += 1

    def _record(self, droplet, name=None):
        tags = droplet.get("tags") or []
        self._raw_tags[str(droplet["id"])] = list(tags)
        own = lxcri_tags(tags)
        image = droplet.get("image") or {}
        v4 = (droplet.get("networks") or {}).get("v4") or []
        public = [net["ip_address"] for net in v4 if net.get("type") == "public"]
        private = [net["ip_address"] for net in v4 if net.get("type") == "private"]
        state = STATES.get(droplet.get("status"), "unknown")
        native = droplet.get("size_slug") or (droplet.get("size") or {}).get("slug")
        cost = None
        if state != "terminated":
            cost = catalog.hourly_cost(self.name, native)
            if cost is None:
                cost = (droplet.get("size") or {}).get("price_hourly")
        return record(
            self.name,
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

    def find_members(self, name, region, kind="vm"):
        droplets = [d for d in self._list(deployment_tag(name)) if (d.get("region") or {}).get("slug") == region]
        return self._records(droplets)

    def list(self, region, tags=None):
        return self._list_droplets(region, tags) + self._list_apps(region, tags)

    def _list_droplets(self, region, tags=None):
        tags = dict(tags or {})
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
        records = self._records(droplets)
        return [rec for rec in records if all(rec["tags"].get(k) == str(v) for k, v in tags.items())]

    def refresh(self, records):
        """Fresh records: one listing per deployment tag, droplets.get for records without a deployment; apps.get
        for apps."""
        records, apps = self.split(records)
        return self._refresh_droplets(records) + (self._refresh_apps(apps) if apps else [])

    def _refresh_droplets(self, records):
        by_tag, loose = {}, []
        for rec in records:
            if rec.get("deployment"):
                by_tag.setdefault(deployment_tag(rec["deployment"]), set()).add(rec["id"])
            else:
                loose.append(rec["id"])
        fresh = []
        for tag, ids in by_tag.items():
            fresh += [self._record(d) for d in self._list(tag) if str(d["id"]) in ids]

        def get(droplet_id):
            answer = self.call(self.client.droplets.get, int(droplet_id))
            return self._record(answer["droplet"]) if isinstance(answer, dict) and "droplet" in answer else None

        fresh += [rec for rec in self.each(get, loose) if rec]
        # Keep the <name>#<id> names that find gave to duplicates, so that waiting matches them up.
        names = {rec["id"]: rec["name"] for rec in records}
        for rec in fresh:
            rec["name"] = names.get(rec["id"], rec["name"])
        return fresh

    # -- actions ---------------------------------------------------------------------------------

    def _wait_actions(self, actions, what, timeout=None):
        """Wait until every action (dicts with id and status) ended; return {action id: final action}."""
        final = {a["id"]: a for a in actions}

        def poll():
            open_ids = [i for i, a in final.items() if a.get("status") == "in-progress"]

            def get(action_id):
                return self._body(self.call(self.client.actions.get, action_id), "action", f"action {action_id}")

            for action in self.each(get, open_ids):
                final[action["id"]] = action
            return final

        def describe(result):
            return ", ".join(f"{a.get('type')} of {a.get('resource_id')}={a.get('status')}" for a in result.values())

        if any(a.get("status") == "in-progress" for a in actions):
            wait_for(poll, lambda result: all(a.get("status") != "in-progress" for a in result.values()),
                     what, timeout or self.ACTION_TIMEOUT, first=0.1, maximum=self.POLL_MAX, describe=describe)
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
            answer = self.call(self.client.droplet_actions.post_by_tag, body={"type": kind}, tag_name=tag)
            actions += self._body(answer, "actions", f"{kind} of the droplets tagged {tag}")

        def post(rec):
            answer = self.call(self.client.droplet_actions.post, int(rec["id"]), body={"type": kind})
            return self._body(answer, "action", f"{kind} of droplet {rec['name']} ({rec['id']})")

        actions += self.each(post, rest)
        names = ", ".join(sorted(rec["name"] for rec in records))
        final = self._wait_actions(actions, f"{kind} of {names}")
        return [(by_id.get(str(a.get("resource_id"))), a) for a in final.values() if a.get("status") == "errored"]

    @staticmethod
    def _failed(kind, failures):
        names = ", ".join(f"{rec['name'] if rec else '?'} ({action.get('resource_id')})" for rec, action in failures)
        return ProviderError(f"DigitalOcean {kind} failed (action errored) on {names}")

    # -- changing --------------------------------------------------------------------------------

    def create(self, spec, region, members):
        if spec["kind"] in SERVICE_KINDS:
            return self._create_app(spec, region)
        image = catalog.native_image(self.name, spec["image"])
        tags = [deployment_tag(spec["name"]), f"{KIND_TAG}:{spec['kind']}", image_tag(spec["image"])]
        tags += [user_tag(key, value) for key, value in spec["tags"].items()]
        body = {
            "region": region,
            "size": self.native_size(spec),
            "image": int(image) if str(image).isdigit() else image,
            "tags": tags,
            # The metrics agent, so that droplet metrics (CPU, memory, disk) exist for monitoring.
            "monitoring": True,
        }
        if spec.get("cloud_init"):
            body["user_data"] = spec["cloud_init"]
        # Tags first: a tag that exists in another spelling (names are case-insensitive) fails here, before
        # any droplet exists, rather than turning up re-spelled on the droplets.
        self.each(self._ensure_tag, [user_tag(key, value) for key, value in spec["tags"].items()])
        droplets, actions = [], []
        try:
            for start in range(0, len(members), MAX_PER_CREATE):
                names = members[start:start + MAX_PER_CREATE]
                answer = self.call(self.client.droplets.create, body={**body, "names": names})
                droplets += self._body(answer, "droplets", f"creating {', '.join(names)}")
                links = (answer.get("links") or {}).get("actions") or []
                actions += [{"id": link["id"], "status": "in-progress"} for link in links if link.get("rel") == "create"]
            records = [self._record(droplet) for droplet in droplets]
            if spec.get("wait", True):
                records = self._wait_created(records, actions, spec.get("wait_timeout") or self.ACTION_TIMEOUT)
        except Exception as exc:
            raise ProviderError(self._undo(droplets, members, exc)) from exc
        return records

    def _wait_created(self, records, actions, timeout):
        """Wait for the create actions (or, without them, for the droplets to be active); fresh records."""
        what = f"creation of {', '.join(rec['name'] for rec in records)}"
        if actions:
            final = self._wait_actions(actions, what, timeout)
            errored = {str(a.get("resource_id")) for a in final.values() if a.get("status") == "errored"}
            if errored:
                names = ", ".join(rec["name"] for rec in records if rec["id"] in errored)
                raise ProviderError(f"the create action of droplet(s) {names} errored")
        return wait_for(
            lambda: self.refresh(records),
            lambda fresh: len(fresh) == len(records) and all(rec["state"] != "pending" for rec in fresh),
            what, timeout, first=0.1, maximum=self.POLL_MAX,
            describe=lambda fresh: ", ".join(f"{rec['name']}={rec['state']}" for rec in fresh) or "nothing",
        )

    def _undo(self, droplets, members, exc):
        """Destroy what a failed create made; the message says what was removed and what may remain."""
        what = f"creating {', '.join(members)} in DigitalOcean failed: {exc}"
        if not droplets:
            return what
        ids = [str(d["id"]) for d in droplets]
        names = ", ".join(f"{d['name']} ({d['id']})" for d in droplets)
        try:
            self.each(lambda droplet_id: self.call(self.client.droplets.destroy, int(droplet_id)), ids)
        except Exception as cleanup:
            return f"{what}; removing the droplets this run created ({names}) failed too, remove them: {cleanup}"
        try:
            tag = next(t for t in droplets[0].get("tags", []) if t.startswith(DEPLOYMENT_TAG + ":"))
            if not self._list(tag):  # a deployment that had no other member: its tag goes too
                self.call(self.client.tags.delete, tag)
        except Exception:  # best effort: an empty tag costs nothing
            pass
        return f"{what}; the droplets this run had created were destroyed again: {names}"

    def delete(self, records):
        records, apps = self.split(records)
        if apps:
            self._delete_apps(apps)
        if records:
            self._delete_droplets(records)

    def _delete_droplets(self, records):
        gone = {rec["id"] for rec in records}
        used = {tag for rec in records for tag in self._raw_tags.get(rec["id"], [])}
        whole, rest = self._tag_carriers(records, minimum=1)
        for tag, members in whole.items():
            if len(members) > 1:
                self.call(self.client.droplets.destroy_by_tag, tag_name=tag)
            else:
                rest += members
        # droplets.destroy answers 404 as a body: a droplet that is gone already is fine.
        self.each(lambda rec: self.call(self.client.droplets.destroy, int(rec["id"])), rest)
        self.each(lambda tag: self._drop_if_unused(tag, gone), sorted(used | set(whole)))

    def _drop_if_unused(self, tag, gone):
        """Delete a tag the removed droplets carried, once nothing else in the account carries it.

        Droplets being destroyed may still be listed for a moment, so they are left out of the count.
        """
        answer = self.call(self.client.tags.get, tag)
        if not isinstance(answer, dict) or "tag" not in answer:
            return  # gone already
        resources = answer["tag"].get("resources") or {}
        others = resources.get("count", 0) - (resources.get("droplets") or {}).get("count", 0)
        if others > 0 or any(str(d["id"]) not in gone for d in self._list(tag)):
            return
        self.call(self.client.tags.delete, tag)

    def start(self, records):
        records, apps = self.split(records)
        if apps:
            self._start_apps(apps)
        if not records:
            return
        failures = self._act(records, "power_on")
        if failures:
            raise self._failed("power_on", failures)

    def stop(self, records):
        records, apps = self.split(records)
        if apps:
            self._stop_apps(apps)
        if not records:
            return
        # A graceful shutdown first; where it errored, power off (as DigitalOcean recommends).
        failures = self._act(records, "shutdown")
        if not failures:
            return
        fresh = {rec["id"]: rec for rec in self.refresh([rec for rec, _action in failures if rec])}
        still_on = [rec for rec in fresh.values() if rec["state"] != "stopped"]
        failures = self._act(still_on, "power_off") if still_on else []
        if failures:
            raise self._failed("power_off", failures)

    def restart(self, records):
        records, apps = self.split(records)
        if apps:
            self._restart_apps(apps)
        if not records:
            return
        failures = self._act(records, "reboot")
        if failures:
            raise self._failed("reboot", failures)

    def _ensure_tag(self, tag):
        """Create the tag if needed; refuse it when DigitalOcean has it in another spelling."""
        created = self._body(self.call(self.client.tags.create, body={"name": tag}), "tag", f"creating tag {tag}")
        if created.get("name") != tag:
            raise ProviderError(
                f"tags: DigitalOcean already has the tag '{tag}' spelled '{created.get('name')}' (tag names are "
                "case-insensitive): use that spelling in tags"
            )

    def update_tags(self, records, tags, purge):
        records, apps = self.split(records)
        if apps:
            self._tag_apps(apps, tags, purge)
        add, remove = {}, {}
        for rec in records:
            raw = self._raw_tags.get(rec["id"])
            if raw is None:
                answer = self.call(self.client.droplets.get, int(rec["id"]))
                raw = self._body(answer, "droplet", f"droplet {rec['name']} ({rec['id']})").get("tags") or []
            current = [tag for tag in raw if not tag.startswith(TAG_PREFIX)]
            wanted = dict(tags) if purge else {**user_tags(current), **tags}
            wanted_tags = {user_tag(key, value) for key, value in wanted.items()}
            for tag in wanted_tags - set(current):
                add.setdefault(tag, []).append(rec)
            for tag in current:
                if tag not in wanted_tags:
                    remove.setdefault(tag, []).append(rec)

        def resources(recs):
            return {"resources": [{"resource_id": rec["id"], "resource_type": "droplet"} for rec in recs]}

        for tag, recs in sorted(add.items()):
            self._ensure_tag(tag)
            answer = self.call(self.client.tags.assign_resources, tag, body=resources(recs))
            if answer:  # pydo returns the 404 body instead of raising
                self._body(answer, "resources", f"tagging {', '.join(rec['name'] for rec in recs)} with {tag}")
        for tag, recs in sorted(remove.items()):
            # A 404 (the tag or droplet is gone) leaves nothing to remove.
            self.call(self.client.tags.unassign_resources, tag, body=resources(recs))
        self.each(lambda tag: self._drop_if_unused(tag, set()), sorted(remove))
        for rec in records:
            self._raw_tags.pop(rec["id"], None)

    # -- monitoring (digitalocean_monitoring.py; Provider delegates the rest to self.monitoring) -----------

    @classmethod
    def validate_alarm(cls, alarm):
        do_monitoring.validate_alarm(alarm)
