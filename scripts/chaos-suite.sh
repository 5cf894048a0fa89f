#!/usr/bin/env bash
# Every failure scenario on the deployed cluster, each in its own ansible-playbook process
# (no facts leak from one to the next), carrying on past a failure as long as chaos-reset
# brings the cluster back healthy; then one combined report.  Exits 1 if any scenario
# failed.  `make chaos` runs this.
#
#   scripts/chaos-suite.sh [RUNS_DIR] [-- ansible-playbook options, e.g. -i inventory/mine]
#   CHAOS_SCENARIOS="node switchover" scripts/chaos-suite.sh     (only those, by name)
#   CHAOS_LIST=scripts/ops.txt scripts/chaos-suite.sh             (another list: make ops)
#   CHAOS_SUITE_VARS="chaos_baseline_seconds=5" scripts/chaos-suite.sh  (-e for every scenario)
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${1:-runs/suite-$(date -u +%Y%m%dT%H%M%SZ)}
shift $(( $# > 0 ? 1 : 0 ))
[ "${1:-}" != "--" ] || shift
mkdir -p "$runs"
runs=$(cd "$runs" && pwd)

failed=()
broken=
# scripts/scenarios.txt (or CHAOS_LIST): name, playbook, -e variables; # starts a comment.
while read -r name playbook vars; do
  case "$name" in ''|'#'*) continue ;; esac
  if [ -n "${CHAOS_SCENARIOS:-}" ] && [[ " $CHAOS_SCENARIOS " != *" $name "* ]]; then
    continue
  fi
  echo "=== $(date -u +%H:%M:%S) $name: $playbook $vars"
  extra=(-e "chaos_runs_dir=$runs")
  for v in ${CHAOS_SUITE_VARS:-} $vars; do extra+=(-e "$v"); done
  # stdin from /dev/null: ansible-playbook must not eat the rest of the list.  Each
  # scenario's output is also kept, so its failure can be repeated at the very end.
  ansible-playbook "playbooks/$playbook" "${extra[@]}" "$@" </dev/null 2>&1 | tee "$runs/$name.log"
  if [ "${PIPESTATUS[0]}" != 0 ]; then
    failed+=("$name")
    # A scenario that failed half-way may have left a fault behind: undo it before the next.
    if ! ansible-playbook playbooks/chaos-reset.yml "$@" </dev/null; then
      # Every later scenario would wait for a healthy cluster in vain, one timeout each:
      # stop here, so the suite ends red in minutes and its log ends with the cause.
      echo "=== $(date -u +%H:%M:%S) the cluster is not healthy after $name and chaos-reset: the rest not run"
      broken=$name
      break
    fi
  fi
done < "${CHAOS_LIST:-scripts/scenarios.txt}"

pgchaos combine "$runs/combined" --runs-dir "$runs"
mkdir -p runs && ln -sfn "$runs" runs/latest-suite
echo "combined report: $runs/combined/index.html"
if [ ${#failed[@]} -gt 0 ]; then
  # Last, where a CI log's tail shows it: why each failed scenario failed.
  for name in "${failed[@]}"; do
    echo "::::::::::::::::::::::::::::: $name FAILED: its failure lines ($runs/$name.log) :::::::::::::::::::::::::::::"
    scripts/failure-lines.sh "$runs/$name.log"
  done
  printf 'failed: %s\n' "${failed[@]}"
  [ -z "$broken" ] || echo "not run: every scenario after $broken (the cluster stayed unhealthy)"
  exit 1
fi
