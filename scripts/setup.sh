#!/usr/bin/env bash
# Prepares the control machine: OS packages (Debian/Ubuntu, when missing), a running Docker
# daemon, and .venv with the pinned tools and the pgchaos package.  Safe to run again.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

need_pkgs=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
[ -x /usr/bin/docker ] || have_cmd dockerd || need_pkgs+=(docker.io)
have_cmd debootstrap || need_pkgs+=(debootstrap)
have_cmd ssh || need_pkgs+=(openssh-client)
have_cmd psql || need_pkgs+=(postgresql-client)
# The load tool's tests and benchmark start a throwaway local server.
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql)
# pgchaos_pooler's tests pause and resume a throwaway PgBouncer in front of that server.
[ -x /usr/sbin/pgbouncer ] || need_pkgs+=(pgbouncer)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# The report's browser test opens report.html in headless Chromium.
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if have_cmd apt-get && [ "$(id -u)" = 0 ]; then
    log "installing ${need_pkgs[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null
    # The package's own pooler (127.0.0.1:6432) is not needed: the tests start their own.
    if [[ " ${need_pkgs[*]} " == *" pgbouncer "* ]] && [ -d /run/systemd/system ]; then
      systemctl disable --now pgbouncer >/dev/null 2>&1 || true
    fi
  else
    log "please install: ${need_pkgs[*]}"; exit 1
  fi
fi

if ! docker info >/dev/null 2>&1; then
  have_cmd dockerd || { log "no Docker daemon and no dockerd to start"; exit 1; }
  log "starting dockerd"
  nohup dockerd >/var/log/pgchaos-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { log "dockerd did not start: see /var/log/pgchaos-dockerd.log"; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.pgchaos-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt -e .
  touch "$stamp"
fi
log "ready: . .venv/bin/activate"
