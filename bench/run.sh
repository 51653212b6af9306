#!/usr/bin/env bash
# Builds desactl in release mode and runs the benchmarks: bench/run.sh [import|db|scale|health|quota|masters|backup|upgrade|portal|package|https|all]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
command -v sqlite3 >/dev/null && [ -x /usr/bin/time ] || apt-get install -y -qq sqlite3 time >/dev/null
# bench/run.py https: the test CA and the per-site client the panels use.
[ -x /usr/bin/pebble ] && command -v certbot openssl >/dev/null || apt-get install -y -qq pebble certbot openssl >/dev/null
swift build -c release --product desactl
swift build -c release --product desa-agent
exec python3 bench/run.py "${@:-all}"
