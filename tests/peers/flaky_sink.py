#!/usr/bin/env python3
"""An HTTP receiver for custos's SIEM sinks that is down for a while, then recovers.

Usage: flaky_sink.py OUT [--fail N] [--down-while FILE] [--lose-acks N] [--hec-token TOKEN]

Listens on 127.0.0.1 (a free port, printed alone on the first line of stdout once serving).
Answers 503 to the first N batches, and to every batch while FILE exists; then accepts. Each
accepted event is appended to OUT as one JSON line, in the order received. With --lose-acks,
the first N batches it accepts (recorded in OUT) are answered 503 all the same, as when an
acknowledgement is lost on the way back.

Without --hec-token it is a generic webhook: a batch is a JSON array. With it, it is shaped
like Splunk's HTTP Event Collector: batches are POSTed to /services/collector/event as HEC
envelopes one after another, with `Authorization: Splunk TOKEN` (anything else: 401 or 403
with a HEC error code), and answered {"text": "Success", "code": 0}. The envelope is kept.
"""

import argparse
import http.server
import json
import os
import sys

args = argparse.ArgumentParser()
args.add_argument("out")
args.add_argument("--fail", type=int, default=0)
args.add_argument("--down-while")
args.add_argument("--lose-acks", type=int, default=0)
args.add_argument("--hec-token")
args = args.parse_args()
failures_left = args.fail
acks_to_lose = args.lose_acks


def envelopes(text):
    """HEC's batch format: JSON objects one after another."""
    decoder, at, out = json.JSONDecoder(), 0, []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return out
        value, at = decoder.raw_decode(text, at)
        out.append(value)


class Sink(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        global failures_left, acks_to_lose
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if args.hec_token is not None:
            if self.path != "/services/collector/event":
                return self.answer(404, {"text": "The requested URL was not found on this server.", "code": 404})
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Splunk "):
                return self.answer(401, {"text": "Token is required", "code": 2})
            if auth != f"Splunk {args.hec_token}":
                return self.answer(403, {"text": "Invalid token", "code": 4})
        if failures_left > 0 or (args.down_while and os.path.exists(args.down_while)):
            failures_left = max(0, failures_left - 1)
            return self.answer(503, {"text": "Server is busy", "code": 9})
        try:
            text = body.decode("utf-8")
            events = envelopes(text) if args.hec_token is not None else json.loads(text)
            if not isinstance(events, list):
                raise ValueError("not a JSON array")
        except (ValueError, UnicodeDecodeError) as e:
            return self.answer(400, {"text": f"Invalid data format: {e}", "code": 6})
        with open(args.out, "a", encoding="utf-8") as f:
            for event in events:
                f.write(json.dumps(event) + "\n")
        if acks_to_lose > 0:
            acks_to_lose -= 1
            return self.answer(503, {"text": "Server is busy", "code": 9})
        self.answer(200, {"text": "Success", "code": 0})

    def log_message(self, *_):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
