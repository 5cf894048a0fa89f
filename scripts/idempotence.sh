#!/usr/bin/env bash
# A playbook run again on a deployed inventory must change nothing.  Runs ansible-playbook with
# the given arguments (default: site.yml on the lab) and fails unless it succeeds and every host
# in its PLAY RECAP says changed=0 unreachable=0 failed=0.
#   scripts/idempotence.sh                                   # `make idempotence`
#   scripts/idempotence.sh -i inventory/vagrant-docker/hosts.yml site.yml
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- site.yml

log=$(mktemp /tmp/pgchaos-idempotence.XXXXXX)
trap 'rm -f "$log"' EXIT
export ANSIBLE_NOCOLOR=1
ansible-playbook "$@" | tee "$log"

# Recap lines: "<host> : ok=N changed=N unreachable=N failed=N ...", after "PLAY RECAP".
sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
  /^PLAY RECAP/ { recap = 1; next }
  recap && $2 == ":" && $3 ~ /^ok=/ {
    hosts++
    for (i = 3; i <= NF; i++) { split($i, kv, "="); n[kv[1]] = kv[2] + 0 }
    if (n["changed"] || n["unreachable"] || n["failed"]) { bad = bad " " $1 "(" $4 " " $5 " " $6 ")" }
  }
  END {
    if (!hosts) { print "[idempotence] no PLAY RECAP in the output" > "/dev/stderr"; exit 1 }
    if (bad) { print "[idempotence] not idempotent:" bad > "/dev/stderr"; exit 1 }
    printf "[idempotence] %d hosts, changed=0 failed=0 unreachable=0\n", hosts > "/dev/stderr"
  }'
