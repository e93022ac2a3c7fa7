#!/usr/bin/env bash
# Local, real Kubernetes control plane for tests and the demo, without Docker:
# etcd + kube-apiserver + kube-controller-manager + kube-scheduler built from the pinned upstream
# Go modules (dev/versions.env), and kwok simulating N nodes whose pods become Running and Ready.
#
#   dev/cluster.sh build                 build the binaries into the cache (no-op when present)
#   dev/cluster.sh up [--nodes N] [--fresh]
#                                        start (idempotent: a healthy cluster returns in seconds);
#                                        --fresh wipes etcd data first
#   dev/cluster.sh down                  stop everything (idempotent)
#   dev/cluster.sh status                one line per component; exit 1 unless all healthy
#   dev/cluster.sh env                   print `export KUBECONFIG=... PATH=...` (eval it)
#   dev/cluster.sh logs [COMPONENT]      tail the logs
#   dev/cluster.sh sa-kubeconfig NS SA [DURATION]
#                                        write a kubeconfig that authenticates as ServiceAccount
#                                        NS/SA with a TokenRequest token (default 24h); print its path
#
# State: ${AUTOLOOP_STATE:-$HOME/.cache/autoloop/state} (kubeconfig, ports.env, pki/, logs/, pids/).
set -euo pipefail

# shellcheck source=dev/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# shellcheck source=dev/versions.env
source "${DEV_DIR}/versions.env"
BIN_DIR="$("${DEV_DIR}/build.sh" --print-bin-dir)"
PKI="${STATE}/pki"
KUBECONFIG_FILE="${STATE}/kubeconfig"
ETCD_DATA="${STATE}/etcd-data"
DEFAULT_NODES=3
ZONES=(zone-a zone-b zone-c)
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
SERVICE_CIDR="10.96.0.0/16"
POD_CIDR="10.244.0.1/16"

# ---------------------------------------------------------------------------------------------
# PKI: one CA signs the apiserver serving cert and every client cert; a separate RSA key pair
# signs ServiceAccount tokens. Generated once per state dir.
gen_cert() { # name subject ext-section
  local name="$1" subj="$2" ext="$3"
  openssl genrsa -out "${PKI}/${name}.key" 2048 2>/dev/null
  openssl req -new -key "${PKI}/${name}.key" -subj "${subj}" -out "${PKI}/${name}.csr" 2>/dev/null
  openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "${PKI}/ext.cnf" -extensions "${ext}" \
    -out "${PKI}/${name}.crt" 2>/dev/null
  rm -f "${PKI}/${name}.csr"
}

