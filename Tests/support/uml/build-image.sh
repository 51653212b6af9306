#!/bin/bash
# build-image.sh ROOTFS IMAGE
# Makes a bootable ext4 image for Debian's User-Mode Linux kernel from a debootstrap root
# (ContainerHarness builds it; it is copied, never changed): the UML kernel's modules (loop),
# a quiet boot (units that cannot work in a throwaway guest masked), the journal in memory,
# and the test runner: desa-uml-guest.service, started once the boot has settled, mounts the
# run's exchange directory from the host (desa.xchg= on the kernel command line) at /host,
# and the host directories named by desa.ro= read-only at their own paths, runs
# /host/guest.sh, leaves its output, exit status and the journal in /host, and powers off
# unless /host/stay exists. A generator copies /host/overlay into / before any unit loads.
# The image is a base: each boot writes to a copy-on-write file of its own (boot.sh).
set -euo pipefail
SRC=${1:?usage: build-image.sh ROOTFS IMAGE}
IMG=${2:?usage: build-image.sh ROOTFS IMAGE}
KVER=$(ls /usr/lib/uml/modules/ | head -1)
R=$IMG.root-$$
trap 'rm -rf "$R"' EXIT
rm -rf "$R"
cp -a "$SRC" "$R"
cd "$R"
[ -e usr/bin/kmod ] || { echo "$SRC has no kmod (the loop module cannot load): build it with kmod" >&2; exit 1; }

echo desa-uml > etc/hostname
printf '127.0.0.1 localhost\n127.0.1.1 desa-uml\n::1 localhost\n' > etc/hosts
echo '# root is /dev/ubda (UML), mounted rw by the kernel' > etc/fstab
mkdir -p lib/modules
cp -a /usr/lib/uml/modules/"$KVER" lib/modules/

for u in getty.target getty@tty1.service console-getty.service serial-getty@.service \
         apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service \
         fstrim.timer systemd-pstore.service proc-sys-fs-binfmt_misc.automount systemd-timesyncd.service; do
  ln -sfn /dev/null etc/systemd/system/"$u"
done
rm -f etc/systemd/system/getty.target.wants/getty@tty1.service
mkdir -p etc/systemd/journald.conf.d
printf '[Journal]\nStorage=volatile\n' > etc/systemd/journald.conf.d/uml.conf

cat > usr/local/sbin/desa-uml-guest <<'GUEST'
#!/bin/sh
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -1; }
mkdir -p /host
mount -t hostfs -o "$(arg desa.xchg)" none /host || { systemctl poweroff; exit 1; }
for d in $(arg desa.ro | tr ',' ' '); do
  mkdir -p "$d" && mount -t hostfs -o "ro,$d" none "$d" || echo "cannot mount $d" >> /host/runner.err
done
{ echo "state=$(systemctl is-system-running --wait)"; systemctl --failed --no-legend --plain; } > /host/boot-state
sh /host/guest.sh > /host/guest.out 2>&1
echo $? > /host/guest.rc
journalctl -b --no-pager -o short-monotonic > /host/journal.txt 2>&1
sync
systemctl poweroff --no-block
GUEST
chmod 755 usr/local/sbin/desa-uml-guest
cat > etc/systemd/system/desa-uml-guest.service <<'UNIT'
[Unit]
Description=desa's test runner (UML)
After=multi-user.target
ConditionKernelCommandLine=desa.xchg

[Service]
Type=simple
ExecStart=/usr/local/sbin/desa-uml-guest
UNIT
ln -sfn /etc/systemd/system/desa-uml-guest.service etc/systemd/system/multi-user.target.wants/desa-uml-guest.service

mkdir -p etc/systemd/system-generators
cat > etc/systemd/system-generators/desa-uml-overlay <<'GEN'
#!/bin/sh
XCHG=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^desa.xchg=//p' | tail -1)
[ -n "$XCHG" ] || exit 0
M=/run/desa-uml-overlay; mkdir -p $M
mount -t hostfs -o "ro,$XCHG" none $M || exit 0
[ -d $M/overlay ] && cp -a $M/overlay/. /
umount $M; rmdir $M; exit 0
GEN
chmod 755 etc/systemd/system-generators/desa-uml-overlay

cd /
rm -f "$IMG.partial"
truncate -s 2G "$IMG.partial"
# No lazy initialisation: UML has one CPU, and ext4lazyinit would zero inode tables at every boot.
mkfs.ext4 -q -F -L desa-uml -E lazy_itable_init=0,lazy_journal_init=0 -d "$R" "$IMG.partial"
# A copy-on-write file records its base's mtime: the base is never touched after this rename.
mv "$IMG.partial" "$IMG"
