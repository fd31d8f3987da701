# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/restore.sh -- restore throughput, sourced by bench/run.sh (section
# "restore"): vbak restores the two restore points of run.sh's vbak round
# (the full backup of base.img and the incremental of changed.img) to a file
# and over NBD, and nbdcopy writes the same two images to the same kind of
# export (what the transfer alone costs). restic's restore of changed.img is
# run.sh's restic row; restore_ratios puts the ratios into the rows' notes
# once the medians are known.
#
# DESIGN: the NBD target is what a restore into a VM's disk meets: a fresh
# qcow2 of the disk's size, written through qemu-nbd on loopback TCP
# (127.0.0.1, not a unix socket), over RESTORE_CONNS connections, with the
# transport vbakd uses (all-zero blocks go as write-zeroes, a flush at the
# end). Every restore is compared with its source image (restore_compare);
# a restore that differs stops the bench. The server's pid goes into
# run.sh's NBD_PID, so run.sh's exit trap (nbd_stop) stops it whatever
# happens.
#
# Uses run.sh's helpers and variables: timed, row, warm, die, log, need,
# jnum, mib, calc, alloc_of, sec_of, nbd_stop, NBD_PID, VBAK, DATA, STORE,
# LOG, LOGICAL, ALLOC_BASE, ALLOC_CHANGED, R_NOTE.

RESTORE_CONNS=2
RESTORE_PORT=

# restore_serve IMAGE: a fresh qcow2 of the disk's size at IMAGE, served
# read-write by qemu-nbd on 127.0.0.1:$RESTORE_PORT, export vda.
restore_serve() {
        local image=$1 tries=200 port
        rm -f "$image"
        qemu-img create -q -f qcow2 "$image" "$LOGICAL"
        # A port nobody listens on, so that the probe below can only reach
        # our server.
        for ((port = 20000 + RANDOM % 10000; ; port = 20000 + RANDOM % 10000)); do
                if ! (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        done
        RESTORE_PORT=$port
        qemu-nbd --persistent --shared=4 -b 127.0.0.1 -p "$port" -x vda -f qcow2 "$image" \
                >>"$LOG/qemu-nbd.log" 2>&1 &
        NBD_PID=$!
        until (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
                kill -0 "$NBD_PID" 2>/dev/null || die "qemu-nbd exited; see $LOG/qemu-nbd.log"
                ((tries-- > 0)) || die "qemu-nbd does not listen on $port"
                sleep 0.05
        done
}

# restore_compare FORMAT IMAGE SOURCE WHAT: IMAGE must hold SOURCE byte for
# byte. A qcow2 target is compared once its server has stopped (qemu-nbd
# holds its lock): what the export wrote, flushed and left in the image.
# qemu-img compare skips what both sides report as holes (SEEK_DATA, qcow2's
# tables) and reads the rest: 0.2-0.3 s here, where cmp takes 3 s over the
# 2 GiB and qemu-img compare through the export 5 s for changed.img.
restore_compare() {
        local fmt=$1 image=$2 src=$3 what=$4 rc=0
        qemu-img compare -f "$fmt" -F raw "$image" "$src" >"$LOG/restore-compare.out" 2>&1 || rc=$?
        case $rc in
        0) ;;
        1)
                cat "$LOG/restore-compare.out" >&2
                die "$what DIFFERS FROM $(basename "$src"): $image"
                ;;
        *)
                cat "$LOG/restore-compare.out" >&2
                die "could not compare $image with $src (qemu-img compare exit $rc)"
                ;;
        esac
}

# restore_file POOL ID TAG: vbak's restore of the full backup to a new file.
restore_file() {
        local pool=$1 id=$2 tag=$3-restore-full target=$STORE/vbak-restore-full.img
        sync
        timed "$tag" "$LOG/$tag.json" "$VBAK" pool restore "$pool" "$id" --disk vda --target "$target" --json
        row vbak-restore-full vbak "restore full to file" "$LOGICAL" "$ALLOC_BASE" 0 \
                "wrote $(mib "$(alloc_of "$target")") MiB allocated"
        restore_compare raw "$target" "$DATA/base.img" "VBAK RESTORE TO A FILE (restore point $id of pool $pool)"
        rm -f "$target"
}

