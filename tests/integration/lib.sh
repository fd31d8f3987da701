# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# lib.sh -- helpers for the integration tests. Sourced by every
# tests/integration/test-*.sh; run.sh runs each script in a fresh temp dir
# (its current directory) with VBAK set to the binary under test.

: "${VBAK:?VBAK is not set: run the tests through tests/integration/run.sh BUILD_DIR}"
[[ -x $VBAK ]] || { echo "FAIL: VBAK=$VBAK is not an executable" >&2; exit 1; }

readonly MiB=$((1024 * 1024))
readonly KiB=1024
readonly SKIP=77
WORK=$PWD
# Output of the last expect_exit / run_json.
LAST_OUT=$WORK/.last.out
LAST_ERR=$WORK/.last.err

die() {
        echo "FAIL: $*" >&2
        exit 1
}

skip() {
        echo "SKIP: $*" >&2
        exit "$SKIP"
}

info() {
        echo "# $*"
}

# assert_eq EXPECTED GOT [WHAT]
assert_eq() {
        [[ "$1" == "$2" ]] || die "${3:-value}: expected '$1', got '$2'"
}

# assert_cmp OP A B WHAT: a numeric comparison (OP: -eq -ne -lt -le -gt -ge)
assert_cmp() {
        [[ "$2" =~ ^-?[0-9]+$ && "$3" =~ ^-?[0-9]+$ ]] || die "${4:-value}: not numbers: '$2' $1 '$3'"
        test "$2" "$1" "$3" || die "${4:-value}: expected $2 $1 $3"
}

# assert_contains FILE TEXT [WHAT]: a fixed string in a file
assert_contains() {
        grep -qF -- "$2" "$1" || die "${3:-output}: expected to contain '$2'; got:
$(sed -n '1,40s/^/    /p' "$1")"
}

assert_not_contains() {
        ! grep -qF -- "$2" "$1" || die "${3:-output}: expected NOT to contain '$2'; got:
$(sed -n '1,40s/^/    /p' "$1")"
}

# show_last: the output of the last command, indented, for messages
show_last() {
        echo "  stdout:"
        sed -n '1,30s/^/    /p' "$LAST_OUT"
        echo "  stderr:"
        sed -n '1,30s/^/    /p' "$LAST_ERR"
}

# expect_exit CODE CMD...: runs CMD (stdout to $LAST_OUT, stderr to
# $LAST_ERR) and dies unless it exits with CODE.
expect_exit() {
        local want=$1 rc=0
        shift
        "$@" >"$LAST_OUT" 2>"$LAST_ERR" || rc=$?
        [[ $rc == "$want" ]] || die "'$*': expected exit code $want, got $rc
$(show_last)"
}

# run_ok CMD...: expect_exit 0, then prints the command's stdout.
run_ok() {
        expect_exit 0 "$@"
        cat "$LAST_OUT"
}

# json_get KEY: a top-level number, string, true/false/null from the JSON
# document on stdin (vbak's indented output, or a compact one-line object).
json_get() {
        local key=$1 input v
        input=$(cat)
        if [[ ${input%%$'\n'*} == "{" ]]; then
                # Indented: top-level members are the lines at two spaces.
                v=$(sed -n -E "s/^  \"$key\": *(\"([^\"]*)\"|(-?[0-9][0-9.eE+-]*|true|false|null)),?[[:space:]]*\$/\\2\\3/p" \
                        <<<"$input" | sed -n 1p)
        else
                v=$(tr -d '\n' <<<"$input" |
                        grep -o -E "\"$key\": *(\"[^\"]*\"|-?[0-9][0-9.eE+-]*|true|false|null)" | sed -n 1p |
                        sed -E 's/^"[^"]*": *//; s/^"(.*)"$/\1/')
        fi
        if [[ -z $v ]]; then
                echo "json_get: no top-level key '$key' in:" >&2
                sed -n '1,30s/^/    /p' <<<"$input" >&2
                return 1
        fi
        printf '%s\n' "$v"
}

# json_ids: every "id" of a `vbak pool list --json` array, one a line
json_ids() {
        sed -n -E 's/^    "id": "([^"]*)",?$/\1/p'
}

# write_random FILE OFFSET LENGTH: random bytes at OFFSET (file not truncated)
write_random() {
        head -c "$3" /dev/urandom | dd of="$1" bs=64K iflag=fullblock oflag=seek_bytes seek="$2" conv=notrunc \
                status=none
}

