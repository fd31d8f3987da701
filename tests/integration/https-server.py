#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# https-server.py DIR PORT_FILE [--cert PEM --key PEM] [--record FILE]
#                 [--timeout SECONDS]
#
# A stand-in for a console in the installer's tests: serves the files under
# DIR over HTTP, or over HTTPS with the given certificate and key, on
# 127.0.0.1 and a port the kernel picks, which it writes to PORT_FILE once it
# listens. With --record, every POST is answered 201 and its path and body
# are appended to FILE as one JSON line {"path": ..., "body": ...}. Exits by
# itself after --timeout seconds (default 300) so that a test killed hard
# does not leave it behind.
import argparse
import functools
import http.server
import json
import os
import ssl
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("port_file")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--record")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode("utf-8", "replace")
            if args.record is None:
                self.send_error(405)
                return
            with open(args.record, "a") as f:
                f.write(json.dumps({"path": self.path, "body": body}) + "\n")
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    handler = functools.partial(Handler, directory=args.dir)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, args.port_file)
    threading.Timer(args.timeout, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
