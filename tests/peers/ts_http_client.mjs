#!/usr/bin/env node
// Scripted MCP client over Streamable HTTP, built on the official MCP TypeScript SDK
// (npm `@modelcontextprotocol/sdk`, pinned in package.json).
//
// The TypeScript twin of mcp_http_client.py (same JSON report shape for the steps it has).
// It connects to URL with the SDK's StreamableHTTPClientTransport, runs Client.connect
// (initialize + notifications/initialized), runs the requested steps in command-line
// order, and prints ONE JSON object on stdout.
//
// Usage:
//   node ts_http_client.mjs URL [--bearer TOKEN] [--list-tools] [--call NAME JSON_ARGS]...
//                               [--ping] [--terminate]
//
//   --bearer TOKEN          "Authorization: Bearer TOKEN" on every request (POST, GET, DELETE),
//                           via the transport's requestInit.headers
//   --list-tools            step: tools/list (first page), records the tool names
//   --call NAME JSON_ARGS   step: tools/call, JSON_ARGS a JSON object (repeatable)
//   --ping                  step: ping
//   --terminate             after the steps, DELETE the session (transport.terminateSession())
//
// Output:
//   {"server_info": {...}|null, "protocol_version": str|null, "session_id": str|null,
//    "steps": [{"op": "list_tools", "ok": true, "tools": [...]},
//              {"op": "call", "name": N, "ok": true, "is_error": false, "content": [...]},
//              {"op": "call", "name": N, "ok": false, "error": {"code": int|null, "message": str}},
//              {"op": "ping", "ok": true}],
//    "http_error": null | {"status": int, "www_authenticate": str|null, "message": str},
//    "terminate": null | {"ok": true} | {"ok": false, "error": {...}}}
//
// http_error.message is the SDK's StreamableHTTPError message, which carries the response
// body: "Streamable HTTP error: Error POSTing to endpoint: <body>". "terminate" is null without
// --terminate; {"ok": true} also when the server assigned no session id (no DELETE is sent then).
//
// Call content: text blocks as their text; others as tags `[image image/png]`,
// `[resource_link URI]`, embedded resource text (or `[resource URI]`); "structured_content"
// is added when present. A JSON-RPC error (SDK McpError) has its code and the server's message
// (the SDK's "MCP error CODE: " prefix removed once). Any other failure of a step is recorded
// with "code": null; when it is an HTTP status >= 400 on that step's POST (SDK
// StreamableHTTPError) the step also carries the same "http_error" object. The next step
// always runs.
//
// Exit status: 0 when the script ran, including an HTTP status >= 400 answering the initialize
// POST ("http_error" set, "steps": []); 2 on bad usage; 1 on anything else (e.g. connection
// refused, initialize failed without an HTTP status), message on stderr.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const USAGE =
  "usage: ts_http_client.mjs URL [--bearer TOKEN] [--list-tools] [--call NAME JSON_ARGS]... [--ping] [--terminate]";

class UsageError extends Error {}

function parseArgs(argv) {
  if (argv.length === 0) throw new UsageError("missing URL");
  if (argv[0] === "-h" || argv[0] === "--help") return null;
  const [url, ...rest] = argv;
  if (url.startsWith("-")) throw new UsageError("URL must be the first argument");
  if (!/^https?:\/\//.test(url)) throw new UsageError(`URL must be http:// or https://, got ${JSON.stringify(url)}`);
  const headers = {};
  const steps = [];
  let terminate = false;
  const take = (i, n, flag) => {
    if (i + n > rest.length) throw new UsageError(`${flag} needs ${n} argument(s)`);
    return rest.slice(i, i + n);
  };
  for (let i = 0; i < rest.length; ) {
    const flag = rest[i++];
    if (flag === "--bearer") {
      const [token] = take(i, 1, flag);
      i += 1;
      headers.Authorization = `Bearer ${token}`;
    } else if (flag === "--list-tools") {
      steps.push({ op: "list_tools" });
    } else if (flag === "--ping") {
      steps.push({ op: "ping" });
    } else if (flag === "--terminate") {
      terminate = true;
    } else if (flag === "--call") {
      const [name, raw] = take(i, 2, flag);
      i += 2;
      let args;
      try {
        args = JSON.parse(raw);
      } catch (err) {
        throw new UsageError(`--call ${name}: JSON_ARGS is not JSON: ${err.message}`);
      }
      if (args === null || typeof args !== "object" || Array.isArray(args)) {
        throw new UsageError(`--call ${name}: JSON_ARGS must be a JSON object`);
      }
      steps.push({ op: "call", name, args });
    } else if (flag === "-h" || flag === "--help") {
      return null;
    } else {
      throw new UsageError(`unknown flag ${JSON.stringify(flag)}`);
    }
  }
  return { url, headers, steps, terminate };
}

function errorOf(err) {
  if (err instanceof McpError) {
    const prefix = `MCP error ${err.code}: `;
    const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    return { code: err.code, message };
  }
  const kind = err?.constructor?.name ?? err?.name ?? "Error";
  return { code: null, message: `${kind}: ${err?.message ?? String(err)}` };
}

// WWW-Authenticate of the latest POST answered with a status >= 400 (steps run one at a time).
let lastPostWwwAuthenticate = null;

async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  if (init?.method === "POST" && response.status >= 400) {
    lastPostWwwAuthenticate = response.headers.get("www-authenticate");
  }
  return response;
}

