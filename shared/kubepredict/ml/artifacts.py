"""Model artifacts: skops bytes, verified by SHA-256 and an allow-list of types before loading.

Never pickle. ``load_model`` rebuilds only what ``ml/artifact_types.py`` allows — every object the
file's schema names is checked, never the list the file (or skops' default trust) gives about itself
(GHSA-w582-9x45-8mpx); ``dump_model`` refuses at training time a model whose artefact would be refused.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
from zipfile import ZipFile

import skops.io as sio
from skops.io._audit import get_tree  # one tree for our check and the model (pinned skops)
from skops.io._utils import read_schema
from skops.io.exceptions import UnsupportedTypeException

from kubepredict.errors import ArtifactRejected, Unprocessable
from kubepredict.ml import artifact_types

logger = logging.getLogger(__name__)


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def dump_model(obj) -> bytes:
    """Serialise a fitted pipeline with skops (never pickle); refuse one we would not load again."""
    try:
        data = sio.dumps(obj)
    except UnsupportedTypeException as exc:
        raise Unprocessable(f"this model cannot be saved safely: {exc}", code="unsupported_algorithm") from exc
    refused = artifact_types.refusals(data, sio.get_untrusted_types(data=data))
    if refused:
        raise Unprocessable(
            f"this model cannot be served: it holds {_describe(refused)}, which stored models may not hold",
            code="unsupported_algorithm",
            details={"types": sorted(refused)},
        )
    return data


def _describe(refused: dict[str, str]) -> str:
    return ", ".join(f"{path} ({reason})" for path, reason in sorted(refused.items()))


def _refuse(refused: dict[str, str]) -> ArtifactRejected:
    logger.warning("model artifact rejected, types outside the allow-list: %s", refused)
    return ArtifactRejected(
        f"model artifact holds types outside the allow-list: {_describe(refused)}",
        code="untrusted_type",
        details={"types": sorted(refused), "reasons": refused},
    )


def _corrupt(exc: Exception) -> ArtifactRejected:
    return ArtifactRejected(f"model artifact is not a readable skops file: {exc}", code="artifact_corrupt")


def _reported(tree) -> list[str]:
    """The types skops does not trust by default in ``tree`` (what ``skops.io.get_untrusted_types`` lists)."""
    return sorted(tree.get_unsafe_set())


def load_model(data: bytes, sha256: str):
    """Verify ``data`` against ``sha256`` and the type allow-list, then load it with skops.

    Our allow-list reads the schema before skops builds anything; skops then builds its node tree once
    (``skops.io.loads`` after ``get_untrusted_types`` built it twice: a quarter of a forest's load), every
    name it does not trust by default must pass our allow-list too, and the model is built from that tree.
    That check is skops' audit (``audit_tree``: its unsafe set minus the names trusted) with our allow-list
    deciding the trust, so it is not run again.
    """
    data = bytes(data)
    if not isinstance(sha256, str) or not hmac.compare_digest(sha256_hex(data), sha256.strip().lower()):
        raise ArtifactRejected("model artifact does not match its SHA-256", code="artifact_tampered")
    try:
        refused = artifact_types.refusals(data)  # the schema alone, before skops builds anything
    except Exception as exc:  # zipfile / json / KeyError / RecursionError from a malformed archive
        raise _corrupt(exc) from exc
    if refused:
        raise _refuse(refused)
    try:
        archive = ZipFile(io.BytesIO(data))
    except Exception as exc:
        raise _corrupt(exc) from exc
    with archive:  # open until the model is built: skops reads the arrays as it builds
        try:
            schema, context = read_schema(archive)
            tree = get_tree(schema, context, trusted=None)
            reported = _reported(tree)
        except Exception as exc:
            raise _corrupt(exc) from exc
        refused = artifact_types.reported_refusals(reported)  # the schema passed: not read again
        if refused:
            raise _refuse(refused)
        try:
            return tree.construct()
        except Exception as exc:
            raise ArtifactRejected(f"model artifact could not be loaded: {exc}", code="artifact_corrupt") from exc
