#!/bin/sh
# First boot (UMLSystemdTests): desa installed in production with a php-fpm master per tenant
# and quota images; two villages created; then the first one's PHP pushes against its memory,
# process and CPU limits while the second is asked to serve. Prints key=value lines.
# /host/params gives DESACTL and TEMPLATES (the host's build and templates, mounted read-only).
set -u
. /host/params
say() { echo "$1=$2"; }
mkdir -p /usr/share/desa /etc/desa /etc/nginx/desa
cp -r "$TEMPLATES" /usr/share/desa/templates
# First with one shared master (as a server set up before masters per tenant), then switched.
conf() {
cat > /etc/desa/desa.toml <<CONF
mode = "production"
[php]
masters = "$1"
[regency]
code = "32.04"
domain = "bandungkab.go.id"
[quota]
backend = "image"
default = "64MiB"
memory = "96MiB"
cpu = 20
processes = 20
closed_dirs = []
CONF
chmod 600 /etc/desa/desa.toml
}
conf shared
printf 'server_names_hash_bucket_size 128;\ninclude /etc/nginx/desa/*.conf;\n' > /etc/nginx/conf.d/desa.conf
systemctl reload nginx
A=cileunyi-kulon; B=cileunyi-wetan
UA=desa3204052001; UB=desa3204052002
for v in "32.04.05.2001 Cileunyi_Kulon $A" "32.04.05.2002 Cileunyi_Wetan $B"; do
  set -- $v
  $DESACTL tenant create "$1" --name "$(echo "$2" | tr _ ' ')" --district Cileunyi --slug "$3" > /host/create-$3.log 2>&1
  say "create_$3" $?
done
get() { curl -s -m 60 -o /dev/null -w '%{http_code}' -H "Host: $1.bandungkab.go.id" "http://127.0.0.1/$2"; }
say shared_before "$(ls /etc/php/8.2/fpm/pool.d/ | grep -c desa)"
say served_shared_a "$(get $A "")"
conf tenant
$DESACTL apply > /host/switch.log 2>&1
say switch $?
unit() { echo "desa-php8.2-fpm@$1.service"; }
cg() { echo "/sys/fs/cgroup$(systemctl show -p ControlGroup --value "$(unit "$1")")"; }
say active_a "$(systemctl is-active "$(unit $UA)")"
say active_b "$(systemctl is-active "$(unit $UB)")"
say shared_pools "$(ls /etc/php/8.2/fpm/pool.d/ | grep -c desa)"
say cgroup_a "$(cg $UA)"
say memory_max_a "$(cat "$(cg $UA)/memory.max")"
say pids_max_a "$(cat "$(cg $UA)/pids.max")"
say cpu_max_a "$(cat "$(cg $UA)/cpu.max")"
say mount_a "$(findmnt -n -o SOURCE,FSTYPE /srv/desa/$A | tr ' ' ,)"

put() { # slug user name content
  printf '%s' "$4" > /srv/desa/$1/public/$3 && chown "$2:$2" /srv/desa/$1/public/$3
}
body() { curl -s -m 60 -H "Host: $1.bandungkab.go.id" "http://127.0.0.1/$2"; }
# Which user runs the village's PHP, and in which cgroup (open_basedir keeps /proc from PHP:
# it gives its pid, and the cgroup is read here).
put $A $UA who.php '<?php echo posix_getpwuid(posix_geteuid())["name"], " ", getmypid();'
put $B $UB who.php '<?php echo posix_getpwuid(posix_geteuid())["name"], " ", getmypid();'
who() { set -- $(body $1 who.php); echo "$1,$(cut -d: -f3 /proc/$2/cgroup 2>/dev/null)"; }
say who_a "$(who $A)"
say who_b "$(who $B)"

# Memory: 200 MiB in one request against 96 MiB: the kernel kills that worker, in A's cgroup only.
put $A $UA mem.php '<?php $s = str_repeat("x", 200 << 20); echo "allocated ", strlen($s);'
put $B $UB mem.php '<?php $s = str_repeat("x", 40 << 20); echo "allocated ", strlen($s);'
say mem_a "$(get $A mem.php)"
say oom_kill_a "$(sed -n 's/^oom_kill //p' "$(cg $UA)/memory.events")"
say mem_b "$(body $B mem.php | tr ' ' ,)"
say oom_kill_b "$(sed -n 's/^oom_kill //p' "$(cg $UB)/memory.events")"
say after_oom_a "$(get $A who.php)"
say active_after_oom_a "$(systemctl is-active "$(unit $UA)")"

