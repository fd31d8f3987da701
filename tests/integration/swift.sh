# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# swift.sh -- a private single-node OpenStack Swift with s3api and tempauth,
# the S3 store of the object pool's tests (it checks SigV4 signatures and
# payload hashes, which a mock store would not). Sourced after lib.sh and
# vm.sh.
#
# Everything lives under $WORK/swift: swift.conf (read from swift_dir, so
# /etc/swift is neither read nor changed), one-replica rings for the
# account, container and object servers on free ports, the devices folder,
# the configs and the servers' logs. The four servers run with workers=0
# (one process each, tracked for stop_all) as the current user; the proxy's
# pipeline has s3api (region us-east-1) and tempauth with one user,
# "test:tester" / "testing", whose account is created on first use. No
# memcached: the proxy's cache middleware logs that it finds none and goes
# on.
#
#     need_swift       skips the test when Swift is not installed
#     start_swift      starts it; exports S3_ENDPOINT, S3_ACCESS, S3_SECRET,
#                      S3_REGION (and sets SWIFT_DIR, SWIFT_PORT)
#     stop_swift       stops its four servers

SWIFT_DIR=$WORK/swift
SWIFT_PORT=''
SWIFT_PIDS=()
# Swift is a package of the system's python3: its scripts name it in their
# first line, so they are run directly.
SWIFT_SERVERS=(account container object proxy)

need_swift() {
        local s
        for s in "${SWIFT_SERVERS[@]}"; do
                [[ -x /usr/bin/swift-$s-server ]] ||
                        skip "needs /usr/bin/swift-$s-server (scripts/deps.sh installs swift)"
        done
        [[ -x /usr/bin/swift-ring-builder ]] || skip "needs /usr/bin/swift-ring-builder (scripts/deps.sh installs swift)"
        command -v curl >/dev/null || skip "needs curl"
}

# swift_server_conf NAME PORT: the config of an account, container or
# object server
swift_server_conf() {
        cat <<EOF
[DEFAULT]
devices = $SWIFT_DIR/srv
mount_check = false
bind_ip = 127.0.0.1
bind_port = $2
workers = 0
user = $(id -un)
swift_dir = $SWIFT_DIR/etc
log_level = WARNING

[pipeline:main]
pipeline = $1-server

[app:$1-server]
use = egg:swift#$1
EOF
}

start_swift() {
        local etc=$SWIFT_DIR/etc name port pid tries=400 s i
        local -A ports
        mkdir -p "$etc" "$SWIFT_DIR/srv/d1" "$SWIFT_DIR/log"
        cat >"$etc/swift.conf" <<'EOF'
[swift-hash]
swift_hash_path_suffix = vbaktest
swift_hash_path_prefix = vbaktest

[storage-policy:0]
name = Policy-0
default = yes
EOF
        for name in account container object; do
                port=$(free_port)
                ports[$name]=$port
                (
                        cd "$etc" &&
                                /usr/bin/swift-ring-builder "$name.builder" create 8 1 1 &&
                                /usr/bin/swift-ring-builder "$name.builder" add "r1z1-127.0.0.1:$port/d1" 1 &&
                                /usr/bin/swift-ring-builder "$name.builder" rebalance
                ) >>"$SWIFT_DIR/log/rings.log" 2>&1 ||
                        die "swift-ring-builder failed for $name: $(tail -5 "$SWIFT_DIR/log/rings.log")"
                swift_server_conf "$name" "$port" >"$etc/$name-server.conf"
        done
        SWIFT_PORT=$(free_port)
        cat >"$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $SWIFT_PORT
workers = 0
user = $(id -un)
swift_dir = $etc
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
        for s in "${SWIFT_SERVERS[@]}"; do
                "/usr/bin/swift-$s-server" "$etc/$s-server.conf" >"$SWIFT_DIR/log/$s.log" 2>&1 </dev/null &
                pid=$!
                disown "$pid"
                track "$pid" "swift-$s-server"
                SWIFT_PIDS+=("$pid")
        done
        # The proxy's health check answers once it listens; the back-end
        # servers must listen too before the first request.
        until [[ $(curl -s "http://127.0.0.1:$SWIFT_PORT/healthcheck" 2>/dev/null) == OK ]] &&
                port_open 127.0.0.1 "${ports[account]}" && port_open 127.0.0.1 "${ports[container]}" &&
                port_open 127.0.0.1 "${ports[object]}"; do
                for i in "${!SWIFT_PIDS[@]}"; do
                        running "${SWIFT_PIDS[$i]}" ||
                                die "swift-${SWIFT_SERVERS[$i]}-server exited: $(tail -20 "$SWIFT_DIR/log/${SWIFT_SERVERS[$i]}.log")"
                done
                ((tries-- > 0)) || die "Swift does not answer after 20 s: $(tail -20 "$SWIFT_DIR/log/proxy.log")"
                sleep 0.05
        done
        export S3_ENDPOINT=http://127.0.0.1:$SWIFT_PORT
        export S3_ACCESS=test:tester
        export S3_SECRET=testing
        export S3_REGION=us-east-1
}

stop_swift() {
        local pid tries
        for pid in "${SWIFT_PIDS[@]}"; do
                kill -TERM "$pid" 2>/dev/null || true
        done
        for pid in "${SWIFT_PIDS[@]}"; do
                tries=100
                while running "$pid" && ((tries-- > 0)); do
                        sleep 0.05
                done
                running "$pid" && { kill -KILL "$pid" 2>/dev/null || true; }
        done
        SWIFT_PIDS=()
        SWIFT_PORT=''
}
