# Copyright: lxcri.cloud developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: deployments
short_description: Every deployment on AWS, Azure, GCP, DigitalOcean and Proxmox VE as hosts
version_added: 0.1.0
description:
  - Lists every member of every deployment of the collection on each provider of O(providers), in each of its
    O(regions), and makes each a host whose variables are the normalized deployment record, the same record that
    M(lxcri.cloud.deployment) and M(lxcri.cloud.deployment_info) return.
  - All providers and regions are listed at once, at most O(workers) at a time, each in a process of its own
    (in threads when the inventory is refreshed inside a running play); each listing follows every page at the
    largest page size its API allows and applies O(filters.tags) on the server where the API can.
  - A host is named V(<provider>_<region>_<member name>), for example V(aws_us-east-1_web-1) or
    V(gcp_us-central1-a_web-1), with the region (zone on GCP, node on Proxmox) that was listed, because a
    deployment is identified by provider, region and name, and the same name may live on several providers. Should two resources still share a name,
    the second one's id is appended, so that no host hides another. C(ansible_host) is the first of O(hostnames)
    that the member has.
  - Every host is in the groups V(provider_<provider>), V(kind_<kind>) and V(deployment_<deployment name>)
    (characters a group name cannot hold become V(_)), and in whatever O(groups) and O(keyed_groups) make.
  - An API call that is throttled or fails transiently is retried under the collection's one retry policy. A provider
    (or region) whose listing still fails is reported in a warning that names it and the error; its hosts from the
    inventory cache are kept when there is one (even an expired one), and O(fail_on_errors=true) makes it fatal.
  - With O(cache=true), a run that finds a fresh cache entry makes no API call at all; only a provider or region
    whose last listing failed is listed again.
  - The inventory file must be named C(deployments.yml), C(deployments.yaml), or end in C(.deployments.yml) or
    C(.deployments.yaml).
author:
  - lxcri.cloud developers (@lxcri)
requirements:
  - The SDK of each provider listed in O(providers), see the collection's C(requirements.txt).
options:
  plugin:
    description: The name of this plugin; it makes the file an inventory source of this plugin.
    type: str
    required: true
    choices: [lxcri.cloud.deployments]
  providers:
    description: The clouds to list.
    type: list
    elements: str
    required: true
  regions:
    description:
      - Provider name to the regions to list on it (a list, or one region as a string); a zone or a region on
        V(gcp), a node on V(proxmox).
      - A provider not named here is listed in the C(region) of its connection option (for example C(aws.region),
        or its environment variable such as E(AWS_DEFAULT_REGION)).
    type: dict
    default: {}
  filters:
    description: Only the members that match all of these.
    type: dict
    default: {}
    suboptions:
      tags:
        description:
          - Only members that carry all of these tags. Applied by the provider's API where it can filter on tags
            (AWS, GCP, DigitalOcean), and on the listing otherwise.
        type: dict
      kind:
        description: Only members of these kinds.
        type: list
        elements: str
      state:
        description: Only members in these normalized states.
        type: list
        elements: str
  hostnames:
    description:
      - Record fields in order of preference; the first that the member has becomes its C(ansible_host).
      - For example V([private_ip, public_ip]) to reach hosts over a private network.
    type: list
    elements: str
    default: [public_ip, private_ip, name]
  hostvar_prefix:
    description:
      - Put before the name of each record field in the host variables, so that the record's C(state) is
        C(lxcri_state), its C(tags) C(lxcri_tags) and so on. C(ansible_host) is never prefixed.
      - O(compose), O(groups) and O(keyed_groups) see the prefixed names.
      - With V(''), the record fields C(name) and C(tags) take the names of play keywords, and Ansible warns
        about that on every run.
    type: str
    default: lxcri_
  fail_on_errors:
    description:
      - Fail the inventory when a provider or region cannot be listed, instead of warning and keeping its hosts from
        the cache.
    type: bool
    default: false
  workers:
    description: How many listings (one per provider and region) run at the same time, at most.
    type: int
    default: 8
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - lxcri.cloud.connection
  - lxcri.cloud.providers.inventory
