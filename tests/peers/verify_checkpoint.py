#!/usr/bin/env python3
"""An independent verifier of Custos audit checkpoints, for the tests (and for anyone).

It needs only the checkpoint key's public key and the exported events; it shares no code with
Custos. Usage:

    verify_checkpoint.py --public-key HEX --checkpoint CHECKPOINT.json --events EVENTS.jsonl
                         [--proof PROOF.json]

EVENTS.jsonl is `custos audit query --json` (one event per line; `seq` and `hash` are read).
PROOF.json is `custos audit proof --seq N --size SIZE` for the checkpoint's size. Prints one JSON
line, {"ok": true} or {"ok": false, "reason": ...}, and exits 0 or 1.

The checkpoint format (see crates/custos-evidence/src/checkpoint.rs): JSON with version, size,
root (hex), time_ms, key_id, signature (base64 Ed25519 over the ASCII message
"custos-checkpoint-v1\\n<size>\\n<root hex>\\n<time_ms>\\n"). The tree is RFC 6962's over the
events' digests in seq order: leaf = SHA-256(0x00 || digest), node = SHA-256(0x01 || l || r).
"""

import argparse
import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def leaf(digest: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + digest).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf_hash, index, size, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def fail(reason):
    print(json.dumps({"ok": False, "reason": reason}))
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--public-key", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--proof")
    args = ap.parse_args()

    with open(args.checkpoint) as f:
        cp = json.load(f)
    message = f"custos-checkpoint-v1\n{cp['size']}\n{cp['root']}\n{cp['time_ms']}\n".encode()
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(args.public_key))
    try:
        key.verify(base64.b64decode(cp["signature"]), message)
    except InvalidSignature:
        fail("bad signature")

    with open(args.events) as f:
        events = sorted((json.loads(line) for line in f if line.strip()), key=lambda e: e["seq"])
    if [e["seq"] for e in events[: cp["size"]]] != list(range(1, min(len(events), cp["size"]) + 1)):
        fail("the events are not numbered 1, 2, 3, ...")
    if len(events) < cp["size"]:
        fail(f"truncated: {len(events)} events, the checkpoint has {cp['size']}")
    leaves = [leaf(bytes.fromhex(e["hash"])) for e in events[: cp["size"]]]
    root = bytes.fromhex(cp["root"])
    if mth(leaves) != root:
        fail("root mismatch: the events are not those the checkpoint signed")

    if args.proof:
        with open(args.proof) as f:
            proof = json.load(f)
        if proof["size"] != cp["size"]:
            fail("the proof is for another tree size")
        path = [bytes.fromhex(p) for p in proof["path"]]
        index = proof["seq"] - 1
        if not verify_inclusion(leaves[index], index, cp["size"], path, root):
            fail("the inclusion proof does not verify")
    print(json.dumps({"ok": True, "size": cp["size"]}))


if __name__ == "__main__":
    main()
