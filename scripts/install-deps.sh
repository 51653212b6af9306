#!/usr/bin/env bash
# Installs what desa needs on Debian 12 (run as root). Safe to run again.
set -euo pipefail
packages=(nginx php8.2-fpm libsystemd-dev libsqlite3-dev systemd passwd util-linux curl ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's maintainer scripts would start nginx and php-fpm on :80; desa runs its own.
  ours=no
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && ours=yes
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [[ $ours == no ]] || rm -f /usr/sbin/policy-rc.d
fi
command -v swift >/dev/null || { echo "swift is not on PATH (expected /opt/swift)" >&2; exit 1; }
