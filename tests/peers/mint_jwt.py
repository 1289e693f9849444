#!/usr/bin/env python3
"""Mints JWTs and JWKS documents for the gateway's end-to-end tests with PyJWT (installed with the
official `mcp` SDK), so tokens come from an implementation independent of the gateway's.

    mint_jwt.py jwks  --key PEM --kid KID --alg ALG
    mint_jwt.py token --key PEM --kid KID --alg ALG --claims JSON   # "exp_in"/"nbf_in": seconds from now
    mint_jwt.py none  --kid KID --claims JSON                        # an unsigned (alg: none) token

Keys are the test-only PEM files under crates/custos-auth/tests/keys/.
"""
import argparse, base64, json, sys, time

import jwt
from cryptography.hazmat.primitives import serialization


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_from(text: str) -> dict:
    claims = json.loads(text)
    now = int(time.time())
    for rel, absolute in (("exp_in", "exp"), ("nbf_in", "nbf"), ("iat_in", "iat")):
        if rel in claims:
            claims[absolute] = now + int(claims.pop(rel))
    return claims


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["jwks", "token", "none"])
    ap.add_argument("--key")
    ap.add_argument("--kid", required=True)
    ap.add_argument("--alg", default="EdDSA")
    ap.add_argument("--claims", default="{}")
    a = ap.parse_args()
    if a.mode == "none":
        header = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": a.kid}).encode())
        print(f"{header}.{b64(json.dumps(claims_from(a.claims)).encode())}.")
        return 0
    key = serialization.load_pem_private_key(open(a.key, "rb").read(), password=None)
    if a.mode == "jwks":
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[a.alg].to_jwk(key.public_key()))
        jwk.update({"kid": a.kid, "alg": a.alg, "use": "sig"})
        print(json.dumps({"keys": [jwk]}))
    else:
        print(jwt.encode(claims_from(a.claims), key, algorithm=a.alg, headers={"kid": a.kid}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
