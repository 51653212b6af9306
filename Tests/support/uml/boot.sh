#!/bin/bash
# boot.sh IMAGE RUNDIR TIMEOUT
# Boots IMAGE under Debian's User-Mode Linux kernel with systemd as PID 1, its writes going to
# RUNDIR/root.cow (kept: boot again with the same RUNDIR for a reboot), and runs
# RUNDIR/guest.sh inside once the boot has settled (see build-image.sh); RUNDIR/overlay, if
# there, is copied into / before any unit loads. Prints the guest's output; exits with the
# guest script's status, 124 on timeout, 125 when the guest never reported one.
# MEM (default 512M) is the guest's memory; RO_DIRS host directories mounted read-only at
# their own paths inside.
set -uo pipefail
IMG=${1:?usage: boot.sh IMAGE RUNDIR TIMEOUT}
RUN=${2:?}
TMO=${3:-300}
UMID=desa-$(basename "$RUN")-$$
mkdir -p "$RUN/uml"
rm -f "$RUN/guest.rc" "$RUN/guest.out" "$RUN/boot-state"
ARGS=(umid="$UMID" uml_dir="$RUN/uml" mem="${MEM:-512M}" con=null con0=null,fd:1 ssl=null
      init=/lib/systemd/systemd rw desa.xchg="$RUN" ubda="$RUN/root.cow,$IMG" root=/dev/ubda rootfstype=ext4)
RO=$(echo ${RO_DIRS:-} | tr ' ' ',')
[ -n "$RO" ] && ARGS+=(desa.ro="$RO")
# linux.uml calls setsid() itself and its helpers die with it; timeout ends it (KILL after 5 s).
timeout -k 5 "$TMO" /usr/bin/linux.uml "${ARGS[@]}" >> "$RUN/console.log" 2>&1 < /dev/null
UMLRC=$?
rm -rf "$RUN/uml/$UMID"
if [ -f "$RUN/guest.rc" ]; then RC=$(cat "$RUN/guest.rc"); elif [ $UMLRC = 124 ]; then RC=124; else RC=125; fi
cat "$RUN/guest.out" 2>/dev/null
echo "--- uml: linux.uml exit $UMLRC, guest exit $RC; $(head -1 "$RUN/boot-state" 2>/dev/null)" >&2
exit "$RC"
