# shellcheck shell=bash
# Shared helpers for dev/cluster.sh, dev/prometheus.sh and dev/backfill.sh (sourced, not run).
# Processes are tracked by pid files only; a pid is trusted only while /proc/<pid>/cmdline still
# names the binary we started, so a recycled pid is never signalled.

# shellcheck disable=SC2034  # used by the scripts that source this file
DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${AUTOLOOP_STATE:-$HOME/.cache/autoloop/state}"
LOG_DIR="${STATE}/logs"
PID_DIR="${STATE}/pids"
PORTS_FILE="${STATE}/ports.env"

log() { printf '[%s %s] %s\n' "$(basename "$0" .sh)" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# free_ports N: print N distinct currently-free TCP ports on 127.0.0.1, one per line.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

port_is_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
# Servers (Go, Prometheus, prometheus_client) bind with SO_REUSEADDR: a port that only has
# TIME_WAIT connections left is free for them, so test the same way.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# ports_get KEY: value of KEY in ports.env, or empty.
ports_get() {
  [[ -f "${PORTS_FILE}" ]] || return 0
  awk -F= -v k="$1" '$1==k {print $2}' "${PORTS_FILE}" | tail -n1
}

# ports_set KEY VALUE: write or replace KEY in ports.env.
ports_set() {
  mkdir -p "${STATE}"
  touch "${PORTS_FILE}"
  local tmp="${PORTS_FILE}.tmp.$$"
  awk -F= -v k="$1" '$1!=k' "${PORTS_FILE}" >"${tmp}"
  echo "$1=$2" >>"${tmp}"
  mv "${tmp}" "${PORTS_FILE}"
}

# ensure_port KEY: keep the recorded port if it is still ours or free, otherwise pick a new one.
# Pass "busy-ok" as $2 when the owning process is known to be running.
ensure_port() {
  local key="$1" mode="${2:-}" cur
  cur="$(ports_get "${key}")"
  if [[ -n "${cur}" ]] && { [[ "${mode}" == busy-ok ]] || port_is_free "${cur}"; }; then
    echo "${cur}"
    return 0
  fi
  cur="$(free_ports 1)"
  ports_set "${key}" "${cur}"
  echo "${cur}"
}

# pid_alive NAME BINARY: true if the pid file for NAME points to a live process running BINARY.
pid_alive() {
  local name="$1" bin="$2" pid
  [[ -f "${PID_DIR}/${name}.pid" ]] || return 1
  pid="$(cat "${PID_DIR}/${name}.pid")"
  [[ -n "${pid}" && -r "/proc/${pid}/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF -- "${bin}"
}

# start_proc NAME BINARY ARGS...: start detached, log to logs/NAME.log, record the pid.
start_proc() {
  local name="$1"
  shift
  mkdir -p "${LOG_DIR}" "${PID_DIR}"
  {
    echo "=== $(date -Is) starting ${name}: $*"
  } >>"${LOG_DIR}/${name}.log"
  # setsid: own session, so a Ctrl-C in the calling shell does not kill the component.
  setsid nohup "$@" >>"${LOG_DIR}/${name}.log" 2>&1 </dev/null &
  echo $! >"${PID_DIR}/${name}.pid"
}

# stop_proc NAME BINARY: SIGTERM, wait up to 15 s, then SIGKILL. Idempotent.
stop_proc() {
  local name="$1" bin="$2" pid _
  if pid_alive "${name}" "${bin}"; then
    pid="$(cat "${PID_DIR}/${name}.pid")"
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 150); do
      [[ -d "/proc/${pid}" ]] || break
      sleep 0.1
    done
    if [[ -d "/proc/${pid}" ]]; then
      log "${name} (pid ${pid}) did not stop on SIGTERM; sending SIGKILL"
      kill -KILL "${pid}" 2>/dev/null || true
    fi
    log "stopped ${name} (pid ${pid})"
  fi
  rm -f "${PID_DIR}/${name}.pid"
}

# wait_until TIMEOUT_S DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds.
wait_until() {
  local timeout="$1" what="$2" deadline
  shift 2
  deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) >= deadline)); then
      log "timed out after ${timeout}s waiting for ${what}"
      return 1
    fi
    sleep 0.2
  done
}
