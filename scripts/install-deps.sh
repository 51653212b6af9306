#!/usr/bin/env bash
# Installs what desa needs on Debian 12 (run as root). Safe to run again.
set -euo pipefail
packages=(nginx php8.2-fpm libsystemd-dev libsqlite3-dev libmariadb-dev mariadb-server mariadb-client pebble openssl publicsuffix bind9 bind9-utils bind9-dnsutils gzip systemd passwd util-linux curl ca-certificates)
# PHP extensions OpenSID requires (app/Libraries/Sistem.php EKSTENSI_WAJIB, and pdo_mysql from
# donjo-app/config/installer.php): curl, gd, mbstring, mysqli/mysqlnd/pdo_mysql, tidy, zip;
# fileinfo, iconv and exif come with php8.2-common, json is built in. Its bundled libraries
# also require dom/xmlreader (openspout: spreadsheet import and export) and intl (escpos-php).
# The CLI runs its background jobs (`php index.php job ...`).
packages+=(php8.2-cli php8.2-curl php8.2-gd php8.2-mbstring php8.2-mysql php8.2-tidy php8.2-zip php8.2-xml php8.2-intl)
# The tests under a real systemd (Tests/ProvisionerTests/Systemd) boot a Debian 12 container:
# systemd-nspawn, and debootstrap to build its root filesystem once.
packages+=(systemd-container debootstrap)
# Quotas: ACL entries close the server's world-writable places to tenants (acl), the image
# backend formats and tunes each tenant's ext4 image (e2fsprogs, util-linux's losetup), the kernel
# backend sets and reads user quotas (quota), and its test boots Debian's User-Mode Linux kernel,
# which has quota support where this machine's kernel may not (user-mode-linux, kmod for insmod).
packages+=(acl e2fsprogs quota user-mode-linux kmod)
# Backups: restic makes and reads the snapshots, rsync copies a restore in as the tenant, and
# rclone serves an append-only repository (the off-site setup the tests prove).
packages+=(restic rsync rclone)
# The Debian package: scripts/build-deb.sh builds it with debhelper, and its test runs lintian.
packages+=(debhelper dpkg-dev lintian)
# The portal's browser test looks at it in Debian's headless chromium, driven over the
# DevTools protocol by scripts/browser.py (python3-websocket).
packages+=(chromium python3-websocket)
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
