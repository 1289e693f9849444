#!/usr/bin/env bash
# Sends one short MCP session through `custos run` around the bundled sample server, then shows
# what was recorded. Run from the repository root after `cargo build --workspace --bins`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
custos=target/debug/custos
config=examples/readonly/custos.toml

# The session: the client waits for each answer before the next request, as a real client does.
coproc CUSTOS { "$custos" run --config "$config" --agent reader --run "try-$$"; }
send() { printf '%s\n' "$1" >&"${CUSTOS[1]}"; }
answer() { local line; IFS= read -r line <&"${CUSTOS[0]}"; printf '  ← %s\n' "${line:0:160}"; }

echo "→ initialize";                          send '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"try","version":"1"}}}'; answer
send '{"jsonrpc":"2.0","method":"notifications/initialized"}'
echo "→ tools/list (the reader sees read tools only)"; send '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'; answer
echo "→ tools/call echo (allowed)";          send '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}'; answer
echo "→ tools/call delete_everything (denied)"; send '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"delete_everything","arguments":{"confirm":true}}}'; answer
exec {CUSTOS[1]}>&-
wait "$CUSTOS_PID" || true

echo
echo "The audit log of this run:"
"$custos" audit query --config "$config" --run "try-$$" | grep -v tool.seen
"$custos" audit verify --config "$config"
