#!/usr/bin/env bash
# The lxcri.cloud.deployments inventory against the sandbox: exact hosts, hostvars and groups, keyed groups on
# tags, a cache hit that makes no API call, every host under 30 % throttling, and a provider that stops answering.
set -euo pipefail
# ansible-test copies integration_config.yml (written by scripts/integration) two levels up from here.
config=$(cd ../.. && pwd)/integration_config.yml
[ -f "$config" ] || { echo "runme.sh: $config is missing: run through scripts/integration" >&2; exit 1; }
args=("$@" -e "@$config")
export ANSIBLE_ROLES_PATH=..  # setup_sandbox

out=$(mktemp -d "${OUTPUT_DIR:-${TMPDIR:-/tmp}}/inventory.XXXXXX")
run_id="inv$(date +%s)$$"
python=$(command -v python3 || command -v python)
conf() { "$python" -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if isinstance(v, str) else " ".join(v))' "$config" "$1"; }
sandbox=$(conf lxcri_sandbox)
providers=$(conf lxcri_test_providers)
play() { ansible-playbook -i "${INVENTORY_PATH:-localhost,}" "${args[@]}" -e "run_id=$run_id" -e "out_dir=$out" "$@"; }
inventory() {  # inventory FILE NAME [OPTION...]: NAME.json and NAME.err in $out
  ansible-inventory -i "$out/$1" --list --output "$out/$2.json" "${@:3}" 2>"$out/$2.err" || { cat "$out/$2.err" >&2; return 1; }
}

cleanup() {
  status=$?
  play teardown.yml >"$out/teardown.log" 2>&1 || { echo "teardown failed:" >&2; cat "$out/teardown.log" >&2; status=1; }
  rm -rf "$out"
  exit $status
}
trap cleanup EXIT

play setup.yml

# Cold: everything is listed (and the cache is written).
inventory main.deployments.yml cold --flush-cache

# Cached: the same inventory, and not one request to any provider. The sandbox is shared and counts everyone's
# requests, so a count that moved is measured again (up to 5 times); the offline run below is the hard proof.
for attempt in 1 2 3 4 5; do
  "$sandbox" requests >"$out/requests-before.json"
  inventory main.deployments.yml cached
  "$sandbox" requests >"$out/requests-after.json"
  "$python" -c '
import json, sys
before, after = (json.load(open(path)) for path in sys.argv[1:3])
sys.exit(any(before.get(p) != after.get(p) for p in sys.argv[3:]))' "$out/requests-before.json" "$out/requests-after.json" $providers && break
  echo "cached run $attempt: the request counts moved (someone else's requests?), measuring again" >&2
done
# The same cache with every endpoint unreachable (the cache key is the file's path): not a call is needed.
cp "$out/main.deployments.yml" "$out/main.deployments.yml.orig"
cp "$out/offline.deployments.yml" "$out/main.deployments.yml"
inventory main.deployments.yml offline
cp "$out/main.deployments.yml.orig" "$out/main.deployments.yml"

# Prefix and address preference; no filter at all.
inventory prefixed.deployments.yml prefixed
inventory everything.deployments.yml everything

# 30 % of the calls throttled on every provider: every host is still there. (Seed 4 throttles the first two
# calls that each provider sees, so that even a short listing meets throttling.)
for provider in $providers; do "$sandbox" faults "$provider" --throttle-rate 0.3 --seed 4 >/dev/null; done
inventory main.deployments.yml throttled --flush-cache
for provider in $providers; do "$sandbox" faults "$provider" >"$out/faults-$provider.json"; "$sandbox" faults "$provider" --reset >/dev/null; done

# A provider that stops answering: a warning naming it, its hosts kept from the cache; fatal with fail_on_errors.
cp "$out/good.deployments.yml" "$out/failing.deployments.yml"
inventory failing.deployments.yml failing-good --flush-cache
cp "$out/broken.deployments.yml" "$out/failing.deployments.yml"
inventory failing.deployments.yml failing-broken --flush-cache
# fail_on_errors fails the source; ANSIBLE_INVENTORY_UNPARSED_FAILED makes that stop ansible-inventory.
if ANSIBLE_INVENTORY_UNPARSED_FAILED=true ansible-inventory -i "$out/fatal.deployments.yml" --list \
    --output "$out/fatal.json" 2>"$out/fatal.err"; then
  echo "fail_on_errors: ansible-inventory succeeded" >&2; exit 1
fi

"$python" check_inventory.py "$out" $providers
