#!/usr/bin/env bash
# The main job on a self-contained sandbox: installs what is needed, builds desactl and desa-agent,
# and serves the 280 villages of Kabupaten Bandung with real nginx and PHP-FPM on
# 127.0.0.1:8080. Run it again to start over.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DESA_SANDBOX:-/var/tmp/desa-sandbox}
port=${DESA_PORT:-8080}
bash scripts/install-deps.sh
swift build -c release --product desactl
swift build -c release --product desa-agent
bindir=$(swift build -c release --show-bin-path)
bin=$bindir/desactl
export DESA_CONFIG=$dir/desa.toml
if [ -f "$DESA_CONFIG" ]; then "$bin" sandbox destroy; fi
"$bin" sandbox init "$dir" --http-port "$port"
"$bin" sandbox start
time "$bin" tenant import Tests/ProvisionerTests/Fixtures/villages-3204-bandung.csv
"$bin" sandbox status
"$bindir/desa-agent" --once
curl -sS -o /dev/null -w 'cileunyi-kulon.bandungkab.go.id answers HTTP %{http_code}\n' \
  -H 'Host: cileunyi-kulon.bandungkab.go.id' "127.0.0.1:$port/"
cat <<MSG

All 280 villages of Kabupaten Bandung are served on 127.0.0.1:$port. Try:
  curl -H 'Host: cileunyi-kulon.bandungkab.go.id' 127.0.0.1:$port
  export DESA_CONFIG=$DESA_CONFIG
  $bin tenant list
  $bin tenant show mekarsari-pacet
  $bin plan
  $bin sandbox destroy    (stops nginx and php-fpm, removes the tenant users and $dir)
MSG
