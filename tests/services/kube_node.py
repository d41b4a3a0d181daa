"""A one-node cluster around a running ``KubeAPIServer``: containerd (CRI), kubelet, scheduler, controller manager.

    with KubeAPIServer() as kube, KubeNode(kube) as node:
        node.load_image("localhost/kubepredict/base:bookworm-…")   # podman store → containerd's k8s.io namespace
        ...create pods/Jobs through kube.api_client("admin")...

Binaries: kubelet, kube-scheduler, kube-controller-manager and kubectl (``node.kubectl(...)``, as the admin)
from the same Go module and version as the kube-apiserver (scripts/kube-node.sh build, cached in
~/.cache/kubepredict/kube/bin); containerd 1.6, runc and the CNI plugins from Debian
(scripts/setup-services.sh). containerd runs under a private configuration (root, state, socket in this
service's temporary folder) with the CRI plugin, a locally built pause image (scripts/images.sh build pause)
and a bridge network (kp-cni0, 10.244.0.0/24).
What these VMs need, found by trying: ``restrict_oom_score_adj`` (else runc fails every sandbox with
"can't get final child's PID from pipe: EOF"), runc not crun (hybrid cgroups), ``failCgroupV1: false``.
Pods reach host services through ``node.expose(port, listen_port)`` on the bridge's 10.244.0.1; there is
no kube-proxy and no cluster DNS (infra/test-node works around both).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from . import (
    REPO_ROOT,
    Service,
    ServiceStartError,
    ServiceUnavailable,
    free_port,
    wait_until,
)
from .kube_apiserver import K8S_VERSION, KUBE_CACHE, KubeAPIServer

NODE_SCRIPT = REPO_ROOT / "scripts" / "kube-node.sh"
IMAGES_SCRIPT = REPO_ROOT / "scripts" / "images.sh"
NODE_NAME = "kp-node"
POD_SUBNET = "10.244.0.0/24"
GATEWAY = "10.244.0.1"  # the bridge's address: pods reach the host here
BRIDGE = "kp-cni0"
# Where infra/test-node expects the host's services on GATEWAY (expose(port, listen_port=...))
POD_API_PORT, POD_DB_PORT, POD_S3_PORT = 30443, 30432, 30900


def _bin(name: str) -> Path:
    return KUBE_CACHE / "bin" / f"{name}-v{K8S_VERSION}"


def images_env() -> dict[str, str]:
    out = subprocess.run(["bash", str(IMAGES_SCRIPT), "env"], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


class KubeNode(Service):
    name = "kube-node"
    start_timeout = 120.0
    port_attrs = ()

    def __init__(self, kube: KubeAPIServer) -> None:
        super().__init__()
        self.kube = kube
        self.images = images_env()

    # -- availability -------------------------------------------------------------------------------
    def check_available(self) -> None:
        for tool in ("containerd", "ctr", "runc", "podman"):
            if not shutil.which(tool):
                raise ServiceUnavailable(f"`{tool}` not found: make setup-services (scripts/setup-services.sh)")
        if not Path("/usr/lib/cni/bridge").is_file():
            raise ServiceUnavailable("CNI plugins missing: apt-get install containernetworking-plugins")
        if os.geteuid() != 0:
            raise ServiceUnavailable("the kubelet and containerd need root")
        missing = [
            c for c in ("kubelet", "kube-scheduler", "kube-controller-manager", "kubectl") if not _bin(c).is_file()
        ]
        if missing:
            subprocess.run(
                ["bash", str(NODE_SCRIPT), "build"],
                check=True,
                timeout=3600,
                env=dict(os.environ, K8S_VERSION=K8S_VERSION, KUBE_CACHE=str(KUBE_CACHE)),
            )
        subprocess.run(["bash", str(IMAGES_SCRIPT), "build", "pause"], check=True, timeout=600, capture_output=True)

    # -- lifecycle ----------------------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def _start(self) -> None:
        d = self.tmpdir
        assert d is not None
        env = self.kube.env
        (d / "cni").mkdir()
        (d / "containerd.toml").write_text(f"""version = 2
