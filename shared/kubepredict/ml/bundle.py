"""Portable model bundles: one zip with the skops artefact, its digest and a manifest to rebuild the record.

``model.skops``          the artefact, byte for byte as stored
``model.skops.sha256``   its SHA-256 (hex), also in the manifest
``manifest.json``        the model (name, task, features and their kinds, classes, metrics…), the training
                         request, the training dataset's SHA-256, and the versions of Python and of every
                         library the artefact's types come from (scikit-learn, numpy, scipy, skops…)

Reading a bundle checks its shape and digest here; the artefact's allow-list check is ``artifacts.load_model``.
"""

from __future__ import annotations

import hmac
import io
import json
import platform
import zipfile
from functools import cache
from importlib import metadata
from typing import Any

from kubepredict.errors import BundleRejected, Conflict
from kubepredict.ml.artifacts import sha256_hex

FORMAT = "kubepredict-bundle/1"
ARTIFACT, DIGEST, MANIFEST = "model.skops", "model.skops.sha256", "manifest.json"
MEMBERS = {ARTIFACT, DIGEST, MANIFEST}
#: Libraries every model needs whatever its types say (the loader and the arrays' stack).
BASE = ("scikit-learn", "numpy", "scipy", "skops")
MAX_MANIFEST = 16 * 1024 * 1024


@cache
def _distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def libraries(artifact: bytes) -> dict[str, str]:
    """``{distribution: version}`` for the base libraries and every top-level module the artefact names."""
    with zipfile.ZipFile(io.BytesIO(artifact)) as z:
        schema = json.loads(z.read("schema.json"))
    modules: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str):
                modules.add(node["__module__"].split(".")[0])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    dists = set(BASE)
    for module in modules:
        dists.update(_distributions().get(module, []))
    return {d: v for d in sorted(dists) if (v := _version(d)) is not None}


def environment(artifact: bytes) -> dict[str, Any]:
    return {"python": platform.python_version(), "libraries": libraries(artifact)}


def build(artifact: bytes, manifest: dict[str, Any]) -> bytes:
    """The bundle's bytes: ``manifest`` (completed with format, digest, environment) beside the artefact."""
    digest = sha256_hex(artifact)
    full = {"format": FORMAT, **manifest, "artifact": {"path": ARTIFACT, "sha256": digest}}
    full["environment"] = environment(artifact)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST, json.dumps(full, indent=2, sort_keys=True))
        z.writestr(ARTIFACT, artifact)
        z.writestr(DIGEST, digest + "\n")
    return buf.getvalue()


def read(data: bytes, *, max_artifact: int) -> tuple[dict[str, Any], bytes]:
    """``(manifest, artefact)`` from a bundle whose shape and digests hold; BundleRejected (422) otherwise."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = {i.filename: i for i in z.infolist()}
            if set(infos) != MEMBERS:
                raise BundleRejected(
                    f"a bundle holds exactly {', '.join(sorted(MEMBERS))}",
                    details={"members": sorted(infos)[:20]},
                )
            if infos[MANIFEST].file_size > MAX_MANIFEST or infos[ARTIFACT].file_size > max_artifact:
                raise BundleRejected("the bundle's members are larger than allowed", code="bundle_too_large")
            manifest = json.loads(z.read(MANIFEST))
            artifact = z.read(ARTIFACT)
            digest_file = z.read(DIGEST).decode("ascii", "replace").strip().lower()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, KeyError, EOFError, OSError) as exc:
        raise BundleRejected(f"not a readable bundle (a zip file): {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleRejected(f"the manifest's format is not {FORMAT!r}", details={"format": _get(manifest, "format")})
    claimed = _get(manifest, "artifact", "sha256")
    actual = sha256_hex(artifact)
    if not (
        isinstance(claimed, str)
        and hmac.compare_digest(claimed.lower(), actual)
        and hmac.compare_digest(digest_file, actual)
    ):
        raise BundleRejected(
            "the bundle's model artefact does not match its SHA-256 (tampered or corrupt); nothing was stored",
            code="bundle_tampered",
            details={"sha256": actual},
        )
    return manifest, artifact


def check_compatible(manifest: dict[str, Any]) -> None:
    """409 when the bundle was made with another scikit-learn release (major.minor) than this server runs."""
    theirs = _get(manifest, "environment", "libraries", "scikit-learn")
    ours = _version("scikit-learn")
    if not isinstance(theirs, str) or _release(theirs) != _release(ours or ""):
        raise Conflict(
            f"the bundle was made with scikit-learn {theirs}; this server runs scikit-learn {ours}. "
            "Import it where the same scikit-learn release (major.minor) is installed, or retrain here",
            code="incompatible_versions",
            details={"bundle": {"scikit-learn": theirs}, "server": {"scikit-learn": ours}},
        )


def _release(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
