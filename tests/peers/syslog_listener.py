#!/usr/bin/env python3
"""A syslog receiver: RFC 5424 messages over TCP (or TLS), framed by octet counting (RFC 6587).

Usage: syslog_listener.py OUT [--tls CERT KEY]

Listens on 127.0.0.1 (a free port, printed alone on the first line of stdout once serving) and
appends each message to OUT as one JSON line: its header fields, structured data and MSG (the
JSON after the BOM, parsed). A frame that breaks the framing or the RFC 5424 header is written
as {"error": ...} and the connection closed.
"""

import argparse
import json
import re
import socketserver
import ssl
import sys

args = argparse.ArgumentParser()
args.add_argument("out")
args.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
args = args.parse_args()

HEADER = re.compile(
    rb"<(\d{1,3})>1 (\S+) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32}) (-|(?:\[[^\]]*\])+) ?(.*)\Z", re.S
)
PARAM = re.compile(r'(\S+?)="((?:[^"\\]|\\.)*)"')
BOM = b"\xef\xbb\xbf"


def record(entry):
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def parse(frame):
    m = HEADER.match(frame)
    if not m:
        raise ValueError(f"not an RFC 5424 message: {frame[:80]!r}")
    pri, time, host, app, procid, msgid, sd, msg = m.groups()
    pri = int(pri)
    if pri > 191:
        raise ValueError(f"PRI {pri} out of range")
    if not msg.startswith(BOM):
        raise ValueError("MSG is not UTF-8 with a BOM")
    elements = {}
    for element in re.findall(r"\[([^\]]*)\]", sd.decode()):
        sd_id, _, rest = element.partition(" ")
        elements[sd_id] = dict(PARAM.findall(rest))
    return {
        "facility": pri // 8,
        "severity": pri % 8,
        "timestamp": time.decode(),
        "hostname": host.decode(),
        "app": app.decode(),
        "procid": procid.decode(),
        "msgid": msgid.decode(),
        "sd": elements,
        "msg": json.loads(msg[len(BOM):].decode("utf-8")),
    }


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            length = b""
            while True:
                c = self.rfile.read(1)
                if not c:
                    return
                if c == b" ":
                    break
                if not c.isdigit() or len(length) > 9:
                    record({"error": f"bad octet count {length + c!r}"})
                    return
                length += c
            frame = self.rfile.read(int(length))
            if len(frame) != int(length):
                record({"error": "frame cut short"})
                return
            try:
                record(parse(frame))
            except (ValueError, UnicodeDecodeError) as e:
                record({"error": str(e)})
                return


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = super().get_request()
        if args.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*args.tls)
            sock = ctx.wrap_socket(sock, server_side=True)
        return sock, addr


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
