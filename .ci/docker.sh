# shellcheck shell=bash
# Docker engine for the container tests; sourced by .ci/run:
#   source .ci/docker.sh; ci_docker_setup; trap ci_docker_teardown EXIT
# ci_docker_setup installs docker.io and debootstrap when missing (apt), starts dockerd when no
# engine answers (remembering the PID of the one it started), and exports
# ARLARENA_REQUIRE_DOCKER=1 so "Docker not available" fails the Docker tests instead of
# skipping them. ci_docker_teardown stops only the dockerd this script started, by its PID.

# The PID of the dockerd *this shell* started. Never taken from (or exported to) the
# environment: a child that sources this file and calls ci_docker_teardown (a test does) must not
# stop the engine its parent started.
ARLARENA_CI_DOCKERD_PID=""
ARLARENA_CI_DOCKERD_LOG="${ARLARENA_CI_DOCKERD_LOG:-/tmp/arlarena-ci-dockerd.log}"

_ci_docker_log() { echo "[ci docker] $*"; }

# Debian's client first: a newer docker client earlier in PATH may want buildx (docs/containers.md)
_ci_docker_cli() {
  if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker; fi
}

_ci_docker_install() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    _ci_docker_log "no apt-get: cannot install ${missing[*]}"
    return 1
  fi
  _ci_docker_log "installing ${missing[*]} (apt)"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

_ci_docker_ready() {
  local cli
  cli="$(_ci_docker_cli)" || return 1
  [ -n "$cli" ] && "$cli" info >/dev/null 2>&1
}

ci_docker_setup() {
  _ci_docker_install || return 1
  if _ci_docker_ready; then
    _ci_docker_log "a Docker engine already runs; using it"
  else
    _ci_docker_log "starting dockerd (log: $ARLARENA_CI_DOCKERD_LOG)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo dockerd >"$ARLARENA_CI_DOCKERD_LOG" 2>&1 &
    ARLARENA_CI_DOCKERD_PID=$!
    local i
    for i in $(seq 1 120); do
      _ci_docker_ready && break
      if ! kill -0 "$ARLARENA_CI_DOCKERD_PID" 2>/dev/null; then
        _ci_docker_log "dockerd exited; last log lines:"; tail -n 20 "$ARLARENA_CI_DOCKERD_LOG"; return 1
      fi
      sleep 0.5
    done
    _ci_docker_ready || { _ci_docker_log "dockerd not ready after 60 s"; tail -n 20 "$ARLARENA_CI_DOCKERD_LOG"; return 1; }
    _ci_docker_log "dockerd ready (pid $ARLARENA_CI_DOCKERD_PID)"
  fi
  export ARLARENA_REQUIRE_DOCKER=1
}

ci_docker_teardown() {
  [ -z "${ARLARENA_CI_DOCKERD_PID:-}" ] && return 0
  local pid="$ARLARENA_CI_DOCKERD_PID" i
  _ci_docker_log "stopping the dockerd we started (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  ARLARENA_CI_DOCKERD_PID=""
  return 0
}
