#!/usr/bin/env python3
"""A stdio MCP server that writes down every line it receives, for the tests of what the
gateway refuses: whatever the gateway refused must not be in the file. Standard library only,
so it can also answer what no SDK would.

    python3 tests/peers/recording_upstream.py RECORD_FILE

Each line read from stdin is appended to RECORD_FILE (and flushed) before it is handled.
Tools:
  - `add(a, b)`: text `a + b = sum`, with the values as Python's `json` read them (the last of
    duplicate keys);
  - `duplicate_answer()`: answered with a result holding the key `text` twice, which parsers
    read differently;
  - `surrogate_answer()`: answered with a lone UTF-16 surrogate escape in its text;
  - `get weather`: listed only, with a name outside MCP's tool-name characters;
  - `encoded_env(name)`: the environment variable `name` as base64 (standard, padded; and
    URL-safe inside `user:VALUE`), hex, percent-encoding and `\\u` escapes, one per content
    block, and again in a `notifications/message` log line before the answer: what a careless
    server echoes of a key it was given.
Requests it does not know get a JSON-RPC error -32601, as any server's would.
"""
import base64
import json
import os
import sys

TOOLS = [
    {"name": "add", "description": "Add two numbers.",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}},
    {"name": "duplicate_answer", "description": "Answers with a duplicate key.", "inputSchema": {"type": "object"}},
    {"name": "surrogate_answer", "description": "Answers with a lone surrogate.", "inputSchema": {"type": "object"}},
    {"name": "get weather", "description": "A name no agent may call.", "inputSchema": {"type": "object"}},
    {"name": "encoded_env", "description": "An environment variable, encoded every careless way.",
     "inputSchema": {"type": "object", "properties": {"name": {"type": "string"}}}},
]


def send(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def answer(id_, result) -> None:
    send(json.dumps({"jsonrpc": "2.0", "id": id_, "result": result}))


def main() -> None:
    record = open(sys.argv[1], "a", encoding="utf-8")
    for line in sys.stdin:
        record.write(line if line.endswith("\n") else line + "\n")
        record.flush()
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        method, id_ = msg.get("method"), msg.get("id")
        if id_ is None or method is None:
            continue
        if method == "initialize":
            answer(id_, {"protocolVersion": msg["params"].get("protocolVersion", "2025-06-18"),
                         "capabilities": {"tools": {}}, "serverInfo": {"name": "recording", "version": "1"}})
        elif method == "tools/list":
            answer(id_, {"tools": TOOLS})
        elif method == "tools/call":
            name = msg["params"].get("name")
            args = msg["params"].get("arguments") or {}
            if name == "add":
                a, b = args.get("a"), args.get("b")
                answer(id_, {"content": [{"type": "text", "text": f"{a} + {b} = {a + b}"}]})
            elif name == "duplicate_answer":
                id_text = json.dumps(id_)
                send('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"benign","text":"hidden"}]}}' % id_text)
            elif name == "encoded_env":
                value = os.environ.get(args.get("name", ""), "").encode()
                forms = [
                    base64.b64encode(value).decode(),
                    "Basic " + base64.urlsafe_b64encode(b"user:" + value).decode(),
                    value.hex(),
                    "https://example.test/cb?k=" + "".join("%%%02x" % b for b in value),
                    "".join("\\u%04x" % ord(ch) for ch in value.decode()),
                ]
                send(json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                 "params": {"level": "debug", "data": "key in hex: " + value.hex().upper()}}))
                answer(id_, {"content": [{"type": "text", "text": f} for f in forms]})
            elif name == "surrogate_answer":
                id_text = json.dumps(id_)
                send('{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"x\\ud800y"}]}}' % id_text)
            else:
                send(json.dumps({"jsonrpc": "2.0", "id": id_, "error": {"code": -32602, "message": f"unknown tool {name}"}}))
        elif method == "ping":
            answer(id_, {})
        else:
            send(json.dumps({"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": f"unknown method {method}"}}))


if __name__ == "__main__":
    main()
