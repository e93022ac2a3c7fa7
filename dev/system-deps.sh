#!/usr/bin/env bash
# The Debian packages the dev tier needs, installed only when missing (`make test`, `make demo` and
# .ci/run call this; a machine that has them all never needs root).
#
#   dev/system-deps.sh           prometheus (Debian's server, run by dev/prometheus.sh as our own
#                                process), openssl (cluster PKI), curl (health probes), make
#   dev/system-deps.sh --venv    python3-venv, when `python3 -m venv` cannot work (no ensurepip)
#   dev/system-deps.sh --check   list what is missing; exit 1 if anything is; install nothing
#
# Installing needs root and apt-get. /usr/sbin/policy-rc.d is set to deny while apt-get runs, so
# no package starts a system service (we run our own Prometheus on a free port); an existing
# policy-rc.d is put back afterwards. Not needed here: Go >= 1.26 (dev/build.sh checks for it).
# Env: PROMETHEUS_BIN (default /usr/bin/prometheus, as in dev/prometheus.sh); BASE_PYTHON (the
# interpreter --venv is for, default python3).
set -euo pipefail

say() { printf '[system-deps] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

mode=base
case "${1:-}" in
  "") ;;
  --venv) mode=venv ;;
  --check) mode=check ;;
  -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument: $1 (see: $0 --help)" ;;
esac

# missing PACKAGE... for the mode: Debian package names whose command is not there.
need=()
if [[ ${mode} == venv ]]; then
  py="${BASE_PYTHON:-python3}"
  command -v "${py}" >/dev/null || need+=(python3)
  # `python3 -m venv` needs ensurepip, which Debian ships in python3-venv (python3.X-venv).
  if ! "${py}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    need+=(python3-venv)
    ver="$("${py}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || true)"
    [[ -n "${ver}" ]] && need+=("python${ver}-venv")
  fi
else
  [[ -x "${PROMETHEUS_BIN:-/usr/bin/prometheus}" ]] || need+=(prometheus)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  command -v make >/dev/null || need+=(make)
fi

if [[ ${#need[@]} -eq 0 ]]; then
  [[ ${mode} == venv ]] || say "prometheus, openssl, curl, make: present"
  exit 0
fi
if [[ ${mode} == check ]]; then
  say "missing: ${need[*]}"
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  if [[ ${mode} == venv ]]; then how="sudo bash dev/system-deps.sh --venv"; else how="sudo make system-deps"; fi
  die "missing Debian packages: ${need[*]}. Installing them needs root: run
    ${how}
  (or: sudo apt-get install --no-install-recommends ${need[*]}), then this command again."
fi
command -v apt-get >/dev/null ||
  die "missing: ${need[*]}, and there is no apt-get here (not Debian/Ubuntu): install them by hand"

say "installing Debian packages: ${need[*]} (apt-get, no recommends; no service is started)"
# Never let a package start a system service here: we run our own processes. Deny through
# policy-rc.d while apt-get runs and put back whatever was there before.
policy=/usr/sbin/policy-rc.d
backup=""
if [[ -e ${policy} ]]; then
  backup="$(mktemp)"
  cp -p "${policy}" "${backup}"
fi
restore_policy() {
  if [[ -n "${backup}" ]]; then mv -f "${backup}" "${policy}"; else rm -f "${policy}"; fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# written by autoloop dev/system-deps.sh while apt-get runs\nexit 101\n' >"${policy}"
chmod +x "${policy}"

export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
apt-get update -q
if [[ ${mode} == venv && ${#need[@]} -gt 1 ]]; then
  # python3.X-venv may not exist under that name (e.g. a python3 not from Debian): keep the ones
  # apt knows.
  known=()
  for p in "${need[@]}"; do
    apt-cache show "${p}" >/dev/null 2>&1 && known+=("${p}")
  done
  [[ ${#known[@]} -gt 0 ]] || die "apt knows none of: ${need[*]}"
  need=("${known[@]}")
fi
apt-get install -y -q --no-install-recommends "${need[@]}"
say "installed: ${need[*]}"
if [[ " ${need[*]} " == *" prometheus "* ]]; then
  say "note: Debian enables the prometheus system service for the next boot; the dev tier never uses it" \
    "(\`systemctl disable prometheus\` on a machine with systemd, if you do not want it)"
fi
