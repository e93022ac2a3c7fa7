#!/usr/bin/env bash
# The demo: local control plane + Prometheus + synthetic workload + the operator + the examples.
# Run it with `make demo` (installs what is missing first). Ctrl-C stops the operator it started;
# the cluster, Prometheus and the exporter keep running (`make cluster-down` stops them).
# Env: PYTHON, the interpreter with the repo's packages (default .venv/bin/python of this checkout
# if it exists, else python3); it also runs the synthetic exporter (dev/prometheus.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
if ! "$PYTHON" -c 'import autoloop.cli, kopf, numpy' 2>/dev/null; then
  echo "demo: $PYTHON cannot import autoloop and its packages (kopf, numpy, ...)." >&2
  echo "demo: run \`make demo\` (it creates .venv), or \`make venv\` first, or set PYTHON." >&2
  exit 1
fi

op=""
nodex=""
finish() {
  if [[ -n "$nodex" ]]; then
    kill -TERM "$nodex" 2>/dev/null || true
    echo '[]' >"${state}/prometheus/node-exporter-targets.json" 2>/dev/null || true
    echo '[]' >"${state}/prometheus/operator-targets.json" 2>/dev/null || true
  fi
  if [[ -n "$op" ]]; then
    if kill -0 "$op" 2>/dev/null; then
      echo
      echo "demo: stopping the operator (pid $op)..."
      kill -TERM "$op" 2>/dev/null || true
      for _ in $(seq 1 30); do
        kill -0 "$op" 2>/dev/null || break
        sleep 0.5
      done
      kill -KILL "$op" 2>/dev/null || true
    fi
    wait "$op" 2>/dev/null || true
    echo "demo: operator stopped."
  fi
  echo "demo: the local cluster, Prometheus and the exporter are still running;"
  echo "      \`make cluster-down\` stops them (\`make demo\` starts them again in seconds)."
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# shellcheck source=dev/lib.sh
source dev/lib.sh  # free_ports, STATE
state="$STATE"
bash dev/cluster.sh up
bash dev/prometheus.sh up
eval "$(bash dev/cluster.sh env)"
# shellcheck disable=SC1091
source "$state/ports.env"

kubectl apply -k manifests/
kubectl -n autoloop-system scale deployment/autoloop --replicas=0  # the operator runs from this checkout
# A fresh namespace every run: an earlier run's loop history and changed workloads would make the
# scenes show old decisions. (The cluster-scoped plan is kept: it recomputes its schedule each pass.)
kubectl delete namespace demo --ignore-not-found --wait=true --timeout=180s
kubectl create namespace demo
kubectl -n demo apply -f manifests/examples/workload.yaml
kubectl -n demo apply -f manifests/examples/optimizationloop.yaml -f manifests/examples/resourceallocation.yaml
kubectl delete mplan nightly --ignore-not-found --wait=false  # an earlier demo's (Recommend: holds no node)
# Cluster-scoped: no namespace. A window from the start of this hour for six hours (UTC; one that
# ends before it starts runs past midnight).
start="$(date -u +%H:00)"
end="$(date -u -d '+6 hours' +%H:00)"
sed -e "s/\"START\"/\"$start\"/" -e "s/\"END\"/\"$end\"/" dev/demo/plan.yaml | kubectl apply -f -
# The demo's own workload and loop (dev/demo/): over-provisioned, in Auto, with short clocks so
# it acts and is judged within minutes (the examples keep production-like clocks).
# The workload now, its loop once its load reads steady (below): a new series' rate[1m] ramps up
# over its first minute, and a last good setting is kept with the load it was good at.
"$PYTHON" -c 'import sys; print(open(sys.argv[1]).read().split("\n---\n")[0])' dev/demo/checkout.yaml |
  kubectl -n demo apply -f -

# Scene 4's data: kwok nodes have no node-exporter. One node's disk is made to fill; 72 h of its
# history are backfilled (dev/backfill.sh restarts Prometheus around the import) and the simulated
# node-exporter carries the same series on live. Prometheus also scrapes the operator (dashboard).
"$PYTHON" dev/demo/node_history.py --kubeconfig "$KUBECONFIG" --out "$state/demo-node-history.om"
bash dev/backfill.sh "$state/demo-node-history.om"
node_port="$(free_ports 1)"
"$PYTHON" -m autoloop.simulation.node_exporter --kubeconfig "$KUBECONFIG" --port "$node_port" \
  >"$state/logs/node-exporter-demo.log" 2>&1 &
nodex=$!
printf '[{"targets": ["127.0.0.1:%s"]}]\n' "$node_port" >"$state/prometheus/node-exporter-targets.json"
printf '[{"targets": ["127.0.0.1:18080"]}]\n' >"$state/prometheus/operator-targets.json"

prom_url="http://127.0.0.1:${PROMETHEUS_PORT}"
echo "Prometheus: $prom_url   operator metrics: http://127.0.0.1:18080/metrics"
AUTOLOOP_PROMETHEUS_URL="$prom_url" "$PYTHON" -m autoloop.cli run --metrics-port 18080 --liveness-port 18081 \
  --tick 1 >"$state/logs/operator-demo.log" 2>&1 &
op=$!
echo "operator pid $op, log $state/logs/operator-demo.log"

scene() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
explain() { "$PYTHON" -m autoloop.cli explain "$@" || true; }
# wait_for SECONDS WHAT CMD...: poll CMD every 2 s (a dot each time) until it succeeds.
wait_for() {
  local limit="$1" what="$2" t0
  shift 2
  t0=$(date +%s)
  printf 'waiting for %s ' "$what"
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$op" 2>/dev/null; then
      echo; echo "demo: the operator exited; the end of its log:" >&2
      tail -n 30 "$state/logs/operator-demo.log" >&2 || true
      exit 1
    fi
    if (($(date +%s) - t0 > limit)); then echo " not within ${limit}s (going on)"; return 1; fi
    printf '.'
    sleep 2
  done
  echo " $(($(date +%s) - t0))s"
}
has_decision() { kubectl -n demo get oloop checkout -o jsonpath='{.status.decisions[*].action}' | grep -qw "$1"; }
# condition_true RESOURCE TYPE [KUBECTL ARGS...]: the resource's condition TYPE is True.
condition_true() {
  [[ "$(kubectl "${@:3}" get "$1" -o jsonpath="{.status.conditions[?(@.type==\"$2\")].status}")" == True ]]
}

steady() {
  curl -s "$prom_url/api/v1/query" --data-urlencode \
    'query=sum(rate(http_requests_total{namespace="demo",service="checkout"}[1m])) > 72' | grep -q '"result":\[{'
}
wait_for 150 "checkout's load to read steady" steady || true
kubectl -n demo apply -f dev/demo/checkout.yaml

scene "1/4  A loop in Auto changes its workload: checkout runs 6 pods x 1 core for 0.8 cores of work"
wait_for 180 "an applied change" has_decision Applied || true
kubectl -n demo get deployment checkout -o wide
explain demo/checkout --decisions 3

scene "2/4  A bad release: every request now needs 4x the CPU; the change it followed is rolled back"
kubectl -n demo annotate deployment checkout --overwrite sim.autoloop.x0tta6bl4.io/cpu-per-request=0.04
wait_for 240 "the rollback" condition_true oloop/checkout RolledBack -n demo || true
explain demo/checkout --decisions 3

scene "3/4  A ResourceAllocation shares the node pool between the frontend workloads"
wait_for 60 "an allocation" condition_true ralloc/frontend Ready -n demo || true
explain ralloc/demo/frontend

scene "4/4  A MaintenancePlan (cluster-scoped) predicts node failures and schedules maintenance"
wait_for 90 "a schedule" condition_true mplan/demo-maintenance Scheduled || true
explain mplan/demo-maintenance

scene "Everything, every 20 s (Ctrl-C stops the operator; the cluster stays up)"
while true; do
  kubectl -n demo get autoloop || true  # the category lists the cluster-scoped plans too
  sleep 20
done
