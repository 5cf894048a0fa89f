# pgchaos: short commands.  `make demo` shows the cluster; `make test` proves it.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help setup lab lab-down deploy status demo lint unit molecule test bench-load clean

help:
	@echo "make demo      set up, start the lab, deploy the cluster, show its state"
	@echo "make test      lint, unit and integration tests, Molecule scenarios"
	@echo "make setup | lab | deploy | status | lab-down | lint | unit | molecule | bench-load"

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

demo: deploy status

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

test: lint unit molecule

bench-load: setup
	$(BIN)/python scripts/bench_load.py

clean: lab-down
	rm -rf $(VENV) runs
