"""Hand-crafted skops files for the artefact allow-list tests: a real model with one attribute swapped.

skops writes only what it can persist, so an attacker edits ``schema.json`` in the zip instead; these
helpers do the same. Each ``*_state`` returns one schema node.
"""

from __future__ import annotations

import io
import json
import zipfile


def js(value) -> dict:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(value),
        "is_json": True,
    }


def tup(*values) -> dict:
    return {
        "__class__": "tuple",
        "__module__": "builtins",
        "__loader__": "TupleNode",
        "content": [v if isinstance(v, dict) else js(v) for v in values],
    }


def dct(**values) -> dict:
    return {
        "__class__": "dict",
        "__module__": "builtins",
        "__loader__": "DictNode",
        "content": {k: v if isinstance(v, dict) else js(v) for k, v in values.items()},
        "key_types": {
            "__class__": "list",
            "__module__": "builtins",
            "__loader__": "ListNode",
            "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"} for _ in values],
        },
    }


def node(path: str, loader: str, **extra) -> dict:
    module, _, name = path.rpartition(".")
    return {"__class__": name, "__module__": module, "__loader__": loader, **extra}


def call(path: str, *args) -> dict:
    """``path(*args)`` at load time (skops' constructor-from-reduce form)."""
    return node(path, "ConstructorFromReduceNode", content=tup(*args))


def function(path: str) -> dict:
    return node(path, "FunctionNode")


def swap(data: bytes, key: str, state: dict) -> bytes:
    """``data`` with every stored attribute ``key`` (e.g. ``classes_``) replaced by ``state``."""
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read("schema.json"))
    hits, stack = 0, [schema]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if x.get("__loader__") == "DictNode" and isinstance(x.get("content"), dict) and key in x["content"]:
                x["content"][key] = state
                hits += 1
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    assert hits, f"no attribute {key!r} in this model"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, json.dumps(schema) if name == "schema.json" else src.read(name))
    return out.getvalue()
