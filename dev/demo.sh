#!/usr/bin/env bash
# The demo: local control plane + Prometheus + synthetic workload + the operator + the examples.
# Leaves everything running; `make cluster-down` (and Ctrl-C here) stops it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

bash dev/cluster.sh up
bash dev/prometheus.sh up
eval "$(bash dev/cluster.sh env)"
state="${AUTOLOOP_STATE:-$HOME/.cache/autoloop/state}"
# shellcheck disable=SC1091
source "$state/ports.env"

kubectl apply -k manifests/
kubectl -n autoloop-system scale deployment/autoloop --replicas=0  # the operator runs from this checkout
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f -
kubectl -n demo apply -f manifests/examples/workload.yaml
kubectl -n demo apply -f manifests/examples/optimizationloop.yaml \
  -f manifests/examples/resourceallocation.yaml -f manifests/examples/maintenanceplan.yaml

prom_url="http://127.0.0.1:${PROMETHEUS_PORT}"
echo "Prometheus: $prom_url   operator metrics: http://127.0.0.1:18080/metrics"
AUTOLOOP_PROMETHEUS_URL="$prom_url" python3 -m autoloop.cli run --metrics-port 18080 --liveness-port 18081 \
  >"$state/logs/operator-demo.log" 2>&1 &
op=$!
trap 'kill $op 2>/dev/null || true' EXIT
echo "operator pid $op, log $state/logs/operator-demo.log; waiting for the first passes..."
sleep 20
kubectl -n demo get autoloop
kubectl -n demo get oloop -o wide
python3 -m autoloop.cli explain demo/web
kubectl -n demo describe oloop web | sed -n '/^Events:/,$p'
echo "Every 20 s (Ctrl-C to stop the operator; the cluster stays up):"
while sleep 20; do
  kubectl -n demo get autoloop
  python3 -m autoloop.cli explain demo/web --decisions 3 | tail -n 12
done
