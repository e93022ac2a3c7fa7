#!/usr/bin/env bash
# Build the pinned upstream control-plane binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) from the Go module proxy into
# ${AUTOLOOP_CACHE:-$HOME/.cache/autoloop}/bin/<pins>/. A second run is a no-op.
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

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

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
  log "kubernetes ${KUBERNETES_VERSION}: preparing wrapper module in ${mod}"
  (
    cd "${mod}"
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
    log "kubernetes: go mod tidy"
    go mod tidy -e >"${mod}/tidy.log" 2>&1 || { cat "${mod}/tidy.log" >&2; exit 1; }
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
    for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      [[ -x "${BIN_DIR}/${b}" ]] && continue
      log "kubernetes: building ${b}"
      go build -trimpath -ldflags="${LDFLAGS}${vflags}" -o "${BIN_DIR}/${b}.tmp" "k8s.io/kubernetes/cmd/${b}"
      mv "${BIN_DIR}/${b}.tmp" "${BIN_DIR}/${b}"
      log "kubernetes: built ${b}"
    done
  )
}

build_etcd() {
  [[ -x "${BIN_DIR}/etcd" ]] && return 0
  local mod="${WORK}/etcd"
  mkdir -p "${mod}"
  log "etcd ${ETCD_VERSION}: preparing wrapper module"
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
    go mod tidy -e >"${mod}/tidy.log" 2>&1 || { cat "${mod}/tidy.log" >&2; exit 1; }
    log "etcd: building"
    go build -trimpath -ldflags="${LDFLAGS}" -o "${BIN_DIR}/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "${BIN_DIR}/etcd.tmp" "${BIN_DIR}/etcd"
    log "etcd: built"
  )
}

build_kwok() {
  [[ -x "${BIN_DIR}/kwok" ]] && return 0
  log "kwok ${KWOK_VERSION}: building"
  local tmpbin="${WORK}/kwok-bin"
  mkdir -p "${tmpbin}"
  GOBIN="${tmpbin}" go install -trimpath -ldflags="${LDFLAGS}" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
  mv "${tmpbin}/kwok" "${BIN_DIR}/kwok"
  log "kwok: built"
}

start=$(date +%s)
build_etcd
build_kwok
build_kubernetes
have_all || { echo "build incomplete in ${BIN_DIR}" >&2; exit 1; }
log "all binaries built in $(( $(date +%s) - start ))s -> ${BIN_DIR}"
