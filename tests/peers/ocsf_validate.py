#!/usr/bin/env python3
"""Validates OCSF events against the OCSF 1.7.0 schema, as pydantic-ocsf generates it from the
schema's own JSON (shipped in the wheel; nothing is fetched).

Usage: ocsf_validate.py FILE...   (JSON lines; `-` reads stdin)

Prints one JSON object: {"ok", "count", "classes": {class_uid: n}, "errors": [...]}. Each event
must be valid for its class's model (required attributes, types, enums), and beyond what the
models check (they accept unknown attributes): every attribute at every depth must be one the
schema defines (only `unmapped` holds the rest), `type_uid` must be `class_uid * 100 +
activity_id`, `category_uid` the class's category, and `metadata.version` 1.7.0.
"""

import json
import sys
import typing

import pydantic
from ocsf.v1_7_0 import events

VERSION = "1.7.0"
CLASSES = {
    2004: events.DetectionFinding,
    3001: events.AccountChange,
    3002: events.Authentication,
    6002: events.ApplicationLifecycle,
    6003: events.APIActivity,
}


def models_in(annotation):
    """The pydantic models an annotation (X, X | None, list[X]) can hold."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found.extend(models_in(arg))
    return found


def fields_by_name(model):
    names = {}
    for name, field in model.model_fields.items():
        names[field.alias or name] = field
        names[name] = field
    return names


def unknown_attributes(model, value, path):
    """Paths of attributes in `value` that `model` does not define."""
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            out.extend(unknown_attributes(model, item, f"{path}[{i}]"))
        return out
    if not isinstance(value, dict):
        return []
    known = fields_by_name(model)
    out = []
    for key, inner in value.items():
        if path == "" and key == "unmapped":
            continue
        field = known.get(key)
        where = f"{path}.{key}" if path else key
        if field is None:
            out.append(where)
            continue
        for nested in models_in(field.annotation)[:1]:
            out.extend(unknown_attributes(nested, inner, where))
    return out


def check(event):
    uid = event.get("class_uid")
    model = CLASSES.get(uid)
    if model is None:
        return [f"class_uid {uid!r} is not one custos maps to"]
    problems = []
    try:
        model.model_validate(event)
    except pydantic.ValidationError as e:
        problems.extend(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
    problems.extend(f"{p}: not an attribute of the schema" for p in unknown_attributes(model, event, ""))
    if event.get("type_uid") != uid * 100 + event.get("activity_id", -1):
        problems.append("type_uid is not class_uid * 100 + activity_id")
    if event.get("category_uid") != uid // 1000:
        problems.append("category_uid does not match the class")
    if event.get("metadata", {}).get("version") != VERSION:
        problems.append(f"metadata.version is not {VERSION}")
    return problems


def lines(paths):
    for path in paths:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with stream:
            for line in stream:
                if line.strip():
                    yield line


def main():
    count, classes, errors = 0, {}, []
    for line in lines(sys.argv[1:]):
        count += 1
        try:
            event = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append({"line": count, "problems": [f"not JSON: {e}"]})
            continue
        classes[str(event.get("class_uid"))] = classes.get(str(event.get("class_uid")), 0) + 1
        problems = check(event)
        if problems:
            seq = event.get("metadata", {}).get("sequence")
            errors.append({"line": count, "seq": seq, "kind": event.get("metadata", {}).get("event_code"), "problems": problems})
    print(json.dumps({"ok": not errors and count > 0, "count": count, "classes": classes, "errors": errors[:50]}))


main()
