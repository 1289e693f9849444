#!/usr/bin/env python3
"""An independent verifier of Custos audit checkpoints, for the tests (and for anyone).

It needs only the checkpoint key's public key and the exported events; it shares no code with
Custos. Usage:

    verify_checkpoint.py --public-key HEX --checkpoint CHECKPOINT.json --events EVENTS.jsonl
                         [--proof PROOF.json] [--old OLD.json --consistency CONSISTENCY.json]

EVENTS.jsonl is `custos audit query --json` (one event per line). Each event's digest is
recomputed from its body and each `prev` link checked, so an event edited in the export is
caught too. PROOF.json is `custos audit proof --seq N --size SIZE` for the checkpoint's size.
CONSISTENCY.json is `custos audit consistency OLD NEW` (checked against the two checkpoints
only, RFC 9162 section 2.1.4.2). Prints one JSON line, {"ok": true} or {"ok": false,
"reason": ...}, and exits 0 or 1.

An event's body is the canonical JSON (compact, keys sorted by code point, non-ASCII as is) of
{"seq","prev","time_ms","kind","agent","run","step","tool","decision","detail"}; its digest is
SHA-256 of those bytes; `prev` is the previous event's digest (64 zeros for event 1).

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


def verify_consistency(old, new, old_root, new_root, proof):
    """RFC 9162 section 2.1.4.2."""
    if old == 0 or old > new:
        return False
    if old == new:
        return not proof and old_root == new_root
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


BODY_FIELDS = ("seq", "prev", "time_ms", "kind", "agent", "run", "step", "tool", "decision", "detail")


def event_digest(event):
    body = {k: event.get(k) for k in BODY_FIELDS}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_signature(key, cp):
    message = f"custos-checkpoint-v1\n{cp['size']}\n{cp['root']}\n{cp['time_ms']}\n".encode()
    try:
        key.verify(base64.b64decode(cp["signature"]), message)
    except InvalidSignature:
        fail("bad signature")


def fail(reason):
    print(json.dumps({"ok": False, "reason": reason}))
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--public-key", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--proof")
    ap.add_argument("--old")
    ap.add_argument("--consistency")
    args = ap.parse_args()

    with open(args.checkpoint) as f:
        cp = json.load(f)
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(args.public_key))
    check_signature(key, cp)

    with open(args.events) as f:
        events = sorted((json.loads(line) for line in f if line.strip()), key=lambda e: e["seq"])
    if [e["seq"] for e in events[: cp["size"]]] != list(range(1, min(len(events), cp["size"]) + 1)):
        fail("the events are not numbered 1, 2, 3, ...")
    if len(events) < cp["size"]:
        fail(f"truncated: {len(events)} events, the checkpoint has {cp['size']}")
    prev = "0" * 64
    for e in events[: cp["size"]]:
        if e["prev"] != prev or event_digest(e) != e["hash"]:
            fail(f"event {e['seq']} does not match its digest or its link")
        prev = e["hash"]
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
    if args.old:
        with open(args.old) as f:
            old = json.load(f)
        check_signature(key, old)
        with open(args.consistency) as f:
            proof = json.load(f)
        if (proof["old_size"], proof["new_size"]) != (old["size"], cp["size"]):
            fail("the consistency proof is for other tree sizes")
        hashes = [bytes.fromhex(p) for p in proof["proof"]]
        if not verify_consistency(old["size"], cp["size"], bytes.fromhex(old["root"]), root, hashes):
            fail("the consistency proof does not verify")
    print(json.dumps({"ok": True, "size": cp["size"]}))


if __name__ == "__main__":
    main()
