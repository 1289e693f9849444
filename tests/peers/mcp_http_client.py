#!/usr/bin/env python3
"""Scripted MCP client over Streamable HTTP, built on the official MCP Python SDK (PyPI `mcp`).

The HTTP twin of mcp_client.py (same steps, same JSON report; the step runner,
the callbacks and the argument parser are imported from it). It connects to URL
with the SDK's `streamable_http_client`, initializes (session-based handshake,
protocol 2025-11-25), runs the requested steps in the order the flags were given,
and prints ONE JSON object on stdout.

Usage:
    python mcp_http_client.py URL [--header NAME:VALUE]... [--bearer TOKEN] [--terminate]
                              [--cacert FILE] [--cert FILE --key FILE] [STEP]... [OPTION]...

URL must be the first argument. HTTP options (anywhere after URL):
    --header NAME:VALUE       extra header on every HTTP request (repeatable)
    --bearer TOKEN            shorthand for --header "Authorization:Bearer TOKEN"
    --terminate               send DELETE (session termination) at the end; without it no
                              DELETE is sent and the server-side session stays open
    --cacert FILE             https: trust the CAs in FILE (PEM) instead of the system's
    --cert FILE --key FILE    https: present the client certificate in FILE (PEM chain) with
                              its private key (mTLS); both or neither

Steps and the other options are those of mcp_client.py: --list-tools, --call NAME JSON_ARGS,
--resources, --prompts, --ping, --set-log-level LEVEL, --sleep SECONDS, --sample-reply TEXT,
--elicit-accept JSON, --timeout SECONDS, --settle SECONDS.

Output: mcp_client.py's object plus
    "session_id":  the Mcp-Session-Id the server assigned (null if none)
    "http_error":  null, or {"status": int, "www_authenticate": str|null, "body": str} when
                   the initialize POST was answered with an HTTP status >= 400; the steps are
                   then skipped ("steps": []), "error" holds the SDK's JSON-RPC error and the
                   exit status is still 0
    "terminate":   null without --terminate, else {"status": int|null} of the DELETE
                   (null: not sent, e.g. no session id, or it failed at the network level)
A step whose POST got an HTTP status >= 400 carries the same "http_error" object.

Exit status: 0 when the script ran (including the http_error case); 2 on bad usage;
1 when the connection failed without an HTTP status (e.g. refused) or initialize
failed otherwise (message on stderr).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anyio  # noqa: E402
import httpx2  # noqa: E402 - the HTTP client library the SDK's transport is built on
import mcp_types as types  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import (  # noqa: E402
    MCP_DEFAULT_SSE_READ_TIMEOUT,
    MCP_DEFAULT_TIMEOUT,
    create_mcp_http_client,
)

from mcp_client import (  # noqa: E402
    ConnectFailed,
    Recorder,
    UsageError,
    error_of,
    flatten,
    parse_args,
    run_step,
)

USAGE = (
    "usage: mcp_http_client.py URL [--header NAME:VALUE]... [--bearer TOKEN] [--terminate]\n"
    "                          [--cacert FILE] [--cert FILE --key FILE]\n"
    "                          [--list-tools] [--call NAME JSON_ARGS]... [--resources] [--prompts] [--ping]\n"
    "                          [--set-log-level LEVEL] [--sleep SECONDS] [--sample-reply TEXT]\n"
    "                          [--elicit-accept JSON] [--timeout SECONDS] [--settle SECONDS]"
)

# Number of arguments each mcp_client.py flag takes, so that the scan for the HTTP
# options below does not mistake a flag's argument for a flag.
STEP_FLAG_ARITY = {
    "--list-tools": 0,
    "--resources": 0,
    "--prompts": 0,
    "--ping": 0,
    "--call": 2,
    "--set-log-level": 1,
    "--sleep": 1,
    "--sample-reply": 1,
    "--elicit-accept": 1,
    "--timeout": 1,
    "--settle": 1,
}

BODY_LIMIT = 4096


def parse_http_args(argv: list[str]) -> tuple[str, dict[str, str], bool, list[tuple[Any, ...]], dict[str, Any]]:
    if not argv:
        raise UsageError("missing URL")
    if argv[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    url, rest = argv[0], argv[1:]
    if url.startswith("-"):
        raise UsageError("URL must be the first argument")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"URL must be http:// or https://, got {url!r}")

    headers: dict[str, str] = {}
    terminate = False
    tls: dict[str, str | None] = {"cacert": None, "cert": None, "key": None}
    passthrough: list[str] = []
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag in ("--header", "--bearer"):
            if i + 1 >= len(rest):
                raise UsageError(f"{flag} needs 1 argument(s)")
            value = rest[i + 1]
            i += 2
            if flag == "--bearer":
                headers["Authorization"] = f"Bearer {value}"
                continue
            name, sep, header_value = value.partition(":")
            if not sep or not name.strip():
                raise UsageError(f"--header: expected NAME:VALUE, got {value!r}")
            headers[name.strip()] = header_value.strip()
        elif flag == "--terminate":
            terminate = True
            i += 1
        elif flag in ("--cacert", "--cert", "--key"):
            if i + 1 >= len(rest):
                raise UsageError(f"{flag} needs 1 argument(s)")
            tls[flag[2:]] = rest[i + 1]
            i += 2
        elif flag in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        else:
            n = STEP_FLAG_ARITY.get(flag, 0)  # unknown flags are rejected by parse_args
            passthrough.extend(rest[i : i + 1 + n])
            i += 1 + n
    # mcp_client.parse_args wants `-- CMD`; the URL stands in for CMD and is ignored.
    steps, options, _ = parse_args([*passthrough, "--", url])
    if (tls["cert"] is None) != (tls["key"] is None):
        raise UsageError("--cert and --key go together")
    if any(tls.values()) and not url.startswith("https://"):
        raise UsageError("--cacert, --cert and --key need an https:// URL")
    options["tls"] = tls
    return url, headers, terminate, steps, options


def http_client_for(headers: dict[str, str], tls: dict[str, str | None]) -> httpx2.AsyncClient:
    """The SDK's default client, or the same one with TLS settings when any TLS option is given."""
    if not any(tls.values()):
        return create_mcp_http_client(headers=headers or None)
    context = ssl.create_default_context(cafile=tls["cacert"])
    if tls["cert"] is not None:
        context.load_cert_chain(tls["cert"], tls["key"])
    return httpx2.AsyncClient(
        headers=headers or None,
        timeout=httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
        verify=context,
    )


