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
finish() {
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
AUTOLOOP_PROMETHEUS_URL="$prom_url" "$PYTHON" -m autoloop.cli run --metrics-port 18080 --liveness-port 18081 \
  >"$state/logs/operator-demo.log" 2>&1 &
op=$!
echo "operator pid $op, log $state/logs/operator-demo.log; waiting for the first passes..."
sleep 20
if ! kill -0 "$op" 2>/dev/null; then
  echo "demo: the operator exited; the end of its log:" >&2
  tail -n 30 "$state/logs/operator-demo.log" >&2 || true
  exit 1
fi
kubectl -n demo get autoloop
kubectl -n demo get oloop -o wide
"$PYTHON" -m autoloop.cli explain demo/web || true
kubectl -n demo describe oloop web | sed -n '/^Events:/,$p'
echo "Every 20 s (Ctrl-C stops the operator; the cluster stays up):"
while sleep 20; do
  kubectl -n demo get autoloop || true
  "$PYTHON" -m autoloop.cli explain demo/web --decisions 3 | tail -n 12 || true
done
