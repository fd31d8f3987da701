#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# run.sh BUILD_DIR [TEST...] -- runs every tests/integration/test-*.sh (or
# only the ones named) against BUILD_DIR/vbak. Each script runs in a fresh
# temp dir, its current directory, with VBAK=<absolute path>/vbak exported.
# A script passes when it exits 0, is skipped when it exits 77, and fails
# otherwise (its output is shown then). Exits non-zero when any failed.
set -uo pipefail

usage() {
        echo "Usage: $0 BUILD_DIR [TEST...]" >&2
        exit 2
}

[[ $# -ge 1 ]] || usage
build=$(cd "$1" 2>/dev/null && pwd) || {
        echo "$0: no build dir $1" >&2
        exit 2
}
shift
export VBAK=$build/vbak
[[ -x $VBAK ]] || {
        echo "$0: $VBAK is not built (make build/vbak)" >&2
        exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout_s=${VBAK_TEST_TIMEOUT:-180}

scripts=()
if [[ $# -gt 0 ]]; then
        for t in "$@"; do
                t=${t##*/}
                t=${t%.sh}
                t=${t#test-}
                [[ -f $here/test-$t.sh ]] || {
                        echo "$0: no test $here/test-$t.sh" >&2
                        exit 2
                }
                scripts+=("$here/test-$t.sh")
        done
else
        for s in "$here"/test-*.sh; do
                [[ -e $s ]] && scripts+=("$s")
        done
fi

passed=0 failed=0 skipped=0
failed_names=()
for s in "${scripts[@]}"; do
        name=${s##*/}
        dir=$(mktemp -d "${TMPDIR:-/tmp}/vbak-it.${name%.sh}.XXXXXX")
        start=$SECONDS
        rc=0
        # A script may ask for more time with a line "# test-timeout: SECONDS".
        t=$(sed -n 's/^# test-timeout: \([0-9][0-9]*\)$/\1/p' "$s" | head -1)
        t=${t:-$timeout_s}
        (cd "$dir" && exec timeout -k 10 "$t" bash "$s") >"$dir.log" 2>&1 </dev/null || rc=$?
        took=$((SECONDS - start))
        case $rc in
        0)
                printf 'ok    %s (%ds)\n' "$name" "$took"
                passed=$((passed + 1))
                ;;
        77)
                printf 'skip  %s: %s\n' "$name" "$(grep -m1 '^SKIP' "$dir.log" | sed 's/^SKIP: //')"
                skipped=$((skipped + 1))
                ;;
        *)
                why="exit $rc"
                [[ $rc == 124 || $rc == 137 ]] && why="timed out after ${t}s (exit $rc)"
                printf 'FAIL  %s (%ds, %s)\n' "$name" "$took" "$why"
                sed -n '1,200s/^/    | /p' "$dir.log"
                [[ $(wc -l <"$dir.log") -gt 200 ]] && echo "    | ... (full log: $dir.log)"
                failed=$((failed + 1))
                failed_names+=("$name")
                ;;
        esac
        # A failed script's files stay for a look; tests unmount what they mount.
        if [[ $rc == 0 || $rc == 77 ]]; then
                rm -rf "$dir" "$dir.log" 2>/dev/null || echo "    (could not remove $dir)"
        else
                echo "    (files kept in $dir)"
        fi
done

((skipped > 0)) && echo "$skipped skipped"
echo "$passed passed, $failed failed"
((failed == 0))
