"""The model a local predict job needs, loaded once in the fork server and inherited by its workers.

The local runner forks every worker from a fork server (multiprocessing's, runner/local.py). Before it
starts a worker, it tells the fork server which model the job will load (``announce``: the artifact's
key, SHA-256 and the storage to read it from); the fork server, just before it forks that worker, loads
it (``ml.load_model``: the same SHA-256 and allow-list checks as a worker's own load) unless it holds it
already, and drops the one it held for any other job. The worker is born with the model in memory
(``inherited``), so a job's shards, and the next jobs of the same model, start scoring ~80 ms sooner
(a 60-tree forest) instead of each loading it again.

What a worker inherits is also in its memory (and under its memory limit), so the fork server only ever
holds the model of the worker it is about to fork (a train job, or a predict job of another model, is
forked with none), and none larger than ``warm_model_max_bytes``. Anything going wrong here (no message,
a model that does not load, a storage error) only costs the speed: the worker loads the model itself,
and fails with the reason if it must.

The fork server runs no code of ours after its imports; it learns of a job through a Unix datagram
socket bound at its start (``install``, from the preload module ``runner/warm_fork.py``) and does the
loading in an ``os.register_at_fork`` hook, in its only thread, right before each fork. It takes
announcements only from the process that started it (the kernel's record of each sender, ``SO_PASSCRED``):
an abstract socket has no file permissions, and another local process must not make it read anything.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import secrets
import socket
import struct
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: The fork server's socket address (Linux abstract namespace: no file to clean up), in the environment
#: the fork server is started with.
ADDRESS_ENV = "KUBEPREDICT_WARM_MODEL_SOCKET"


@dataclass(frozen=True)
class WarmModel:
    """The model a forked worker finds loaded."""

    model_id: str
    sha256: str
    pipeline: object


_held: WarmModel | None = None  # in the fork server (and, copied by fork, in each worker)
_socket: socket.socket | None = None  # the fork server's receiving end
_server_pid = 0
_storages: dict = {}


def address() -> str:
    """This process's fork server address, chosen once (before the fork server starts, which inherits it).

    Named after this process: a gateway started by another (a test's) gets its own, not its parent's."""
    value = os.environ.get(ADDRESS_ENV, "")
    if not value.startswith(f"kubepredict-warm-{os.getpid()}-"):
        value = f"kubepredict-warm-{os.getpid()}-{secrets.token_hex(4)}"
        os.environ[ADDRESS_ENV] = value
    return value


def announce(model: dict | None, env: dict, max_bytes: int) -> None:
    """Tell the fork server the model of the worker it forks next (``None``: a job without one).

    ``model``: ``{"model_id", "key", "sha256"}``; ``env``: the worker's environment (its storage settings).
    Best effort: a fork server not up yet, or a full queue, only means the worker loads the model itself.
    """
    message = {"model": model if max_bytes > 0 else None, "env": env, "max_bytes": max_bytes}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
            out.setblocking(False)
            out.sendto(json.dumps(message).encode(), "\0" + address())
    except OSError as exc:
        logger.debug("could not reach the fork server's warm-model socket: %s", exc)


def install() -> None:
    """In the fork server: listen for announcements and act on them before each fork."""
    global _socket, _server_pid
    name = os.environ.get(ADDRESS_ENV)
    if not name or _socket is not None:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
    except OSError as exc:  # another fork server of this gateway holds it: run without warm models
        sock.close()
        logger.warning("warm models off: cannot bind the fork server's socket: %s", exc)
        return
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # each datagram then carries its sender's pid
    _socket, _server_pid = sock, os.getpid()
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


def _latest() -> dict | None:
    """The last announcement waiting from our parent (the one for the worker about to be forked), or None."""
    assert _socket is not None
    latest = None
    while True:
        try:
            data, ancillary, _flags, _addr = _socket.recvmsg(1 << 20, socket.CMSG_SPACE(_UCRED.size))
        except OSError:  # nothing more waiting (or the socket failed: then no model, and no loop)
            return latest
        sender = next(
            (
                _UCRED.unpack(d[: _UCRED.size])[0]
                for level, kind, d in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
            ),
            None,
        )
        if sender != os.getppid():
            logger.warning("ignored a warm-model announcement from pid %s, not the gateway", sender)
            continue
        try:
            latest = json.loads(data)
        except ValueError as exc:
            logger.warning("unreadable warm-model announcement: %s", exc)


def _before_fork() -> None:
    if _socket is None or os.getpid() != _server_pid:
        return  # a fork in a worker (it inherited the hook), not in the fork server
    try:
        message = _latest() or {}  # none (lost): fork with no model rather than with a stale one
        _hold(message.get("model"), message.get("env") or {}, int(message.get("max_bytes") or 0))
    except Exception as exc:  # noqa: BLE001 - never fail the fork: the worker loads the model itself (or fails the job)
        logger.warning("could not prepare the warm model (the worker loads it itself): %s", exc)


def _hold(model: dict | None, env: dict, max_bytes: int) -> None:
    global _held
    if _held is not None and (model is None or model.get("sha256") != _held.sha256):
        _held = None
        _release_memory()
    if model is None or _held is not None:
        return
    from .. import ml

    with _storage(env).open(model["key"]) as stream:
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        return
    _held = WarmModel(model["model_id"], model["sha256"], ml.load_model(data, model["sha256"]))


def _storage(env: dict):
    """The workers' object store (one per storage URL: an S3 client takes ~0.1 s to create)."""
    from ..config import Settings
    from ..storage import open_storage

    settings = Settings.from_env({**os.environ, **env})
    if settings.storage_url not in _storages:
        _storages[settings.storage_url] = open_storage(settings.storage_url, settings)
    return _storages[settings.storage_url]


def _release_memory() -> None:
    """Hand a dropped model's memory back to the system, so the next worker does not carry it."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _after_fork_in_child() -> None:
    global _socket
    if _socket is not None:
        _socket.close()
        _socket = None


def inherited() -> WarmModel | None:
    """In a worker: the model the fork server held when it forked this process, if any."""
    return _held
