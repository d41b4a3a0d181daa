#!/usr/bin/env python3
"""Render a kustomization (``resources`` only) to one multi-document YAML, for machines without kubectl."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)
SUPPORTED_KEYS = {"apiVersion", "kind", "resources"}


def load_kustomization(root: Path, _seen: tuple[Path, ...] = ()) -> list[dict]:
    """Return the objects a kustomization directory lists, recursing into sub-kustomizations in order."""
    root = root.resolve()
    if root in _seen:
        raise ValueError(f"kustomization cycle at {root}")
    kfile = next(
        (root / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (root / n).is_file()), None
    )
    if kfile is None:
        raise FileNotFoundError(f"no kustomization.yaml in {root}")
    spec = yaml.safe_load(kfile.read_text()) or {}
    unsupported = set(spec) - SUPPORTED_KEYS
    if unsupported:
        raise ValueError(
            f"{kfile}: this renderer supports only 'resources', not {sorted(unsupported)}; use kubectl kustomize"
        )
    objects: list[dict] = []
    for entry in spec.get("resources") or []:
        path = (root / entry).resolve()
        if path.is_dir():
            objects.extend(load_kustomization(path, _seen + (root,)))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    _check_unique(objects, kfile)
    return objects


def _check_unique(objects: list[dict], where: Path) -> None:
    seen = set()
    for obj in objects:
        meta = obj.get("metadata") or {}
        key = (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))
        if key in seen:
            raise ValueError(f"{where}: duplicate object {key}")
        seen.add(key)


def render(root: Path) -> str:
    """Return the kustomization's objects as one YAML stream."""
    return yaml.safe_dump_all(load_kustomization(root), sort_keys=False, width=110)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``render_manifests.py DIR [-o FILE]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path, nargs="?", default=Path("infra"))
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args(argv)
    text = render(args.directory)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