function httpErrorOf(err) {
  if (!(err instanceof StreamableHTTPError) || !(err.code >= 400)) return null;
  return { status: err.code, www_authenticate: lastPostWwwAuthenticate, message: err.message };
}

function contentText(block) {
  switch (block?.type) {
    case "text":
      return block.text;
    case "image":
    case "audio":
      return `[${block.type} ${block.mimeType}]`;
    case "resource_link":
      return `[resource_link ${block.uri}]`;
    case "resource":
      return typeof block.resource?.text === "string" ? block.resource.text : `[resource ${block.resource?.uri}]`;
    default:
      return JSON.stringify(block);
  }
}

function failed(base, err) {
  const out = { ...base, ok: false, error: errorOf(err) };
  const httpError = httpErrorOf(err);
  if (httpError) out.http_error = httpError;
  return out;
}

async function runStep(client, step) {
  switch (step.op) {
    case "list_tools": {
      const base = { op: "list_tools" };
      try {
        const result = await client.listTools();
        return { ...base, ok: true, tools: result.tools.map((tool) => tool.name) };
      } catch (err) {
        return failed(base, err);
      }
    }
    case "call": {
      const base = { op: "call", name: step.name };
      try {
        const result = await client.callTool({ name: step.name, arguments: step.args });
        const out = {
          ...base,
          ok: true,
          is_error: Boolean(result.isError),
          content: (result.content ?? []).map(contentText),
        };
        if (result.structuredContent !== undefined) out.structured_content = result.structuredContent;
        return out;
      } catch (err) {
        return failed(base, err);
      }
    }
    case "ping": {
      const base = { op: "ping" };
      try {
        await client.ping();
        return { ...base, ok: true };
      } catch (err) {
        return failed(base, err);
      }
    }
    default:
      throw new Error(`unknown step ${step.op}`);
  }
}

async function run({ url, headers, steps, terminate }) {
  const output = { server_info: null, protocol_version: null, session_id: null, steps: [], http_error: null };
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers },
    fetch: recordingFetch,
  });
  const client = new Client({ name: "custos-test-ts-client", version: "0.1.0" });
  // Transport errors (e.g. the optional GET stream answered 405) also reach the awaiting
  // request when they matter; silence the SDK's default console logging of the rest.
  client.onerror = () => {};
  try {
    try {
      await client.connect(transport);
    } catch (err) {
      const httpError = httpErrorOf(err);
      if (!httpError) throw err;
      output.http_error = httpError;
      output.terminate = terminate ? { ok: false, error: { code: null, message: "not connected" } } : null;
      return output;
    }
    output.server_info = client.getServerVersion() ?? null;
    output.protocol_version = transport.protocolVersion ?? null;
    output.session_id = transport.sessionId ?? null;
    for (const step of steps) {
      lastPostWwwAuthenticate = null;
      output.steps.push(await runStep(client, step));
    }
    output.terminate = null;
    if (terminate) {
      try {
        await transport.terminateSession();
        output.terminate = { ok: true };
      } catch (err) {
        output.terminate = failed({}, err);
      }
    }
    return output;
  } finally {
    await client.close().catch(() => {});
  }
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`ts_http_client: ${err.message}\n${USAGE}\n`);
    return 2;
  }
  if (parsed === null) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let output;
  try {
    output = await run(parsed);
  } catch (err) {
    const cause = err?.cause ? ` (${err.cause.code ?? err.cause.message ?? err.cause})` : "";
    process.stderr.write(`ts_http_client: connection to ${parsed.url} failed: ${errorOf(err).message}${cause}\n`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify(output)}\n`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`ts_http_client: crashed: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  },
);
