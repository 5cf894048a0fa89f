# pgchaos: short commands.  `make demo` shows the cluster; `make test` proves it.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help setup lab lab-down deploy idempotence verify status demo demo-scenario lint unit molecule vagrant lab-checks chaos ops matrix matrix-ci chaos-reset test bench-load clean

# One target at a time, in the order given: the lab's steps all work on one deployed cluster.
.NOTPARALLEL:

help:
	@echo "make demo      set up, start the lab, deploy the cluster, show its state"
	@echo "make test      lint, unit tests, Molecule, the Vagrantfile and the lab's deploy, idempotence, verify"
	@echo "               side by side; then alone on the lab: every failure scenario, the matrix's CI slice"
	@echo "make chaos     every failure scenario on the lab, one combined report"
	@echo "make ops       the planned operations under load, through the poolers and straight on HAProxy"
	@echo "make matrix    scenarios x configuration profiles x 3 runs on the lab, one page and one"
	@echo "               Markdown table (MATRIX_SCENARIOS, MATRIX_PROFILES, MATRIX_REPEAT choose a slice)"
	@echo "make matrix-ci the matrix's small fixed slice: lag-leader-loss under async, once"
	@echo "make setup | lab | deploy | idempotence | verify | status | lab-down | lint | unit | molecule | vagrant"
	@echo "     lab-checks | chaos-reset | bench-load"

setup:
	scripts/setup.sh

lab: setup
	scripts/lab.sh up

lab-down:
	scripts/lab.sh down

# scripts/test.sh deploys in its first phase and passes PGCHAOS_DEPLOYED=1 to the second, whose
# targets then use the lab as it is instead of starting and deploying it again.
ifdef PGCHAOS_DEPLOYED
deploy: ;
else
deploy: lab
	ansible-playbook site.yml
endif

# site.yml again on the deployed lab: every host's PLAY RECAP must say changed=0 failed=0.
idempotence: deploy
	scripts/idempotence.sh site.yml

# The deployed cluster on its real endpoints (playbooks/verify.yml, also molecule/cluster's verify).
verify: deploy
	ansible-playbook playbooks/verify.yml

status:
	ansible-playbook playbooks/status.yml

demo: deploy status demo-scenario

# The seed's first experiment: the leader's node lost under load, measured and reported.
demo-scenario:
	ansible-playbook playbooks/chaos-patroni-leader.yml -e chaos_method=node
	@echo "report: $$(ls -d $(CURDIR)/runs/patroni-leader-node-* | tail -n 1)/report.html"

# Every scenario, each its own ansible-playbook process, into runs/suite-<time>/, then one
# table: runs/suite-<time>/combined/index.html.  Goes on past a failure; fails if any did.
chaos: deploy
	scripts/chaos-suite.sh

# The planned operations under a load through the poolers and, beside, the same with the
# clients straight on HAProxy (scripts/ops.txt): runs/suite-<time>/combined/index.html.
# The pooled switchover, rolling restart and member are also part of `make chaos`.
ops: deploy
	CHAOS_LIST=scripts/ops.txt scripts/chaos-suite.sh

# Scenarios x configuration profiles x repetitions (scripts/matrix.py): each profile applied
# once (playbooks/profile.yml), then each scenario REPEAT times, each its own ansible-playbook;
# the profile `inventory` puts the inventory's configuration back at the end.  MATRIX_SCENARIOS,
# MATRIX_PROFILES and MATRIX_REPEAT choose a slice; MATRIX_RESUME=runs/matrix-<time> carries
# on a matrix that was cut short.  Page: runs/matrix-<time>/index.html.
matrix: deploy
	$(BIN)/python scripts/matrix.py

matrix-ci: deploy
	MATRIX_SCENARIOS="lag-leader-loss" MATRIX_PROFILES="async" MATRIX_REPEAT=1 \
	$(BIN)/python scripts/matrix.py

chaos-reset:
	ansible-playbook playbooks/chaos-reset.yml

lint: setup
	yamllint -s .
	ansible-lint --profile production
	ruff check .
	ruff format --check .

unit: setup
	pytest

# Every scenario but molecule/cluster: its converge (site.yml), idempotence and verify run in
# `make test` on the lab, which is deployed anyway.  `molecule test -s cluster` still works.
MOLECULE_EXCLUDE ?= cluster
molecule: setup
	scripts/lab.sh image
	molecule test --all $(addprefix --exclude ,$(MOLECULE_EXCLUDE))

# The Vagrantfile: validated, brought up with Vagrant's docker provider, site.yml twice.
vagrant: setup
	scripts/vagrant-docker.sh test

# On the freshly deployed lab: the example inventory's preflight, site.yml --check, and (marked
# chaos) the checks that inject faults.  LAB_CHECKS="not chaos" or "chaos" runs one part.
LAB_CHECKS ?=
lab-checks: deploy
	pytest tests/lab $(if $(LAB_CHECKS),-m "$(LAB_CHECKS)")

# scripts/test.sh: first, side by side, lint and unit tests, Molecule, the Vagrantfile and the
# lab's deploy, idempotence, verify and lab checks; then, alone on the lab, the checks that
# inject faults, every failure scenario and the matrix's slice.  The lab is deployed once.
test:
	scripts/test.sh

bench-load: setup
	$(BIN)/python scripts/bench_load.py

clean: lab-down
	rm -rf $(VENV) runs
