#!/usr/bin/env python3
"""An upstream that needs credentials, for the credential broker's tests: the official Python
SDK's `MCPServer`, over stdio or over Streamable HTTP (uvicorn).

    broker_upstream.py stdio
    broker_upstream.py http [--jwks-url-file FILE --audience AUD --issuer ISS]

stdio: a careless server. It prints its whole environment on stderr when it starts, and its
tool `environment()` returns it. A gateway that injects a key into its environment must not
let either reach the agent or the gateway's own log. `digest(name)` returns the SHA-256 (hex)
of environment variable `name`, or "absent": proof of what was injected that is not the value.

http: binds 127.0.0.1 on a free port and prints that port on stdout once it accepts
connections. With the three token options, every HTTP request must carry
`Authorization: Bearer <JWT>` that verifies against the JWKS at the URL written in FILE (read
when needed, so a test can start this server before the gateway), with audience AUD and
issuer ISS and no clock leeway; otherwise the answer is 401 with a JSON body saying why.
Without them, requests are not checked (an upstream that takes a static key the gateway
injects). Tools:
  - `claims()` (token options only): the verified claims and the `kid` of the token that
    carried this call;
  - `request_seen()`: the `X-Api-Key` header and the `api_key` query parameter this request
    carried (what an echoing server would hand back);
  - `digest(name)`: the SHA-256 (hex) of request header `name`, or "absent";
  - `environment()`: as over stdio.
The verification is PyJWT's, independent of the gateway's own code.
"""
import argparse
import asyncio
import hashlib
import json
import os
import sys

import jwt
from mcp.server.mcpserver import Context, MCPServer
from uvicorn_peer import serve_on_free_port


def environment_text() -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))


class Verifier:
    """Verifies bearer tokens with PyJWT against the gateway's JWKS."""

    def __init__(self, url_file: str, audience: str, issuer: str):
        self.url_file = url_file
        self.audience = audience
        self.issuer = issuer
        self.client = None
        self.url = None

    def verify(self, token: str) -> dict:
        with open(self.url_file) as f:
            url = f.read().strip()
        if self.client is None or url != self.url:
            # PyJWKClient refetches the set when a token names an unknown kid, at most once per
            # cooldown (30 s by default; 1 s here so a test need not wait).
            self.client = jwt.PyJWKClient(url, cache_keys=False, cooldown_duration=1)
            self.url = url
        key = self.client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["EdDSA", "ES256"],
            audience=self.audience,
            issuer=self.issuer,
            leeway=0,
            options={"require": ["exp", "iat", "sub", "aud", "iss", "jti"]},
        )
        return {"claims": claims, "kid": jwt.get_unverified_header(token).get("kid")}


def sha256_or_absent(value: str | None) -> str:
    return "absent" if value is None else hashlib.sha256(value.encode()).hexdigest()


def build(verifier: Verifier | None, http: bool) -> MCPServer:
    server = MCPServer("broker-upstream")

    @server.tool()
    def environment() -> str:
        """This server's whole environment (a careless debugging tool)."""
        return environment_text()

    if http:

        @server.tool()
        def digest(name: str, ctx: Context) -> str:
            """The SHA-256 of request header `name`."""
            return sha256_or_absent(ctx.request_context.request.headers.get(name))

        @server.tool()
        def request_seen(ctx: Context) -> str:
            """The API key header and query parameter of the request that carried this call."""
            request = ctx.request_context.request
            return json.dumps(
                {"x_api_key": request.headers.get("x-api-key"), "api_key": request.query_params.get("api_key")}
            )

    else:

        @server.tool()
        def digest(name: str) -> str:
            """The SHA-256 of environment variable `name`."""
            return sha256_or_absent(os.environ.get(name))

    if verifier is not None:

        @server.tool()
        def claims(ctx: Context) -> str:
            """The verified claims of the token that carried this call."""
            request = ctx.request_context.request
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            return json.dumps(verifier.verify(token))

    return server


def require_token(app, verifier: Verifier):
    """ASGI middleware: 401 unless the request carries a token that verifies."""

    async def guarded(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = dict((k.decode().lower(), v.decode()) for k, v in scope["headers"])
        auth = headers.get("authorization", "")
        reason = None
        if not auth.startswith("Bearer "):
            reason = "no bearer token"
        else:
            try:
                verifier.verify(auth.removeprefix("Bearer "))
            except Exception as e:  # noqa: BLE001 - any failure is a refusal, with its reason
                reason = f"{type(e).__name__}: {e}"
        if reason is None:
            return await app(scope, receive, send)
        body = json.dumps({"error": "invalid_token", "reason": reason}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return guarded


async def serve_http(a) -> int:
    if a.jwks_url_file is None:
        return await serve_on_free_port(build(None, http=True).streamable_http_app(host="127.0.0.1"))
    verifier = Verifier(a.jwks_url_file, a.audience, a.issuer)
    app = require_token(build(verifier, http=True).streamable_http_app(host="127.0.0.1"), verifier)
    return await serve_on_free_port(app)


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("stdio")
    h = sub.add_parser("http")
    h.add_argument("--jwks-url-file")
    h.add_argument("--audience")
    h.add_argument("--issuer")
    a = ap.parse_args()
    if a.mode == "stdio":
        print(f"broker-upstream starting with:\n{environment_text()}", file=sys.stderr, flush=True)
        build(None, http=False).run()
        return 0
    token_options = (a.jwks_url_file, a.audience, a.issuer)
    if any(o is None for o in token_options) and any(o is not None for o in token_options):
        ap.error("--jwks-url-file, --audience and --issuer go together")
    return asyncio.run(serve_http(a))


if __name__ == "__main__":
    sys.exit(main())
