#!/usr/bin/env bash
# The main job on a self-contained sandbox: installs what is needed, builds desactl and desa-agent,
# and serves the 280 villages of Kabupaten Bandung with real nginx and PHP-FPM on 127.0.0.1:8080,
# each over HTTPS on 127.0.0.1:8443 with a certificate from Let's Encrypt's test CA (pebble, run
# by the sandbox), and a MariaDB of the sandbox's own for village databases. Run it again to
# start over.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DESA_SANDBOX:-/var/tmp/desa-sandbox}
port=${DESA_PORT:-8080}
https_port=${DESA_HTTPS_PORT:-8443}
bash scripts/install-deps.sh
swift build -c release --product desactl
swift build -c release --product desa-agent
bindir=$(swift build -c release --show-bin-path)
bin=$bindir/desactl
export DESA_CONFIG=$dir/desa.toml
if [ -f "$DESA_CONFIG" ]; then "$bin" sandbox destroy; fi
"$bin" sandbox init "$dir" --http-port "$port" --https-port "$https_port" --with-pebble --with-mariadb
"$bin" sandbox start
time "$bin" tenant import Tests/ProvisionerTests/Fixtures/villages-3204-bandung.csv
# Every village on HTTPS: the names bundled into 3 certificates (3 orders, not 280).
time "$bin" cert issue --all
"$bin" db create cileunyi-kulon
"$bin" sandbox status
# One health sweep, as desa-agent makes every minute (HTTP, HTTPS, PHP-FPM, certificate,
# database, drift; the server), recorded for desactl health: it exits 1 if anything is down.
"$bindir/desa-agent" --once
"$bin" health --problems
# Each village's home page over HTTPS, checked against the test CA's root, in one curl run.
root=$dir/pebble/root.pem
cfg=$(mktemp)
"$bin" tenant list --json | python3 -c '
import json, sys
port = sys.argv[1]
for t in json.load(sys.stdin):
    d = t["domain"]
    print(f"resolve = \"{d}:{port}:127.0.0.1\"\nurl = \"https://{d}:{port}/\"\noutput = \"/dev/null\"")
' "$https_port" > "$cfg"
ok=$(curl -sS --cacert "$root" -K "$cfg" -w '%{http_code}\n' | grep -c '^200$' || true)
rm -f "$cfg"
echo "$ok of 280 villages answer 200 over HTTPS with a certificate the test CA signed"
[ "$ok" = 280 ]
# The regency's portal: every village on one page, over HTTPS too.
"$bin" health --now >/dev/null || true
listed=$(curl -sS --cacert "$root" --resolve "desa.bandungkab.go.id:$https_port:127.0.0.1" \
  "https://desa.bandungkab.go.id:$https_port/" | grep -c '<li data-cari=' || true)
echo "the portal lists $listed villages"
[ "$listed" = 280 ]
cat <<MSG

All 280 villages of Kabupaten Bandung are served on 127.0.0.1:$port and, over HTTPS, on
127.0.0.1:$https_port. Try:
  curl --cacert $root --resolve cileunyi-kulon.bandungkab.go.id:$https_port:127.0.0.1 https://cileunyi-kulon.bandungkab.go.id:$https_port/
  curl -H 'Host: cileunyi-kulon.bandungkab.go.id' 127.0.0.1:$port       (a redirect to HTTPS)
  the portal, in a browser that resolves desa.bandungkab.go.id to 127.0.0.1:
    https://desa.bandungkab.go.id:$https_port/   (or: chromium --host-resolver-rules="MAP *.bandungkab.go.id 127.0.0.1")
  export DESA_CONFIG=$DESA_CONFIG
  $bin tenant list
  $bin tenant show mekarsari-pacet
  $bin plan
  $bin health --now              (every village, worst first; $bin health cileunyi-kulon for one)
  $bin status --html /tmp/status.html   (the operators' status page, once)
  $bin cert list
  $bin cert budget
  $bin db show cileunyi-kulon
  $bin sandbox destroy    (stops nginx and php-fpm, removes the tenant users and $dir)
MSG
