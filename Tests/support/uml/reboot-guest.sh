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
