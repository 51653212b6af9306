#!/bin/sh
# Second boot of the same disk (UMLSystemdTests): nothing of desa's runs before this script,
# so what serves was brought back by systemd alone: the quota images mounted by desa's mount
# units, each tenant's php-fpm master started by its boot drop-in, with its limits.
set -u
say() { echo "$1=$2"; }
A=cileunyi-kulon; B=cileunyi-wetan
UA=desa3204052001; UB=desa3204052002
for s in "$A $UA" "$B $UB"; do
  set -- $s
  say "mount_$1" "$(findmnt -n -o SOURCE,FSTYPE /srv/desa/$1 | tr ' ' ,)"
  say "mount_unit_$1" "$(systemctl is-active "$(systemd-escape --path --suffix=mount /srv/desa/$1)")"
  say "active_$1" "$(systemctl is-active desa-php8.2-fpm@$2.service)"
  say "who_$1" "$(curl -s -m 30 -H "Host: $1.bandungkab.go.id" http://127.0.0.1/who.php | cut -d' ' -f1)"
done
say memory_max_a "$(cat "/sys/fs/cgroup$(systemctl show -p ControlGroup --value desa-php8.2-fpm@$UA.service)/memory.max")"
say failed_units "$(systemctl --failed --no-legend --plain | wc -l)"

# Back to one shared master: it serves both pools again, and the tenants' own masters and
# their files are gone.
. /host/params
sed -i 's/^masters = "tenant"/masters = "shared"/' /etc/desa/desa.toml
$DESACTL apply > /host/switch-back.log 2>&1
say switch_back $?
say shared_after "$(ls /etc/php/8.2/fpm/pool.d/ | grep -c desa)"
say masters_after "$(systemctl list-units --plain --no-legend 'desa-php*-fpm@*' | grep -c ' active ')"
find /etc/desa/php/8.2/pools /etc/systemd/system/multi-user.target.d /etc/systemd/system/desa-php8.2-fpm@*.service.d -type f > /host/tenant-files-after 2>/dev/null
say tenant_files_after "$(wc -l < /host/tenant-files-after)"
for s in "$A $UA" "$B $UB"; do
  set -- $s
  say "shared_who_$1" "$(curl -s -m 30 -H "Host: $1.bandungkab.go.id" http://127.0.0.1/who.php | cut -d' ' -f1)"
done
