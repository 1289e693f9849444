#!/usr/bin/env python3
"""Scripted MCP client built on the official MCP Python SDK (PyPI `mcp`).

Used by Custos end-to-end tests as a peer that no one on the project wrote.
It starts CMD as a stdio MCP server, initializes, runs the requested steps
in the order the flags were given, and prints ONE JSON object on stdout.

Usage:
    python mcp_client.py [STEP]... [OPTION]... -- CMD [ARGS...]

Steps (run in command-line order, each may repeat):
    --list-tools              tools/list               -> {"op":"list_tools","tools":[names]}
    --call NAME JSON_ARGS     tools/call               -> {"op":"call","name":..,"ok":true,"is_error":..,"content":[..]}
                                                          or {"op":"call","name":..,"ok":false,"error":{"code":..,"message":..}}
    --resources               resources/list + read of the first one
                                                       -> {"op":"resources","resources":[uris],"read":"text"}
    --prompts                 prompts/list + get of the first one (no arguments)
                                                       -> {"op":"prompts","prompts":[names],"get":[message texts]}
    --ping                    ping                     -> {"op":"ping","ok":true}
    --set-log-level LEVEL     logging/setLevel         -> {"op":"set_log_level","level":..,"ok":true}
    --sleep SECONDS           wait (lets notifications arrive) -> {"op":"sleep","seconds":..}

Options:
    --sample-reply TEXT       text the sampling callback answers with (default "sampled by python")
    --elicit-accept JSON      advertise elicitation; answer every elicitation/create with
                              action "accept" and this JSON object as content
    --timeout SECONDS         per-request timeout (default 30)
    --settle SECONDS          pause after the last step so trailing notifications are
                              recorded (default 0.2)

Every failing step records {"ok": false, "error": {"code": int|null, "message": str}}
and the script goes on with the next step. Exit status: 0 when the script ran
(whatever the steps returned); 2 on bad usage; 1 when the server could not be
started or the connection/initialization failed (message on stderr).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

USAGE = (
    "usage: mcp_client.py [--list-tools] [--call NAME JSON_ARGS]... [--resources] [--prompts] [--ping]\n"
    "                     [--set-log-level LEVEL] [--sleep SECONDS] [--sample-reply TEXT]\n"
    "                     [--elicit-accept JSON] [--timeout SECONDS] [--settle SECONDS] -- CMD [ARGS...]"
)


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> tuple[list[tuple[Any, ...]], dict[str, Any], list[str]]:
    """Parse by hand so that steps keep their command-line order."""
    if "--" not in argv:
        raise UsageError("missing `-- CMD ARGS...`")
    split = argv.index("--")
    opts_argv, command = argv[:split], argv[split + 1 :]
    if not command:
        raise UsageError("missing CMD after `--`")

    steps: list[tuple[Any, ...]] = []
    options: dict[str, Any] = {
        "sample_reply": "sampled by python",
        "elicit_accept": None,
        "timeout": 30.0,
        "settle": 0.2,
    }

    def take(i: int, n: int, flag: str) -> list[str]:
        if i + n > len(opts_argv):
            raise UsageError(f"{flag} needs {n} argument(s)")
        return opts_argv[i : i + n]

    def number(value: str, flag: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise UsageError(f"{flag}: not a number: {value!r}") from None

    i = 0
    while i < len(opts_argv):
        flag = opts_argv[i]
        i += 1
        if flag == "--list-tools":
            steps.append(("list_tools",))
        elif flag == "--resources":
            steps.append(("resources",))
        elif flag == "--prompts":
            steps.append(("prompts",))
        elif flag == "--ping":
            steps.append(("ping",))
        elif flag == "--call":
            name, raw = take(i, 2, flag)
            i += 2
            try:
                arguments = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--call {name}: JSON_ARGS is not JSON: {exc}") from None
            if not isinstance(arguments, dict):
                raise UsageError(f"--call {name}: JSON_ARGS must be a JSON object")
            steps.append(("call", name, arguments))
        elif flag == "--set-log-level":
            (level,) = take(i, 1, flag)
            i += 1
            steps.append(("set_log_level", level))
        elif flag == "--sleep":
            (value,) = take(i, 1, flag)
            i += 1
            steps.append(("sleep", number(value, flag)))
        elif flag == "--sample-reply":
            (options["sample_reply"],) = take(i, 1, flag)
            i += 1
        elif flag == "--elicit-accept":
            (raw,) = take(i, 1, flag)
            i += 1
            try:
                content = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise UsageError(f"--elicit-accept: not JSON: {exc}") from None
            if not isinstance(content, dict):
                raise UsageError("--elicit-accept: must be a JSON object")
            options["elicit_accept"] = content
        elif flag == "--timeout":
            (value,) = take(i, 1, flag)
            i += 1
            options["timeout"] = number(value, flag)
        elif flag == "--settle":
            (value,) = take(i, 1, flag)
            i += 1
            options["settle"] = number(value, flag)
        elif flag in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        else:
            raise UsageError(f"unknown flag {flag!r}")
    return steps, options, command


def error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, MCPError):
        return {"code": exc.error.code, "message": exc.error.message}
    return {"code": None, "message": f"{type(exc).__name__}: {exc}"}


def content_text(block: Any) -> str:
    """One content block as a string: the text of text blocks, a short tag otherwise."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        return f"[{kind} {block.mime_type}]"
    if kind == "resource_link":
        return f"[resource_link {block.uri}]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return text if text is not None else f"[resource {resource.uri}]"
    return json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True))