ensure_pki() {
  [[ -f "${PKI}/.complete-v2" ]] && return 0
  log "generating PKI in ${PKI}"
  rm -rf "${PKI}"
  mkdir -p "${PKI}"
  chmod 700 "${PKI}"
  cat >"${PKI}/ext.cnf" <<'EOF'
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, IP:10.96.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "${PKI}/ca.key" -out "${PKI}/ca.crt" \
    -days 3650 -subj "/CN=autoloop-dev-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  gen_cert apiserver "/CN=kube-apiserver" server
  gen_cert admin "/O=system:masters/CN=kubernetes-admin" client
  gen_cert kube-controller-manager "/CN=system:kube-controller-manager" client
  gen_cert kube-scheduler "/CN=system:kube-scheduler" client
  # kwok plays every kubelet; it gets cluster-admin through system:masters.
  gen_cert kwok "/O=system:masters/CN=kwok-controller" client
  # Front proxy (aggregation layer) CA and client, as kubeadm sets them up: the apiserver publishes
  # the request-header CA, which the controller-manager and scheduler use for delegated authn.
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "${PKI}/front-proxy-ca.key" -out "${PKI}/front-proxy-ca.crt" \
    -days 3650 -subj "/CN=autoloop-dev-front-proxy-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  openssl genrsa -out "${PKI}/front-proxy-client.key" 2048 2>/dev/null
  openssl req -new -key "${PKI}/front-proxy-client.key" -subj "/CN=front-proxy-client" \
    -out "${PKI}/front-proxy-client.csr" 2>/dev/null
  openssl x509 -req -in "${PKI}/front-proxy-client.csr" -CA "${PKI}/front-proxy-ca.crt" \
    -CAkey "${PKI}/front-proxy-ca.key" -CAcreateserial -days 3650 -sha256 -extfile "${PKI}/ext.cnf" \
    -extensions client -out "${PKI}/front-proxy-client.crt" 2>/dev/null
  rm -f "${PKI}/front-proxy-client.csr"
  openssl genrsa -out "${PKI}/sa.key" 2048 2>/dev/null
  openssl rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub" 2>/dev/null
  chmod 600 "${PKI}"/*.key
  touch "${PKI}/.complete-v2"
}

write_kubeconfig() { # file user api_port
  local file="$1" user="$2" port="$3"
  cat >"${file}.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: autoloop-dev
  cluster:
    server: https://127.0.0.1:${port}
    certificate-authority-data: $(base64 -w0 "${PKI}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(base64 -w0 "${PKI}/${user}.crt")
    client-key-data: $(base64 -w0 "${PKI}/${user}.key")
contexts:
- name: autoloop-dev
  context:
    cluster: autoloop-dev
    user: ${user}
    namespace: default
current-context: autoloop-dev
EOF
  chmod 600 "${file}.tmp"
  mv "${file}.tmp" "${file}"
}

# ---------------------------------------------------------------------------------------------
# Health probes.
etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$(ports_get ETCD_PORT)/health" | grep -q '"health":"true"'; }
api_curl() {
  curl -sf --max-time 3 --cacert "${PKI}/ca.crt" --cert "${PKI}/admin.crt" --key "${PKI}/admin.key" \
    "https://127.0.0.1:$(ports_get APISERVER_PORT)$1"
}
apiserver_ready() { [[ "$(api_curl /readyz)" == ok ]]; }
secure_healthz() { [[ "$(curl -sk --max-time 2 "https://127.0.0.1:$1/healthz")" == ok ]]; }
kcm_healthy() { secure_healthz "$(ports_get KCM_PORT)"; }
scheduler_healthy() { secure_healthz "$(ports_get SCHEDULER_PORT)"; }
kwok_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$(ports_get KWOK_PORT)/healthz" >/dev/null; }

component_healthy() {
  case "$1" in
    etcd) pid_alive etcd "${BIN_DIR}/etcd" && etcd_healthy ;;
    kube-apiserver) pid_alive kube-apiserver "${BIN_DIR}/kube-apiserver" && apiserver_ready ;;
    kube-controller-manager) pid_alive kube-controller-manager "${BIN_DIR}/kube-controller-manager" && kcm_healthy ;;
    kube-scheduler) pid_alive kube-scheduler "${BIN_DIR}/kube-scheduler" && scheduler_healthy ;;
    kwok) pid_alive kwok "${BIN_DIR}/kwok" && kwok_healthy ;;
  esac
}

# wait_healthy NAME TIMEOUT PROBE: wait for PROBE; on timeout show the component's log and fail.
wait_healthy() {
  local name="$1" timeout="$2" probe="$3"
  if ! wait_until "${timeout}" "${name} to become healthy" "${probe}"; then
    pid_alive "${name}" "${BIN_DIR}/${name}" || log "${name} exited"
    tail -n 30 "${LOG_DIR}/${name}.log" >&2 || true
    die "${name} did not become healthy; full log: ${LOG_DIR}/${name}.log"
  fi
}

kubectl_() { "${BIN_DIR}/kubectl" --kubeconfig "${KUBECONFIG_FILE}" "$@"; }

# ---------------------------------------------------------------------------------------------
# Component starters. Each picks (or keeps) its port, starts, and waits until healthy.
start_etcd() {
  local port peer
  port="$(ensure_port ETCD_PORT)"
  peer="$(ensure_port ETCD_PEER_PORT)"
  mkdir -p "${ETCD_DATA}"
  chmod 700 "${ETCD_DATA}"
  start_proc etcd "${BIN_DIR}/etcd" \
    --name=autoloop-dev \
    --data-dir="${ETCD_DATA}" \
    --listen-client-urls="http://127.0.0.1:${port}" \
    --advertise-client-urls="http://127.0.0.1:${port}" \
    --listen-peer-urls="http://127.0.0.1:${peer}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${peer}" \
    --initial-cluster="autoloop-dev=http://127.0.0.1:${peer}" \
    --log-level=warn
  wait_healthy etcd 60 etcd_healthy
}

start_apiserver() {
  local port
  port="$(ensure_port APISERVER_PORT)"
  start_proc kube-apiserver "${BIN_DIR}/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$(ports_get ETCD_PORT)" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="${port}" \
    --tls-cert-file="${PKI}/apiserver.crt" \
    --tls-private-key-file="${PKI}/apiserver.key" \
    --client-ca-file="${PKI}/ca.crt" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="${PKI}/sa.pub" \
    --service-account-signing-key-file="${PKI}/sa.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --endpoint-reconciler-type=none \
    --requestheader-client-ca-file="${PKI}/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="${PKI}/front-proxy-client.crt" \
    --proxy-client-key-file="${PKI}/front-proxy-client.key" \
    --allow-privileged=true \
    --v=1
  wait_healthy kube-apiserver 120 apiserver_ready
}

start_kcm() {
  local port kc="${STATE}/kube-controller-manager.kubeconfig"
  port="$(ensure_port KCM_PORT)"
  write_kubeconfig "${kc}" kube-controller-manager "$(ports_get APISERVER_PORT)"
  start_proc kube-controller-manager "${BIN_DIR}/kube-controller-manager" \
    --kubeconfig="${kc}" \
    --authentication-kubeconfig="${kc}" \
    --authorization-kubeconfig="${kc}" \
    --bind-address=127.0.0.1 \
    --secure-port="${port}" \
    --controllers='*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file="${PKI}/sa.key" \
    --root-ca-file="${PKI}/ca.crt" \
    --cluster-signing-cert-file="${PKI}/ca.crt" \
    --cluster-signing-key-file="${PKI}/ca.key" \
    --service-cluster-ip-range="${SERVICE_CIDR}" \
    --leader-elect=false \
    --v=1
  wait_healthy kube-controller-manager 90 kcm_healthy
}

start_scheduler() {
  local port kc="${STATE}/kube-scheduler.kubeconfig"
  port="$(ensure_port SCHEDULER_PORT)"
  write_kubeconfig "${kc}" kube-scheduler "$(ports_get APISERVER_PORT)"
  start_proc kube-scheduler "${BIN_DIR}/kube-scheduler" \
    --kubeconfig="${kc}" \
    --authentication-kubeconfig="${kc}" \
    --authorization-kubeconfig="${kc}" \
    --bind-address=127.0.0.1 \
    --secure-port="${port}" \
    --leader-elect=false \
    --v=1
  wait_healthy kube-scheduler 90 scheduler_healthy
}

start_kwok() {
  local port kc="${STATE}/kwok.kubeconfig"
  port="$(ensure_port KWOK_PORT)"
  write_kubeconfig "${kc}" kwok "$(ports_get APISERVER_PORT)"
  start_proc kwok "${BIN_DIR}/kwok" \
    --kubeconfig="${kc}" \
    --config="${DEV_DIR}/kwok/stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="${POD_CIDR}" \
    --node-ip=10.244.255.254 \
    --node-lease-duration-seconds=40 \
    --server-address="127.0.0.1:${port}" \
    --v=WARN
  wait_healthy kwok 60 kwok_healthy
}

# ---------------------------------------------------------------------------------------------
node_manifest() { # index
  local i="$1" name="kwok-node-$1" zone="${ZONES[$(($1 % ${#ZONES[@]}))]}"
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: ${name}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: ${name}
    topology.kubernetes.io/zone: ${zone}
    node-role.kubernetes.io/agent: ""
spec: {}
status:
  capacity: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 100Gi}
  allocatable: {cpu: "16", memory: 64Gi, pods: "110", ephemeral-storage: 100Gi}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: ${KUBERNETES_VERSION}
    kubeProxyVersion: ${KUBERNETES_VERSION}
    containerRuntimeVersion: kwok
  phase: Running
EOF
  : "${i}"
}

ensure_nodes() { # count
  local n="$1" i existing
  {
    for ((i = 0; i < n; i++)); do node_manifest "${i}"; done
  } | kubectl_ apply -f - >/dev/null
  # Remove kwok nodes beyond the requested count (a previous `up --nodes` with more).
  existing="$(kubectl_ get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')"
  while read -r name; do
    [[ -z "${name}" ]] && continue
    i="${name#kwok-node-}"
    if [[ "${i}" =~ ^[0-9]+$ ]] && ((i >= n)); then
      kubectl_ delete node "${name}" --wait=false >/dev/null
    fi
  done <<<"${existing}"
}

nodes_ready() { # count
  local ready
  ready="$(kubectl_ get nodes -l type=kwok -o jsonpath='{range .items[*]}{range .status.conditions[?(@.type=="Ready")]}{.status}{"\n"}{end}{end}' | grep -c '^True$' || true)"
  [[ "${ready}" -ge "$1" ]] && ! kubectl_ get nodes -l type=kwok -o jsonpath='{.items[*].spec.taints[*].key}' | grep -q 'not-ready\|unreachable'
}
default_sa_exists() { kubectl_ -n default get serviceaccount default; }

# ---------------------------------------------------------------------------------------------
cmd_build() { "${DEV_DIR}/build.sh"; }

cmd_up() {
  local nodes="${DEFAULT_NODES}" fresh=0 t0
  while (($#)); do
    case "$1" in
      --nodes) nodes="$2"; shift 2 ;;
      --nodes=*) nodes="${1#*=}"; shift ;;
      --fresh) fresh=1; shift ;;
      *) die "unknown option for up: $1" ;;
    esac
  done
  [[ "${nodes}" =~ ^[0-9]+$ ]] || die "--nodes needs a number"
  t0=$(date +%s%3N)
  "${DEV_DIR}/build.sh"
  mkdir -p "${STATE}" "${LOG_DIR}" "${PID_DIR}"
  if ((fresh)); then
    cmd_down
    log "--fresh: wiping etcd data"
    rm -rf "${ETCD_DATA}"
  fi
  ensure_pki

  # etcd and the apiserver form the base: if either is down, restart the whole chain so every
  # component points at the current ports.
  if ! component_healthy etcd || ! component_healthy kube-apiserver; then
    local c
    for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
      stop_proc "${c}" "${BIN_DIR}/${c}"
    done
    log "starting etcd"
    start_etcd
    log "starting kube-apiserver"
    start_apiserver
  fi
  write_kubeconfig "${KUBECONFIG_FILE}" admin "$(ports_get APISERVER_PORT)"
  if ! component_healthy kube-controller-manager; then
    stop_proc kube-controller-manager "${BIN_DIR}/kube-controller-manager"
    log "starting kube-controller-manager"
    start_kcm
  fi
  if ! component_healthy kube-scheduler; then
    stop_proc kube-scheduler "${BIN_DIR}/kube-scheduler"
    log "starting kube-scheduler"
    start_scheduler
  fi
  if ! component_healthy kwok; then
    stop_proc kwok "${BIN_DIR}/kwok"
    log "starting kwok"
    start_kwok
  fi
  # Ports used by prometheus.sh and the synthetic exporter live beside the cluster's; they are
  # only reserved here (prometheus.sh and the test fixtures re-check them when they start).
  [[ -n "$(ports_get EXPORTER_PORT)" ]] || ports_set EXPORTER_PORT "$(free_ports 1)"
  [[ -n "$(ports_get PROMETHEUS_PORT)" ]] || ports_set PROMETHEUS_PORT "$(free_ports 1)"

  ensure_nodes "${nodes}"
  wait_until 60 "ServiceAccount default/default" default_sa_exists
  wait_until 90 "${nodes} kwok nodes Ready" nodes_ready "${nodes}"
  local dt=$(($(date +%s%3N) - t0))
  log "cluster up in $((dt / 1000)).$(printf '%03d' $((dt % 1000)))s; KUBECONFIG=${KUBECONFIG_FILE}"
}

cmd_down() {
  local c
  for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_proc "${c}" "${BIN_DIR}/${c}"
  done
}

cmd_status() {
  local c ok=0
  for c in "${COMPONENTS[@]}"; do
    if component_healthy "${c}"; then
      printf '%-24s healthy  pid %s\n' "${c}" "$(cat "${PID_DIR}/${c}.pid")"
    elif pid_alive "${c}" "${BIN_DIR}/${c}"; then
      printf '%-24s UNHEALTHY pid %s\n' "${c}" "$(cat "${PID_DIR}/${c}.pid")"
      ok=1
    else
      printf '%-24s stopped\n' "${c}"
      ok=1
    fi
  done
  if ((ok == 0)); then
    kubectl_ get nodes -l type=kwok --no-headers 2>/dev/null | sed 's/^/  node /' || true
  fi
  return "${ok}"
}

cmd_env() {
  echo "export KUBECONFIG=${KUBECONFIG_FILE}"
  echo "export PATH=${BIN_DIR}:\${PATH}"
  echo "export AUTOLOOP_STATE=${STATE}"
}

cmd_logs() {
  if (($#)); then
    tail -n 100 "${LOG_DIR}/$1.log"
  else
    local f
    for f in "${LOG_DIR}"/*.log; do
      [[ -f "${f}" ]] || continue
      echo "==> ${f} <=="
      tail -n 30 "${f}"
    done
  fi
}

cmd_sa_kubeconfig() {
  (($# >= 2)) || die "usage: $0 sa-kubeconfig NAMESPACE SERVICEACCOUNT [DURATION]"
  local ns="$1" sa="$2" duration="${3:-24h}" token file
  token="$(kubectl_ -n "${ns}" create token "${sa}" --duration="${duration}")"
  mkdir -p "${STATE}/sa"
  file="${STATE}/sa/${ns}_${sa}.kubeconfig"
  cat >"${file}.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: autoloop-dev
  cluster:
    server: https://127.0.0.1:$(ports_get APISERVER_PORT)
    certificate-authority-data: $(base64 -w0 "${PKI}/ca.crt")
users:
- name: ${ns}-${sa}
  user:
    token: ${token}
contexts:
- name: autoloop-dev
  context:
    cluster: autoloop-dev
    user: ${ns}-${sa}
    namespace: ${ns}
current-context: autoloop-dev
EOF
  chmod 600 "${file}.tmp"
  mv "${file}.tmp" "${file}"
  echo "${file}"
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "${cmd}" in
    build) cmd_build "$@" ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    logs) cmd_logs "$@" ;;
    sa-kubeconfig) cmd_sa_kubeconfig "$@" ;;
    *)
      sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
      [[ -z "${cmd}" ]] && exit 2
      die "unknown command: ${cmd}"
      ;;
  esac
}

main "$@"
