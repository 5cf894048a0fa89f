#!/usr/bin/env bash
# The local lab: systemd containers on one Docker network, reached by Ansible over SSH
# exactly as it would reach VMs.  Usage: scripts/lab.sh up|down|status|image
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LAB_DIR=${LAB_DIR:-$ROOT/.lab}
NETWORK=${LAB_NETWORK:-pgchaos-lab}
SUBNET=${LAB_SUBNET:-10.77.0.0/24}
PREFIX=${SUBNET%.*}            # 10.77.0
BASE_IMAGE=pgchaos-base:bookworm
IMAGE=${LAB_IMAGE:-pgchaos-host:bookworm}
# name:last-octet; the inventory (inventory/lab/hosts.yml) uses the same addresses.  pg4 is
# the spare PostgreSQL host, in no group until ops-add-member.yml brings it in with
# inventory/lab-spare: it is started but not deployed.
HOSTS=${LAB_HOSTS:-"etcd1:11 etcd2:12 etcd3:13 pg1:21 pg2:22 pg3:23 pg4:24 lb1:31 lb2:32 backup1:41"}
DOCKER=${DOCKER:-docker}
# Container names are $NAME_PREFIX<host>; the label tells this lab's containers apart.
NAME_PREFIX=${LAB_NAME_PREFIX:-pgchaos-}
LABEL="pgchaos.lab=${NETWORK}"
# Each PostgreSQL host keeps its WAL on a filesystem of its own, small and bounded, so that a
# scenario can fill it (chaos-wal-full.yml) without touching the disk the host machine runs
# on: an ext4 image, loop-mounted here and bind-mounted into the container at WAL_MOUNT.
# Outside the checkout, like the network and the containers: whichever clone runs `down`
# removes it.
WAL_DISKS=${LAB_WAL_DISKS:-/var/lib/pgchaos-lab/$NETWORK/wal}
# More than max_wal_size (1 GB) and wal_keep_size (256 MB) together: a member restored from
# the backup repository keeps the WAL it replays until its first restartpoint, and with
# 1 GiB the lab's new member filled its disk half-way through.
WAL_DISK_SIZE=${LAB_WAL_DISK_SIZE:-2G}
WAL_MOUNT=/var/lib/pgchaos-wal

log() { printf '[lab] %s\n' "$*" >&2; }

# The Debian mirror the control machine already uses (debootstrap's default otherwise).
apt_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
          /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -v security | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//' \
        | awk '{print $1}' | head -n1 || true)
  printf '%s' "$uri"
}

