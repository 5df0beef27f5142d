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

# Cached: the same inventory, and not one request to any provider.
"$sandbox" requests >"$out/requests-before.json"
inventory main.deployments.yml cached
"$sandbox" requests >"$out/requests-after.json"

# Prefix and address preference; no filter at all.
inventory prefixed.deployments.yml prefixed
inventory everything.deployments.yml everything

# 30 % of the calls throttled on every provider: every host is still there.
for provider in $providers; do "$sandbox" faults "$provider" --throttle-rate 0.3 --seed 11 >/dev/null; done
"$sandbox" requests >"$out/requests-throttle-before.json"
inventory main.deployments.yml throttled --flush-cache
"$sandbox" requests >"$out/requests-throttle-after.json"
for provider in $providers; do "$sandbox" faults "$provider" >"$out/faults-$provider.json"; "$sandbox" faults "$provider" --reset >/dev/null; done

# A provider that stops answering: a warning naming it, its hosts kept from the cache; fatal with fail_on_errors.
cp "$out/good.deployments.yml" "$out/failing.deployments.yml"
inventory failing.deployments.yml failing-good --flush-cache
cp "$out/broken.deployments.yml" "$out/failing.deployments.yml"
inventory failing.deployments.yml failing-broken --flush-cache
# fail_on_errors fails the source; ANSIBLE_INVENTORY_UNPARSED_FAILED makes that stop ansible-inventory.
if ANSIBLE_INVENTORY_UNPARSED_FAILED=true inventory fatal.deployments.yml fatal; then
  echo "fail_on_errors: ansible-inventory succeeded" >&2; exit 1
fi

"$python" check_inventory.py "$out" $providers
