#!/usr/bin/env bash
# Builds desactl in release mode and runs the benchmarks: bench/run.sh [import|scale|all]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
command -v sqlite3 >/dev/null && [ -x /usr/bin/time ] || apt-get install -y -qq sqlite3 time >/dev/null
swift build -c release --product desactl
exec python3 bench/run.py "${@:-all}"
