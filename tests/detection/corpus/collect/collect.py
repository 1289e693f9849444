#!/usr/bin/env python3
"""Collect a benign corpus of MCP tool descriptors and tool results from real servers.

Run: python3 tests/detection/corpus/collect/collect.py --out tests/detection/corpus

What it does, in order:
1. Bootstraps a client venv under the scratch dir (default /tmp/mcp-collect) holding the
   official MCP Python SDK (`mcp==2.3.0`) and `uv`, and re-executes itself with it.
2. Installs every server pinned in `servers.json` beside this file: npm packages into one
   prefix (`npm install --prefix`), each PyPI package into its own venv (no conflicts), and
   the text-only `fixture_npm` packages (translated docs, locale data) into a second prefix.
3. Builds fixtures: a git repository whose commits add the docs of real installed npm
   packages, a fresh HOME and state dir (memory file, sqlite database, dummy credential files).
4. Starts each server over stdio with dummy credentials only (values are literally "dummy"
   and the like), does initialize + tools/list within `timeout_seconds`, and records the
   descriptors; a server that fails is recorded as skipped with its reason.
5. For servers with a call plan below (read-only, offline tools), calls tools with fixture
   arguments and records the CallToolResult as returned. Descriptors and results are taken
   raw from the JSON-RPC responses (see `_Tap`), so no field the server sent is lost.

Results that show a package's files carry `source`, that package: training and evaluation split
results by it (else by the server's package).

It writes, under --out: `benign-descriptors.jsonl`, `benign-results.jsonl`, and
`collect/report.json` (per server: status, tool and result counts, or the skip reason).
Nothing under the scratch dir (node_modules, venvs) belongs in the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

HERE = Path(__file__).resolve().parent
MCP_SDK = "mcp==2.3.0"
RESULT_TEXT_CAP = 16 * 1024
CALL_TIMEOUT = 20.0
PLAN_BUDGET = 240.0


# ---------------------------------------------------------------------------
# bootstrap and installation
# ---------------------------------------------------------------------------


def bootstrap(work: Path) -> None:
    """Re-exec inside a venv that has the MCP SDK; create it if missing."""
    venv = work / "client-venv"
    py = venv / "bin" / "python"
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    if not py.exists():
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ok = subprocess.run(
        [str(py), "-c", "import mcp, uv"], capture_output=True
    , check=False).returncode == 0
    if not ok:
        subprocess.run([str(py), "-m", "pip", "install", "-q", MCP_SDK, "uv"], check=True)
    os.execv(str(py), [str(py), *sys.argv])


def uv_bin() -> str:
    cand = Path(sys.prefix) / "bin" / "uv"
    return str(cand) if cand.exists() else "uv"


def install_npm(servers: list[dict], work: Path, log: Callable[[str], None]) -> dict[str, str]:
    """Install all npm servers into one prefix; return package -> error for failures."""
    prefix = work / "npm"
    prefix.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PUPPETEER_SKIP_DOWNLOAD="1", PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
    base = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--legacy-peer-deps"]
    missing = [s for s in servers if installed_npm_version(prefix, s["package"]) != s["version"]]
    if not missing:
        return {}
    log(f"npm: installing {len(missing)} packages")
    r = subprocess.run(base + [f"{s['package']}@{s['version']}" for s in missing], env=env,
                       capture_output=True, text=True, check=False)
    errors: dict[str, str] = {}
    if r.returncode != 0:
        log("npm: batch install failed, installing one by one")
        for s in missing:
            r1 = subprocess.run(base + [f"{s['package']}@{s['version']}"], env=env,
                                capture_output=True, text=True, check=False)
            if r1.returncode != 0:
                errors[s["package"]] = "npm install failed: " + tail(r1.stderr)
    return errors


def install_fixture_npm(specs: list[str], work: Path, log: Callable[[str], None]) -> None:
    """Install text-only fixture packages (never started) into their own prefix."""
    prefix = work / "fixture-npm"
    prefix.mkdir(parents=True, exist_ok=True)
    todo = [x for x in specs if installed_npm_version(prefix, x.rsplit("@", 1)[0]) != x.rsplit("@", 1)[1]]
    if not todo:
        return
    log(f"npm: installing {len(todo)} fixture packages")
    subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--legacy-peer-deps",
                    "--ignore-scripts", *todo], check=True, capture_output=True)


def installed_npm_version(prefix: Path, package: str) -> str | None:
    pj = prefix / "node_modules" / package / "package.json"
    try:
        return json.loads(pj.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def pypi_venv(work: Path, package: str) -> Path:
    return work / "pypi" / re.sub(r"[^A-Za-z0-9_.-]", "_", package)


def install_pypi_one(s: dict, work: Path, exclude_newer: str | None) -> str | None:
    """Install one PyPI server into its own venv; return an error string or None."""
    venv = pypi_venv(work, s["package"])
    stamp = venv / ".installed"
    reqs = [f"{s['package']}=={s['version']}", *s.get("with", [])]
    want = " ".join(reqs) + (f" @{exclude_newer}" if exclude_newer else "")
    if stamp.exists() and stamp.read_text() == want:
        return None
    if venv.exists():
        shutil.rmtree(venv)
    uv = uv_bin()
    r = subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return "venv failed: " + tail(r.stderr)
    extra = ["--exclude-newer", exclude_newer] if exclude_newer else []
    r = subprocess.run([uv, "pip", "install", "-q", *extra, "--python", str(venv / "bin" / "python"), *reqs],
                       capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0:
        return "pip install failed: " + tail(r.stderr)
    stamp.write_text(want)
    return None


def install_pypi(servers: list[dict], work: Path, log: Callable[[str], None],
                 exclude_newer: str | None = None) -> dict[str, str]:
    log(f"pypi: installing {len(servers)} packages, one venv each")
    errors: dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futs = {pool.submit(install_pypi_one, s, work, exclude_newer): s for s in servers}
        for f in concurrent.futures.as_completed(futs):
            s = futs[f]
            try:
                err = f.result()
            except Exception as e:  # noqa: BLE001 - any install failure is a skip
                err = f"install error: {e}"
            if err:
                errors[s["package"]] = err
    return errors


def tail(text: str, n: int = 400) -> str:
    text = " ".join(text.split())
    return text[-n:]


def resolve_command(s: dict, work: Path) -> tuple[str, list[str]]:
    """Return (command, leading args) that start the server."""
    if s["registry"] == "npm":
        pkg_dir = work / "npm" / "node_modules" / s["package"]
        meta = json.loads((pkg_dir / "package.json").read_text())
        b = meta.get("bin")
        if isinstance(b, str):
            rel = b
        elif isinstance(b, dict) and b:
            rel = b.get(s.get("bin", ""), "") or min(b.items())[1]
            if len(b) > 1 and "bin" not in s:
                short = s["package"].split("/")[-1]
                rel = b.get(short, rel)
        else:
            rel = meta.get("main", "index.js")
        return "node", [str((pkg_dir / rel).resolve())]
    venv = pypi_venv(work, s["package"])
    if "bin" in s:
        return str(venv / "bin" / s["bin"]), []
    code = (
        "import importlib.metadata as m, json, sys;"
        "d = m.distribution(sys.argv[1]);"
        "print(json.dumps(sorted(e.name for e in d.entry_points if e.group == 'console_scripts')))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code, s["package"]],
                         capture_output=True, text=True, check=True).stdout
    scripts = json.loads(out)
    if not scripts:
        raise RuntimeError("package has no console script")
    norm = s["package"].split(".")[-1]
    pick = next((x for x in scripts if x == norm or x == s["package"]), None)
    pick = pick or next((x for x in scripts if "mcp" in x), scripts[0])
    return str(venv / "bin" / pick), []


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

LANG_RE = re.compile(
    r"(?:^|[._/-])(zh|zh-cn|zh_cn|zh-tw|zh_tw|zh-hans|zh-hant|cn|ja|ja-jp|jp|ko|ko-kr|kr|es|es-es|"
    r"de|de-de|fr|fr-fr|ru|ru-ru|pt|pt-br|pt_br|it|tr|vi|pl|uk|nl|id|fa|ar|he|th|hi|cs|sv)(?:[._/-]|$)",
    re.IGNORECASE,
)


def package_dirs(nm: Path) -> list[Path]:
    out: list[Path] = []
    if not nm.is_dir():
        return out
    for d in sorted(nm.iterdir()):
        if d.name.startswith("."):
            continue
        if d.name.startswith("@"):
            out.extend(sorted(x for x in d.iterdir() if x.is_dir()))
        elif d.is_dir():
            out.append(d)
    return out


LOCALE_DIRS = {"locale", "locales", "lang", "langs", "i18n", "l10n", "translations"}


def short(p: Path) -> str:
    """A path named from its package on: the part after the last node_modules/."""
    parts = p.parts
    idx = max((i for i, x in enumerate(parts) if x == "node_modules"), default=-1)
    return "/".join(parts[idx + 1:])


def mostly_non_ascii(data: bytes) -> bool:
    text = data[:20000].decode(errors="ignore")
    letters = [c for c in text if c.isalpha()]
    return len(letters) > 200 and sum(1 for c in letters if ord(c) > 127) / len(letters) > 0.3


def doc_inventory(roots: list[Path]) -> dict[str, list[Path]]:
    """Deterministic inventory of real text files in installed npm packages."""
    inv: dict[str, list[Path]] = {"readme": [], "foreign": [], "changelog": [], "pkgjson": [],
                                  "source": [], "dirs": []}
    seen: set[str] = set()

    def add(kind: str, p: Path) -> None:
        try:
            data = p.read_bytes()
        except OSError:
            return
        if not data.strip() or b"\0" in data[:4096]:
            return
        h = hashlib.sha256(data).hexdigest()
        if h in seen:
            return
        seen.add(h)
        if kind == "readme" and mostly_non_ascii(data):
            kind = "foreign"
        inv[kind].append(p)

    pkgs = [pkg for nm in roots for pkg in package_dirs(nm)]
    for pkg in pkgs:
        inv["dirs"].append(pkg)
        for p in sorted(pkg.rglob("*")):
            if not p.is_file() or "node_modules" in p.relative_to(pkg).parts:
                continue
            rel = p.relative_to(pkg).as_posix()
            name = p.name.lower()
            if name.endswith((".md", ".markdown", ".txt")) and LANG_RE.search(rel.lower()[:-3]) \
                    and p.stat().st_size < 200_000 or name.endswith((".json", ".js", ".mjs", ".cjs", ".yml", ".yaml")) \
                    and LOCALE_DIRS & set(rel.lower().split("/")[:-1]) \
                    and LANG_RE.search("/" + name.rsplit(".", 1)[0]) and 300 < p.stat().st_size < 200_000:
                add("foreign", p)
            elif "/" not in rel and name.startswith("readme"):
                add("readme", p)
            elif "/" not in rel and name.startswith(("changelog", "history")):
                add("changelog", p)
            elif rel == "package.json":
                add("pkgjson", p)
            elif name.endswith((".js", ".mjs", ".cjs", ".ts")) and not name.endswith(".d.ts") \
                    and 400 < p.stat().st_size < 12_000 and ".min." not in name:
                add("source", p)
    return inv


def pick_foreign(items: list[Path], n: int) -> list[Path]:
    """Prose first (translated READMEs and docs), then locale data taken round-robin by language,
    so that every language present gets some share rather than the largest locale folders."""
    prose = [p for p in items if p.name.lower().endswith((".md", ".markdown", ".txt"))]
    picked = spread(prose, n * 2 // 3)
    by_lang: dict[str, list[Path]] = {}
    for p in items:
        if p in prose:
            continue
        m = LANG_RE.search(short(p).lower().rsplit(".", 1)[0])
        by_lang.setdefault(m.group(1) if m else "?", []).append(p)
    queues = [spread(v, len(v)) for _, v in sorted(by_lang.items())]
    i = 0
    while len(picked) < n and any(queues):
        q = queues[i % len(queues)]
        if q:
            picked.append(q.pop(len(q) // 2))
        i += 1
    return sorted(picked)


def spread(items: list, n: int) -> list:
    """Pick n items evenly spread over a sorted list (deterministic)."""
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def git(repo: Path, *args: str, date: str | None = None) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="Corpus Fixture", GIT_AUTHOR_EMAIL="fixture@example.invalid",
               GIT_COMMITTER_NAME="Corpus Fixture", GIT_COMMITTER_EMAIL="fixture@example.invalid")
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def build_fixtures(work: Path, inv: dict[str, list[Path]]) -> Path:
    fixture = work / "fixture"
    if fixture.exists():
        shutil.rmtree(fixture)
    state = work / "state"
    if state.exists():
        shutil.rmtree(state)
    (state / "excel").mkdir(parents=True)
    if (work / "home").exists():
        shutil.rmtree(work / "home")
    (work / "home" / ".aws").mkdir(parents=True, exist_ok=True)
    # Some AWS servers insist on a profile; a dummy one keeps them from exiting before tools/list.
    (work / "home" / ".aws" / "config").write_text("[default]\nregion = us-east-1\n")
    (work / "home" / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = dummy\naws_secret_access_key = dummy\n")
    # Dummy credential files for servers that refuse to start without one (never real values).
    (state / "gdrive-creds.json").write_text(json.dumps(
        {"access_token": "dummy", "refresh_token": "dummy", "token_type": "Bearer", "expiry_date": 4102444800000}))
    (state / "gcp-oauth.keys.json").write_text(json.dumps(
        {"installed": {"client_id": "dummy", "client_secret": "dummy", "redirect_uris": ["http://127.0.0.1"]}}))
    wrangler = work / "home" / ".config" / ".wrangler" / "config"
    wrangler.mkdir(parents=True, exist_ok=True)
    (wrangler / "default.toml").write_text('oauth_token = "dummy"\nexpiration_time = "2100-01-01T00:00:00Z"\n')
    (state / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\ncurrent-context: ''\n")
    repo = fixture / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    # Each commit adds the README and package.json of one real package; later commits edit.
    pkgs = spread([p for p in inv["readme"] if p.stat().st_size < 60_000], 24)
    for i, readme in enumerate(pkgs):
        rel = Path(short(readme.parent))
        dest = repo / "packages" / rel
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(readme, dest / readme.name)
        if (readme.parent / "package.json").exists():
            shutil.copyfile(readme.parent / "package.json", dest / "package.json")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"Add docs of {rel.as_posix()}\n\nCopied from the installed npm package.",
            date=f"2026-01-{i + 1:02d}T12:00:00+00:00")
    foreign = pick_foreign([p for p in inv["foreign"] if p.stat().st_size < 60_000], 8)
    for i, f in enumerate(foreign):
        rel = Path(short(f))
        dest = repo / "i18n" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"Add translated doc {rel.as_posix()}",
            date=f"2026-02-{i + 1:02d}T12:00:00+00:00")
    if pkgs or foreign:
        git(repo, "branch", "docs-only")
    # Leave one staged and one unstaged change so diff tools have real output.
    if pkgs:
        first = repo / "packages" / short(pkgs[0].parent) / pkgs[0].name
        first.write_text(first.read_text(errors="replace") + "\n\n## Local notes\n\nReviewed for the corpus.\n")
        git(repo, "add", "-A")
        last = repo / "packages" / short(pkgs[-1].parent) / "package.json"
        if last.exists():
            last.write_text(last.read_text(errors="replace").replace('"version"', '"version_pinned"', 1))
    return fixture


# ---------------------------------------------------------------------------
# call plans: (tool, arguments, note) for read-only, offline tools
# ---------------------------------------------------------------------------

Call = tuple[str, dict[str, Any], str]


def plan_filesystem(ctx: dict) -> list[Call]:
    inv = ctx["inv"]
    tools = ctx["tools"]
    read = "read_text_file" if "read_text_file" in tools else "read_file"
    calls: list[Call] = []
    for kind, n in (("foreign", 240), ("readme", 240), ("changelog", 50), ("pkgjson", 50), ("source", 60)):
        for p in (pick_foreign(inv[kind], n) if kind == "foreign" else spread(inv[kind], n)):
            calls.append((read, {"path": str(p)}, f"{read} of {kind} file {short(p)}"))
    for d in spread(inv["dirs"], 60):
        calls.append(("list_directory", {"path": str(d)}, f"list_directory of {short(d)}"))
    for d in spread(inv["dirs"], 25):
        calls.append(("list_directory_with_sizes", {"path": str(d)},
                      f"list_directory_with_sizes of {short(d)}"))
    for p in spread(inv["readme"], 30):
        calls.append(("get_file_info", {"path": str(p)}, f"get_file_info of {short(p)}"))
    for d, pat in zip(spread(inv["dirs"], 15), ["*.md", "*.json", "*.js", "LICENSE*", "*.ts"] * 3):
        calls.append(("search_files", {"path": str(d), "pattern": pat},
                      f"search_files {pat} in {short(d)}"))
    small = [d for d in inv["dirs"] if sum(1 for _ in d.rglob("*")) < 40]
    for d in spread(small, 12):
        calls.append(("directory_tree", {"path": str(d)}, f"directory_tree of {short(d)}"))
    groups = spread(inv["pkgjson"], 40)
    for i in range(0, len(groups), 2):
        ps = [str(p) for p in groups[i:i + 2]]
        calls.append(("read_multiple_files", {"paths": ps}, "read_multiple_files of two package.json files"))
    calls.append(("list_allowed_directories", {}, "list_allowed_directories"))
    for p in spread(inv["readme"], 10):
        calls.append((read, {"path": str(p), "head": 20}, f"{read} head=20 of {short(p)}"))
    return calls


def pkg_meta(ctx: dict, n: int) -> list[dict]:
    out = []
    for p in spread(ctx["inv"]["pkgjson"], n):
        try:
            m = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(m.get("name"), str) and isinstance(m.get("description"), str) and m["description"]:
            out.append(m)
    return out


def plan_memory(ctx: dict) -> list[Call]:
    metas = pkg_meta(ctx, 60)
    calls: list[Call] = []
    for i in range(0, len(metas), 5):
        ents = [{"name": m["name"], "entityType": "npm_package",
                 "observations": [m["description"], f"version {m.get('version', '?')}",
                                  f"license {m.get('license', 'unknown')}"]} for m in metas[i:i + 5]]
        calls.append(("create_entities", {"entities": ents}, "create_entities from package.json metadata"))
    for m in metas:
        deps = sorted((m.get("dependencies") or {}).keys())[:3]
        if deps:
            rels = [{"from": m["name"], "to": d, "relationType": "depends_on"} for d in deps]
            calls.append(("create_relations", {"relations": rels}, f"create_relations for {m['name']}"))
    for m in metas[:15]:
        kws = [k for k in (m.get("keywords") or []) if isinstance(k, str)][:4]
        if kws:
            calls.append(("add_observations", {"observations": [{"entityName": m["name"], "contents": kws}]},
                          f"add_observations keywords of {m['name']}"))
    calls.append(("read_graph", {}, "read_graph after loading package metadata"))
    for q in ["mcp", "server", "json", "typescript", "http", "parser", "stream", "MIT", "Apache", "cli",
              "schema", "browser", "test", "util", "version 1", "zod", "async", "file", "url", "node"]:
        calls.append(("search_nodes", {"query": q}, f"search_nodes {q}"))
    for i in range(0, min(len(metas), 30), 3):
        calls.append(("open_nodes", {"names": [m["name"] for m in metas[i:i + 3]]}, "open_nodes of three packages"))
    return calls


def plan_everything(ctx: dict) -> list[Call]:
    calls: list[Call] = []
    for m in pkg_meta(ctx, 30):
        calls.append(("echo", {"message": m["description"]}, f"echo of the description of {m['name']}"))
    for a, b in [(1, 2), (40, 2), (-7, 19), (123456, 654321), (0, 0)]:
        calls.append(("get-sum", {"a": a, "b": b}, f"get-sum {a} {b}"))
        calls.append(("add", {"a": a, "b": b}, f"add {a} {b}"))
    for n in [1, 2, 3, 5, 8, 10]:
        calls.append(("get-resource-reference", {"resourceType": "Text", "resourceId": n}, f"resource reference {n}"))
        calls.append(("getResourceReference", {"resourceId": n}, f"resource reference {n}"))
        calls.append(("get-resource-links", {"count": n}, f"get-resource-links {n}"))
    for loc in ["New York", "Chicago", "Los Angeles"]:
        calls.append(("get-structured-content", {"location": loc}, f"get-structured-content {loc}"))
    for typ in ["error", "success", "debug"]:
        calls.append(("get-annotated-message", {"messageType": typ, "includeImage": False}, f"annotated {typ}"))
        calls.append(("annotatedMessage", {"messageType": typ, "includeImage": False}, f"annotated {typ}"))
    calls.append(("trigger-long-running-operation", {"duration": 2, "steps": 2}, "long-running operation 2s"))
    calls.append(("longRunningOperation", {"duration": 2, "steps": 2}, "long-running operation 2s"))
    calls.append(("get-tiny-image", {}, "tiny image"))
    calls.append(("getTinyImage", {}, "tiny image"))
    calls.append(("printEnv", {}, "SKIP"))
    return [c for c in calls if c[2] != "SKIP"]


def plan_thinking(ctx: dict) -> list[Call]:
    calls: list[Call] = []
    chains = [
        ["List the packages whose README mentions a licence.", "Group them by licence family.",
         "Check that the MIT group is the largest.", "Conclude with the count per family."],
        ["Read the changelog of the filesystem server.", "Find the version that added read_text_file.",
         "Compare with the version pinned for the corpus.", "The pinned version includes it."],
        ["Plan a schema for a table of packages.", "Columns: name, version, description, licence.",
         "Revise: also record the registry.", "Final schema has five columns."],
    ]
    for chain in chains:
        for i, t in enumerate(chain, 1):
            calls.append(("sequentialthinking", {"thought": t, "thoughtNumber": i, "totalThoughts": len(chain),
                                                 "nextThoughtNeeded": i < len(chain)}, f"thought {i}/{len(chain)}"))
    calls.append(("sequentialthinking", {"thought": "Revise step 2: the registry column belongs first.",
                                         "thoughtNumber": 5, "totalThoughts": 5, "nextThoughtNeeded": False,
                                         "isRevision": True, "revisesThought": 2}, "revision thought"))
    return calls


def plan_time(ctx: dict) -> list[Call]:
    zones = ["UTC", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Moscow", "Asia/Tokyo",
             "Asia/Shanghai", "Asia/Seoul", "Asia/Kolkata", "America/New_York", "America/Sao_Paulo",
             "America/Los_Angeles", "Australia/Sydney", "Africa/Nairobi", "Pacific/Auckland",
             "America/Mexico_City", "Europe/Lisbon", "Asia/Jerusalem", "Asia/Singapore", "Europe/Kyiv"]
    calls: list[Call] = [("get_current_time", {"timezone": z}, f"get_current_time {z}") for z in zones]
    pairs = [("Europe/Paris", "Asia/Tokyo", "09:30"), ("UTC", "America/New_York", "14:00"),
             ("Asia/Shanghai", "Europe/Berlin", "20:15"), ("America/Sao_Paulo", "Europe/Lisbon", "08:00"),
             ("Asia/Seoul", "America/Los_Angeles", "23:45"), ("Europe/Moscow", "Asia/Kolkata", "12:00"),
             ("Australia/Sydney", "UTC", "06:30"), ("Europe/Madrid", "America/Mexico_City", "18:00"),
             ("Pacific/Auckland", "Africa/Nairobi", "00:10"), ("Asia/Singapore", "Europe/Kyiv", "16:20")]
    calls += [("convert_time", {"source_timezone": a, "target_timezone": b, "time": t},
               f"convert_time {t} {a} -> {b}") for a, b, t in pairs]
    calls.append(("get_current_time", {"timezone": "Mars/Olympus_Mons"}, "get_current_time with an unknown zone"))
    return calls


def plan_git(ctx: dict) -> list[Call]:
    repo = str(ctx["fixture"] / "repo")
    out = subprocess.run(["git", "-C", repo, "log", "--format=%H"], capture_output=True, text=True, check=False).stdout.split()
    calls: list[Call] = [("git_status", {"repo_path": repo}, "git_status"),
                         ("git_diff_unstaged", {"repo_path": repo}, "git_diff_unstaged"),
                         ("git_diff_staged", {"repo_path": repo}, "git_diff_staged"),
                         ("git_branch", {"repo_path": repo, "branch_type": "all"}, "git_branch all")]
    for n in (3, 10, 40):
        calls.append(("git_log", {"repo_path": repo, "max_count": n}, f"git_log max_count={n}"))
    for h in out:
        calls.append(("git_show", {"repo_path": repo, "revision": h}, "git_show of a fixture commit"))
    for a, b in zip(out[1:], out[:-1]):
        calls.append(("git_diff", {"repo_path": repo, "target": a}, "git_diff against an earlier commit"))
        if len(calls) > 70:
            break
    calls.append(("git_diff", {"repo_path": repo, "target": "docs-only"}, "git_diff against branch docs-only"))
    return calls


def plan_sqlite(ctx: dict) -> list[Call]:
    metas = pkg_meta(ctx, 40)
    calls: list[Call] = [("create_table", {"query": "CREATE TABLE packages (name TEXT PRIMARY KEY, version TEXT, "
                                                    "license TEXT, description TEXT)"}, "create_table packages")]
    for m in metas:
        def q(v: Any) -> str:
            return "'" + str(v).replace("'", "''") + "'"
        lic = m.get("license") if isinstance(m.get("license"), str) else "unknown"
        calls.append(("write_query", {"query": "INSERT INTO packages VALUES (" + ", ".join(
            q(x) for x in (m["name"], m.get("version", ""), lic, m["description"])) + ")"},
            f"insert {m['name']}"))
    calls += [("list_tables", {}, "list_tables"), ("describe_table", {"table_name": "packages"}, "describe_table")]
    for sql in ["SELECT name, version FROM packages ORDER BY name",
                "SELECT license, COUNT(*) AS n FROM packages GROUP BY license ORDER BY n DESC",
                "SELECT name, description FROM packages WHERE description LIKE '%server%'",
                "SELECT name FROM packages WHERE name LIKE '@%'",
                "SELECT AVG(LENGTH(description)) AS avg_len FROM packages",
                "SELECT * FROM packages LIMIT 5",
                "SELECT name FROM packages WHERE license = 'MIT' LIMIT 10",
                "SELECT COUNT(*) FROM packages"]:
        calls.append(("read_query", {"query": sql}, f"read_query {sql}"))
    calls.append(("append_insight", {"insight": "Most installed packages are MIT licensed."}, "append_insight"))
    return calls


def plan_calculator(ctx: dict) -> list[Call]:
    exprs = ["2+2", "3*(4+5)", "2**10", "144/12", "sqrt(2)", "1/3", "10 % 4", "(1+2)*(3+4)*(5+6)",
             "1e3 + 250", "7*6"]
    return [("calculate", {"expression": e}, f"calculate {e}") for e in exprs]


def plan_motherduck(ctx: dict) -> list[Call]:
    sqls = ["SELECT 42 AS answer", "SELECT range AS n, n*n AS sq FROM range(10)",
            "SELECT current_date IS NOT NULL AS ok", "SELECT version() AS v",
            "SELECT * FROM duckdb_settings() WHERE name LIKE 'threads%'",
            "SELECT 'héllo wörld' AS s, length('héllo wörld') AS n",
            "SELECT list_value(1,2,3) AS l", "SELECT 'こんにちは' AS ja, '你好' AS zh, 'привет' AS ru",
            "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE 'str%' ORDER BY 1 LIMIT 20",
            "SELECT 1/0 AS boom"]
    calls: list[Call] = [("list_databases", {}, "list_databases")]
    return calls + [("execute_query", {"sql": q}, f"execute_query {q}") for q in sqls]


def plan_text_editor(ctx: dict) -> list[Call]:
    inv = ctx["inv"]
    calls: list[Call] = []
    for p in spread(inv["readme"], 20) + pick_foreign(inv["foreign"], 20):
        calls.append(("get_text_file_contents", {"files": [{"file_path": str(p), "ranges": [{"start": 1, "end": 60}]}]},
                      f"get_text_file_contents lines 1-60 of {p.name}"))
    return calls


def plan_shell(ctx: dict) -> list[Call]:
    calls: list[Call] = []
    for d in spread(ctx["inv"]["dirs"], 8):
        calls.append(("shell_execute", {"command": ["ls", "-la"], "directory": str(d)}, f"ls -la in {d.name}"))
    for p in spread(ctx["inv"]["pkgjson"], 6):
        calls.append(("shell_execute", {"command": ["wc", "-l", str(p)], "directory": str(p.parent)}, "wc -l"))
    return calls


def plan_desktop(ctx: dict) -> list[Call]:
    calls: list[Call] = []
    for p in pick_foreign(ctx["inv"]["foreign"], 30):
        calls.append(("read_file", {"path": str(p)}, f"read_file of translated doc {p.name}"))
    for d in spread(ctx["inv"]["dirs"], 10):
        calls.append(("list_directory", {"path": str(d)}, f"list_directory {d.name}"))
    for p in spread(ctx["inv"]["readme"], 10):
        calls.append(("get_file_info", {"path": str(p)}, "get_file_info"))
    return calls


def plan_alchemy(ctx: dict) -> list[Call]:
    return [("all_table_names", {}, "all_table_names"), ("filter_table_names", {"q": "x"}, "filter_table_names"),
            ("execute_query", {"query": "SELECT sqlite_version() AS v"}, "execute_query sqlite_version"),
            ("execute_query", {"query": "SELECT 1 AS one, 'dos' AS two, 'drei' AS three"}, "execute_query literal")]


def plan_excel(ctx: dict) -> list[Call]:
    return [("create_workbook", {"path": "packages.xlsx", "sheets": ["Packages", "Notes"]}, "create_workbook"),
            ("describe_workbook", {"path": "packages.xlsx"}, "describe_workbook"),
            ("list_workbooks", {}, "list_workbooks")]


PLANS: dict[str, Callable[[dict], list[Call]]] = {
    "@modelcontextprotocol/server-filesystem": plan_filesystem,
    "@modelcontextprotocol/server-memory": plan_memory,
    "@modelcontextprotocol/server-everything": plan_everything,
    "@modelcontextprotocol/server-sequential-thinking": plan_thinking,
    "@wonderwhy-er/desktop-commander": plan_desktop,
    "mcp-server-time": plan_time,
    "mcp-server-git": plan_git,
    "mcp-server-sqlite": plan_sqlite,
    "mcp-server-calculator": plan_calculator,
    "mcp-server-motherduck": plan_motherduck,
    "mcp-text-editor": plan_text_editor,
    "mcp-shell-server": plan_shell,
    "mcp-alchemy": plan_alchemy,
    "excel-mcp-server": plan_excel,
}


# ---------------------------------------------------------------------------
# talking to servers
# ---------------------------------------------------------------------------


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def cap_result(res: dict) -> tuple[dict, str]:
    """Cap a result's text at RESULT_TEXT_CAP bytes in total; say what was cut."""
    notes = []
    budget = RESULT_TEXT_CAP
    for item in res.get("content", []):
        if item.get("type") == "text" and isinstance(item.get("text"), str):
            raw = item["text"].encode()
            if len(raw) > budget:
                item["text"] = raw[:budget].decode(errors="ignore")
                notes.append(f"text truncated to {budget} of {len(raw)} bytes")
            budget = max(0, budget - len(item["text"].encode()))
        elif item.get("type") in ("image", "audio") and len(item.get("data", "")) > 4096:
            item["data"] = item["data"][:4096]
            notes.append(f"{item['type']} data truncated to 4096 chars")
        elif item.get("type") == "resource" and isinstance(item.get("resource", {}).get("text"), str):
            t = item["resource"]["text"].encode()
            if len(t) > budget:
                item["resource"]["text"] = t[:budget].decode(errors="ignore")
                notes.append(f"resource text truncated to {budget} of {len(t)} bytes")
    sc = res.get("structuredContent")
    if sc is not None and len(json.dumps(sc, ensure_ascii=False).encode()) > RESULT_TEXT_CAP:
        del res["structuredContent"]
        notes.append("structuredContent dropped: over 16 KiB")
    return res, "; ".join(notes)