class HttpCapture:
    """httpx2 event hooks: the session id the server assigned, HTTP error responses, DELETE status."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.post_errors: list[dict[str, Any]] = []
        self.delete_status: int | None = None

    async def on_response(self, response: httpx2.Response) -> None:
        method = response.request.method
        if self.session_id is None and method == "POST":
            session_id = response.headers.get("mcp-session-id")
            if session_id:
                self.session_id = session_id
        if method == "DELETE":
            self.delete_status = response.status_code
        if method == "POST" and response.status_code >= 400:
            # Reading here is safe: httpx2 caches the body, the SDK reads the cached copy.
            try:
                body = (await response.aread()).decode("utf-8", "replace")[:BODY_LIMIT]
            except Exception as exc:  # noqa: BLE001 - the body is best-effort
                body = f"[body unreadable: {type(exc).__name__}: {exc}]"
            self.post_errors.append(
                {
                    "status": response.status_code,
                    "www_authenticate": response.headers.get("www-authenticate"),
                    "body": body,
                }
            )


async def run(
    url: str, headers: dict[str, str], terminate: bool, steps: list[tuple[Any, ...]], options: dict[str, Any]
) -> dict[str, Any]:
    recorder = Recorder(options["sample_reply"], options["elicit_accept"])
    capture = HttpCapture()
    output: dict[str, Any] = {"server_info": None, "protocol_version": None, "session_id": None, "http_error": None}
    http_client = http_client_for(headers, options["tls"])
    http_client.event_hooks = {"request": [], "response": [capture.on_response]}
    async with http_client:
        async with streamable_http_client(url, http_client=http_client, terminate_on_close=terminate) as (
            read_stream,
            write_stream,
        ):
            async with ClientSession(
                read_stream,
                write_stream,
                read_timeout_seconds=options["timeout"],
                sampling_callback=recorder.sampling,
                elicitation_callback=recorder.elicitation if options["elicit_accept"] is not None else None,
                logging_callback=recorder.logging,
                message_handler=recorder.message,
                client_info=types.Implementation(name="custos-test-python-client", version="0.1.0"),
            ) as session:
                try:
                    init = await session.initialize()
                except Exception as exc:  # noqa: BLE001
                    if not capture.post_errors:
                        raise ConnectFailed(f"initialize failed: {error_of(exc)['message']}") from exc
                    output["http_error"] = capture.post_errors[0]
                    output["error"] = error_of(exc)
                    output["steps"] = []
                else:
                    output["server_info"] = init.server_info.model_dump(mode="json", by_alias=True, exclude_none=True)
                    output["protocol_version"] = init.protocol_version
                    output["session_id"] = capture.session_id
                    results = []
                    for step in steps:
                        seen = len(capture.post_errors)
                        result = await run_step(session, step)
                        if len(capture.post_errors) > seen:
                            result["http_error"] = capture.post_errors[seen]
                        results.append(result)
                    output["steps"] = results
                    if options["settle"] > 0:
                        await anyio.sleep(options["settle"])
        # streamable_http_client has sent the DELETE (if asked to) on leaving its block.
    output["sampling_requests"] = recorder.sampling_requests
    output["elicitation_requests"] = recorder.elicitation_requests
    output["notifications"] = recorder.notifications
    output["log_messages"] = recorder.log_messages
    output["terminate"] = {"status": capture.delete_status} if terminate else None
    return output


def main() -> int:
    try:
        url, headers, terminate, steps, options = parse_http_args(sys.argv[1:])
    except UsageError as exc:
        print(f"mcp_http_client: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        output = anyio.run(run, url, headers, terminate, steps, options)
    except BaseException as exc:  # noqa: BLE001 - report any failure to connect
        if isinstance(exc, KeyboardInterrupt):
            raise
        messages = "; ".join(
            str(leaf) if isinstance(leaf, ConnectFailed) else error_of(leaf)["message"] for leaf in flatten(exc)
        )
        print(f"mcp_http_client: connection to {url} failed: {messages}", file=sys.stderr)
        return 1
    json.dump(output, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
