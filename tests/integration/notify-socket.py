#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A stand-in for systemd's notify socket in vbak's integration tests.

    notify-socket.py ADDRESS LOG [--timeout SECONDS]

Binds an AF_UNIX datagram socket at ADDRESS (a path, or '@name' for an
abstract one, as $NOTIFY_SOCKET spells it) and appends every datagram it
receives to LOG, one line per VAR=VALUE line of the message, each prefixed
with the sender's pid (taken from the kernel's SCM_CREDENTIALS, as systemd
does for NotifyAccess=main):

    1234 READY=1
    1234 STATUS=serving the API on /run/vbak/vbakd.sock

Prints "notify-socket: ready" on stdout once bound. Exits on SIGTERM or
SIGINT, or after --timeout seconds (default 300) as its own watchdog, and
removes a path socket it made.
"""

import argparse
import os
import signal
import socket
import struct
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("log")
    ap.add_argument("--timeout", type=float, default=300.0)
    a = ap.parse_args()

    addr = "\0" + a.address[1:] if a.address.startswith("@") else a.address
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(addr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(3))
    signal.setitimer(signal.ITIMER_REAL, a.timeout)
    print("notify-socket: ready", flush=True)
    creds_len = struct.calcsize("3i")
    try:
        with open(a.log, "a", encoding="utf-8") as log:
            while True:
                data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(creds_len))
                pid = 0
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                        pid = struct.unpack("3i", payload[:creds_len])[0]
                for line in data.decode("utf-8", "replace").split("\n"):
                    if line:
                        log.write(f"{pid} {line}\n")
                log.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if not a.address.startswith("@"):
            try:
                os.unlink(a.address)
            except OSError:
                pass


if __name__ == "__main__":
    main()
