#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A minimal QMP client for vbak's integration tests.

    qmp.py SOCKET 'JSON' ['JSON' ...]   sends qmp_capabilities, then each command
                                        ({"execute": ..., "arguments": ...}); prints
                                        each "return" as one JSON line
    qmp.py SOCKET --hmp 'COMMAND'       runs a human monitor command through
                                        human-monitor-command and prints its text

Exits 1 with the error's desc on stderr when QEMU answers a command with an
error (the commands after it are not sent), 2 on a usage or connection error.
Events that arrive in between are skipped. Connecting is retried for 5 s
while QEMU is still starting (no socket yet); as a QMP socket serves one
client at a time, a second client waits for its greeting (up to 30 s).
"""

import json
import socket
import sys
import time

TIMEOUT = 30  # seconds for each answer


def connect(path):
    deadline = time.monotonic() + 5
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.settimeout(TIMEOUT)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def answer(f):
    """The next reply that is not an event."""
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("QEMU closed the QMP connection")
        msg = json.loads(line)
        if "event" not in msg:
            return msg


def execute(s, f, cmd):
    s.sendall(json.dumps(cmd).encode() + b"\n")
    msg = answer(f)
    if "error" in msg:
        sys.exit(f"qmp.py: {cmd.get('execute')}: {msg['error'].get('desc', msg['error'])}")
    return msg.get("return")


def main():
    args = sys.argv[1:]
    if len(args) < 2 or (args[1] == "--hmp" and len(args) != 3):
        sys.stderr.write(__doc__)
        sys.exit(2)
    try:
        if args[1] == "--hmp":
            cmds = [{"execute": "human-monitor-command", "arguments": {"command-line": args[2]}}]
        else:
            cmds = [json.loads(a) for a in args[1:]]
    except json.JSONDecodeError as e:
        sys.stderr.write(f"qmp.py: not JSON: {e}\n")
        sys.exit(2)
    try:
        s = connect(args[0])
    except OSError as e:
        sys.stderr.write(f"qmp.py: {args[0]}: {e}\n")
        sys.exit(2)
    with s, s.makefile("r") as f:
        answer(f)  # the greeting
        execute(s, f, {"execute": "qmp_capabilities"})
        for cmd in cmds:
            ret = execute(s, f, cmd)
            if args[1] == "--hmp":
                sys.stdout.write(ret)
            else:
                print(json.dumps(ret))


if __name__ == "__main__":
    main()
