# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provider interface: the normalized deployment record, one Backend per kind, and the Provider that
dispatches to them.

A provider is a package providers/<name>/ (registry.py lists them): its INFO, a Provider subclass that owns
the connection (SDK clients, error classification, retries, TLS), and one Backend per kind it deploys. The
Provider base splits every list of records by kind and hands each backend its own, so no provider writes its
own dispatch; a backend works on the records it is handed, whose `native` carries what it read them from.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import time

from ansible_collections.lxcri.cloud.plugins.module_utils import catalog, registry
from ansible_collections.lxcri.cloud.plugins.module_utils.monitoring import evaluate
from ansible_collections.lxcri.cloud.plugins.module_utils.retry import DEFAULT_POLICY, FATAL
from ansible_collections.lxcri.cloud.plugins.module_utils.spec import SpecError
from ansible_collections.lxcri.cloud.plugins.module_utils.wait import Deadline, wait_for

STATES = ("pending", "running", "stopped", "terminated", "error", "unknown")
RECORD_FIELDS = (
    "provider", "kind", "name", "deployment", "id", "state", "region", "zone", "size", "native_size", "image",
    "public_ip", "private_ip", "url", "tags", "created_at", "hourly_cost",
)
# How long a task without a wait_timeout of its own may wait in all (info modules, alarms, the inventory).
DEFAULT_WAIT = 1800


class ProviderError(Exception):
    """A failure a user can act on; the message never carries a secret."""


class MissingSDK(ProviderError):
    pass


class PartialFailure(ProviderError):
    """Some of a batch failed: `done` holds the results of the items that worked (e.g. the members made)."""

    def __init__(self, message, done):
        super().__init__(message)
        self.done = list(done)


class Record(dict):
    """A normalized deployment record. `native` is what the provider read it from (an SDK object or the API's
    document): the backend that made the record uses it instead of reading again, and reads again when it is
    None (a record that came from a user, or a copy). It is not a key, so it never reaches a task's result."""

    native = None


def record(provider, native=None, **fields):
    """A normalized deployment record: every field present, portable size and cost filled in."""
    unknown = set(fields) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"not record fields: {sorted(unknown)}")
    rec = Record({field: None for field in RECORD_FIELDS})
    rec.update(fields)
    rec.native = native
    rec["provider"] = provider
    rec["kind"] = rec["kind"] or "vm"
    rec["tags"] = dict(rec["tags"] or {})
    if rec["state"] not in STATES:
        rec["state"] = "unknown"
    if rec["native_size"] and not rec["size"]:
        rec["size"] = catalog.portable_size(provider, rec["native_size"])
    if rec["hourly_cost"] is None and rec["native_size"] and rec["state"] != "terminated":
        rec["hourly_cost"] = catalog.hourly_cost(provider, rec["native_size"])
    return rec


def native_of(rec):
    return getattr(rec, "native", None)


def tags_match(rec, tags):
    return all(rec["tags"].get(str(key)) == str(value) for key, value in (tags or {}).items())


def tag_changes(current, tags, purge):
    """(tags to add or change {key: value}, keys to remove) that turn the user tags `current` into `tags`
    (or into a superset of them, without purge)."""
    add = {key: value for key, value in tags.items() if current.get(key) != value}
    return add, [key for key in current if purge and key not in tags]


def retagged(current, tags, purge):
    """The user tags a resource should end with."""
    return dict(tags) if purge else {**current, **tags}


def undo(steps, explain=str):
    """Run every (what, action) cleanup step, whatever the others do: (the whats undone, "what (why)" of those left)."""
    undone, left = [], []
    for what, action in steps:
        try:
            action()
            undone.append(what)
        except Exception as exc:  # go on: say what is left, whatever went wrong
            left.append(f"{what} ({explain(exc)})")
    return undone, left


