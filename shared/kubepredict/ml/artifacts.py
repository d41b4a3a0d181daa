"""Model artifacts: skops bytes, verified by SHA-256 and an allow-list of types before loading.

Never pickle. ``load_model`` trusts only types that pass ``is_allowed_type`` — the list a file
declares about itself is checked, never passed through (GHSA-w582-9x45-8mpx).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import logging

import skops.io as sio
from skops.io.exceptions import UnsupportedTypeException, UntrustedTypesFoundException

from kubepredict.errors import ArtifactRejected, Unprocessable

logger = logging.getLogger(__name__)

# Allow policy for types skops does not trust by default. A type is allowed when its dotted
# path starts with one of ALLOWED_PREFIXES (e.g. sklearn.tree._tree.Tree,
# sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor, numpy.dtype,
# scipy.sparse._csr.csr_matrix), contains no DENIED_SEGMENTS, and names a class
# — not a function: a function object reachable from a model (FunctionTransformer(func=...),
# a callable param) would run on every prediction. ALLOWED_EXACT is empty on purpose:
# every catalogue pipeline (checked with sklearn 1.9.1 / skops 0.16.0) needs only the prefixes.
ALLOWED_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")
ALLOWED_EXACT: frozenset[str] = frozenset()
DENIED_SEGMENTS = frozenset({"testing", "_testing", "tests", "externals", "f2py", "distutils",
                             "ctypeslib", "_pytesttester", "_build_utils"})


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def dump_model(obj) -> bytes:
    """Serialise a fitted pipeline with skops (never pickle)."""
    try:
        return sio.dumps(obj)
    except UnsupportedTypeException as exc:
        raise Unprocessable(f"this model cannot be saved safely: {exc}",
                            code="unsupported_algorithm") from exc


def is_allowed_type(path: str) -> bool:
    """Whether a type path reported by skops passes Kubepredict's allow policy."""
    if path in ALLOWED_EXACT:
        return True
    if not isinstance(path, str) or not path.startswith(ALLOWED_PREFIXES):
        return False
    parts = path.split(".")
    if any(not p or p.startswith("__") or p in DENIED_SEGMENTS for p in parts):
        return False
    module_name, _, name = path.rpartition(".")
    try:
        # Only modules inside the allowed packages are imported here, never the file's choice
        # of anything else.
        obj = getattr(importlib.import_module(module_name), name, None)
    except ImportError:
        return False
    return inspect.isclass(obj) and _in_allowed_package(getattr(obj, "__module__", None) or "")


def _in_allowed_package(module: str) -> bool:
    return any(module == p.rstrip(".") or module.startswith(p) for p in ALLOWED_PREFIXES)


def load_model(data: bytes, sha256: str):
    """Verify ``data`` against ``sha256`` and the type allow policy, then load it with skops."""
    data = bytes(data)
    if not isinstance(sha256, str) or not hmac.compare_digest(sha256_hex(data), sha256.strip().lower()):
        raise ArtifactRejected("model artifact does not match its SHA-256", code="artifact_tampered")
    try:
        types = list(sio.get_untrusted_types(data=data))
    except Exception as exc:  # zipfile / json / KeyError from a malformed archive
        raise ArtifactRejected(f"model artifact is not a readable skops file: {exc}",
                               code="artifact_corrupt") from exc
    rejected = sorted(t for t in types if not is_allowed_type(t))
    if rejected:
        logger.warning("model artifact rejected, untrusted types: %s", rejected)
        raise ArtifactRejected(f"model artifact holds types outside the allow-list: {', '.join(rejected)}",
                               code="untrusted_type", details={"types": rejected})
    trusted = [t for t in types if is_allowed_type(t)]
    try:
        return sio.loads(data, trusted=trusted)
    except UntrustedTypesFoundException as exc:
        raise ArtifactRejected(f"model artifact holds untrusted types: {exc}", code="untrusted_type",
                               details={"types": sorted(map(str, getattr(exc, "unsafe", []) or []))}) from exc
    except Exception as exc:
        raise ArtifactRejected(f"model artifact could not be loaded: {exc}",
                               code="artifact_corrupt") from exc
