#!/usr/bin/env bash
# Build the pinned upstream control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) from the Go module proxy into
# ${AUTOLOOP_CACHE:-$HOME/.cache/autoloop}/bin/<pins>/. A second run is a no-op.
#
# A cold build takes ~15 min on two cores with a warm Go module cache, ~25 min with empty caches
# (kube-apiserver is the longest step). Progress: a line per binary ("[k/N] <binary>", with the
# step's and the total elapsed time) and, while a `go` command runs, a heartbeat line every
# ${AUTOLOOP_BUILD_HEARTBEAT:-30} seconds. `go mod tidy` writes its output to
# $AUTOLOOP_CACHE/build/<pins>/<module>/tidy.log (shown when it fails).
set -euo pipefail

DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=dev/versions.env
source "${DEV_DIR}/versions.env"

CACHE="${AUTOLOOP_CACHE:-$HOME/.cache/autoloop}"
# Bump BUILD_RECIPE when the way binaries are built changes, so cached ones are rebuilt.
BUILD_RECIPE=2
PINS="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_r${BUILD_RECIPE}"
BIN_DIR="${CACHE}/bin/${PINS}"
WORK="${CACHE}/build/${PINS}"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

export GOFLAGS="${GOFLAGS:--p=2}"
export CGO_ENABLED=0
export GOTOOLCHAIN=local
LDFLAGS="-s -w"

HEARTBEAT="${AUTOLOOP_BUILD_HEARTBEAT:-30}"
BUILD_START="$(date +%s)"

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# since EPOCH: elapsed time as 1m05s / 42s.
since() {
  local s=$(($(date +%s) - $1))
  if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "${s}"; fi
}

# The heartbeat: a background loop printing "still running" until stop_heartbeat. Background jobs
# ignore Ctrl-C in a script, so the traps below stop it when the build ends or is interrupted.
HB_PID=""
heartbeat() { # LABEL START
  local label="$1" t0="$2"
  trap 'kill "${HB_SLEEP:-}" 2>/dev/null; exit 0' TERM
  while :; do
    sleep "${HEARTBEAT}" </dev/null >/dev/null 2>&1 &
    HB_SLEEP=$!
    wait "${HB_SLEEP}" || true
    log "${label}: still running ($(since "${t0}") so far, $(since "${BUILD_START}") in all)"
  done
}
stop_heartbeat() {
  [[ -n "${HB_PID}" ]] || return 0
  kill "${HB_PID}" 2>/dev/null || true
  wait "${HB_PID}" 2>/dev/null || true
  HB_PID=""
}
install_traps() {
  trap stop_heartbeat EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
install_traps
# with_heartbeat [--log FILE] LABEL CMD...: run CMD (an external command) in the foreground, its
# stdout and stderr into FILE if given, with a heartbeat on stderr.
with_heartbeat() {
  local out="" label rc=0
  if [[ "$1" == --log ]]; then out="$2"; shift 2; fi
  label="$1"
  shift
  install_traps # traps are reset in ( ) subshells, where most build steps run
  heartbeat "${label}" "$(date +%s)" &
  HB_PID=$!
  if [[ -n "${out}" ]]; then "$@" >"${out}" 2>&1 || rc=$?; else "$@" || rc=$?; fi
  stop_heartbeat
  return "${rc}"
}

# The binaries still to build, in build order, numbered "[k/N]" in the progress lines.
TODO=()
step() { # BINARY: "[k/N] BINARY"
  local i
  for i in "${!TODO[@]}"; do
    [[ "${TODO[$i]}" == "$1" ]] && { printf '[%d/%d] %s' $((i + 1)) "${#TODO[@]}" "$1"; return 0; }
  done
  printf '%s' "$1"
}

have_all() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "${BIN_DIR}/${b}" ]] || return 1; done
}

if [[ "${1:-}" == "--print-bin-dir" ]]; then echo "${BIN_DIR}"; exit 0; fi

if have_all; then
  log "binaries present in ${BIN_DIR}"
  exit 0
fi
# Non-login shells (CI) may not have the toolchain's default location on PATH.
command -v go >/dev/null || PATH="${PATH}:/usr/local/go/bin"
command -v go >/dev/null || { echo "go toolchain not found (need Go >= 1.26)" >&2; exit 1; }
mkdir -p "${BIN_DIR}" "${WORK}"

# k8s.io/kubernetes vX.Y.Z publishes its staging modules as k8s.io/<name> v0.Y.Z.
K8S_STAGING_VERSION="v0.${KUBERNETES_VERSION#v1.}"

