#!/usr/bin/env python3
"""Rough per-call overhead of `custos run`: N sequential tools/call round trips over stdio to the
sample server, direct and through the gateway, in one run. Prints calls/s and the ratio.

    python3 scripts/overhead.py [--calls 2000] [--profile release]

Not a benchmark suite (issue 8 brings that); a quick, reproducible ratio for reviews.
"""
import argparse, json, os, subprocess, sys, tempfile, time

def session(cmd, calls):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    def rpc(msg):
        p.stdin.write((json.dumps(msg) + "\n").encode())
        if "id" not in msg:
            return None
        while True:
            reply = json.loads(p.stdout.readline())
            if reply.get("id") == msg["id"]:
                return reply
    rpc({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"})
    rpc({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    start = time.perf_counter()
    for i in range(calls):
        r = rpc({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": f"m{i}"}}})
        assert "result" in r, r
    elapsed = time.perf_counter() - start
    p.stdin.close(); p.wait()
    return elapsed

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--profile", default="release")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.path.join(root, "target", a.profile)
    server = os.path.join(target, "custos-sample-server")
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "policies"))
        open(os.path.join(d, "policies", "p.cedar"), "w").write(
            'permit (principal, action == Custos::Action::"call_tool", resource) when { resource.class == "read" };\n')
        open(os.path.join(d, "custos.toml"), "w").write(
            'default_agent = "bench"\n[policy]\nfiles = ["policies/p.cedar"]\n'
            '[[agents]]\nid = "bench"\nowner = "bench"\npurpose = "bench"\n'
            '[[servers]]\nname = "sample"\ntrust_annotations = true\n')
        direct = session([server], a.calls)
        gated = session([os.path.join(target, "custos"), "run", "--config", os.path.join(d, "custos.toml"), "--", server], a.calls)
    print(f"{a.calls} sequential echo calls over stdio ({a.profile} build)")
    print(f"direct:        {a.calls / direct:8.0f} calls/s  {direct / a.calls * 1e6:8.0f} us/call")
    print(f"through custos:{a.calls / gated:8.0f} calls/s  {gated / a.calls * 1e6:8.0f} us/call")
    print(f"ratio (gateway/direct time): {gated / direct:.2f}x; added per call: {(gated - direct) / a.calls * 1e6:.0f} us "
          "(two durable audit commits per call: request+decision, then result)")

if __name__ == "__main__":
    sys.exit(main())
