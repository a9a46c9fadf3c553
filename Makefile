# The two commands of the README:
#   make demo  - bring up the 7-machine simulated cluster and deploy 1P1D on it
#   make test  - lint, unit/golden/simulator/proxy tests and the Molecule scenarios
SHELL := /bin/bash
VENV := .venv/bin
SIM_INVENTORY := inventories/sim_1p1d/hosts.yml
export ANSIBLE_FORCE_COLOR ?= 0
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: bootstrap demo sim-up sim-down lint unit molecule test

bootstrap:
	./scripts/bootstrap.sh

sim-up: bootstrap
	$(VENV)/python sim/simctl up -i $(SIM_INVENTORY)

sim-down: bootstrap
	$(VENV)/python sim/simctl down

demo: sim-up
	$(VENV)/ansible-playbook playbooks/deploy_1p1d.yml -i $(SIM_INVENTORY)

lint: bootstrap
	$(VENV)/yamllint --strict .
	$(VENV)/ansible-lint
	./scripts/sanity.sh

unit: bootstrap
	$(VENV)/pytest

molecule: bootstrap
	./scripts/molecule.sh

test: lint unit molecule
