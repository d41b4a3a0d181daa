"""S3 API server for tests: S3Proxy 4.0.0 (primary) or moto (fallback).

S3Proxy (``java -jar s3proxy-4.0.0-jar-with-dependencies.jar``) checks AWS SigV2
and SigV4 signatures (``s3proxy.authorization=aws-v2-or-v4``) and keeps objects
on disk (``filesystem-nio2`` provider) in the service's temp dir.

Fallback: when Java or the jar is missing, ``start_s3_server()`` runs moto's
``ThreadedMotoServer`` in process instead, which does NOT check signatures.
Under ``CI=true`` there is no fallback: a missing S3Proxy is an error.

    with start_s3_server() as s3:
        bucket = s3.create_bucket()          # fresh bucket per test
        s3.client().put_object(Bucket=bucket, Key="k", Body=b"v")
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
import urllib.request

from . import (
    JARS_DIR,
    LOOPBACK,
    SETUP_HINT,
    Service,
    ServiceUnavailable,
    free_port,
    in_ci,
    port_open,
    require_java,
    unique_name,
    wait_until,
)

S3PROXY_VERSION = "4.0.0"
S3PROXY_JAR = JARS_DIR / f"s3proxy-{S3PROXY_VERSION}" / f"s3proxy-{S3PROXY_VERSION}-jar-with-dependencies.jar"
ACCESS_KEY_ID = "kubepredict-test"
SECRET_ACCESS_KEY = "kubepredict-test-secret"
REGION = "us-east-1"


def boto3_config(**overrides):
    """botocore Config for S3Proxy/moto: path-style addressing.

    boto3 1.44's default flexible checksums (x-amz-checksum-crc32, aws-chunked
    uploads) work against S3Proxy 4.0.0, so they are left on; pass
    ``request_checksum_calculation="when_required"`` to turn them off.
    """
    from botocore.config import Config

    kw = dict(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    kw.update(overrides)
    return Config(**kw)


class _S3Base(Service):
    access_key_id = ACCESS_KEY_ID
    secret_access_key = SECRET_ACCESS_KEY
    region = REGION
    checks_signatures = True

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        self.port = port

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client(self, *, access_key_id: str | None = None, secret_access_key: str | None = None, **config_overrides):
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            config=boto3_config(**config_overrides),
        )

    def env(self) -> dict[str, str]:
        """Environment variables pointing an AWS SDK at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def kubepredict_env(self, bucket: str, prefix: str = "kubepredict") -> dict[str, str]:
        """Kubepredict's settings for an object store in ``bucket`` on this server."""
        return {
            "KUBEPREDICT_STORAGE_URL": f"s3://{bucket}/{prefix}",
            "KUBEPREDICT_S3_ENDPOINT_URL": self.endpoint_url,
            "KUBEPREDICT_S3_REGION": self.region,
            "KUBEPREDICT_S3_ACCESS_KEY_ID": self.access_key_id,
            "KUBEPREDICT_S3_SECRET_ACCESS_KEY": self.secret_access_key,
            "KUBEPREDICT_S3_ADDRESSING_STYLE": "path",
        }

    # -- per-test cleaning ---------------------------------------------------
    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_name("kp-test-", 12)
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Abort uploads, delete every object, then the bucket."""
        c = self.client()
        with contextlib.suppress(Exception):
            for up in c.list_multipart_uploads(Bucket=name).get("Uploads", []):
                c.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        paginator = c.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                c.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        c.delete_bucket(Bucket=name)


class S3ProxyServer(_S3Base):
    """S3Proxy 4.0.0 on 127.0.0.1, SigV2/V4 auth, filesystem storage."""

    name = "s3proxy"
    start_timeout = 60.0
    heap = os.environ.get("KUBEPREDICT_S3PROXY_HEAP", "256m")

    def check_available(self) -> None:
        require_java()
        if not S3PROXY_JAR.is_file():
            raise ServiceUnavailable(f"S3Proxy jar missing ({S3PROXY_JAR}): {SETUP_HINT}")
        try:
            import boto3  # noqa: F401 - only: is it installed?
        except ImportError:
            raise ServiceUnavailable("boto3 not installed: pip install -r requirements.txt") from None

    def _start(self) -> None:
        assert self.tmpdir is not None
        self.port = self.port or free_port()
        basedir = self.tmpdir / "blobs"
        basedir.mkdir()
        conf = self.tmpdir / "s3proxy.conf"
        conf.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint=http://{LOOPBACK}:{self.port}",
                    "s3proxy.authorization=aws-v2-or-v4",
                    f"s3proxy.identity={self.access_key_id}",
                    f"s3proxy.credential={self.secret_access_key}",
                    "s3proxy.ignore-unknown-headers=true",
                    "jclouds.provider=filesystem-nio2",
                    f"jclouds.filesystem.basedir={basedir}",
                    f"jclouds.region={self.region}",
                    "",
                ]
            )
        )
        proc = self._spawn(
            [
                "java",
                f"-Xmx{self.heap}",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                "-Djava.net.preferIPv4Stack=true",
                f"-Djava.io.tmpdir={self.tmpdir}",
                "-jar",
                str(S3PROXY_JAR),
                "--properties",
                str(conf),
            ],
            cwd=self.tmpdir,
        )
        wait_until(
            lambda: port_open(self.port), self.start_timeout, what=f"S3Proxy port {self.port}", alive=self._alive(proc)
        )
        # port open -> Jetty is up; an anonymous request must get an S3 answer (403 with auth on)
        wait_until(self._answers, 20, what="S3Proxy HTTP answer", alive=self._alive(proc))

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(self.endpoint_url + "/", timeout=2)
            return True
        except urllib.error.HTTPError as err:
            return err.code in (400, 403)


class MotoS3Server(_S3Base):
    """moto's ThreadedMotoServer in this process. Does not check signatures."""

    name = "moto"
    checks_signatures = False

    def check_available(self) -> None:
        try:
            from moto.server import ThreadedMotoServer  # noqa: F401 - only: is it installed?
        except ImportError:
            raise ServiceUnavailable(
                'moto not installed (fallback for S3Proxy): pip install "moto[server]"; or get S3Proxy: ' + SETUP_HINT
            ) from None

    def _start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = self.port or free_port()
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self.port, verbose=False)
        self._server.start()
        wait_until(lambda: port_open(self.port), 20, what=f"moto port {self.port}")

    def pids(self) -> list[int]:
        return [os.getpid()]  # in process: use listen_addresses() with care

    def _stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.stop()
            self._server = None


def start_s3_server() -> _S3Base:
    """Start S3Proxy; fall back to moto when Java/the jar is missing (never under CI=true)."""
    proxy = S3ProxyServer()
    try:
        proxy.check_available()
    except ServiceUnavailable as why:
        if in_ci():
            raise
        moto = MotoS3Server()
        try:
            moto.check_available()
        except ServiceUnavailable as why_moto:
            raise ServiceUnavailable(f"{why}; and {why_moto}") from None
        moto.fallback_reason = str(why)
        return moto.start()
    return proxy.start()


def wait_for_object(client, bucket: str, key: str, timeout: float = 10.0):
    """Poll head_object until the key exists (helper for async writers)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.head_object(Bucket=bucket, Key=key)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


__all__ = ["MotoS3Server", "S3ProxyServer", "boto3_config", "start_s3_server", "wait_for_object", "S3PROXY_JAR"]
