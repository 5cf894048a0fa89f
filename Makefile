# pgchaos: short commands.  `make demo` shows the cluster; `make test` proves it.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help setup lab lab-down deploy status demo demo-scenario lint unit molecule vagrant lab-checks chaos chaos-reset test bench-load clean

help:
	@echo "make demo      set up, start the lab, deploy the cluster, show its state"
	@echo "make test      lint, unit tests, Molecule, the Vagrantfile, lab checks, every failure scenario"
	@echo "make chaos     every failure scenario on the lab, one combined report"
	@echo "make setup | lab | deploy | status | lab-down | lint | unit | molecule | vagrant | lab-checks | chaos-reset | bench-load"

setup:
	scripts/setup.sh

lab: setup
	scripts/lab.sh up

lab-down:
	scripts/lab.sh down

deploy: lab
	ansible-playbook site.yml

status:
	ansible-playbook playbooks/status.yml

demo: deploy status demo-scenario

# The seed's first experiment: the leader's node lost under load, measured and reported.
demo-scenario:
	ansible-playbook playbooks/chaos-patroni-leader.yml -e chaos_method=node
	@echo "report: $$(ls -d $(CURDIR)/runs/patroni-leader-node-* | tail -n 1)/report.html"

# All scenarios into runs/suite-<time>/, then one table: runs/suite-<time>/combined/index.html.
chaos: deploy
	@ts=$$(date -u +%Y%m%dT%H%M%SZ); dir=runs/suite-$$ts; mkdir -p $$dir; \
	ansible-playbook playbooks/chaos-all.yml -e chaos_runs_dir=$(CURDIR)/$$dir; rc=$$?; \
	pgchaos combine $$dir/combined --runs-dir $$dir; ln -sfn suite-$$ts runs/latest-suite; \
	echo "combined report: $(CURDIR)/$$dir/combined/index.html"; exit $$rc

chaos-reset:
	ansible-playbook playbooks/chaos-reset.yml

lint: setup
	yamllint -s .
	ansible-lint --profile production
	ruff check .
	ruff format --check .

unit: setup
	pytest

molecule: setup
	scripts/lab.sh image
	molecule test --all

# The Vagrantfile: validated, brought up with Vagrant's docker provider, site.yml twice.
vagrant: setup
	scripts/vagrant-docker.sh test

# On the freshly deployed lab: the example inventory's preflight, and site.yml --check.
lab-checks: deploy
	pytest tests/lab

test: lint unit molecule vagrant lab-checks chaos

bench-load: setup
	$(BIN)/python scripts/bench_load.py

clean: lab-down
	rm -rf $(VENV) runs
