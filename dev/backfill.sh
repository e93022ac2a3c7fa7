#!/usr/bin/env bash
# Backfill history into the dev Prometheus TSDB from an OpenMetrics text file:
#   dev/backfill.sh <file.om>
# Uses `promtool tsdb create-blocks-from openmetrics` into $STATE/prometheus/data. A running server
# loads new blocks only at start, so it is restarted around the import (and left as it was found).
# The file must end with `# EOF`; timestamps are in seconds.
set -euo pipefail

# shellcheck source=dev/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

[[ $# -eq 1 && -f "$1" ]] || die "usage: $0 <openmetrics-file>"
INPUT="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
PROM_DATA="${STATE}/prometheus/data"
PROMTOOL="${PROMTOOL_BIN:-/usr/bin/promtool}"
[[ -x "${PROMTOOL}" ]] || "${DEV_DIR}/prometheus.sh" up >/dev/null # installs the package
mkdir -p "${PROM_DATA}"

was_running=0
if "${DEV_DIR}/prometheus.sh" status >/dev/null 2>&1; then
  was_running=1
  "${DEV_DIR}/prometheus.sh" down
fi
log "creating blocks from ${INPUT}"
# promtool writes blocks into the output dir as-is; run it from a scratch dir so its temporary
# files never land in the TSDB.
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
(cd "${tmp}" && "${PROMTOOL}" tsdb create-blocks-from openmetrics "${INPUT}" "${PROM_DATA}")
if ((was_running)); then
  "${DEV_DIR}/prometheus.sh" up
fi