# restore_nbd POOL ID TAG KEY OPERATION SOURCE ALLOC: vbak's restore of ID
# into a fresh qcow2 over NBD, then compared with SOURCE.
restore_nbd() {
        local pool=$1 id=$2 tag=$3 key=$4 op=$5 src=$6 alloc=$7 image=$STORE/vbak-restore.qcow2 url out sent
        restore_serve "$image"
        url=nbd://127.0.0.1:$RESTORE_PORT/vda
        out=$LOG/$tag.json
        sync
        timed "$tag" "$out" "$VBAK" pool restore "$pool" "$id" --disk vda --target "$url" \
                --connections "$RESTORE_CONNS" --json
        [ "$(jnum size "$out")" = "$LOGICAL" ] || die "$tag: the restore did not cover the disk ($out)"
        sent=$(need "$(jnum bytes_sent "$out")" "bytes_sent in $out")
        row "$key" vbak "$op" "$LOGICAL" "$alloc" 0 "sent $(mib "$sent") MiB, qcow2 $(mib "$(alloc_of "$image")") MiB"
        nbd_stop
        restore_compare qcow2 "$image" "$src" "VBAK RESTORE OVER NBD (restore point $id of pool $pool)"
        rm -f "$image"
}

# restore_nbdcopy SOURCE TAG KEY OPERATION ALLOC: nbdcopy writes SOURCE into
# a fresh qcow2 over NBD, the same way (connections, flush at the end).
restore_nbdcopy() {
        local src=$1 tag=$2 key=$3 op=$4 alloc=$5 image=$STORE/nbdcopy-restore.qcow2 url
        restore_serve "$image"
        url=nbd://127.0.0.1:$RESTORE_PORT/vda
        warm "$src"
        timed "$tag" /dev/null nbdcopy --connections="$RESTORE_CONNS" --flush "$src" "$url"
        row "$key" nbdcopy "$op" "$LOGICAL" "$alloc" 0 "the transfer alone, qcow2 $(mib "$(alloc_of "$image")") MiB"
        nbd_stop
        restore_compare qcow2 "$image" "$src" "NBDCOPY TO THE EXPORT"
        rm -f "$image"
}

# round_restore POOL FULL_ID INCR_ID ROUND: the rows over NBD (run.sh's vbak
# round has already timed the restores to a file).
round_restore() {
        local pool=$1 full=$2 incr=$3 tag=r$4-restore
        log "  restore over NBD (qemu-nbd, loopback TCP, fresh qcow2): vbak full and incremental, nbdcopy"
        restore_nbd "$pool" "$full" "$tag-nbd-full" vbak-restore-nbd-full "restore full over NBD" \
                "$DATA/base.img" "$ALLOC_BASE"
        restore_nbd "$pool" "$incr" "$tag-nbd-incr" vbak-restore-nbd-incr "restore incr over NBD" \
                "$DATA/changed.img" "$ALLOC_CHANGED"
        restore_nbdcopy "$DATA/base.img" "$tag-nbdcopy-base" nbdcopy-restore-base "base.img to export" "$ALLOC_BASE"
        restore_nbdcopy "$DATA/changed.img" "$tag-nbdcopy-changed" nbdcopy-restore-changed "changed.img to export" \
                "$ALLOC_CHANGED"
}

# restore_ratios: speed ratios (the inverse of the median seconds' ratio) of
# the restores over NBD against the restores to a file and restic's restore
# of the same image, appended to the rows' notes; sets RR_* for the JSON.
RR_FULL_FILE='' RR_INCR_FILE='' RR_INCR_RESTIC=''
# shellcheck disable=SC2004 # R_NOTE is run.sh's associative array, not an indexed one
restore_ratios() {
        local nbd_full nbd_incr file_full file_incr restic kf=vbak-restore-nbd-full ki=vbak-restore-nbd-incr
        nbd_full=$(sec_of vbak-restore-nbd-full) nbd_incr=$(sec_of vbak-restore-nbd-incr)
        file_full=$(sec_of vbak-restore-full) file_incr=$(sec_of vbak-restore) restic=$(sec_of restic-restore)
        if [ -n "$nbd_full" ] && [ -n "$file_full" ]; then
                RR_FULL_FILE=$(calc "$file_full / $nbd_full" 2)
                R_NOTE[$kf]+="; speed ${RR_FULL_FILE}x file"
        fi
        if [ -n "$nbd_incr" ] && [ -n "$file_incr" ]; then
                RR_INCR_FILE=$(calc "$file_incr / $nbd_incr" 2)
                R_NOTE[$ki]+="; speed ${RR_INCR_FILE}x file"
        fi
        if [ -n "$nbd_incr" ] && [ -n "$restic" ]; then
                RR_INCR_RESTIC=$(calc "$restic / $nbd_incr" 2)
                R_NOTE[$ki]+=", ${RR_INCR_RESTIC}x restic"
        fi
}
