#!/usr/bin/env python3
"""An HTTP endpoint that records what is POSTed to it, for the checkpoint publishing tests.

Usage: post_sink.py OUT_FILE [--fail N] [--fail-until FILE]

Listens on 127.0.0.1 (a free port, printed alone on the first line of stdout once serving),
answers the first N POSTs with 503 (and every POST while --fail-until's FILE does not exist: an
outage the test ends when it chooses) and the rest with 200, and appends each accepted body to
OUT_FILE as one line.
"""

import argparse
import http.server
import os
import sys

args = argparse.ArgumentParser()
args.add_argument("out")
args.add_argument("--fail", type=int, default=0)
args.add_argument("--fail-until")
args = args.parse_args()
failures_left = args.fail


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global failures_left
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        down = args.fail_until is not None and not os.path.exists(args.fail_until)
        if failures_left > 0 or down:
            failures_left = max(failures_left - 1, 0)
            self.send_response(503)
            self.end_headers()
            return
        with open(args.out, "ab") as f:
            f.write(body.strip() + b"\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
