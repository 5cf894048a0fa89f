#!/usr/bin/env bash
# The Vagrantfile, brought up with Vagrant's docker provider on the lab's image: the
# VirtualBox path checked without VirtualBox.  Usage: scripts/vagrant-docker.sh up|down|test
#   up    validate the Vagrantfile, build the image, `vagrant up` all machines
#   down  destroy them and their network
#   test  up with the Vagrantfile's Ansible provisioner (site.yml once, after the last
#         machine), verify, status, down.  The roles' second run (changed=0) is checked
#         once, on the lab (make idempotence), not again on these 8 machines.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export VAGRANT_DEFAULT_PROVIDER=docker
export PGCHAOS_NETWORK=${PGCHAOS_NETWORK:-10.80.0}
export PGCHAOS_DOCKER_IMAGE=${PGCHAOS_DOCKER_IMAGE:-pgchaos-vagrant:bookworm}
export PGCHAOS_DOCKER_PREFIX=${PGCHAOS_DOCKER_PREFIX:-vagrant-pgchaos-}
NETWORK=pgchaos-vagrant
INVENTORY=inventory/vagrant-docker/hosts.yml
DOCKER=${DOCKER:-docker}

log() { printf '[vagrant-docker] %s\n' "$*" >&2; }

# Debian's vagrant, without the recommended libvirt/qemu stack (about 15 MB, 53 packages).
ensure_vagrant() {
  command -v vagrant >/dev/null && return
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    log "installing vagrant"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends vagrant >/dev/null
  else
    log "please install vagrant"; exit 1
  fi
}

# Vagrant's public insecure key, as the Debian package ships it.
insecure_key() {
  local key
  key=$(find /usr/share/rubygems-integration /usr/share/vagrant /opt/vagrant -path '*/keys/vagrant.pub' \
        2>/dev/null | head -n1 || true)
  [ -n "$key" ] || { log "Vagrant's keys/vagrant.pub not found: is vagrant installed?"; exit 1; }
  printf '%s' "$key"
}

build_image() {
  scripts/lab.sh image
  local ctx; ctx=$(mktemp -d)
  cp scripts/vagrant-image/Dockerfile "$ctx/"
  cp "$(insecure_key)" "$ctx/vagrant.pub"
  $DOCKER build -q -t "$PGCHAOS_DOCKER_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

validate() {
  vagrant validate --ignore-provider >/dev/null
  # The docker provider too, and a second balancer.
  PGCHAOS_LB=2 vagrant validate >/dev/null
  log "Vagrantfile valid"
}

up() {
  validate
  build_image
  # Vagrant attaches the machines to an existing network that holds their addresses.
  if ! $DOCKER network inspect "$NETWORK" >/dev/null 2>&1; then
    $DOCKER network create --subnet "$PGCHAOS_NETWORK.0/24" "$NETWORK" >/dev/null
  fi
  # Machines made afresh have new host keys.
  rm -f .vagrant/known_hosts
  vagrant up "$@"
}

down() {
  vagrant destroy -f >/dev/null 2>&1 || true
  # Containers a lost .vagrant/ no longer knows about.
  local stale
  stale=$($DOCKER ps -aq --filter name="^${PGCHAOS_DOCKER_PREFIX}" || true)
  [ -z "$stale" ] || $DOCKER rm -f $stale >/dev/null
  $DOCKER network rm "$NETWORK" >/dev/null 2>&1 || true
  rm -f .vagrant/known_hosts
  log "machines removed"
}

test_all() {
  down
  trap down EXIT
  local started=$SECONDS
  # The provisioner runs site.yml from the last machine; one at a time, so that the others
  # are up by then (the docker provider would start them all at once).
  PGCHAOS_PROVISION=1 PGCHAOS_INVENTORY="$INVENTORY" up --no-parallel
  log "vagrant up with site.yml: $((SECONDS - started)) s"
  vagrant ssh etcd1 -c 'systemctl is-system-running --wait; hostname; ip -4 -o addr show eth1'
  # A second run changes nothing (every host's PLAY RECAP changed=0 failed=0).
  # The single-HAProxy set-up (no VIP) on its real endpoints; the lab has two balancers and the VIP.
  ansible-playbook -i "$INVENTORY" playbooks/verify.yml
  ansible-playbook -i "$INVENTORY" playbooks/status.yml
  log "passed in $((SECONDS - started)) s"
}

ensure_vagrant
case "${1:-}" in
  up) up "${@:2}" ;;
  down) down ;;
  test) test_all ;;
  validate) validate ;;
  *) echo "usage: $0 up|down|test|validate" >&2; exit 2 ;;
esac