build_kubernetes() {
  local need=0 b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "${BIN_DIR}/${b}" ]] || need=1
  done
  [[ ${need} == 1 ]] || return 0
  local mod="${WORK}/kubernetes"
  mkdir -p "${mod}"
  log "kubernetes ${KUBERNETES_VERSION}: preparing the wrapper module in ${mod}"
  (
    cd "${mod}"
    with_heartbeat "kubernetes: go mod download k8s.io/kubernetes@${KUBERNETES_VERSION}" \
      go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" >"${mod}/download.json"
    local gomod
    gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.mod"
    {
      echo "module autoloop.local/k8sbuild"
      echo
      echo "go $(awk '/^go /{print $2; exit}' "${gomod}")"
      echo
      echo "require k8s.io/kubernetes ${KUBERNETES_VERSION}"
      echo
      echo "replace ("
      # Every staging module that k8s.io/kubernetes replaces with ./staging/src/... and requires.
      local m
      while read -r m; do
        if grep -qE "^\s*${m//./\\.} v0\.0\.0$" "${gomod}"; then
          echo "	${m} => ${m} ${K8S_STAGING_VERSION}"
        fi
      done < <(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "${gomod}" | awk '{print $1}')
      echo ")"
    } >go.mod
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    log "kubernetes: go mod tidy (downloads the dependency modules, ~1.3 GiB into an empty module cache)"
    with_heartbeat --log "${mod}/tidy.log" "kubernetes: go mod tidy" go mod tidy -e ||
      { cat "${mod}/tidy.log" >&2; exit 1; }
    # What hack/lib/version.sh stamps into release builds, so `kubectl version` and the
    # apiserver's /version report the pinned release.
    local minor="${KUBERNETES_VERSION#v1.}" date vflags="" pkg
    minor="${minor%%.*}"
    date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' \
      "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.info")"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      vflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
      vflags+=" -X ${pkg}.gitCommit=unknown -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=${date:-1970-01-01T00:00:00Z}"
    done
    local t0
    for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      [[ -x "${BIN_DIR}/${b}" ]] && continue
      t0="$(date +%s)"
      log "$(step "${b}") ${KUBERNETES_VERSION}: go build$([[ ${b} == kube-apiserver ]] && echo ' (the longest step: 6-12 min cold)')"
      with_heartbeat "$(step "${b}")" \
        go build -trimpath -ldflags="${LDFLAGS}${vflags}" -o "${BIN_DIR}/${b}.tmp" "k8s.io/kubernetes/cmd/${b}"
      mv "${BIN_DIR}/${b}.tmp" "${BIN_DIR}/${b}"
      log "$(step "${b}") built in $(since "${t0}") ($(since "${BUILD_START}") in all)"
    done
  )
}

build_etcd() {
  [[ -x "${BIN_DIR}/etcd" ]] && return 0
  local mod="${WORK}/etcd" t0
  t0="$(date +%s)"
  mkdir -p "${mod}"
  log "$(step etcd) ${ETCD_VERSION}: preparing the wrapper module; go mod tidy"
  (
    cd "${mod}"
    # The server module's own go.mod replaces its sibling modules with ../ paths, so it cannot be
    # `go install`ed; pin the sibling modules of the same release instead.
    cat >go.mod <<MOD
module autoloop.local/etcdbuild

go 1.26.0

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}

replace (
	go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 ${ETCD_VERSION}
)
MOD
    cat >tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    with_heartbeat --log "${mod}/tidy.log" "$(step etcd): go mod tidy" go mod tidy -e ||
      { cat "${mod}/tidy.log" >&2; exit 1; }
    log "$(step etcd): go build"
    with_heartbeat "$(step etcd)" \
      go build -trimpath -ldflags="${LDFLAGS}" -o "${BIN_DIR}/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "${BIN_DIR}/etcd.tmp" "${BIN_DIR}/etcd"
    log "$(step etcd) built in $(since "${t0}") ($(since "${BUILD_START}") in all)"
  )
}

build_kwok() {
  [[ -x "${BIN_DIR}/kwok" ]] && return 0
  local tmpbin="${WORK}/kwok-bin" t0
  t0="$(date +%s)"
  log "$(step kwok) ${KWOK_VERSION}: go install (downloads its modules, then builds)"
  mkdir -p "${tmpbin}"
  with_heartbeat "$(step kwok)" \
    env GOBIN="${tmpbin}" go install -trimpath -ldflags="${LDFLAGS}" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  mv "${tmpbin}/kwok" "${BIN_DIR}/kwok"
  log "$(step kwok) built in $(since "${t0}") ($(since "${BUILD_START}") in all)"
}

for b in etcd kwok kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [[ -x "${BIN_DIR}/${b}" ]] || TODO+=("${b}")
done
log "building ${#TODO[@]} of ${#BINARIES[@]} binaries (${TODO[*]}) from the Go module proxy into ${BIN_DIR}"
log "a cold build takes ~15 min on 2 cores (~25 min with empty Go caches); later runs reuse the binaries"
build_etcd
build_kwok
build_kubernetes
have_all || { echo "build incomplete in ${BIN_DIR}" >&2; exit 1; }
log "all binaries built in $(since "${BUILD_START}") -> ${BIN_DIR}"