class Recorder:
    def __init__(self, sample_reply: str, elicit_accept: dict[str, Any] | None) -> None:
        self.sample_reply = sample_reply
        self.elicit_accept = elicit_accept
        self.sampling_requests = 0
        self.elicitation_requests = 0
        self.notifications: list[str] = []
        self.log_messages: list[dict[str, Any]] = []

    async def sampling(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampling_requests += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=self.sample_reply),
            model="custos-test-python-client",
            stop_reason="endTurn",
        )

    async def elicitation(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicitation_requests += 1
        return types.ElicitResult(action="accept", content=self.elicit_accept)

    async def logging(self, params: types.LoggingMessageNotificationParams) -> None:
        self.log_messages.append(
            {"level": params.level, "logger": params.logger, "data": params.data}
        )

    async def message(self, message: Any) -> None:
        if isinstance(message, Exception):
            print(f"mcp_client: transport error: {message!r}", file=sys.stderr)
            return
        method = getattr(message, "method", None)
        if method is not None:
            self.notifications.append(method)


async def run_step(session: ClientSession, step: tuple[Any, ...]) -> dict[str, Any]:
    op = step[0]
    if op == "list_tools":
        try:
            result = await session.list_tools()
        except Exception as exc:  # noqa: BLE001 - recorded, script goes on
            return {"op": op, "ok": False, "error": error_of(exc)}
        return {"op": op, "ok": True, "tools": [tool.name for tool in result.tools]}

    if op == "call":
        _, name, arguments = step
        progress: list[list[float | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append([value, total])

        try:
            result = await session.call_tool(name, arguments, progress_callback=on_progress)
        except Exception as exc:  # noqa: BLE001
            return {"op": op, "name": name, "ok": False, "error": error_of(exc)}
        out: dict[str, Any] = {
            "op": op,
            "name": name,
            "ok": True,
            "is_error": bool(result.is_error),
            "content": [content_text(block) for block in result.content],
        }
        if result.structured_content is not None:
            out["structured_content"] = result.structured_content
        if progress:
            out["progress"] = progress
        return out

    if op == "resources":
        try:
            listed = await session.list_resources()
            uris = [str(resource.uri) for resource in listed.resources]
            read: str | None = None
            if uris:
                contents = (await session.read_resource(uris[0])).contents
                if contents:
                    text = getattr(contents[0], "text", None)
                    read = text if text is not None else f"[blob {contents[0].mime_type}]"
        except Exception as exc:  # noqa: BLE001
            return {"op": op, "ok": False, "error": error_of(exc)}
        return {"op": op, "ok": True, "resources": uris, "read": read}

    if op == "prompts":
        try:
            listed = await session.list_prompts()
            names = [prompt.name for prompt in listed.prompts]
            got: list[str] | None = None
            if names:
                prompt = await session.get_prompt(names[0])
                got = [content_text(message.content) for message in prompt.messages]
        except Exception as exc:  # noqa: BLE001
            return {"op": op, "ok": False, "error": error_of(exc)}
        return {"op": op, "ok": True, "prompts": names, "get": got}

    if op == "ping":
        try:
            await session.send_ping()
        except Exception as exc:  # noqa: BLE001
            return {"op": op, "ok": False, "error": error_of(exc)}
        return {"op": op, "ok": True}

    if op == "set_log_level":
        level = step[1]
        try:
            await session.set_logging_level(level)
        except Exception as exc:  # noqa: BLE001
            return {"op": op, "level": level, "ok": False, "error": error_of(exc)}
        return {"op": op, "level": level, "ok": True}

    if op == "sleep":
        await anyio.sleep(step[1])
        return {"op": op, "seconds": step[1]}

    raise AssertionError(f"unknown step {op!r}")


class ConnectFailed(Exception):
    pass


async def run(steps: list[tuple[Any, ...]], options: dict[str, Any], command: list[str]) -> dict[str, Any]:
    recorder = Recorder(options["sample_reply"], options["elicit_accept"])
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    output: dict[str, Any] = {}
    async with stdio_client(params) as (read_stream, write_stream):
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
                raise ConnectFailed(f"initialize failed: {error_of(exc)['message']}") from exc
            output["server_info"] = init.server_info.model_dump(mode="json", by_alias=True, exclude_none=True)
            output["protocol_version"] = init.protocol_version
            results = []
            for step in steps:
                results.append(await run_step(session, step))
            output["steps"] = results
            if options["settle"] > 0:
                await anyio.sleep(options["settle"])
    output["sampling_requests"] = recorder.sampling_requests
    output["elicitation_requests"] = recorder.elicitation_requests
    output["notifications"] = recorder.notifications
    output["log_messages"] = recorder.log_messages
    return output


def flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in flatten(inner)]
    return [exc]


def main() -> int:
    try:
        steps, options, command = parse_args(sys.argv[1:])
    except UsageError as exc:
        print(f"mcp_client: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        output = anyio.run(run, steps, options, command)
    except BaseException as exc:  # noqa: BLE001 - report any failure to connect
        if isinstance(exc, KeyboardInterrupt):
            raise
        messages = "; ".join(
            str(leaf) if isinstance(leaf, ConnectFailed) else error_of(leaf)["message"] for leaf in flatten(exc)
        )
        print(f"mcp_client: connection to {command!r} failed: {messages}", file=sys.stderr)
        return 1
    json.dump(output, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
