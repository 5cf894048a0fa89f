#!/usr/bin/env bash
# `make test`: every check, in two phases.
#
# 1. What injects no fault runs side by side, each job with its own containers and network:
#    lint and unit tests | Molecule etcd-join and faults | Molecule keepalived | the Vagrantfile |
#    the lab's deploy, idempotence rerun, verify and the lab checks that break nothing.  Most of
#    their time is spent waiting for packages to install inside containers, so on 2 cores they
#    finish together in about the time of the longest alone.
# 2. Then, alone on the machine, because their timings are the measurement: the lab checks
#    that inject faults, every failure scenario, the matrix's slice.
#
# Each job's output goes to runs/test-<time>/<job>.log; a line says when each job ends, and the
# logs are printed when the phase ends.
set -uo pipefail
cd "$(dirname "$0")/.."

logs=runs/test-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$logs"
started=$SECONDS
log() { printf '[test %s +%ds] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - started))" "$*"; }

# Once, before the jobs share them: the control machine's packages, .venv, the lab's image.
make setup || exit 1
scripts/lab.sh image || exit 1

names=()
pids=()
job() {
  local name=$1; shift
  names+=("$name")
  (
    t0=$SECONDS
    "$@" >"$logs/$name.log" 2>&1
    echo "$? $((SECONDS - t0))" >"$logs/$name.rc"
  ) &
  pids+=($!)
  log "started $name: $*"
}

# Waits for the jobs, saying as each one ends; then prints every job's log.  False when any
# job failed.
report() {
  local failed=0 name rc secs pid i
  local running=("${pids[@]}")
  while [ ${#running[@]} -gt 0 ]; do
    wait -n -p pid "${running[@]}"
    for i in "${!pids[@]}"; do [ "${pids[$i]}" = "$pid" ] && name=${names[$i]}; done
    for i in "${!running[@]}"; do [ "${running[$i]}" = "$pid" ] && unset 'running[i]'; done
    running=("${running[@]}")
    read -r rc secs <"$logs/$name.rc" || { rc=1; secs=?; }
    log "$name: $([ "$rc" = 0 ] && echo passed || echo FAILED) in ${secs} s"
    [ "$rc" = 0 ] || failed=1
  done
  # Failed jobs last, then their failure lines: a reader who sees only the end of the output
  # (a CI page folds the middle) still sees what failed and why.
  local passed=() broken=()
  for name in "${names[@]}"; do
    read -r rc _ <"$logs/$name.rc" 2>/dev/null || rc=1
    if [ "$rc" = 0 ]; then passed+=("$name"); else broken+=("$name"); fi
  done
  for name in "${passed[@]}" "${broken[@]}"; do
    echo "::::::::::::::::::::::::::::::::: $name ($logs/$name.log) :::::::::::::::::::::::::::::::::"
    cat "$logs/$name.log"
  done
  for name in "${broken[@]}"; do
    echo "::::::::::::::::::::::::::::::::: $name FAILED: its failure lines :::::::::::::::::::::::::::::::::"
    scripts/failure-lines.sh "$logs/$name.log"
  done
  names=(); pids=()
  return "$failed"
}

log "phase 1: checks that inject no fault, side by side (logs in $logs)"
job lint-unit make lint unit
job molecule-etcd-faults make molecule MOLECULE_EXCLUDE="cluster keepalived"
job molecule-keepalived make molecule MOLECULE_EXCLUDE="cluster etcd-join faults"
job vagrant make vagrant
job lab make deploy idempotence verify lab-checks LAB_CHECKS="not chaos"
report || { log "phase 1 failed: phase 2 (faults on the lab) not run"; exit 1; }

log "phase 2: faults on the lab, alone"
# The lab was deployed in phase 1: the targets below use it as it is (PGCHAOS_DEPLOYED).
# Every scenario's expectations are checked as in `make chaos`, with a shorter steady load
# before the fault and after recovery (4 s and 3 s instead of 8 s and 5 s): those seconds
# frame a measurement's plots and change no verdict, and over the suite they come to
# three minutes of the CI's hour.
export CHAOS_SUITE_VARS="chaos_baseline_seconds=4 chaos_tail_seconds=3"
make lab-checks chaos matrix-ci LAB_CHECKS=chaos PGCHAOS_DEPLOYED=1 2>&1 | tee "$logs/lab-faults.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || { log "phase 2 failed"; exit 1; }
log "all checks passed in $((SECONDS - started)) s"
