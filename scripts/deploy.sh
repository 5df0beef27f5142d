#!/usr/bin/env bash
# deploy.sh PROVIDER TYPE CONFIG: deploy the portable config CONFIG of kind TYPE (vm) on PROVIDER.
# Example: scripts/deploy.sh gcp vm config/cloud/gcp.yaml
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 PROVIDER TYPE CONFIG   (PROVIDER: aws|azure|gcp|digitalocean|proxmox, TYPE: vm)" >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
provider=$1 kind=$2 config=$3
exec ansible-playbook "$root/playbooks/deploy.yml" -e "provider=$provider" -e "@$config" \
  -e "{\"deployment_kind\": \"$kind\"}"
