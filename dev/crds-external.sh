#!/usr/bin/env bash
# Install the routing CRDs a MaintenancePlan may steer into the local apiserver (dev/cluster.sh):
# the Gateway API standard channel (sigs.k8s.io/gateway-api, config/crd/standard/*.yaml) and
# Istio's VirtualService (istio.io/api, kubernetes/customresourcedefinitions.gen.yaml), both
# fetched with `go mod download` at the versions pinned in dev/versions.env. Only the CRDs are
# installed: no Gateway implementation or mesh runs here (see docs/dev.md).
#
#   dev/crds-external.sh            apply them (idempotent; cached in $AUTOLOOP_CACHE/crds/<pins>/)
#   dev/crds-external.sh --fetch    only download and cache the YAML, print its directory
set -euo pipefail

# shellcheck source=dev/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
# shellcheck source=dev/versions.env
source "${DEV_DIR}/versions.env"

CACHE="${AUTOLOOP_CACHE:-$HOME/.cache/autoloop}"
OUT="${CACHE}/crds/gateway-api-${GATEWAY_API_VERSION}_istio-api-${ISTIO_API_VERSION}"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# module_dir MODULE@VERSION: the unpacked module in the Go module cache (downloaded if missing).
module_dir() {
  go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))'
}

fetch() {
  [[ -f "${OUT}/.complete" ]] && return 0
  local gw istio tmp
  log "go mod download sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION} istio.io/api@${ISTIO_API_VERSION}"
  gw="$(module_dir "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}")"
  istio="$(module_dir "istio.io/api@${ISTIO_API_VERSION}")"
  tmp="${OUT}.tmp.$$"
  rm -rf "${tmp}"
  mkdir -p "${tmp}"
  # CustomResourceDefinitions only (the directory also holds a ValidatingAdmissionPolicy).
  local f
  for f in "${gw}"/config/crd/standard/*.yaml; do
    grep -q '^kind: CustomResourceDefinition' "${f}" && cp "${f}" "${tmp}/"
  done
  # The Istio file holds every Istio CRD; keep the VirtualService one.
  python3 - "${istio}/kubernetes/customresourcedefinitions.gen.yaml" \
    "${tmp}/networking.istio.io_virtualservices.yaml" <<'PY'
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
wanted = [d for d in docs if "\n  name: virtualservices.networking.istio.io\n" in d]
if len(wanted) != 1:
    sys.exit(f"expected one VirtualService CRD in {sys.argv[1]}, found {len(wanted)}")
open(sys.argv[2], "w").write(wanted[0].strip() + "\n")
PY
  chmod -R u+w "${tmp}"
  touch "${tmp}/.complete"
  rm -rf "${OUT}"
  mv "${tmp}" "${OUT}"
}

main() {
  fetch
  if [[ "${1:-}" == --fetch ]]; then
    echo "${OUT}"
    return 0
  fi
  local kubectl kubeconfig
  kubectl="$("${DEV_DIR}/build.sh" --print-bin-dir)/kubectl"
  kubeconfig="${STATE}/kubeconfig"
  [[ -f "${kubeconfig}" ]] || die "no cluster at ${STATE}: run dev/cluster.sh up first"
  "${kubectl}" --kubeconfig "${kubeconfig}" apply --server-side --force-conflicts -f "${OUT}" >/dev/null
  "${kubectl}" --kubeconfig "${kubeconfig}" wait --for condition=established --timeout=60s \
    crd/httproutes.gateway.networking.k8s.io crd/virtualservices.networking.istio.io >/dev/null
  log "routing CRDs applied: gateway-api ${GATEWAY_API_VERSION}, istio VirtualService ${ISTIO_API_VERSION}"
}

main "$@"
