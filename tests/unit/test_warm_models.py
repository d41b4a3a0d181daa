"""The fork server's warm-model socket (runner/warm_models.py) takes announcements only from the gateway
that started it, and a failing socket ends the read instead of spinning the fork server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from kubepredict.runner import warm_models

ROOT = Path(__file__).resolve().parents[2]

# Stands in for the fork server: a child of this test process, which stands in for the gateway.
FORK_SERVER = """
import json, sys
from kubepredict.runner import warm_models
warm_models.install()
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps(warm_models._latest()), flush=True)
warm_models._socket.close()  # a socket that fails from now on
print(json.dumps(warm_models._latest()), flush=True)
"""


def test_only_the_parent_may_announce_and_a_failed_socket_ends_the_read(monkeypatch):
    monkeypatch.delenv(warm_models.ADDRESS_ENV, raising=False)
    name = warm_models.address()  # this process's, in the environment its child inherits
    server = subprocess.Popen(
        [sys.executable, "-c", FORK_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout.readline().strip() == "ready", server.stderr.read()
        model = {"model_id": "mdl_gateway", "key": "models/a", "sha256": "0" * 64}
        warm_models.announce(model, {"KUBEPREDICT_STORAGE_URL": "file:///nowhere"}, 1024)
        # Another local process that knows the address: it must not decide what the fork server loads.
        stranger = (
            "import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            's.sendto(b\'{"model": {"model_id": "mdl_stranger", "key": "/etc/passwd", "sha256": "x"}, '
            '"env": {}, "max_bytes": 1099511627776}\', \'\\0\' + sys.argv[1])'
        )
        subprocess.run([sys.executable, "-c", stranger, name], check=True, timeout=30)
        out, err = server.communicate("go\n", timeout=60)
    finally:
        server.kill()
    latest, after_failure = (json.loads(line) for line in out.splitlines())
    assert latest["model"] == model and latest["max_bytes"] == 1024
    assert "ignored a warm-model announcement from pid" in err
    assert after_failure is None


def test_announcing_with_no_fork_server_listening_is_harmless(monkeypatch):
    monkeypatch.setenv(warm_models.ADDRESS_ENV, "")
    assert warm_models.address().startswith("kubepredict-warm-")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:  # nobody bound to it
        try:
            probe.sendto(b"x", "\0" + warm_models.address())
        except OSError:
            pass
        else:
            raise AssertionError("something listens on a fresh address")
    warm_models.announce({"model_id": "m", "key": "k", "sha256": "s"}, {}, 1)  # no exception