"""

EXAMPLES = r"""
# deployments.yml: every deployment on AWS and GCP, connection from the environment
# (AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS ...).
plugin: lxcri.cloud.deployments
providers: [aws, gcp]
regions:
  aws: [us-east-1, eu-west-1]
  gcp: us-central1-a
---
# prod.deployments.yml: only production, grouped by the tag "tier", cached for five minutes.
plugin: lxcri.cloud.deployments
providers: [aws, azure, gcp, digitalocean, proxmox]
regions:
  aws: us-east-1
  azure: westeurope
  gcp: us-central1-a
  digitalocean: fra1
  proxmox: pve1
proxmox:
  endpoint: https://pve.example.com:8006
filters:
  tags: {env: prod}
  state: [running]
hostnames: [private_ip, public_ip]
keyed_groups:
  - key: lxcri_tags.tier | default('none')
    prefix: tier
groups:
  expensive: lxcri_hourly_cost is not none and lxcri_hourly_cost > 0.1
compose:
  ansible_user: "'ubuntu' if lxcri_image is match('ubuntu') else 'debian'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/lxcri-inventory
cache_timeout: 300
"""

import concurrent.futures
import multiprocessing
import multiprocessing.connection
import os
import threading
import time

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.lxcri.cloud.plugins.module_utils.registry import NAMES as PROVIDERS

HOSTNAME_FIELDS = ("public_ip", "private_ip", "name", "id")
FILE_NAMES = ("deployments.yml", "deployments.yaml")
CACHE_FORMAT = 1
# In threads, SDK imports run one at a time: some SDK packages share dependencies whose first import is not safe
# to race. A listing whose SDK is loaded goes on with its API calls while the next one imports.
_IMPORT_LOCK = threading.Lock()


def connections(options):
    """The connection dict of each provider, completed the way a module completes it.

    The options are checked against the modules' own argument spec (spec.connection_argument_spec, built from
    spec.CONNECTION_FIELDS), so the same environment variables fill the same fields, with the same types and
    defaults. Returns {provider: dict}; raises AnsibleParserError naming the option on bad input.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    from ansible_collections.lxcri.cloud.plugins.module_utils.spec import connection_argument_spec

    params = {name: options.get(name) for name in PROVIDERS}
    result = ArgumentSpecValidator(connection_argument_spec()).validate(params)
    if result.error_messages:
        raise AnsibleParserError(f"lxcri.cloud.deployments: {'; '.join(result.error_messages)}")
    return {name: dict(result.validated_parameters.get(name) or {}) for name in PROVIDERS}


def source_key(provider, region):
    return f"{provider}/{region}"


def matches(rec, filters):
    """True when the record passes the client-side filters (tags, kind, state)."""
    tags = filters.get("tags") or {}
    if any(rec["tags"].get(str(key)) != str(value) for key, value in tags.items()):
        return False
    if filters.get("kind") and rec["kind"] not in filters["kind"]:
        return False
    if filters.get("state") and rec["state"] not in filters["state"]:
        return False
    return True


