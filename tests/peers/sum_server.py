#!/usr/bin/env python3
"""The official Python SDK's `MCPServer` over stdio with one tool, `add(a, b)`, that says which
numbers it added: what a Python upstream acts on when a message is read its way.

    .venv-peers/bin/python tests/peers/sum_server.py
"""
from mcp.server.mcpserver import MCPServer

server = MCPServer("sum")


@server.tool()
def add(a: float, b: float) -> str:
    """Add two numbers."""
    return f"{a!r} + {b!r} = {a + b!r}"


if __name__ == "__main__":
    server.run("stdio")