def iso_utc(value):
    """ISO 8601 UTC with a Z, from a datetime, an epoch number or an ISO string."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tls_verify(connection):
    """What an SDK's `verify` takes: False when validate_certs is false (whatever ca_bundle says), else the
    CA bundle to verify with, else True (the system's trust store). The one precedence of every provider."""
    if connection.get("validate_certs") is False:
        return False
    return connection.get("ca_bundle") or True


class Backend:
    """What one provider does for deployments of one kind, on the records of that kind it is handed.

    Member kinds (members = True: VMs, Proxmox containers) are `count` resources named <name>-<i>; the
    other kinds are one service per deployment with `count` replicas, whose settings config() reads back and
    update() changes. The list operations default to their per-record form (`delete_one` ...) run in
    parallel through the provider; a backend that can batch overrides the list form instead.
    """

    kind = "vm"
    members = True
    # Members take a new native size (cores, memory) in place through resize(); elsewhere it is drift.
    resizes = False

    def __init__(self, provider):
        self.p = provider

    @classmethod
    def validate(cls, spec):
        """Checks of this kind's spec on this provider that need no API call; raise SpecError."""

    def native_size(self, spec):
        return catalog.native_size(self.p.name, spec["size"])

    # reading
    def find(self, name, region):
        """Records of deployment `name` in `region` (terminated ones excluded)."""
        raise NotImplementedError

    def list(self, region, tags):
        """Records of every deployment of this kind in `region`; `tags` may be applied by the API (the
        Provider applies them again exactly)."""
        raise NotImplementedError

    def refresh(self, records):
        """Fresh records of these (those that are gone are left out)."""
        return [new for fresh in self.p.each(self.refresh_one, records) for new in fresh]

    def refresh_one(self, rec):
        return self.find(rec["deployment"], rec["region"])

    def config(self, rec):
        """Services: the portable settings as spec.service_config(spec) spells them, read back from the record;
        `replicas` is the configured count even while the service is stopped."""
        raise NotImplementedError

    # changing
    def create(self, spec, region, names):
        """Create these members (the deployment itself for a service); return their records. A failure
        part-way removes what it made for the failed one and raises PartialFailure with the others."""
        raise NotImplementedError

    def update(self, rec, spec, changes):
        """Services: bring `rec` to the spec (`changes` names the differing settings), keeping its power
        state; return (record, recreated)."""
        raise NotImplementedError

    def resize(self, records, spec):
        raise NotImplementedError

    def tag(self, records, tags, purge):
        self.p.each(lambda rec: self.tag_one(rec, tags, purge), records)

    def tag_one(self, rec, tags, purge):
        raise NotImplementedError

    def delete(self, records):
        self.p.each(self.delete_one, records)

    def start(self, records):
        self.p.each(self.start_one, records)

    def stop(self, records):
        self.p.each(self.stop_one, records)

    def restart(self, records):
        self.p.each(self.restart_one, records)

    def delete_one(self, rec):
        raise NotImplementedError

    def start_one(self, rec):
        raise NotImplementedError

    def stop_one(self, rec):
        raise NotImplementedError

    def restart_one(self, rec):
        raise NotImplementedError


class Provider:
    """One cloud behind the common operations: the connection and its policies, and one backend per kind.

    Subclasses set `info` (their package's INFO) and BACKENDS (kind -> Backend class), and implement
    classify (and unreachable, gone) for their SDK. Records are the normalized dicts of record(); `spec` is
    the validated deployment spec. The methods that change things act on many records at once so that each
    backend can batch or parallelize.
    """

    info = None
    name = ""
    title = ""
    BACKENDS = {}
    # How often to look at a resource that is changing state, at most (seconds).
    POLL_MAX = 5.0
    # How many calls of one provider run at once in each(): within every provider's documented rate limits.
    WORKERS = 8

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.info is not None:
            cls.name, cls.title = cls.info.name, cls.info.title

    def __init__(self, connection, policy=None, deadline=None):
        self.connection = dict(connection or {})
        self.policy = policy or DEFAULT_POLICY
        self.deadline = deadline or Deadline(DEFAULT_WAIT)
        self.verify = tls_verify(self.connection)
        self._backends = {}
        self.connect()

    def connect(self):
        """Check the connection settings and make the SDK's clients (no API call yet); raise ProviderError
        or MissingSDK naming the option or the package."""

    @classmethod
    def validate(cls, spec):
        """Provider-specific checks that need no API call (the provider's own, then the kind's); raise SpecError."""
        cls.validate_spec(spec)
        backend = cls.BACKENDS.get(spec.get("kind") or "vm")
        if backend is not None and spec.get("state") != "absent":  # removing needs the name and kind only
            backend.validate(spec)

    @classmethod
    def validate_spec(cls, spec):
        """What the provider checks of every kind's spec (tag rules, ...)."""

    @classmethod
    def validate_alarm(cls, alarm):
        """Provider-specific checks of a portable alarm (monitoring.validate_alarm) that need no API call;
        raise spec.SpecError. Called with the name/kind/tags only when state is absent."""
        why = cls.info.cannot.get("alarms") if cls.info else None
        if why:
            raise SpecError(f"alarm {alarm['name']}: {why}" if alarm.get("name") else why)

    # -- the connection's policies ---------------------------------------------------------------------

    def call(self, func, *args, **kwargs):
        """An API call under the shared retry policy with this provider's error classifier."""
        try:
            return self.policy.call(func, self.classify, *args, **kwargs)
        except Exception as exc:
            if self.unreachable(exc):
                endpoint = self.connection.get("endpoint") or "its default endpoint"
                raise ProviderError(
                    f"cannot reach the {self.name} API at {endpoint} (set by {self.name}.endpoint or "
                    f"LXCRI_{self.name.upper()}_ENDPOINT): {exc}"
                ) from exc
            raise

    def classify(self, exc):
        """(THROTTLED | TRANSIENT | FATAL, retry_after seconds or None) for an SDK exception."""
        return FATAL, None

    def unreachable(self, exc):
        """True when nothing answers at the endpoint at all (not worth a retry)."""
        return False

    def gone(self, exc):
        """True when exc says the resource asked for does not exist (any more)."""
        return False

    def unless_gone(self, func, *args, **kwargs):
        """call(func, ...), or None when the provider answers that the resource is not there: what a delete of
        something already gone, or a read of something that may not exist, wants."""
        try:
            return self.call(func, *args, **kwargs)
        except Exception as exc:
            if self.gone(exc):
                return None
            raise

    def paginate(self, page, token=None):
        """Every item of a paged listing. page(token) -> (items, next token or None), starting from `token`;
        each page is one retried call, so a throttled page resumes where the listing was."""
        items = []
        while True:
            chunk, token = self.call(page, token)
            items += chunk
            if not token:
                return items

    def wait(self, fetch, done, what, first=0.1, describe=None, deadline=None):
        """wait_for at the provider's pace, until the task's deadline (or a nearer one)."""
        return wait_for(fetch, done, what, deadline or self.deadline, first=first, maximum=self.POLL_MAX,
                        describe=describe)

    def each(self, func, items, workers=None):
        """func(item) for every item, in parallel with a bounded pool; results in order.

        Every call runs to its end before the first failure is raised, so nothing is left half-watched.
        """
        done, failures = self.each_settled(func, items, workers)
        if failures:
            raise failures[0][1]
        return done

    def each_settled(self, func, items, workers=None):
        """([results of the items that worked, in order], [(item, exception) of those that failed])."""
        items = list(items)
        if len(items) <= 1:
            futures = []
            for item in items:
                future = concurrent.futures.Future()
                try:
                    future.set_result(func(item))
                except Exception as exc:  # collected like the pool's
                    future.set_exception(exc)
                futures.append(future)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers or self.WORKERS, len(items))) as pool:
                futures = [pool.submit(func, item) for item in items]
                concurrent.futures.wait(futures)
        done = [future.result() for future in futures if future.exception() is None]
        return done, [(item, future.exception()) for item, future in zip(items, futures) if future.exception() is not None]

    def region(self, spec):
        """The region (or node, or zone) a deployment lives in."""
        region = spec.get("region") or self.connection.get("region")
        if not region:
            raise ProviderError(f"region is required for {self.name}: set region or {self.name}.region")
        return region

    # -- dispatch by kind ------------------------------------------------------------------------------

    def backend(self, kind):
        kind = kind or "vm"
        if kind not in self._backends:
            if kind not in self.BACKENDS:
                why = self.info.cannot.get(kind)
                raise ProviderError(f"kind '{kind}' is not supported on {self.name}" + (f": {why}" if why else ""))
            self._backends[kind] = self.BACKENDS[kind](self)
        return self._backends[kind]

    def by_kind(self, records):
        """[(backend, its records)] for records of any kinds (a record without a kind is a VM)."""
        groups = {}
        for rec in records:
            groups.setdefault(rec.get("kind") or "vm", []).append(rec)
        return [(self.backend(kind), recs) for kind, recs in groups.items()]

    def members(self, kind):
        """True when `kind` is deployed as count members, False for one service with count replicas."""
        return self.BACKENDS[kind].members if kind in self.BACKENDS else kind == "vm"

    def resizes(self, kind):
        return kind in self.BACKENDS and self.BACKENDS[kind].resizes

    def native_size(self, spec):
        return self.backend(spec.get("kind")).native_size(spec)

    def find(self, name, region, kind="vm"):
        """Records of deployment `name` of this kind in `region` (terminated ones excluded): the members
        of a member deployment, the one record of a service deployment."""
        return self.backend(kind).find(name, region)

    def list(self, region, tags=None):
        """Records of every live deployment of every kind in `region`, optionally only those with these tags."""
        return [rec for kind in self.BACKENDS for rec in self.backend(kind).list(region, tags or {})
                if tags_match(rec, tags)]

    def select(self, region, name=None, kinds=None, tags=None):
        """Records of deployment `name` (or of every deployment in the region) of these kinds (default: every
        kind this provider deploys) whose tags include `tags`, sorted by deployment and member name."""
        kinds = [kind for kind in (kinds or self.BACKENDS) if kind in self.BACKENDS]
        if name:
            records = [rec for kind in kinds for rec in self.find(name, region, kind)]
        else:
            records = [rec for rec in self.list(region) if rec["kind"] in kinds]
        records = [rec for rec in records if tags_match(rec, tags)]
        return sorted(records, key=lambda rec: (rec["deployment"] or "", rec["name"] or ""))

    def refresh(self, records):
        """Fresh records for these (state, addresses); those that are gone are left out."""
        return [new for backend, recs in self.by_kind(records) for new in backend.refresh(recs)]

    def service_config(self, rec):
        return self.backend(rec["kind"]).config(rec)

    def create(self, spec, region, names):
        return self.backend(spec["kind"]).create(spec, region, names)

    def update_service(self, rec, spec, changes):
        return self.backend(rec["kind"]).update(rec, spec, changes)

    def resize(self, records, spec):
        for backend, recs in self.by_kind(records):
            backend.resize(recs, spec)

    def update_tags(self, records, tags, purge):
        """Make each record's user tags equal `tags` (or a superset without purge)."""
        for backend, recs in self.by_kind(records):
            backend.tag(recs, tags, purge)

    def delete(self, records):
        for backend, recs in self.by_kind(records):
            backend.delete(recs)

    def start(self, records):
        for backend, recs in self.by_kind(records):
            backend.start(recs)

    def stop(self, records):
        for backend, recs in self.by_kind(records):
            backend.stop(recs)

    def restart(self, records):
        for backend, recs in self.by_kind(records):
            backend.restart(recs)

    # -- monitoring (docs/cloud_monitoring.md): each provider keeps it in `self.monitoring`, an object of its
    # package's monitoring.py with these five methods. Series are monitoring.series() or monitoring.missing().
    monitoring = None

    def metrics(self, records, names, start, end, period):
        """[{metric: series}] in the order of `records` (members and services alike), for the portable metric
        `names` over [start, end) at `period` seconds, in as few API calls as the provider allows."""
        return self.monitoring.metrics(records, names, start, end, period)

    def find_alarm(self, name, region):
        """The alarm record (monitoring.alarm_record) of the collection's alarm `name`, or None."""
        return self.monitoring.find_alarm(name, region)

    def list_alarms(self, region):
        """Records of every alarm the collection made in `region`."""
        return self.monitoring.list_alarms(region)

    def put_alarm(self, alarm, region, targets, current):
        """Create the alarm (current is None) or update `current` in place, with its notification targets,
        for the target records; return its record. A failure part-way removes what this call created."""
        return self.monitoring.put_alarm(alarm, region, targets, current)

    def delete_alarm(self, current):
        """Remove the alarm and the notification resources made for it."""
        self.monitoring.delete_alarm(current)

    def evaluated_state(self, alarm, now=None):
        """(state, reason) of an alarm record computed from the metrics it watches, for providers whose API
        keeps no alarm state: the last evaluation_periods periods of each target deployment's members."""
        targets = [rec for name in alarm["deployments"] for rec in self.find(name, alarm["region"], alarm["kind"])]
        if not targets:
            return "insufficient_data", f"no live members in {', '.join(alarm['deployments'])}"
        period = alarm["period"]
        end = int(now if now is not None else time.time()) // period * period
        answers = self.metrics(targets, [alarm["metric"]], end - period * alarm["evaluation_periods"], end, period)
        return evaluate(alarm, {rec["name"]: answer[alarm["metric"]] for rec, answer in zip(targets, answers)})


def load(name):
    """The provider class for `name`, importing only that provider's package code and SDK."""
    if name not in registry.INFO:
        raise ProviderError(registry.unknown(name))
    return registry.load(name)