class SourceFailed(Exception):
    """A provider (or one region of it) could not be listed."""


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "lxcri.cloud.deployments"

    def verify_file(self, path):
        if not super().verify_file(path):
            return False
        base = os.path.basename(path)
        return base in FILE_NAMES or base.endswith(tuple("." + name for name in FILE_NAMES))

    # -- options ---------------------------------------------------------------------------------------

    def _template(self, value):
        """Render Jinja2 in option values that come from the (trusted) inventory file."""
        if isinstance(value, dict):
            return {key: self._template(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._template(item) for item in value]
        if isinstance(value, str) and "{" in value and self.templar.is_template(value):
            return self.templar.template(value)
        return value

    def _settings(self):
        providers = list(dict.fromkeys(str(name) for name in self.get_option("providers") or []))
        unknown = [name for name in providers if name not in PROVIDERS]
        if not providers or unknown:
            raise AnsibleParserError(
                f"lxcri.cloud.deployments: providers must be a list of {', '.join(PROVIDERS)}"
                + (f"; not known: {', '.join(map(str, unknown))}" if unknown else "")
            )
        regions = _plain(self._template(self.get_option("regions") or {}))
        for name in regions:
            if name not in PROVIDERS:
                raise AnsibleParserError(
                    f"lxcri.cloud.deployments: regions has a key '{name}', which is not a provider: use {', '.join(PROVIDERS)}"
                )
        filters = dict(self.get_option("filters") or {})
        extra = set(filters) - {"tags", "kind", "state"}
        if extra:
            raise AnsibleParserError(f"lxcri.cloud.deployments: filters accepts tags, kind and state, not {', '.join(sorted(extra))}")
        filters = {
            "tags": {str(k): str(v) for k, v in (self._template(filters.get("tags")) or {}).items()},
            "kind": [str(k) for k in _as_list(filters.get("kind"))],
            "state": [str(s) for s in _as_list(filters.get("state"))],
        }
        hostnames = list(self.get_option("hostnames") or [])
        bad = [name for name in hostnames if name not in HOSTNAME_FIELDS]
        if bad:
            raise AnsibleParserError(
                f"lxcri.cloud.deployments: hostnames accepts {', '.join(HOSTNAME_FIELDS)}, not {', '.join(map(str, bad))}"
            )
        workers = self.get_option("workers")
        if workers < 1:
            raise AnsibleParserError(f"lxcri.cloud.deployments: workers must be 1 or more, got {workers}")
        return {"providers": providers, "regions": regions, "filters": filters, "hostnames": hostnames, "workers": workers}

    def _sources(self, settings, conns):
        """[(provider, region)] to list, and {provider: error} for providers that have no region at all."""
        sources, errors = [], {}
        for name in settings["providers"]:
            wanted = _as_list(settings["regions"].get(name)) or _as_list(conns[name].get("region"))
            if not wanted:
                errors[name] = (
                    f"no region to list: set regions.{name} in the inventory, or {name}.region (or its environment variable)"
                )
            sources += [(name, str(region)) for region in dict.fromkeys(wanted)]
        return sources, errors

    @staticmethod
    def _fingerprint(settings, sources):
        """What the cached listings depend on: the sources and the server-side filter (never a credential)."""
        return {"format": CACHE_FORMAT, "sources": sorted(source_key(*s) for s in sources), "tags": settings["filters"]["tags"]}

    # -- fetching --------------------------------------------------------------------------------------

    def _fetch_one(self, provider, region, connection, tags):
        """Records of one provider in one region, and the location they were listed in."""
        from ansible_collections.lxcri.cloud.plugins.module_utils.provider import ProviderError, load

        began = time.monotonic()
        try:
            # One provider object per listing: SDK clients (boto3's above all) are not to be shared across threads.
            with _IMPORT_LOCK:
                cls = load(provider)
            api = cls(connection)
            location = api.region({"region": region})
            records = api.list(location, tags or None)
            self.display.vvv(f"lxcri.cloud.deployments: listed {len(records)} on {provider} in {location} in "
                             f"{time.monotonic() - began:.2f} s")
            return {"location": location, "records": records}
        except ProviderError as exc:  # says what was wrong and what to set
            raise SourceFailed(_one_line(to_native(exc))) from exc
        except Exception as exc:  # an SDK error: every failure becomes a report on this source, never a lost host
            raise SourceFailed(f"{provider} API error ({type(exc).__name__}): {_one_line(to_native(exc))}") from exc

    def _fetch(self, sources, settings, conns):
        """{source key: entry} for each source; an entry that failed carries `error` instead of records.

        Each listing runs in a process of its own where the platform can fork and nothing else runs in this
        process yet (ansible-inventory, a playbook's start): SDK imports and response parsing are CPU work, and
        in threads of one process they would take turns under the GIL. Otherwise (a refresh_inventory in a
        running play has threads) the listings run in threads.
        """
        if not sources:
            return {}
        tags = settings["filters"]["tags"]
        workers = min(settings["workers"], len(sources))
        if _can_fork():
            outcomes = self._fetch_forked(sources, conns, tags, workers)
        else:
            outcomes = self._fetch_threaded(sources, conns, tags, workers)
        results = {}
        for (provider, region), (ok, payload) in outcomes.items():
            entry = {"provider": provider, "region": region, "fetched_at": time.time()}
            if ok:
                entry.update(payload, error=None)
            else:
                entry.update(location=region, records=[], error=payload)
            results[source_key(provider, region)] = entry
        return results

    def _outcome(self, provider, region, connection, tags):
        """(True, {location, records}) or (False, the error) of one listing."""
        try:
            return True, self._fetch_one(provider, region, connection, tags)
        except SourceFailed as exc:
            return False, str(exc)

    def _fetch_threaded(self, sources, conns, tags, workers):
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lxcri-inventory") as pool:
            futures = {source: pool.submit(self._outcome, *source, conns[source[0]], tags) for source in sources}
        return {source: future.result() for source, future in futures.items()}

    def _fetch_forked(self, sources, conns, tags, workers):
        """Run each listing in a forked child, at most `workers` at a time; the children pipe back their outcome."""
        context = multiprocessing.get_context("fork")
        pending, running, outcomes = list(sources), {}, {}
        try:
            while pending or running:
                while pending and len(running) < workers:
                    source = pending.pop(0)
                    reader, writer = context.Pipe(duplex=False)
                    child = context.Process(target=self._child, args=(source, conns[source[0]], tags, writer), daemon=True)
                    child.start()
                    writer.close()
                    running[reader] = (source, child)
                for reader in multiprocessing.connection.wait(list(running)):
                    source, child = running.pop(reader)
                    try:
                        outcomes[source] = reader.recv()
                    except (EOFError, OSError):
                        child.join()
                        outcomes[source] = (False, f"the process listing {source[0]} in {source[1]} ended without an "
                                                   f"answer (exit code {child.exitcode})")
                    reader.close()
                    child.join()
        finally:
            for reader, (_source, child) in running.items():  # only on an interruption
                child.terminate()
                reader.close()
        return outcomes

    def _child(self, source, connection, tags, writer):
        """The body of a listing's child process: list, then send the outcome up the pipe."""
        try:
            outcome = self._outcome(*source, connection, tags)
        except BaseException as exc:  # pylint: disable=broad-exception-caught  # the parent must hear of it
            outcome = (False, f"{source[0]}: {type(exc).__name__}: {exc}")
        try:
            writer.send(outcome)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # e.g. a value that cannot be pickled
            writer.send((False, f"{source[0]}: the listing could not be passed on: {exc}"))
        writer.close()

    # -- cache -----------------------------------------------------------------------------------------

    def _cached(self, key, fingerprint, expired_too=False):
        """The cache entry for this inventory when it matches the configuration, else None.

        With expired_too, an entry past cache_timeout is read as well (for keeping the hosts of a provider that
        cannot be listed); that works with the file-based cache plugins (jsonfile, yaml, pickle) of ansible-core.
        """
        entry = None
        try:
            entry = self._cache.get(key)
        except Exception as exc:  # a broken cache must not break the inventory: it is only a cache
            self.display.warning(f"lxcri.cloud.deployments: cannot read the inventory cache: {to_native(exc)}")
        if entry is None and expired_too:
            plugin = getattr(self._cache, "_plugin", None)
            timeout = getattr(plugin, "_timeout", None)
            if plugin is not None and timeout and getattr(plugin, "_persistent", False):
                try:
                    plugin._timeout = 0
                    entry = plugin.get(key)
                except Exception:  # no entry at all, or one that cannot be read: no fallback
                    entry = None
                finally:
                    plugin._timeout = timeout
        if not isinstance(entry, dict) or entry.get("fingerprint") != fingerprint:
            return None
        return entry

    # -- the inventory ---------------------------------------------------------------------------------

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        settings = self._settings()
        conns = None
        caching = bool(self.get_option("cache"))
        key = self.get_cache_key(path) if caching else None

        # The sources depend on connection regions only for providers that `regions` leaves out.
        if all(settings["regions"].get(name) for name in settings["providers"]):
            sources, no_region = [(name, str(region)) for name in settings["providers"]
                                  for region in dict.fromkeys(_as_list(settings["regions"][name]))], {}
        else:
            conns = self._connections()
            sources, no_region = self._sources(settings, conns)
        fingerprint = self._fingerprint(settings, sources)

        previous = self._cached(key, fingerprint) if caching and cache else None
        keep = {}
        if previous is not None:
            keep = {k: v for k, v in previous["sources"].items() if not v.get("error")}
        todo = [s for s in sources if source_key(*s) not in keep]

        results = dict(keep)
        if todo:
            conns = conns or self._connections()
            results.update(self._fetch(todo, settings, conns))

        failed = {k: v for k, v in results.items() if v.get("error")}
        if failed or no_region:
            stale = previous or (self._cached(key, fingerprint, expired_too=True) if caching else None)
            self._report(failed, no_region, stale)

        if caching and (todo or previous is None):
            self._cache[key] = {"fingerprint": fingerprint, "sources": results}
        self._populate(results, sources, settings)

    def _connections(self):
        return connections({name: _plain(self._template(self.get_option(name))) for name in PROVIDERS})

    def _report(self, failed, no_region, stale):
        """Warn about (or, with fail_on_errors, fail on) every source that could not be listed."""
        problems = [f"{name}: {error}" for name, error in sorted(no_region.items())]
        for key, entry in sorted(failed.items()):
            kept = (stale or {}).get("sources", {}).get(key)
            if kept and kept.get("records"):
                entry["records"] = kept["records"]
                entry["location"] = kept.get("location", entry["location"])
                note = f"; keeping its {len(kept['records'])} hosts from the inventory cache"
            else:
                note = "; its hosts are missing from this inventory"
            problems.append(f"{entry['provider']} in {entry['region']}: {entry['error']}{note}")
        if self.get_option("fail_on_errors"):
            raise AnsibleError("lxcri.cloud.deployments could not list every provider: " + " | ".join(problems))
        for problem in problems:
            self.display.warning(f"lxcri.cloud.deployments: {problem}")

    def _populate(self, results, sources, settings):
        inventory = self.inventory
        # Record values go straight to the InventoryData under ansible-core's wrapper: the wrapper only tags each
        # value with this file as its origin, which costs more than the rest of a host together (thousands of
        # hosts). Trust is removed by InventoryData itself either way: no value from a cloud is ever a template.
        data = getattr(inventory, "__wrapped__", inventory)
        prefix = self.get_option("hostvar_prefix") or ""
        hostnames = settings["hostnames"]
        filters = settings["filters"]
        strict = self.get_option("strict")
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        constructed = bool(compose or groups or keyed_groups)
        made, seen = set(), set()

        def group(name):
            name = self._sanitize_group_name(name)
            if name not in made:
                inventory.add_group(name)
                made.add(name)
            return name

        for provider in settings["providers"]:  # in the order given, so that --graph shows them that way
            group(f"provider_{provider}")
        for provider, region in sources:
            entry = results.get(source_key(provider, region)) or {}
            location = entry.get("location") or region
            for rec in sorted(entry.get("records") or [], key=lambda r: (r.get("name") or "", r.get("id") or "")):
                if not matches(rec, filters):
                    continue
                host = f"{provider}_{location}_{rec['name'] or rec['id']}"
                if host in seen:  # two resources with one name (say a VM member and a service): keep both
                    host = f"{host}_{rec['id']}"
                seen.add(host)
                inventory.add_host(host, group=group(f"provider_{provider}"))
                inventory.add_child(group(f"kind_{rec['kind']}"), host)
                if rec.get("deployment"):
                    inventory.add_child(group(f"deployment_{rec['deployment']}"), host)
                hostvars = {prefix + field: value for field, value in rec.items()}
                address = next((rec[field] for field in hostnames if rec.get(field)), None)
                if address:
                    hostvars["ansible_host"] = address
                for name, value in hostvars.items():
                    data.set_variable(host, name, value)
                if constructed:
                    self._set_composite_vars(compose, hostvars, host, strict=strict)
                    self._add_host_to_composed_groups(groups, hostvars, host, strict=strict)
                    self._add_host_to_keyed_groups(keyed_groups, hostvars, host, strict=strict)


def _can_fork():
    """True when listings can run in forked children: a platform with fork, and no other thread in this process."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def _one_line(text):
    """An error message on one line (some SDKs put code and message on lines of their own)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or text


def _plain(value):
    """The value with plain str, dict and list in place of the tagged ones of the inventory file."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


def _as_list(value):
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [item for item in value if item not in (None, "")]
    return [value]
