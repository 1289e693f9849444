#!/usr/bin/env python3
"""A 2026-07-28 client on the official Python SDK (PyPI `mcp`) that opens `subscriptions/listen`.

It connects to URL over Streamable HTTP with the stateless revision pinned (no `initialize`),
opens a listen stream for tool-list changes and for the resource `memo://watched`, then:

  1. calls `touch` on `memo://other` (not subscribed: must not arrive) and `memo://watched`,
  2. calls `poke` (tools changed),
  3. collects events until both subscribed kinds arrived or TIMEOUT seconds passed,
  4. leaves the stream (the SDK cancels it) and makes one more call on the same client.

Usage: python listen_client.py URL --bearer TOKEN [--timeout SECONDS]

Prints ONE JSON object: {"honored": {...}, "events": [...], "calls": [...], "after": str,
"error": null|str}. Exit status 0 when the script ran to the end (even with "error" set),
2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged
from mcp.shared._httpx_utils import create_mcp_http_client

WATCHED = "memo://watched"


def text_of(result) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def run(url: str, token: str, timeout: float) -> dict:
    report: dict = {"honored": None, "events": [], "calls": [], "after": None, "error": None}
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client:
        async with client.listen(tools_list_changed=True, resource_subscriptions=[WATCHED]) as sub:
            report["honored"] = sub.honored.model_dump(by_alias=True, exclude_none=True)
            for name, args in (("touch", {"uri": "memo://other"}), ("touch", {"uri": WATCHED}), ("poke", {})):
                report["calls"].append(text_of(await client.call_tool(name, args)))
            wanted = {"tools", WATCHED}
            with anyio.move_on_after(timeout):
                async for event in sub:
                    if isinstance(event, ToolsListChanged):
                        report["events"].append("tools")
                        wanted.discard("tools")
                    elif isinstance(event, ResourceUpdated):
                        report["events"].append(event.uri)
                        wanted.discard(event.uri)
                    else:
                        report["events"].append(type(event).__name__)
                    if not wanted:
                        break
        report["after"] = text_of(await client.call_tool("poke", {}))
    return report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--bearer", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    try:
        report = anyio.run(run, args.url, args.bearer, args.timeout)
    except Exception as e:  # reported, not raised: the test reads the JSON
        report = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