root = "{d}/containerd"
state = "{d}/containerd-state"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.images["PAUSE_IMAGE"]}"
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
""")
        (d / "cni" / "10-kubepredict.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "kubepredict",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": f"{d}/cni-ipam",
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                        {"type": "loopback"},
                    ],
                }
            )
        )
        (d / "kubeconfig").write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: kp, cluster: {{server: "{env["KUBE_SERVER"]}", certificate-authority: "{env["KUBE_CA"]}"}}}}]
users: [{{name: admin, user: {{token: "{env["KUBE_ADMIN_TOKEN"]}"}}}}]
contexts: [{{name: kp, context: {{cluster: kp, user: admin}}}}]
current-context: kp
""")
        (d / "kubelet.yaml").write_text(f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{self.socket}
address: 127.0.0.1
port: {free_port()}
readOnlyPort: 0
healthzPort: 0
podLogsDir: {d}/pod-logs
authentication: {{anonymous: {{enabled: false}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
failSwapOn: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
enforceNodeAllocatable: []
""")
        # the bridge with its gateway address up front (the CNI plugin adopts it): expose() works before any pod
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)
        for cmd in (
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", f"{GATEWAY}/24", "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            subprocess.run(["ip", *cmd], capture_output=True, check=True)
        self._spawn(["containerd", "--config", str(d / "containerd.toml")], d / "containerd.log")
        wait_until(lambda: self.ctr("version", check=False).returncode == 0, timeout=30, what="containerd")
        self.load_image(self.images["PAUSE_IMAGE"])
        kubeconfig = str(d / "kubeconfig")
        common = [
            "--kubeconfig",
            kubeconfig,
            "--authentication-kubeconfig",
            kubeconfig,
            "--authorization-kubeconfig",
            kubeconfig,
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
            "--leader-elect=false",
        ]
        self._spawn(
            [
                str(_bin("kube-controller-manager")),
                *common,
                "--controllers",
                "*,-nodeipam",
                "--service-account-private-key-file",
                str(Path(env["KUBE_STATE_DIR"]) / "sa.key"),
                "--root-ca-file",
                env["KUBE_CA"],
                "--use-service-account-credentials=false",
            ],
            d / "kube-controller-manager.log",
        )
        self._spawn([str(_bin("kube-scheduler")), *common], d / "kube-scheduler.log")
        self._spawn(
            [
                str(_bin("kubelet")),
                "--config",
                str(d / "kubelet.yaml"),
                "--kubeconfig",
                kubeconfig,
                "--root-dir",
                str(d / "kubelet"),
                "--cert-dir",
                str(d / "kubelet-pki"),
                "--hostname-override",
                NODE_NAME,
                "--v=1",
            ],
            d / "kubelet.log",
        )
        core = self._core()
        wait_until(
            lambda: self._node_schedulable(core),
            timeout=self.start_timeout,
            interval=0.5,
            what="node Ready without the not-ready taint",
        )

    def _core(self):
        from kubernetes import client

        return client.CoreV1Api(self.kube.api_client("admin"))

    @staticmethod
    def _node_schedulable(core) -> bool:
        node = core.read_node(NODE_NAME)
        ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        return ready and not node.spec.taints

    def load_image(self, image: str, *more: str) -> float:
        """Copy images from the podman store into containerd's k8s.io namespace; returns the seconds taken.

        Several images go through one archive (docker-archive, each shared layer once)."""
        assert self.tmpdir is not None
        t0 = time.monotonic()
        archive = self.tmpdir / "image.tar"
        if more:
            save = ["podman", "save", "--multi-image-archive", "--format", "docker-archive", "-o", str(archive)]
            archive.unlink(missing_ok=True)
            subprocess.run(
                ["bash", str(IMAGES_SCRIPT), *save, image, *more], check=True, capture_output=True, timeout=900
            )
        else:
            subprocess.run(
                ["bash", str(IMAGES_SCRIPT), "save", image, str(archive)], check=True, capture_output=True, timeout=600
            )
        try:
            self.ctr("images", "import", str(archive), timeout=600)
        finally:
            archive.unlink(missing_ok=True)
        return time.monotonic() - t0

    def _log_files(self) -> list[Path]:
        if self.tmpdir is None:
            return []
        return [
            self.tmpdir / f
            for f in ("containerd.log", "kubelet.log", "kube-scheduler.log", "kube-controller-manager.log")
        ]

    def _stop(self) -> None:
        for listener in getattr(self, "_listeners", []):
            with contextlib.suppress(OSError):
                listener.close()
        # the kubelet first (it would restart what we stop), then every task containerd runs, then containerd
        for proc in reversed(self._procs):
            if proc.args[0].endswith(f"kubelet-v{K8S_VERSION}"):
                self._kill(proc)
        if self.tmpdir is not None and self.socket.exists():
            with contextlib.suppress(Exception):
                tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=30).stdout.split()
                for task in tasks:
                    self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=30)
                time.sleep(0.5)
                for task in tasks:
                    self.ctr("tasks", "rm", "-f", task, check=False, timeout=30)
        if self.tmpdir is not None:  # kubelet volumes (tmpfs, projected secrets), sandbox mounts, overlays
            mounts = [
                line.split()[1]
                for line in Path("/proc/self/mounts").read_text().splitlines()
                if line.split()[1].startswith(str(self.tmpdir))
            ]
            for mnt in sorted(mounts, key=len, reverse=True):
                subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, check=False)

    def kubectl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """kubectl (built beside the other binaries, same version) as the cluster admin; raises on failure."""
        assert self.tmpdir is not None
        out = subprocess.run(
            [str(_bin("kubectl")), "--kubeconfig", str(self.tmpdir / "kubeconfig"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
        )
        if out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
        return out

    def expose(self, port: int, listen_port: int = 0) -> str:
        """Make a host service on 127.0.0.1:port reachable from pods: "10.244.0.1:P" relays to it.

        The relay listens on the bridge's gateway address (created at start), on ``listen_port`` (the fixed
        ports infra/test-node names: POD_*_PORT) or any free port; a thread per connection in this
        process; closed when the node stops.
        """
        listener = socket.create_server((GATEWAY, listen_port))
        self._listeners = [*getattr(self, "_listeners", []), listener]

        def pump(src, dst):
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        def serve():
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                upstream = socket.create_connection(("127.0.0.1", port))
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

        threading.Thread(target=serve, name=f"relay-{port}", daemon=True).start()
        return f"{GATEWAY}:{listener.getsockname()[1]}"

    def run_pod(self, pod: dict, namespace: str = "default", timeout: float = 120.0) -> dict:
        """Create a pod and wait until it finished; returns {phase, exit_code, log, seconds}."""
        core = self._core()
        t0 = time.monotonic()
        core.create_namespaced_pod(namespace, pod)
        name = pod["metadata"]["name"]

        def done():
            p = core.read_namespaced_pod(name, namespace)
            return p if p.status.phase in ("Succeeded", "Failed") else None

        try:
            p = wait_until(done, timeout=timeout, interval=0.5, what=f"pod {name} to finish")
        except TimeoutError as exc:
            raise ServiceStartError(f"{exc}; kubelet errors:\n{self.kubelet_errors()}") from exc
        state = p.status.container_statuses[0].state.terminated
        return {
            "phase": p.status.phase,
            "exit_code": state.exit_code if state else None,
            "log": self.pod_log(namespace, name),
            "seconds": time.monotonic() - t0,
            "pod_ip": p.status.pod_ip,
        }

    def pod_log(self, namespace: str, name: str) -> str:
        """The container log as the kubelet wrote it (the API server cannot reach the kubelet here)."""
        assert self.tmpdir is not None
        logs = sorted((self.tmpdir / "pod-logs").glob(f"{namespace}_{name}_*/*/*.log"))
        # CRI log lines: "<time> stdout F <text>"
        return "\n".join(
            line.split(" ", 3)[3] for f in logs for line in f.read_text().splitlines() if line.count(" ") >= 3
        )

    def kubelet_errors(self, limit: int = 10) -> str:
        assert self.tmpdir is not None
        lines = (self.tmpdir / "kubelet.log").read_text(errors="replace").splitlines()
        return "\n".join([ln for ln in lines if ln.startswith("E")][-limit:])