class _TapRead:
    """A read stream that notes the raw `result` of every JSON-RPC response passing through.

    The SDK parses results into models that drop fields they do not know; the corpus wants the
    objects exactly as the server sent them, so they are taken from the wire instead.
    """

    def __init__(self, inner: Any, tap: _Tap) -> None:
        self._inner = inner
        self._tap = tap

    def _see(self, item: Any) -> Any:
        res = getattr(getattr(item, "message", None), "result", None)
        if isinstance(res, dict):
            self._tap.latest = json.loads(json.dumps(res))
        return item

    async def receive(self) -> Any:
        return self._see(await self._inner.receive())

    def __aiter__(self) -> _TapRead:
        return self

    async def __anext__(self) -> Any:
        return self._see(await self._inner.__anext__())

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> Any:
        return await self._inner.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Tap:
    """Wraps a transport; `latest` is the raw result of the last response (requests are sequential)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.latest: dict | None = None

    async def __aenter__(self) -> Any:
        read, write = await self._inner.__aenter__()
        return _TapRead(read, self), write

    async def __aexit__(self, *exc: object) -> Any:
        return await self._inner.__aexit__(*exc)


async def run_server(s: dict, cfg: dict, ctx: dict, errlog_path: Path) -> dict:
    import anyio
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    work: Path = ctx["work"]
    subst = {"{work}": str(work), "{fixture}": str(ctx["fixture"]), "{node_modules}": str(ctx["nm"]),
             "{fixture_node_modules}": str(ctx["fnm"])}

    def fill(v: str) -> str:
        for k, r in subst.items():
            v = v.replace(k, r)
        return v

    cmd, lead = resolve_command(s, work)
    env = {"HOME": str(work / "home"), "PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    env.update(cfg.get("common_env", {}))
    env.update({k: fill(v) for k, v in s.get("env", {}).items()})
    params = StdioServerParameters(command=cmd, args=lead + [fill(a) for a in s.get("args", [])], env=env,
                                   cwd=str(work / "home"))
    out: dict = {"descriptors": [], "results": [], "server": None, "skipped_calls": 0}
    timeout = float(cfg.get("timeout_seconds", 20))
    with errlog_path.open("w") as errlog, anyio.CancelScope() as scope:
        # One scope bounds the whole session: first the start-up and listing, then the call plan.
        # (Entering the client inside a shorter scope than its lifetime would break anyio's nesting.)
        scope.deadline = anyio.current_time() + timeout
        # The transport is built here so the child's stderr goes to a log file, not our console.
        tap = _Tap(stdio_client(params, errlog=errlog))
        async with Client(tap, mode="legacy", read_timeout_seconds=timeout,
                          cache=None) as client:
            info = client.server_info
            out["server"] = getattr(info, "name", None) if info else None
            tools: list = []
            cursor = None
            raw_tools: list[dict] = []
            while True:
                tap.latest = None
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                raw = tap.latest if tap.latest and isinstance(tap.latest.get("tools"), list) else None
                raw_tools.extend(raw["tools"] if raw else [dump(t) for t in page.tools])
                cursor = page.next_cursor
                if not cursor:
                    break
            out["descriptors"] = raw_tools
            out["listed"] = True
            plan = PLANS.get(s["package"])
            scope.deadline = anyio.current_time() + PLAN_BUDGET + 30
            if plan:
                ctx2 = dict(ctx, tools={t.name for t in tools})
                started = time.monotonic()
                for tool, args, note in plan(ctx2):
                    if tool not in ctx2["tools"]:
                        continue
                    if time.monotonic() - started > PLAN_BUDGET:
                        out["skipped_calls"] += 1
                        continue
                    try:
                        tap.latest = None
                        with anyio.fail_after(CALL_TIMEOUT):
                            res = await client.call_tool(tool, args)
                    except Exception as e:  # noqa: BLE001 - a failed call is counted, not fatal
                        out["skipped_calls"] += 1
                        print(f"    call {tool} failed: {type(e).__name__}: {str(e)[:120]}", flush=True)
                        continue
                    raw = tap.latest if tap.latest and "content" in tap.latest else dump(res)
                    capped, cut = cap_result(raw)
                    out["results"].append({"tool": tool, "arguments": args, "result": capped,
                                           "note": note + (f" ({cut})" if cut else "")})
            # Leave at most 10 s for the server to shut down.
            scope.deadline = min(scope.deadline, anyio.current_time() + 10)
    if not out.get("listed"):
        raise TimeoutError(f"no initialize + tools/list within {timeout:g} s")
    return out


SOURCE = re.compile(r"node_modules/(@[^/\"]+/[^/\"]+|[^/@\"][^/\"]*)/")


def source_of(arguments) -> str | None:
    """The package whose files a result shows (a path under node_modules in its arguments): the
    unit the corpus splits results by, so that one package's README is never on both sides."""
    m = SOURCE.search(json.dumps(arguments or {}))
    return m.group(1) if m else None


