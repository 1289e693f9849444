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
import socket
import ssl
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer


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

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    config = uvicorn.Config(
        build().streamable_http_app(host="127.0.0.1"),
        log_level="warning",
        ssl_certfile=a.cert,
        ssl_keyfile=a.key,
        ssl_ca_certs=a.client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if a.client_ca else ssl.CERT_NONE,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            return 1
        await asyncio.sleep(0.02)
    print(port, flush=True)
    await serving
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