# write_zeros FILE OFFSET LENGTH: zeros written (not a hole)
write_zeros() {
        head -c "$3" /dev/zero | dd of="$1" bs=64K iflag=fullblock oflag=seek_bytes seek="$2" conv=notrunc \
                status=none
}

# write_text FILE OFFSET LENGTH: compressible text
write_text() {
        perl -e 'my ($n, $s, $i) = ($ARGV[0], "", 0);
                 $s .= "vbak integration test line " . $i++ . ": the quick brown fox jumps over the lazy dog\n"
                         while length($s) < $n;
                 print substr($s, 0, $n);' "$3" |
                dd of="$1" bs=64K iflag=fullblock oflag=seek_bytes seek="$2" conv=notrunc status=none
}

# make_image FILE SIZE_MIB: a sparse image with random data at a few places
# (one piece across a 2 MiB chunk boundary, one at the very end) and 1 MiB of
# compressible text; about 4 MiB of data in all.
make_image() {
        local f=$1 size=$(($2 * MiB))
        ((size >= 32 * MiB)) || die "make_image: at least 32 MiB"
        rm -f "$f"
        truncate -s "$size" "$f"
        write_random "$f" $((1 * MiB)) $((1 * MiB))
        write_random "$f" $((8 * MiB - 256 * KiB)) $((512 * KiB))
        write_random "$f" $((13 * MiB + 4 * KiB)) $((700 * KiB))
        write_text "$f" $((20 * MiB)) $((1 * MiB))
        write_random "$f" $((size - 1 * MiB)) $((1 * MiB))
}

# make_fragmented_image FILE SIZE_MIB DATA_MIB: DATA_MIB MiB of the image
# holds 4 KiB of random data every 64 KiB (so a backup does many small reads),
# the rest is a hole.
make_fragmented_image() {
        rm -f "$1"
        truncate -s $(($2 * MiB)) "$1"
        perl -e '
                my ($f, $n) = @ARGV;
                open(my $r, "<", "/dev/urandom") or die;
                open(my $o, "+<", $f) or die "$f: $!";
                binmode $o;
                for my $i (0 .. $n - 1) {
                        read($r, my $buf, 4096) == 4096 or die;
                        seek($o, $i * 65536, 0) or die;
                        print $o $buf or die;
                }
                close($o) or die;
        ' "$1" $(($3 * 16))
}

# allocated_bytes FILE: bytes the file takes on disk
allocated_bytes() {
        echo $(($(stat -c %b "$1") * $(stat -c %B "$1")))
}

# assert_same EXPECTED_FILE GOT_FILE WHAT: byte-for-byte
assert_same() {
        local out
        out=$(cmp "$1" "$2" 2>&1) || die "${3:-restore}: $2 differs from $1: $out"
}

# pool_init PATH [OPTIONS...]
pool_init() {
        expect_exit 0 "$VBAK" pool init "$@"
}

# backup_json POOL VM DISK SOURCE [OPTIONS...]: a backup with --json; its
# JSON goes to stdout
backup_json() {
        local pool=$1 vm=$2 disk=$3 src=$4
        shift 4
        run_ok "$VBAK" pool backup "$pool" --vm "$vm" --disk "$disk" --source "$src" --json "$@"
}

# restore_cmp POOL ID DISK EXPECTED_FILE: restores and compares
restore_cmp() {
        local target
        target=$WORK/restore.$RANDOM.img
        rm -f "$target"
        expect_exit 0 "$VBAK" pool restore "$1" "$2" --disk "$3" --target "$target"
        [[ ! -e $target.partial ]] || die "restore of $2 left $target.partial behind"
        assert_same "$4" "$target" "restore of $1 $2 disk $3"
        rm -f "$target"
}

# list_ids POOL [--vm NAME]: restore point ids, oldest first
list_ids() {
        local pool=$1
        shift
        expect_exit 0 "$VBAK" pool list "$pool" --json "$@"
        json_ids <"$LAST_OUT"
}

# running PID: the process exists and is not a zombie
running() {
        local st
        st=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
        [[ -n $st && $st != Z && $st != X ]]
}

need_root() {
        [[ $(id -u) == 0 ]] || skip "needs root"
}

need_cmd() {
        local c
        for c in "$@"; do
                command -v "$c" >/dev/null || skip "needs $c"
        done
}
