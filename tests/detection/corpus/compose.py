#!/usr/bin/env python3
"""Build the malicious and written-benign detection corpus from hand-written sources.

Inputs (all under this folder):
  written/descriptor-payloads.json   attack text per family -> split -> language
  written/result-payloads.json       same, for tool results
  written/malicious-descriptors-standalone.json, malicious-rug-pulls.json,
  written/malicious-results-standalone.json   whole items, not composed
  written/benign-descriptor-snippets.json     security-flavoured benign sentences
  written/benign-descriptors.json, benign-results.json   whole benign items
  written/carriers.json              benign carrier descriptors / result texts we wrote
  benign-descriptors.jsonl, benign-results.jsonl   (optional) real benign items collected
                                     from servers, one {"package", "descriptor"|"result"} a line
  written/more-<file>.json           train-only additions to descriptor-payloads.json,
                                     result-payloads.json, benign-descriptor-snippets.json and
                                     benign-results.json (same shape, only a "train" split)

The `more-` files are composed after every item of their original file, each item with its own
random stream seeded by its id, so adding to them never changes an existing row (in particular no heldout row);
their ids continue the numbering of the original list of the same family, split and language.
New train items go there; new heldout items still go into the original files.

Outputs (JSON lines, sorted by id, written next to this script):
  malicious-descriptors.jsonl, malicious-results.jsonl,
  written-benign-descriptors.jsonl, written-benign-results.jsonl

A payload is placed into 2-4 benign carriers (description, a parameter's description,
default or enum, a new innocuous parameter, the title, _meta; for results: start, middle,
end, a JSON field, an HTML comment, a code block, a second content block). Benign
snippets are placed the same way, so that the composition itself is no signal.

Splits: every source item carries "train" or "heldout"; a train item is only ever placed
into train carriers, a heldout one into heldout carriers. A collected carrier's split
comes from its package (for a result, its `source`: the package whose file it shows, when it
has one): heldout iff int(sha256(key)[:8], 16) % 5 == 0; the same rule
is applied to the id of the fallback carriers from ../descriptors.json and ../outputs.json.

Deterministic: one seeded random.Random per output; standard library only.
Run:  python3 compose.py            (writes the four files and prints counts)
      python3 compose.py --check    (also fails on a heldout payload close to a train one)
"""

import base64
import hashlib
import json
import random
import re
import sys
import unicodedata
import urllib.parse
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRITTEN = HERE / "written"
DETECTION = HERE.parent
SEED = 20261206

FAMILY_NOTES = {
    "hidden_instruction": "hidden step or rule for the model",
    "concealment": "tells the model to hide actions from the user",
    "credential_read": "asks the model to read local secrets as 'context'",
    "command_setup": "setup step that runs a remote script or weakens the host",
    "parameter_substitution": "silently replaces a user-chosen value with the attacker's",
    "exfil_parameter": "moves conversation/files/secrets into a parameter",
    "exfil_url": "sends data to an attacker URL (request, image, link, DNS)",
    "shadowing": "changes how other tools are used",
    "invisible_unicode": "payload hidden with invisible or reordering Unicode",
    "encoded": "payload encoded (base64/hex/percent/entities/escapes/rot13/base32)",
    "rug_pull": "benign descriptor later replaced by a malicious one",
    "instruction_override": "retasks the model from inside data",
    "tool_call_induction": "makes the model call a tool for the attacker",
    "credential_request": "asks the model to reveal or fetch secrets",
    "fake_system": "fake role/system/tool-call markers",
}

# ---------------------------------------------------------------- transforms


