#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A TCP proxy for fault injection in vbak's integration tests.

Sits between vbak and an NBD server (or vbak-cvd) and forwards bytes both
ways for any number of connections, until told to break them:

    tcp-proxy.py --listen 127.0.0.1:PORT --target HOST:PORT --control SOCKET [--log FILE]

The control unix socket takes one-line commands and answers each with one line:

    cut             reset every current connection now (both sides, SO_LINGER 0: RST)
    down SECONDS    cut everything and reset new connections for SECONDS, then accept again
    up              end a down now
    cut-after BYTES cut all connections once BYTES more bytes have gone server->client
                    (in total over all connections), then carry on
    drop PERCENT    from now on reset each new connection at once (RST) with that
                    probability (0-100); drop 0 ends it
    stats           {"connections": accepted, "active": N, "client_to_server": bytes,
                     "server_to_client": bytes, "cuts": cut events, "connections_cut": N,
                     "refused": connections reset while down, "dropped": connections
                     reset by drop, "down": bool}

Answers are "ok", the stats JSON, or "error: ...". Prints "tcp-proxy: ready"
on stdout once listening; exits on SIGTERM or SIGINT.

One thread and a selector: every state change happens between two events,
so a cut never races with a forward. Each direction has a bounded buffer;
a full one stops reading from its source (backpressure).
"""

import argparse
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time

BUF_MAX = 1 << 20  # bytes buffered per direction before its source is paused
CHUNK = 256 << 10


def host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


class Pipe:
    """One proxied connection: a client socket and its server socket."""

    def __init__(self, proxy, client, server, addr):
        self.proxy, self.client, self.server, self.addr = proxy, client, server, addr
        self.to_server, self.to_client = bytearray(), bytearray()
        self.eof = {client: False, server: False}  # this side sent EOF
        self.closed = False
        self.registered = set()
        for s in (client, server):
            s.setblocking(False)
        self.update()

    def peer(self, s):
        return self.server if s is self.client else self.client

    def outbuf(self, s):
        """The bytes waiting to be written to s."""
        return self.to_server if s is self.server else self.to_client

    def update(self):
        """Registers each socket for what it can do now (a socket with
        nothing to do is left out, or the selector would spin on it)."""
        for s in (self.client, self.server):
            mask = 0
            if not self.eof[s] and len(self.outbuf(self.peer(s))) < BUF_MAX:
                mask |= selectors.EVENT_READ
            if self.outbuf(s):
                mask |= selectors.EVENT_WRITE
            if not mask:
                if s in self.registered:
                    self.proxy.sel.unregister(s)
                    self.registered.discard(s)
            elif s in self.registered:
                self.proxy.sel.modify(s, mask, self.on_event)
            else:
                self.proxy.sel.register(s, mask, self.on_event)
                self.registered.add(s)
        if all(self.eof.values()) and not self.to_server and not self.to_client:
            self.close(reset=False)

    def on_event(self, s, mask):
        if self.closed:  # cut by an earlier event of the same round
            return
        try:
            if mask & selectors.EVENT_READ:
                self.read(s)
            if not self.closed and mask & selectors.EVENT_WRITE:
                self.write(s)
        except OSError as e:
            self.proxy.log(f"connection from {self.addr}: {e}")
            self.close(reset=True)
            return
        if not self.closed:
            self.update()

    def read(self, s):
        try:
            data = s.recv(CHUNK)
        except BlockingIOError:
            return
        if data:
            self.outbuf(self.peer(s)).extend(data)
        else:
            self.eof[s] = True
        if self.eof[s] and not self.outbuf(self.peer(s)):
            self.peer(s).shutdown(socket.SHUT_WR)

    def write(self, s):
        buf = self.outbuf(s)
        n = len(buf)
        to_client = s is self.client
        budget = self.proxy.cut_budget
        if to_client and budget is not None:
            n = min(n, budget)
        try:
            n = s.send(buf[:n])
        except BlockingIOError:
            return
        del buf[:n]
        self.proxy.count(n, to_client)
        if self.proxy.closed_by_budget():
            return
        if not buf and self.eof[self.peer(s)]:
            s.shutdown(socket.SHUT_WR)

    def close(self, reset):
        if self.closed:
            return
        self.closed = True
        for s in (self.client, self.server):
            if s in self.registered:
                self.proxy.sel.unregister(s)
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.proxy.pipes.discard(self)


class Control:
    """One connection on the control socket: commands in, answers out."""

    def __init__(self, proxy, sock):
        self.proxy, self.sock, self.buf = proxy, sock, b""
        sock.setblocking(False)
        proxy.sel.register(sock, selectors.EVENT_READ, self.on_event)

    def on_event(self, s, mask):
        try:
            data = s.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.proxy.sel.unregister(s)
            s.close()
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            answer = self.proxy.command(line.decode(errors="replace").strip())
            s.setblocking(True)  # answers are short: a blocking send is fine
            s.sendall(answer.encode() + b"\n")
            s.setblocking(False)


class Proxy:
    def __init__(self, args):
        self.target = args.target
        self.logfile = open(args.log, "a", buffering=1) if args.log else None
        self.sel = selectors.DefaultSelector()
        self.pipes = set()
        self.stats = dict(connections=0, client_to_server=0, server_to_client=0, cuts=0, connections_cut=0,
                          refused=0, dropped=0)
        self.down_until = None  # monotonic time a down ends
        self.cut_budget = None  # server->client bytes left before a cut-after fires
        self.drop_percent = 0.0  # chance (in %) that a new connection is reset at once

        self.listener = socket.create_server(args.listen, reuse_port=False)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, self.on_accept)
        if os.path.exists(args.control):
            os.unlink(args.control)
        self.control_path = args.control
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(args.control)
        self.control.listen(16)
        self.sel.register(self.control, selectors.EVENT_READ, self.on_control)

    def log(self, msg):
        if self.logfile:
            self.logfile.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    def on_accept(self, s, mask):
        try:
            client, addr = s.accept()
        except BlockingIOError:
            return
        if self.down_until is not None:
            self.stats["refused"] += 1
            self.log(f"reset {addr} (down)")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        if self.drop_percent > 0 and random.random() * 100 < self.drop_percent:
            self.stats["dropped"] += 1
            self.log(f"reset {addr} (drop)")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        self.stats["connections"] += 1
        try:
            # The target is local: a blocking connect answers at once.
            server = socket.create_connection(self.target, timeout=5)
        except OSError as e:
            self.log(f"connect to {self.target}: {e}; resetting {addr}")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        for c in (client, server):
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pipes.add(Pipe(self, client, server, addr))
        self.log(f"accepted {addr}")

    def on_control(self, s, mask):
        try:
            conn, _ = s.accept()
        except BlockingIOError:
            return
        Control(self, conn)

    def count(self, n, to_client):
        self.stats["server_to_client" if to_client else "client_to_server"] += n
        if to_client and self.cut_budget is not None:
            self.cut_budget -= n

    def closed_by_budget(self):
        """Fires a pending cut-after whose bytes have all gone; True when it did."""
        if self.cut_budget is None or self.cut_budget > 0:
            return False
        self.cut_budget = None
        self.cut("cut-after")
        return True

    def cut(self, why):
        self.stats["cuts"] += 1
        self.stats["connections_cut"] += len(self.pipes)
        self.log(f"{why}: resetting {len(self.pipes)} connections")
        for p in list(self.pipes):
            p.close(reset=True)

    def command(self, line):
        self.log(f"command: {line}")
        words = line.split()
        try:
            if words == ["cut"]:
                self.cut("cut")
            elif len(words) == 2 and words[0] == "down":
                seconds = float(words[1])
                if seconds < 0:
                    raise ValueError
                self.cut("down")
                self.down_until = time.monotonic() + seconds
            elif words == ["up"]:
                self.down_until = None
            elif len(words) == 2 and words[0] == "cut-after":
                self.cut_budget = int(words[1])
                if self.cut_budget < 0:
                    raise ValueError
                self.closed_by_budget()  # cut-after 0: now
            elif len(words) == 2 and words[0] == "drop":
                percent = float(words[1])
                if not 0 <= percent <= 100:
                    raise ValueError
                self.drop_percent = percent
            elif words == ["stats"]:
                return json.dumps(dict(self.stats, active=len(self.pipes), down=self.down_until is not None))
            else:
                return f"error: unknown command {line!r} (cut, down SECONDS, up, cut-after BYTES, drop PERCENT, stats)"
        except ValueError:
            return f"error: bad number in {line!r}"
        return "ok"

    def run(self):
        print("tcp-proxy: ready", flush=True)
        while True:
            timeout = None
            if self.down_until is not None:
                timeout = max(0.0, self.down_until - time.monotonic())
            for key, mask in self.sel.select(timeout):
                key.data(key.fileobj, mask)
            if self.down_until is not None and time.monotonic() >= self.down_until:
                self.down_until = None
                self.log("up again")

    def close(self):
        for p in list(self.pipes):
            p.close(reset=True)
        self.listener.close()
        self.control.close()
        try:
            os.unlink(self.control_path)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", type=host_port, required=True, metavar="HOST:PORT")
    ap.add_argument("--target", type=host_port, required=True, metavar="HOST:PORT")
    ap.add_argument("--control", required=True, metavar="SOCKET")
    ap.add_argument("--log", metavar="FILE")
    args = ap.parse_args()

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        proxy = Proxy(args)
    except OSError as e:
        sys.exit(f"tcp-proxy: {e}")
    try:
        proxy.run()
    finally:
        proxy.close()


if __name__ == "__main__":
    main()