build_image() {
  if ! $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
    local root; root=$(mktemp -d /var/tmp/pgchaos-rootfs.XXXXXX)
    log "debootstrap minbase bookworm into $root"
    # shellcheck disable=SC2046
    debootstrap --variant=minbase bookworm "$root" $(apt_mirror) >"$root.log" 2>&1 \
      || { tail -n 20 "$root.log" >&2; exit 1; }
    tar -C "$root" -c . | $DOCKER import - "$BASE_IMAGE" >/dev/null
    rm -rf "$root" "$root.log"
  fi
  # Rebuilt whenever its recipe or the trusted CA bundle changes.
  local context_hash current_hash
  context_hash=$(cat "$ROOT"/scripts/lab-image/* /etc/ssl/certs/ca-certificates.crt | sha256sum | cut -c1-16)
  current_hash=$($DOCKER image inspect -f '{{index .Config.Labels "pgchaos.context"}}' "$IMAGE" 2>/dev/null || true)
  if [ "$current_hash" != "$context_hash" ]; then
    log "building $IMAGE"
    local ctx; ctx=$(mktemp -d)
    cp "$ROOT"/scripts/lab-image/* "$ctx"/
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/control-ca-bundle.crt"
    $DOCKER build -q --build-arg BASE="$BASE_IMAGE" --label pgchaos.context="$context_hash" \
      -t "$IMAGE" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
}

ensure_network() {
  local current
  current=$($DOCKER network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NETWORK" 2>/dev/null || true)
  if [ -n "$current" ] && [ "$current" != "$SUBNET" ]; then
    log "network $NETWORK has subnet $current, not $SUBNET: recreating it"
    remove_containers
    $DOCKER network rm "$NETWORK" >/dev/null
    current=""
  fi
  if [ -z "$current" ]; then
    $DOCKER network create --subnet "$SUBNET" --label "$LABEL" "$NETWORK" >/dev/null
  fi
}

ensure_key() {
  mkdir -p "$LAB_DIR/ssh"
  chmod 0700 "$LAB_DIR" "$LAB_DIR/ssh"
  [ -f "$LAB_DIR/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C pgchaos-lab -f "$LAB_DIR/ssh/id_ed25519"
}

# The image is sparse: it takes on the host only what PostgreSQL writes into it.
ensure_wal_disk() {
  local name=$1 image="$WAL_DISKS/$1.img" mnt="$WAL_DISKS/$1"
  mkdir -p "$mnt"
  if [ ! -f "$image" ]; then
    # Made aside and renamed: a failed mkfs leaves no unformatted image to mount next time.
    rm -f "$image.new"
    truncate -s "$WAL_DISK_SIZE" "$image.new"
    mkfs.ext4 -q -F -L "wal-$name" "$image.new"
    mv "$image.new" "$image"
  fi
  mountpoint -q "$mnt" || mount -o loop "$image" "$mnt"
}

# Only what ensure_wal_disk made, host by host: WAL_DISKS may be a directory with other
# things in it.
remove_wal_disks() {
  local entry name
  [ -d "$WAL_DISKS" ] || return 0
  for entry in $HOSTS; do
    name=${entry%%:*}
    case "$name" in pg*) ;; *) continue ;; esac
    if mountpoint -q "$WAL_DISKS/$name"; then umount "$WAL_DISKS/$name"; fi
    rm -f "$WAL_DISKS/$name.img" "$WAL_DISKS/$name.img.new"
    [ ! -d "$WAL_DISKS/$name" ] || rmdir "$WAL_DISKS/$name"
  done
  rmdir "$WAL_DISKS" 2>/dev/null || true
}

start_host() {
  local name=$1 ip=$2 cname="$NAME_PREFIX$1" state volumes=()
  case "$name" in
    pg*) ensure_wal_disk "$name"; volumes=(-v "$WAL_DISKS/$name:$WAL_MOUNT") ;;
  esac
  state=$($DOCKER inspect -f '{{.State.Status}}' "$cname" 2>/dev/null || true)
  case "$state" in
    running) return 0 ;;
    "") ;;
    *) log "starting stopped $cname"; $DOCKER start "$cname" >/dev/null; return 0 ;;
  esac
  log "creating $cname ($ip)"
  $DOCKER run -d --name "$cname" --hostname "$name" --label "$LABEL" \
    --label "pgchaos.checkout=$(checkout_id)" \
    --network "$NETWORK" --ip "$ip" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns=private --tmpfs /run --tmpfs /run/lock --stop-signal SIGRTMIN+3 \
    "${volumes[@]}" "$IMAGE" >/dev/null
  # A new container has new host keys: forget the old ones for its address.
  ssh-keygen -q -f "$LAB_DIR/ssh/known_hosts" -R "$ip" >/dev/null 2>&1 || true
}

# Which checkout made a container: a lab made by another clone (same names and addresses)
# has that clone's host keys and passwords, which this one cannot deploy over.
checkout_id() {
  [ -s "$LAB_DIR/checkout-id" ] || cat /proc/sys/kernel/random/uuid > "$LAB_DIR/checkout-id"
  cat "$LAB_DIR/checkout-id"
}

# Idempotent: the lab's key replaces whatever the host had.
authorize_key() {
  $DOCKER exec -i "$1" sh -c 'install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys' \
    < "$LAB_DIR/ssh/id_ed25519.pub"
}

# The fault modules refuse hosts without this marker: lab hosts are failure targets by design.
mark_chaos_target() {
  $DOCKER exec "$1" sh -c 'install -d -m 0755 /etc/pgchaos &&
    echo "pgchaos lab host: failure scenarios may run here" > /etc/pgchaos/chaos-target'
}

wait_ssh() {
  local ip said deadline=$((SECONDS + 60))
  for ip in "$@"; do
    until said=$(ssh -q -i "$LAB_DIR/ssh/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 \
          -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$LAB_DIR/ssh/known_hosts" \
          "root@$ip" true 2>&1); do
      [ $SECONDS -lt $deadline ] || { log "no SSH on $ip after 60 s: ${said:-no answer}"; exit 1; }
      sleep 0.5
    done
  done
}

# The WAL disks go with the containers: a new cluster must not find an old one's WAL.
remove_containers() {
  local ids
  ids=$($DOCKER ps -aq --filter label="$LABEL")
  [ -z "$ids" ] || $DOCKER rm -f $ids >/dev/null
  remove_wal_disks
}

up() {
  build_image
  # A deployed lab whose generated passwords are gone (a fresh clone, a deleted .lab/) cannot
  # be redeployed: Patroni would get passwords its cluster never had.  Start it afresh.
  if [ ! -d "$LAB_DIR/secrets" ] && [ -n "$($DOCKER ps -aq --filter label="$LABEL")" ] \
     && $DOCKER exec "${NAME_PREFIX}pg1" test -d /etc/patroni 2>/dev/null; then
    log "lab was deployed with secrets this checkout does not have: recreating it"
    remove_containers
  fi
  ensure_network
  ensure_key
  local owner
  owner=$($DOCKER ps -a --filter label="$LABEL" --format '{{.Label "pgchaos.checkout"}}' | sort -u)
  if [ -n "$($DOCKER ps -aq --filter label="$LABEL")" ] && [ "$owner" != "$(checkout_id)" ]; then
    log "lab's containers were made by another checkout (another clone or LAB_DIR): recreating them"
    remove_containers
    rm -f "$LAB_DIR/ssh/known_hosts"
  fi
  local entry ips=() cname
  for entry in $HOSTS; do
    cname="$NAME_PREFIX${entry%%:*}"
    case "$entry" in
      pg*)
        if $DOCKER inspect "$cname" >/dev/null 2>&1 \
           && ! $DOCKER inspect -f '{{range .Mounts}}{{.Destination}} {{end}}' "$cname" | grep -qw "$WAL_MOUNT"; then
          log "$cname has no WAL disk (made by an older lab.sh): recreating the lab"
          remove_containers
          rm -f "$LAB_DIR/ssh/known_hosts"
        fi ;;
    esac
  done
  for entry in $HOSTS; do
    start_host "${entry%%:*}" "$PREFIX.${entry##*:}"
    authorize_key "$NAME_PREFIX${entry%%:*}"
    mark_chaos_target "$NAME_PREFIX${entry%%:*}"
    ips+=("$PREFIX.${entry##*:}")
  done
  wait_ssh "${ips[@]}"
  log "lab up: ${#ips[@]} hosts on $NETWORK ($SUBNET)"
}

down() {
  remove_containers
  $DOCKER network rm "$NETWORK" >/dev/null 2>&1 || true
  rm -f "$LAB_DIR/client.env" "$LAB_DIR/ssh/known_hosts"
  log "lab removed"
}

status() {
  $DOCKER ps -a --filter label="$LABEL" --format 'table {{.Names}}\t{{.Status}}'
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  image) build_image ;;
  *) echo "usage: $0 up|down|status|image" >&2; exit 2 ;;
esac
