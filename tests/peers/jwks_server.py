#!/usr/bin/env python3
"""A stand-in identity provider's JWKS endpoint (standard library only): serves a file that the
test rewrites to rotate keys.

    jwks_server.py --file PATH [--port N] [--cert PEM --key PEM] [--log PATH]

Binds 127.0.0.1:N (default 0: a free port) and prints the port on stdout once it accepts
connections. Every GET, whatever its path, answers 200 with the file as it is at that moment
(`application/json`), or 404 when it does not exist. With --cert and --key it speaks https.
With --log, one line `GET <path>` is appended per request, so a test can count fetches.
"""
import argparse
import http.server
import ssl
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--log")
    a = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if a.log:
                with open(a.log, "a") as log:
                    log.write(f"GET {self.path}\n")
            try:
                with open(a.file, "rb") as f:
                    body = f.read()
                status = 200
            except FileNotFoundError:
                body, status = b'{"error":"not found"}', 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    if a.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(a.cert, a.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
