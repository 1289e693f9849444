#!/usr/bin/env python3
"""A stdio MCP server on the official Python SDK (PyPI `mcp`) that serves `subscriptions/listen`.

The SDK's `MCPServer` answers 2026-07-28 requests and serves `subscriptions/listen` over stdio.
Two tools publish change events on its subscription bus, so a test can make the server speak
on an open listen stream at a moment of its choosing:

    poke()       publishes `notifications/tools/list_changed`
    touch(uri)   publishes `notifications/resources/updated` for `uri`

Usage: python listen_server.py   (speaks MCP on stdin/stdout; the SDK logs to stderr)
"""

from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("custos-listen-peer")


@app.tool(description="Announce that the tool list changed.")
async def poke(ctx: Context) -> str:
    await ctx.notify_tools_changed()
    return "poked"


@app.tool(description="Announce that the resource at `uri` changed.")
async def touch(uri: str, ctx: Context) -> str:
    await ctx.notify_resource_updated(uri)
    return f"touched {uri}"


if __name__ == "__main__":
    app.run()
