"""Assertions on the ansible-inventory outputs that runme.sh wrote: python check_inventory.py OUT_DIR PROVIDER..."""
import json
import os
import sys

out, providers = sys.argv[1], sys.argv[2:]
failures = []


def load(name):
    with open(os.path.join(out, name), encoding="utf-8") as handle:
        return json.load(handle)


UNSAFE = "__ansible_unsafe"


def plain(value):
    """ansible-inventory --list marks every string that may not be templated as {"__ansible_unsafe": text}."""
    if isinstance(value, dict):
        if set(value) == {UNSAFE}:
            return value[UNSAFE]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def text(name):
    with open(os.path.join(out, name), encoding="utf-8") as handle:
        return handle.read()


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def groups_of(listing):
    """{group: sorted hosts} of every group that has hosts of its own."""
    return {name: sorted(body["hosts"]) for name, body in listing.items() if name != "_meta" and body.get("hosts")}


def group_name(text_):
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text_)


expected = load("expected.json")
run_id, regions, records = expected["run_id"], expected["regions"], expected["records"]
check(sorted({rec["provider"] for rec in records}) == sorted(providers),
      f"setup: records on {sorted({rec['provider'] for rec in records})}, wanted {sorted(providers)}")
check(len(records) == 3 * len(providers), f"setup: {len(records)} records, wanted {3 * len(providers)}")


def host(rec):
    return f"{rec['provider']}_{regions[rec['provider']]}_{rec['name']}"


def address(rec, order):
    return next((rec[field] for field in order if rec.get(field)), None)


def want_hostvars(rec, prefix="lxcri_", order=("public_ip", "private_ip", "name"), extra=None):
    hostvars = {prefix + key: value for key, value in rec.items()}
    if address(rec, order):
        hostvars["ansible_host"] = address(rec, order)
    hostvars.update(extra or {})
    return hostvars


hosts = {host(rec): rec for rec in records}
want_groups = {f"provider_{p}": sorted(h for h, rec in hosts.items() if rec["provider"] == p) for p in providers}
want_groups["kind_vm"] = sorted(hosts)
for dep in ("inv-web", "inv-db"):
    want_groups[group_name(f"deployment_{dep}")] = sorted(h for h, rec in hosts.items() if rec["deployment"] == dep)
want_groups["tier_web"] = want_groups["web"] = want_groups["deployment_inv_web"]
want_groups["tier_db"] = want_groups["deployment_inv_db"]
want_groups = {name: members for name, members in want_groups.items() if members}


def check_listing(name, listing, want_vars, groups):
    got_hosts = sorted(listing["_meta"]["hostvars"])
    if not check(got_hosts == sorted(want_vars), f"{name}: hosts {got_hosts}, wanted {sorted(want_vars)}"):
        return
    for host_name, want in want_vars.items():
        raw = listing["_meta"]["hostvars"][host_name]
        got = plain(raw)
        tags = raw.get(next((k for k in want if k.endswith("tags")), ""), {})
        check(all(isinstance(v, dict) and set(v) == {UNSAFE} for v in tags.values()),
              f"{name}: the tags of {host_name} are not marked unsafe (cloud data must never be templated): {tags}")
        if got != want:
            diff = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
            failures.append(f"{name}: hostvars of {host_name} differ (got, wanted): {diff}")
    got_groups = groups_of(listing)
    check(got_groups == groups, f"{name}: groups {json.dumps(got_groups, sort_keys=True)}, wanted {json.dumps(groups, sort_keys=True)}")


main_vars = {h: want_hostvars(rec, extra={"member_of": f"{rec['deployment']}@{rec['provider']}"}) for h, rec in hosts.items()}


def warnings(name):
    """The warnings of one ansible-inventory run, but for the one ansible-test's environment causes."""
    lines = [line for line in text(f"{name}.err").splitlines() if "WARNING" in line]
    return [line for line in lines if "running with default collection" not in line]


for name in ("cold", "cached", "offline", "throttled", "prefixed", "everything", "failing-good"):
    check(not warnings(name), f"{name}: warnings: {warnings(name)}")

# 1. Cold: hosts, hostvars and groups exact (filtered to this run, keyed groups on the tag tier).
check_listing("cold", load("cold.json"), main_vars, want_groups)

# 2. Cached: the same, with no request to any provider (counted by the sandbox; the sandbox is shared, so only
# the providers under test count), and the same again with no provider reachable at all.
check_listing("cached", load("cached.json"), main_vars, want_groups)
before, after = load("requests-before.json"), load("requests-after.json")
delta = {p: {op: n - before.get(p, {}).get(op, 0) for op, n in after.get(p, {}).items() if n != before.get(p, {}).get(op, 0)}
         for p in providers}
delta = {p: ops for p, ops in delta.items() if ops}
check(not delta, f"cached: a cache hit made API requests: {delta}")
check_listing("offline", load("offline.json"), main_vars, want_groups)

# 3. Prefix and address preference.
prefixed_vars = {h: want_hostvars(rec, "rec_", ("private_ip", "public_ip", "name")) for h, rec in hosts.items()}
prefixed_groups = {k: v for k, v in want_groups.items() if not k.startswith(("tier_", "web"))}
check_listing("prefixed", load("prefixed.json"), prefixed_vars, prefixed_groups)

# 4. No filter: at least every host of this run, with the same variables.
everything = plain(load("everything.json")["_meta"]["hostvars"])
missing = sorted(set(hosts) - set(everything))
check(not missing, f"everything: hosts missing: {missing}")
for h, rec in hosts.items():
    if h in everything:
        check(everything[h] == want_hostvars(rec), f"everything: hostvars of {h} differ")

# 5. Throttled: every host still there, no warning, and throttling did happen on every provider.
check_listing("throttled", load("throttled.json"), main_vars, want_groups)
for provider in providers:
    injected = load(f"faults-{provider}.json")[provider].get("injected", {}).get("throttle", 0)
    check(injected > 0, f"throttled: no call was throttled on {provider}")

# 6. A provider that stops answering: warned about by name, its hosts kept from the cache.
first = providers[0]
check_listing("failing-good", load("failing-good.json"), {h: want_hostvars(rec) for h, rec in hosts.items()},
              prefixed_groups)
broken_err = text("failing-broken.err")
check(f"lxcri.cloud.deployments: {first} in {regions[first]}:" in broken_err and "keeping its 3 hosts" in broken_err,
      f"failing-broken: no warning naming {first} and the kept hosts: {broken_err}")
check_listing("failing-broken", load("failing-broken.json"), {h: want_hostvars(rec) for h, rec in hosts.items()},
              prefixed_groups)
fatal_err = text("fatal.err")
check(f"could not list every provider: {first} in {regions[first]}:" in " ".join(fatal_err.split()),
      f"fatal: the error does not name {first}: {fatal_err}")

if failures:
    print("\n".join(f"FAIL {failure}" for failure in failures))
    sys.exit(1)
print(f"inventory_deployments: {len(hosts)} hosts on {', '.join(providers)}: all checks passed")
