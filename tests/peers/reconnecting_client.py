#!/usr/bin/env python3
"""An MCP client that outlives its session, built on the official MCP Python SDK (PyPI `mcp`).

It connects to URL over Streamable HTTP, initializes, and calls TOOL with ARGS. Then it waits
until FILE exists (the test creates it once the server has ended the session), calls TOOL
again, and when that call is answered HTTP 404 (the session is unknown or expired), it does
what the MCP specification asks of such a client: it starts a new session with a new
`initialize` and sends the call once more. The SDK reports the 404 as an error of the call; the
recovery is this script's, as it would be any application's.

Usage:
    reconnecting_client.py URL --bearer KEY --tool NAME --arguments JSON --wait-file FILE
                           [--ready-file FILE] [--timeout SECONDS]

Prints ONE JSON object on stdout:
    "sessions": the Mcp-Session-Id of each session, in order
    "calls":    one entry per call: {"session": index into "sessions", "ok": bool,
                "status": the HTTP status of the call's POST, "content": [text...] when ok,
                "error": {"code", "message"} when not}
Exit status: 0 when the script ran; 1 when a session could not be opened or FILE did not
appear within the timeout (message on stderr); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anyio  # noqa: E402
import httpx2  # noqa: E402 - the HTTP client library the SDK's transport is built on
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

from mcp_client import content_text, error_of  # noqa: E402


class Statuses:
    """httpx2 response hook: the session id each `initialize` got, the status of each POST."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.last_post: int | None = None

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.method != "POST":
            return
        self.last_post = response.status_code
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            self.session_id = session_id


async def open_session(stack: contextlib.AsyncExitStack, url: str, key: str, statuses: Statuses) -> ClientSession:
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    client.event_hooks = {"request": [], "response": [statuses.on_response]}
    await stack.enter_async_context(client)
    read, write = await stack.enter_async_context(streamable_http_client(url, http_client=client))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session


async def call(session: ClientSession, statuses: Statuses, index: int, tool: str, arguments: dict) -> dict[str, Any]:
    statuses.last_post = None
    try:
        result = await session.call_tool(tool, arguments)
    except Exception as exc:  # noqa: BLE001 - recorded: the script decides what to do next
        return {"session": index, "ok": False, "status": statuses.last_post, "error": error_of(exc)}
    return {
        "session": index,
        "ok": not result.is_error,
        "status": statuses.last_post,
        "content": [content_text(block) for block in result.content],
    }


async def wait_for(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        await anyio.sleep(0.05)


async def run(a: argparse.Namespace) -> dict[str, Any]:
    arguments = json.loads(a.arguments)
    report: dict[str, Any] = {"sessions": [], "calls": []}
    statuses = Statuses()
    again: dict[str, Any] | None = None
    try:
        async with contextlib.AsyncExitStack() as first:
            session = await open_session(first, a.url, a.bearer, statuses)
            report["sessions"].append(statuses.session_id)
            report["calls"].append(await call(session, statuses, 0, a.tool, arguments))
            if a.ready_file:
                with open(a.ready_file, "w", encoding="utf-8"):
                    pass
            await wait_for(a.wait_file, a.timeout)
            again = await call(session, statuses, 0, a.tool, arguments)
            report["calls"].append(again)
    except Exception as exc:  # noqa: BLE001 - the transport failed under the session
        # Its server went away mid-exchange (a replica died behind a balancer): the session is
        # as lost as one answered 404, and the application starts a new one the same way.
        if again is None:
            if not report["sessions"] or len(report["calls"]) == 0:
                raise
            again = {"session": 0, "ok": False, "status": statuses.last_post, "error": error_of(exc)}
            report["calls"].append(again)
        again = {**again, "transport_failed": True}
    if again["ok"] or (again["status"] != 404 and not again.get("transport_failed")):
        return report
    # The session is gone: a new one, and the call once more.
    statuses.session_id = None
    async with contextlib.AsyncExitStack() as second:
        session = await open_session(second, a.url, a.bearer, statuses)
        report["sessions"].append(statuses.session_id)
        report["calls"].append(await call(session, statuses, 1, a.tool, arguments))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(prog="reconnecting_client.py")
    ap.add_argument("url")
    ap.add_argument("--bearer", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--arguments", default="{}")
    ap.add_argument("--wait-file", required=True)
    ap.add_argument("--ready-file", help="created once the first call is answered")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    try:
        report = anyio.run(run, a)
    except BaseException as exc:  # noqa: BLE001 - report any failure
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"reconnecting_client: {type(exc).__name__}: {exc}", file=sys.stderr)
        # A task group's failure says little; the exceptions inside it say what went wrong.
        for inner in getattr(exc, "exceptions", ()):
            print(f"reconnecting_client:   {type(inner).__name__}: {inner}", file=sys.stderr)
        return 1
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
