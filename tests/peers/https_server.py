#!/usr/bin/env python3
"""An MCP server over Streamable HTTP behind TLS: the official Python SDK's `MCPServer` (the
`FastMCP` of mcp 1.x) served by uvicorn with a certificate, for the gateway's `https://`
upstream tests.

    https_server.py --cert PEM --key PEM [--client-ca PEM]

Binds 127.0.0.1 on a free port and prints that port on stdout once it accepts connections.
With --client-ca, a client must present a certificate signed by that CA (mutual TLS).
Tools: `echo(text)` returns `secure: <text>`; `authorization()` returns the `Authorization`
header of the HTTP request that carried the call, or `(none)`; `announce()` sends
`notifications/tools/list_changed` outside any request, which only the session's GET stream
carries.
"""
import argparse
import asyncio
import ssl
import sys

from mcp.server.mcpserver import Context, MCPServer
from uvicorn_peer import serve_on_free_port


def build() -> MCPServer:
    server = MCPServer("https-peer")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return f"secure: {text}"

    @server.tool()
    def authorization(ctx: Context) -> str:
        """The Authorization header this server was sent."""
        request = ctx.request_context.request
        value = request.headers.get("authorization") if request is not None else None
        return value or "(none)"

    @server.tool()
    async def announce(ctx: Context) -> str:
        """Tell the client, on the session's own stream, that the tool list changed."""
        await ctx.session.send_tool_list_changed()
        return "announced"

    return server


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-ca")
    a = ap.parse_args()

    return await serve_on_free_port(
        build().streamable_http_app(host="127.0.0.1"),
        ssl_certfile=a.cert,
        ssl_keyfile=a.key,
        ssl_ca_certs=a.client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if a.client_ca else ssl.CERT_NONE,
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