# Processes: A's PHP starts up to 100 programs (proc_open, no shell); B serves meanwhile.
put $A $UA fork.php '<?php $n = 0; $h = []; for ($i = 0; $i < 100; $i++) { $p = @proc_open(["/bin/sleep", "6"], [], $pipes); if ($p === false) break; $h[] = $p; $n++; } echo "started ", $n;'
body $A fork.php > /host/fork.out &
sleep 3
say pids_current_a "$(cat "$(cg $UA)/pids.current")"
say pids_events_a "$(sed -n 's/^max //p' "$(cg $UA)/pids.events")"
say during_fork_b "$(get $B who.php)"
wait
say fork_a "$(tr ' ' , < /host/fork.out)"

# CPU: a 4-second busy loop in A; its cgroup's CPU time over that window.
put $A $UA busy.php '<?php $t = microtime(true); while (microtime(true) - $t < 4) {} echo "done";'
u1=$(sed -n 's/^usage_usec //p' "$(cg $UA)/cpu.stat"); t1=$(date +%s%6N)
say busy_a "$(body $A busy.php)"
u2=$(sed -n 's/^usage_usec //p' "$(cg $UA)/cpu.stat"); t2=$(date +%s%6N)
say cpu_percent_a "$(( (u2 - u1) * 100 / (t2 - t1) ))"
say throttled_a "$(sed -n 's/^nr_throttled //p' "$(cg $UA)/cpu.stat")"

# A raise while the site serves: applied to the running cgroup, the master not restarted.
pid1=$(systemctl show -p MainPID --value "$(unit $UA)")
$DESACTL quota set $A --memory 128MiB --cpu 50 > /host/quota-set.log 2>&1
say quota_set $?
say memory_max_a_raised "$(cat "$(cg $UA)/memory.max")"
say cpu_max_a_raised "$(cat "$(cg $UA)/cpu.max")"
say same_master_a "$([ "$(systemctl show -p MainPID --value "$(unit $UA)")" = "$pid1" ] && echo yes || echo no)"
say after_raise_a "$(get $A who.php)"
$DESACTL quota set $A --memory 1MiB > /host/quota-bad.log 2>&1
say quota_bad $?
say memory_max_a_kept "$(cat "$(cg $UA)/memory.max")"
$DESACTL quota report --json > /host/report.json 2>&1
say report $?
$DESACTL config check > /host/config-check.txt 2>&1
say config_check $?

# A master stopped by hand is started again by apply.
systemctl stop "$(unit $UA)"
say stopped_a "$(systemctl is-active "$(unit $UA)")"
$DESACTL apply > /host/apply-restart.log 2>&1
say apply_restart $?
say restarted_a "$(systemctl is-active "$(unit $UA)")"
say restarted_who_a "$(get $A who.php)"

# Suspended, a village runs no PHP: its master stops, its boot drop-in and limits go; resumed,
# all come back. A third village created and deleted leaves no unit, drop-in or pool behind.
$DESACTL tenant suspend $B > /host/suspend.log 2>&1
say suspend $?
say suspended_b "$(systemctl is-active "$(unit $UB)")"
say suspended_files_b "$(ls /etc/systemd/system/multi-user.target.d/desa-php-32.04.05.2002.conf /etc/systemd/system/$(unit $UB).d/desa-limits.conf /etc/desa/php/8.2/pools/$UB.conf 2>/dev/null | wc -l)"
say suspended_page_b "$(get $B "")"
$DESACTL tenant resume $B > /host/resume.log 2>&1
say resume $?
say resumed_b "$(systemctl is-active "$(unit $UB)")"
say resumed_who_b "$(body $B who.php | cut -d' ' -f1)"
$DESACTL tenant create 32.04.05.2003 --name "Cimekar" --district Cileunyi --slug cimekar > /host/create-cimekar.log 2>&1
say create_c $?
say active_c "$(systemctl is-active "$(unit desa3204052003)")"
$DESACTL tenant delete cimekar --purge > /host/delete-cimekar.log 2>&1
say delete_c $?
say deleted_c "$(systemctl is-active "$(unit desa3204052003)")"
say deleted_files_c "$(ls /etc/systemd/system/multi-user.target.d/desa-php-32.04.05.2003.conf /etc/systemd/system/$(unit desa3204052003).d/desa-limits.conf /etc/desa/php/8.2/pools/desa3204052003.conf 2>/dev/null | wc -l)"
