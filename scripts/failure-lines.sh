#!/usr/bin/env bash
# The lines of an Ansible/pytest log that say why it failed, with a little context before
# each; printed last by scripts/test.sh and scripts/chaos-suite.sh, where a CI page's tail
# shows them.   scripts/failure-lines.sh LOG
set -uo pipefail
grep -n -E -B3 'fatal: |FAILED!|FAILED |failed: \[|Error|ERROR|Traceback|AssertionError' "$1" \
  | cut -c1-2000 | tail -n 60