def _tags(text):
    """Unicode tag characters (U+E0000 block) for ASCII; variation selectors otherwise."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    if len(folded) < 0.9 * len(text):
        return _varsel(text)
    return "".join(chr(0xE0000 + ord(c)) for c in folded), "tags"


def _varsel(text):
    """Each UTF-8 byte as a variation selector, attached to one visible character."""
    out = []
    for b in text.encode("utf-8"):
        out.append(chr(0xFE00 + b) if b < 16 else chr(0xE0100 + b - 16))
    return "\u2063" + "".join(out), "varsel"


ZW = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


def _zwsp(text, rng):
    """Zero-width characters inside words, so phrase matching fails but the model reads it."""
    out = []
    for i, c in enumerate(text):
        out.append(c)
        if c.strip() and i + 1 < len(text) and text[i + 1].strip() and rng.random() < 0.6:
            out.append(rng.choice(ZW))
    return "".join(out), "zwsp"


def _bidi(text):
    """Stored reversed inside a right-to-left override: renders as the original."""
    return "\u202e" + text[::-1] + "\u202c", "bidi"


def _entities(text, rng):
    return "".join(("&#x%x;" % ord(c)) if rng.random() < 0.5 else ("&#%d;" % ord(c)) for c in text)


def _uescape(text):
    out = []
    for c in text:
        cp = ord(c)
        if cp > 0xFFFF:
            cp -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)))
        else:
            out.append("\\u%04x" % cp)
    return "".join(out)


def _rot13(text):
    return text.translate(
        str.maketrans(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
        )
    )


def encode(text, how, rng):
    data = text.encode("utf-8")
    if how == "base64":
        return base64.b64encode(data).decode()
    if how == "base32":
        return base64.b32encode(data).decode()
    if how == "hex":
        return data.hex()
    if how == "percent":
        return urllib.parse.quote(text, safe="")
    if how == "entities":
        return _entities(text, rng)
    if how == "uescape":
        return _uescape(text)
    if how == "rot13":
        return _rot13(text)
    raise ValueError(f"unknown encoding `{how}`")


def hide(text, how, rng):
    if how == "tags":
        return _tags(text)
    if how == "zwsp":
        return _zwsp(text, rng)
    if how == "bidi":
        return _bidi(text)
    if how == "varsel":
        return _varsel(text)
    raise ValueError(f"unknown hiding `{how}`")


def render_payload(item, rng):
    """A payload source entry (string or {text, transform, hint}) -> (text, transform or None)."""
    if isinstance(item, str):
        return item, None
    how = item["transform"]
    if how in ("tags", "zwsp", "bidi", "varsel"):
        text, used = hide(item["text"], how, rng)
        return text, used
    return item.get("hint", "") + encode(item["text"], how, rng), how


MARK = re.compile(r"@@(TAGS|ZW|B64|HEX):(.*?)@@", re.S)


def expand_marks(text, rng):
    """Inline marks in standalone items: @@TAGS:..@@, @@ZW:..@@, @@B64:..@@, @@HEX:..@@."""

    def sub(m):
        kind, body = m.group(1), m.group(2)
        if kind == "TAGS":
            return _tags(body)[0]
        if kind == "ZW":
            return _zwsp(body, rng)[0]
        if kind == "B64":
            return base64.b64encode(body.encode()).decode()
        return body.encode().hex()

    return MARK.sub(sub, text)


def expand_marks_deep(value, rng):
    if isinstance(value, str):
        return expand_marks(value, rng)
    if isinstance(value, list):
        return [expand_marks_deep(v, rng) for v in value]
    if isinstance(value, dict):
        return {k: expand_marks_deep(v, rng) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- sources


def load(name):
    with open(WRITTEN / name, encoding="utf-8") as f:
        return json.load(f)


def iter_tree(tree):
    """{split: {lang: [items]}} -> (split, lang, index, item)."""
    for split in ("train", "heldout"):
        for lang, items in tree.get(split, {}).items():
            for i, item in enumerate(items):
                yield split, lang, i, item


def more_name(name):
    """`x.json` -> `more-x.json`: train-only additions composed after the original file."""
    return "more-" + name


def payload_items(name, rng, more_seed):
    """(family, split, lang, index, item, rng) of a payload file, then of its `more-` file.

    The `more-` items are train only, come after every original item and each has its own
    random stream seeded by its id, so adding one changes no other row (in particular no
    heldout row); their indices continue those of the original list of the same family,
    split and language.
    """
    base = load(name)
    for family, tree in base.items():
        for split, lang, i, item in iter_tree(tree):
            yield family, split, lang, i, item, rng
    if (WRITTEN / more_name(name)).exists():
        for family, tree in load(more_name(name)).items():
            if set(tree) - {"train"}:
                raise SystemExit(f"{more_name(name)}: only train items belong here")
            offset = {lang: len(v) for lang, v in base.get(family, {}).get("train", {}).items()}
            for split, lang, i, item in iter_tree(tree):
                n = offset.get(lang, 0) + i
                yield family, split, lang, n, item, random.Random(f"{more_seed}:{family}:{lang}:{n}")


def benign_items(name, rng, more_seed):
    """(split, lang, index, text, rng) of a benign file, then of its train-only `more-` file."""
    base = load(name)
    for split, lang, i, text in iter_tree(base):
        yield split, lang, i, text, rng
    if (WRITTEN / more_name(name)).exists():
        more = load(more_name(name))
        if set(more) - {"train"}:
            raise SystemExit(f"{more_name(name)}: only train items belong here")
        offset = {lang: len(v) for lang, v in base.get("train", {}).items()}
        for split, lang, i, text in iter_tree(more):
            n = offset.get(lang, 0) + i
            yield split, lang, n, text, random.Random(f"{more_seed}:{lang}:{n}")


def make_descriptor(c):
    """Compact written form -> MCP Tool descriptor."""
    props = {}
    for pname, spec in c.get("params", {}).items():
        props[pname] = {"type": "string", "description": spec} if isinstance(spec, str) else dict(spec)
    d = {
        "name": c["name"],
        "description": c["description"],
        "inputSchema": {"type": "object", "properties": props, "required": list(c.get("required", []))},
    }
    ann = {}
    if "title" in c:
        ann["title"] = c["title"]
    if c.get("readOnly"):
        ann["readOnlyHint"] = True
    if c.get("destructive"):
        ann["destructiveHint"] = True
    if ann:
        d["annotations"] = ann
    return d


def package_split(package):
    return "heldout" if int(hashlib.sha256(package.encode()).hexdigest()[:8], 16) % 5 == 0 else "train"


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def descriptor_carriers():
    collected = HERE / "benign-descriptors.jsonl"
    out = {"train": [], "heldout": []}
    if collected.exists():
        for i, row in enumerate(read_jsonl(collected)):
            d = row["descriptor"]
            cid = row.get("id") or f"{row['package']}:{d.get('name', i)}"
            out[package_split(row.get("source") or row["package"])].append((cid, d))
        return out
    for row in json.loads((DETECTION / "descriptors.json").read_text(encoding="utf-8")):
        if row["family"] == "benign":
            out[package_split(row["id"])].append((row["id"], row["descriptor"]))
    for c in load("carriers.json")["descriptors"]:
        out[c["split"]].append((c["id"], make_descriptor(c)))
    return out


def result_carriers():
    """Carrier results as (id, result) with at least one text block."""
    collected = HERE / "benign-results.jsonl"
    out = {"train": [], "heldout": []}

    def usable(r):
        return isinstance(r, dict) and any(b.get("type") == "text" for b in r.get("content", []))

    if collected.exists():
        for i, row in enumerate(read_jsonl(collected)):
            if usable(row["result"]):
                cid = row.get("id") or f"{row['package']}:{i}"
                out[package_split(row.get("source") or row["package"])].append((cid, row["result"]))
        return out
    for row in json.loads((DETECTION / "outputs.json").read_text(encoding="utf-8")):
        if row["family"] == "benign" and usable(row["result"]):
            out[package_split(row["id"])].append((row["id"], row["result"]))
    for c in load("carriers.json")["results"]:
        out[c["split"]].append((c["id"], text_result(c["text"])))
    return out


def text_result(text):
    return {"content": [{"type": "text", "text": text}], "isError": False}


# ---------------------------------------------------------------- descriptor placement

INNOCUOUS_PARAMS = [
    "context", "notes", "sidenote", "metadata", "debug", "extra", "options_note", "trace",
    "locale_hint", "client_info", "hint", "remarks", "_meta_info", "feedback",
]


def split_sentences(text):
    parts = re.split(r"(?<=[.!?])\s+|(?<=[。！？])", text)
    return [p for p in parts if p]


def place_descriptor(d, payload, placement, rng, param_hint=None):
    d = json.loads(json.dumps(d))
    desc = d.get("description") or ""
    props = d.setdefault("inputSchema", {"type": "object"}).setdefault("properties", {})
    string_params = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"]
    sep = rng.choice(["\n\n", "\n", " "])
    if placement == "description_append":
        d["description"] = (desc + sep + payload) if desc else payload
    elif placement == "description_append_tight":
        d["description"] = desc + payload
    elif placement == "description_prepend":
        d["description"] = payload + sep + desc
    elif placement == "description_middle":
        sents = split_sentences(desc)
        if len(sents) < 2:
            d["description"] = desc + sep + payload
        else:
            k = rng.randrange(1, len(sents))
            joiner = "" if re.search(r"[\u3000-\u9fff]", desc) else " "
            d["description"] = joiner.join(sents[:k] + [payload] + sents[k:])
    elif placement == "param_description":
        name = rng.choice(sorted(props)) if props else None
        if name is None:
            props["options"] = {"type": "string", "description": payload}
        else:
            p = props[name]
            p["description"] = (p.get("description", "") + " " + payload).strip()
    elif placement == "new_param":
        name = param_hint or rng.choice(INNOCUOUS_PARAMS)
        while name in props:
            name = name + "_"
        props[name] = {"type": "string", "description": payload}
        if rng.random() < 0.5:
            d["inputSchema"].setdefault("required", []).append(name)
    elif placement == "param_default":
        name = rng.choice(string_params) if string_params else None
        if name is None:
            props["mode"] = {"type": "string", "description": "Mode", "default": payload}
        else:
            props[name]["default"] = payload
    elif placement == "param_enum":
        name = rng.choice(string_params) if string_params else None
        if name is None:
            props["mode"] = {"type": "string", "enum": ["default", payload]}
        else:
            props[name]["enum"] = list(props[name].get("enum", ["default"])) + [payload]
    elif placement == "title":
        ann = d.setdefault("annotations", {})
        ann["title"] = (ann.get("title") or d.get("name", "")) + " " + payload
    elif placement == "meta":
        d.setdefault("_meta", {})[rng.choice(["notes", "usage", "x-guidance"])] = payload
    else:
        raise ValueError(placement)
    return d


def descriptor_placements(family, text, transform, rng, k):
    short = len(text) < 160
    if family == "exfil_parameter":
        pool = ["new_param", "new_param", "description_append", "param_description", "description_middle"]
    elif family == "invisible_unicode":
        pool = ["description_append_tight", "description_append", "param_description", "param_default", "title"]
    elif family == "encoded":
        pool = ["description_append", "param_description", "param_default", "meta", "description_middle"]
    else:
        pool = ["description_append", "description_append", "description_prepend", "description_middle",
                "param_description", "new_param", "meta"]
        if short:
            pool += ["param_enum", "title", "param_default"]
    seen, out = set(), []
    while len(out) < k:
        p = rng.choice(pool)
        if p not in seen or len(seen) >= len(set(pool)):
            seen.add(p)
            out.append(p)
    return out


# ---------------------------------------------------------------- result placement


def place_result(r, payload, placement, rng):
    r = json.loads(json.dumps(r))
    blocks = r.setdefault("content", [])
    idx = next(i for i, b in enumerate(blocks) if b.get("type") == "text")
    text = blocks[idx]["text"]
    sep = rng.choice(["\n\n", "\n", " "])
    if placement == "start":
        text = payload + sep + text
    elif placement == "end":
        text = text + sep + payload
    elif placement == "middle":
        lines = text.split("\n")
        if len(lines) > 2:
            k = rng.randrange(1, len(lines))
            text = "\n".join(lines[:k] + [payload] + lines[k:])
        else:
            sents = split_sentences(text)
            k = rng.randrange(0, len(sents) + 1)
            text = " ".join(sents[:k] + [payload] + sents[k:])
    elif placement == "html_comment":
        text = text + "\n<!-- " + payload + " -->" if rng.random() < 0.5 else "<!-- " + payload + " -->\n" + text
    elif placement == "code_block":
        text = text + "\n\n```\n" + payload + "\n```\n"
    elif placement == "json_field":
        key = rng.choice(["description", "note", "message", "comment", "bio", "summary", "alt"])
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            obj[key] = payload
        elif isinstance(obj, list) and obj and isinstance(obj[0], dict):
            obj[rng.randrange(len(obj))][key] = payload
        else:
            obj = {"data": text, key: payload}
        text = json.dumps(obj, ensure_ascii=False)
    elif placement == "second_block":
        blocks.append({"type": "text", "text": payload})
    else:
        raise ValueError(placement)
    blocks[idx]["text"] = text
    r.setdefault("isError", False)
    return r


RESULT_PLACEMENTS = ["start", "middle", "end", "end", "html_comment", "code_block", "json_field", "second_block"]


def result_placements(rng, k):
    return rng.sample(RESULT_PLACEMENTS[:3] + RESULT_PLACEMENTS[4:], k)


# ---------------------------------------------------------------- composition


def pick_carriers(carriers, split, k, rng):
    pool = carriers[split]
    return rng.sample(pool, min(k, len(pool)))


PARAM_NAME = re.compile(r"`([a-z][a-z_]{2,24})`")


def n_placements(split, rng):
    return 2 if split == "heldout" else rng.choice([3, 4])


def compose_malicious_descriptors(carriers):
    rng = random.Random(SEED + 1)
    rows = []
    for family, split, lang, i, item, prng in payload_items("descriptor-payloads.json", rng, SEED + 11):
        base = f"md-{family}-{split}-{lang}-{i:02d}"
        k = n_placements(split, prng)
        chosen = pick_carriers(carriers, split, k, prng)
        text0, _ = render_payload(item, prng)
        places = descriptor_placements(family, text0, None, prng, len(chosen))
        m = PARAM_NAME.search(item if isinstance(item, str) else "")
        for j, ((cid, cdesc), placement) in enumerate(zip(chosen, places)):
            text, transform = render_payload(item, prng)
            if family == "rug_pull":
                placement = prng.choice(["description_append", "description_middle", "param_description"])
            hint = m.group(1) if (m and placement == "new_param") else None
            after = place_descriptor(cdesc, text, placement, prng, hint)
            row = {
                "id": f"{base}-p{j}",
                "split": split,
                "family": family,
                "language": lang,
                "descriptor": after,
                "carrier": cid,
                "placement": placement + (f"+{transform}" if transform else ""),
                "note": f"{FAMILY_NOTES[family]}; {placement} of {cid}",
            }
            if family == "rug_pull":
                row["before"] = cdesc
            rows.append(row)
    for n, c in enumerate(load("malicious-descriptors-standalone.json")):
        rows.append({
            "id": f"md-{c['family']}-{c['split']}-{c['language']}-sa{n:02d}",
            "split": c["split"], "family": c["family"], "language": c["language"],
            "descriptor": expand_marks_deep(make_descriptor(c), rng),
            "carrier": None, "placement": "standalone", "note": c["note"],
        })
    for n, c in enumerate(load("malicious-rug-pulls.json")):
        rows.append({
            "id": f"md-rug_pull-{c['split']}-{c['language']}-sa{n:02d}",
            "split": c["split"], "family": "rug_pull", "language": c["language"],
            "descriptor": make_descriptor(c["after"]), "before": make_descriptor(c["before"]),
            "carrier": None, "placement": "standalone", "note": c["note"],
        })
    return rows


def compose_malicious_results(carriers):
    rng = random.Random(SEED + 2)
    rows = []
    for family, split, lang, i, item, prng in payload_items("result-payloads.json", rng, SEED + 12):
        base = f"mr-{family}-{split}-{lang}-{i:02d}"
        chosen = pick_carriers(carriers, split, n_placements(split, prng), prng)
        places = result_placements(prng, len(chosen))
        for j, ((cid, cres), placement) in enumerate(zip(chosen, places)):
            text, transform = render_payload(item, prng)
            if family == "invisible_unicode" and placement in ("second_block", "start"):
                placement = "end"
            rows.append({
                "id": f"{base}-p{j}",
                "split": split, "family": family, "language": lang,
                "result": place_result(cres, text, placement, prng),
                "carrier": cid,
                "placement": placement + (f"+{transform}" if transform else ""),
                "note": f"{FAMILY_NOTES[family]}; {placement} of {cid}",
            })
    for n, c in enumerate(load("malicious-results-standalone.json")):
        rows.append({
            "id": f"mr-{c['family']}-{c['split']}-{c['language']}-sa{n:02d}",
            "split": c["split"], "family": c["family"], "language": c["language"],
            "result": text_result(expand_marks(c["text"], rng)),
            "carrier": None, "placement": "standalone", "note": c["note"],
        })
    return rows


def compose_benign_descriptors(carriers):
    rng = random.Random(SEED + 3)
    rows = []
    pool = ["description_append", "description_append", "description_prepend", "description_middle",
            "param_description"]
    for split, lang, i, text, prng in benign_items("benign-descriptor-snippets.json", rng, SEED + 13):
        k = 3 if split == "heldout" else 2
        for j, (cid, cdesc) in enumerate(pick_carriers(carriers, split, k, prng)):
            placement = prng.choice(pool)
            rows.append({
                "id": f"wb-d-{split}-{lang}-{i:02d}-p{j}",
                "split": split, "language": lang,
                "descriptor": place_descriptor(cdesc, text, placement, prng),
                "note": f"benign security-flavoured sentence; {placement} of {cid}",
            })
    for n, c in enumerate(load("benign-descriptors.json")):
        rows.append({
            "id": f"wb-d-{c['split']}-{c['language']}-sa{n:02d}",
            "split": c["split"], "language": c["language"],
            "descriptor": make_descriptor(c), "note": c["note"],
        })
    return rows


def compose_benign_results(carriers):
    rng = random.Random(SEED + 4)
    rows = []
    for split, lang, i, text, prng in benign_items("benign-results.json", rng, SEED + 14):
        rows.append({
            "id": f"wb-r-{split}-{lang}-{i:02d}",
            "split": split, "language": lang, "result": text_result(text),
            "note": "benign security-flavoured result (standalone)",
        })
        for j, (cid, cres) in enumerate(pick_carriers(carriers, split, 2, prng)):
            placement = prng.choice(["start", "middle", "end", "json_field", "code_block", "second_block", "html_comment"])
            rows.append({
                "id": f"wb-r-{split}-{lang}-{i:02d}-p{j}",
                "split": split, "language": lang,
                "result": place_result(cres, text, placement, prng),
                "note": f"benign security-flavoured text; {placement} of {cid}",
            })
    return rows


# ---------------------------------------------------------------- checks and output


def words(text):
    return set(re.findall(r"\w{3,}", text.lower()))


def leak_check(name):
    """Heldout payload texts must not be near-copies of train ones (word Jaccard >= 0.5)."""
    bad = []
    texts_by_family = {}
    for family, split, _lang, _i, item, _rng in payload_items(name, None, 0):
        texts = texts_by_family.setdefault(family, {"train": [], "heldout": []})
        texts[split].append(item if isinstance(item, str) else item["text"])
    for family, texts in texts_by_family.items():
        for h in texts["heldout"]:
            wh = words(h)
            for t in texts["train"]:
                wt = words(t)
                if wh and wt and len(wh & wt) / len(wh | wt) >= 0.5:
                    bad.append((family, h[:70], t[:70]))
    return bad


LANGUAGES = ["en", "es", "de", "fr", "zh", "ja", "ru", "pt"]


def coverage_problems(name, rows):
    """Every family and every listed language must be present in both splits."""
    have = {(r.get("family"), r["split"]) for r in rows} | {(r["language"], r["split"]) for r in rows}
    keys = sorted({r["family"] for r in rows if "family" in r}) + LANGUAGES
    return [f"{name}: no `{k}` in {s}" for k in keys for s in ("train", "heldout") if (k, s) not in have]


def write(name, rows):
    ids = [r["id"] for r in rows]
    dup = [k for k, v in Counter(ids).items() if v > 1]
    if dup:
        raise SystemExit(f"duplicate ids: {dup[:5]}")
    with open(HERE / name, "w", encoding="utf-8") as f:
        for r in sorted(rows, key=lambda r: r["id"]):
            f.write(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n")


def report(name, rows):
    print(f"{name}: {len(rows)}  " + "  ".join(f"{s}={n}" for s, n in sorted(Counter(r['split'] for r in rows).items())))
    if "family" in rows[0]:
        fam = Counter((r["family"], r["split"]) for r in rows)
        for f in sorted({r["family"] for r in rows}):
            print(f"  {f:24s} train={fam[(f, 'train')]:4d} heldout={fam[(f, 'heldout')]:4d}")
    lang = Counter((r["language"], r["split"]) for r in rows)
    print("  languages: " + ", ".join(
        f"{l} {lang[(l, 'train')]}/{lang[(l, 'heldout')]}" for l in sorted({r['language'] for r in rows})))


def main():
    dc, rc = descriptor_carriers(), result_carriers()
    print(f"carriers: descriptors train={len(dc['train'])} heldout={len(dc['heldout'])}; "
          f"results train={len(rc['train'])} heldout={len(rc['heldout'])}")
    outputs = {
        "malicious-descriptors.jsonl": compose_malicious_descriptors(dc),
        "malicious-results.jsonl": compose_malicious_results(rc),
        "written-benign-descriptors.jsonl": compose_benign_descriptors(dc),
        "written-benign-results.jsonl": compose_benign_results(rc),
    }
    for name, rows in outputs.items():
        write(name, rows)
        report(name, rows)
    leaks = leak_check("descriptor-payloads.json") + leak_check("result-payloads.json")
    for fam, h, t in leaks:
        print(f"near-copy in {fam}: heldout `{h}` ~ train `{t}`")
    gaps = [g for name, rows in outputs.items() for g in coverage_problems(name, rows)]
    for g in gaps:
        print(g)
    if "--check" in sys.argv and (leaks or gaps):
        sys.exit(1)


if __name__ == "__main__":
    main()