def stderr_reason(text: str) -> str:
    """The most telling line of a server's stderr: the last error line that is not a stack frame."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    frames = ("at ", "File ", "^", "~", "Traceback", "raise ", "return ", "│", "╰", "╭")
    hits = [x for x in lines if re.search(r"error|exception|fatal|failed|not found|refused", x, re.IGNORECASE)
            and not x.startswith(frames)]
    return tail(hits[-1] if hits else (lines[-1] if lines else ""), 300)


def start_one(s: dict, cfg: dict, ctx: dict) -> dict:
    logs = ctx["work"] / "logs"
    logs.mkdir(exist_ok=True)
    errlog_path = logs / (re.sub(r"[^A-Za-z0-9_.-]", "_", s["package"]) + ".stderr")
    try:
        return asyncio.run(run_server(s, cfg, ctx, errlog_path))
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            raise
        reason = f"{type(e).__name__}: {e}"
        if isinstance(e, BaseExceptionGroup):
            leaves = []

            def walk(g: BaseException) -> None:
                if isinstance(g, BaseExceptionGroup):
                    for x in g.exceptions:
                        walk(x)
                else:
                    leaves.append(f"{type(g).__name__}: {g}")
            walk(e)
            reason = "; ".join(leaves)
        if "TimeoutError" in reason or "Cancelled" in reason or not reason.split(":", 1)[-1].strip():
            reason = reason or "timeout"
        try:
            err = stderr_reason(errlog_path.read_text(errors="replace"))
        except OSError:
            err = ""
        return {"error": tail(reason, 300) + (f" | stderr: {err}" if err else "")}


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="corpus dir (tests/detection/corpus)")
    ap.add_argument("--work", default="/tmp/mcp-collect", help="scratch dir for installs and fixtures")
    ap.add_argument("--servers", default=str(HERE / "servers.json"))
    ap.add_argument("--only", default="", help="comma-separated packages to run (for debugging)")
    ap.add_argument("--skip-install", action="store_true")
    a = ap.parse_args()
    work = Path(a.work).resolve()
    bootstrap(work)
    # The SDK logs every non-JSON line a server prints on stdout; the per-server stderr log is enough.
    logging.getLogger("mcp").setLevel(logging.CRITICAL)
    out = Path(a.out).resolve()

    def log(msg: str) -> None:
        print(msg, flush=True)

    cfg = json.loads(Path(a.servers).read_text())
    servers = cfg["servers"]
    if a.only:
        keep = set(a.only.split(","))
        servers = [s for s in servers if s["package"] in keep]
    install_errors: dict[str, str] = {}
    if not a.skip_install:
        install_errors.update(install_npm([s for s in servers if s["registry"] == "npm"], work, log))
        install_errors.update(install_pypi([s for s in servers if s["registry"] == "pypi"], work, log,
                                           cfg.get("pypi_exclude_newer")))
    nm = work / "npm" / "node_modules"
    if not a.skip_install and cfg.get("fixture_npm"):
        install_fixture_npm(cfg["fixture_npm"], work, log)
    fnm = work / "fixture-npm" / "node_modules"
    inv = doc_inventory([nm, fnm])
    log("inventory: " + ", ".join(f"{k}={len(v)}" for k, v in inv.items()))
    fixture = build_fixtures(work, inv)
    ctx = {"work": work, "nm": nm, "fnm": fnm, "inv": inv, "fixture": fixture}

    report: dict[str, Any] = {"sdk": MCP_SDK, "node": subprocess.run(["node", "--version"], capture_output=True,
                                                                      text=True, check=False).stdout.strip(),
                              "timeout_seconds": cfg.get("timeout_seconds", 20), "servers": []}
    descriptors: dict[str, dict] = {}
    results: list[dict] = []
    for s in servers:
        key = f"{s['registry']}:{s['package']}@{s['version']}"
        entry: dict[str, Any] = {"registry": s["registry"], "package": s["package"], "version": s["version"]}
        if s["package"] in install_errors:
            entry.update(status="skipped", reason=install_errors[s["package"]])
            report["servers"].append(entry)
            log(f"SKIP {key}: {entry['reason'][:160]}")
            continue
        t0 = time.monotonic()
        r = start_one(s, cfg, ctx)
        if "error" in r:
            entry.update(status="skipped", reason=r["error"])
            report["servers"].append(entry)
            log(f"SKIP {key}: {r['error'][:200]}")
            continue
        if not r["descriptors"]:
            entry.update(status="skipped", reason="tools/list returned no tools (they come from the backend)")
            report["servers"].append(entry)
            log(f"SKIP {key}: no tools")
            continue
        server = r["server"] or s["package"].split("/")[-1]
        for d in r["descriptors"]:
            did = f"{key}/{d.get('name')}"
            descriptors[did] = {"id": did, "registry": s["registry"], "package": s["package"],
                                "version": s["version"], "server": server, "descriptor": d}
        for i, x in enumerate(r["results"]):
            row = {"id": f"{key}/{x['tool']}#{i:04d}", "registry": s["registry"], "package": s["package"],
                   "version": s["version"], "server": server, **x}
            source = source_of(x.get("arguments"))
            if source:
                row["source"] = source
            results.append(row)
        entry.update(status="ok", server=server, tools=len(r["descriptors"]), results=len(r["results"]),
                     failed_calls=r["skipped_calls"], seconds=round(time.monotonic() - t0, 1))
        report["servers"].append(entry)
        log(f"OK   {key}: {len(r['descriptors'])} tools, {len(r['results'])} results")

    # Deduplicate identical descriptors (same canonical JSON): the first id in sort order wins.
    seen: set[str] = set()
    dedup = []
    for did in sorted(descriptors):
        canon = json.dumps(descriptors[did]["descriptor"], sort_keys=True, ensure_ascii=False)
        if canon in seen:
            continue
        seen.add(canon)
        dedup.append(descriptors[did])
    results.sort(key=lambda x: x["id"])
    out.mkdir(parents=True, exist_ok=True)
    with (out / "benign-descriptors.jsonl").open("w") as f:
        for d in dedup:
            f.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")
    with (out / "benign-results.jsonl").open("w") as f:
        for x in results:
            f.write(json.dumps(x, ensure_ascii=False, sort_keys=True) + "\n")
    ok = [e for e in report["servers"] if e["status"] == "ok"]
    report["summary"] = {
        "servers_ok": len(ok),
        "servers_ok_npm": sum(1 for e in ok if e["registry"] == "npm"),
        "servers_ok_pypi": sum(1 for e in ok if e["registry"] == "pypi"),
        "servers_skipped": len(report["servers"]) - len(ok),
        "descriptors": len(dedup),
        "descriptors_duplicate_dropped": len(descriptors) - len(dedup),
        "results": len(results),
        "result_servers": sorted({x["package"] for x in results}),
    }
    for e in report["servers"]:
        e.pop("seconds", None)
    (out / "collect").mkdir(exist_ok=True)
    (out / "collect" / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    log(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
