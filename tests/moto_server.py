"""Pytest fixtures: a local S3-compatible server (moto's server mode) on 127.0.0.1 and a fresh bucket per test.

Its fixtures (``moto_endpoint``, ``s3_bucket``, ``s3_env``) are registered for every test by ``conftest.py``.
``s3_env`` also points the standard AWS variables (endpoint, keys, region) at the server, the way a user would
configure an S3-compatible store, and disables the EC2 metadata lookup so nothing leaves the machine.
Everything is skipped, with the reason, when moto is not installed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # http://127.0.0.1:<port>
    host_port: str  # 127.0.0.1:<port>, for pyarrow's endpoint_override
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def filesystem(self):  # -> pyarrow.fs.S3FileSystem with explicit credentials (for test assertions)
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=self.host_port,
            scheme="http",
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            allow_bucket_creation=True,
            allow_bucket_deletion=True,
        )


@dataclass(frozen=True)
class S3Bucket:
    endpoint: S3Endpoint
    name: str

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.name}", *parts])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {process.returncode} before answering on {url}")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on {url} within {timeout_s:.0f} s")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[S3Endpoint]:
    """A moto S3 server on a free loopback port for the whole test session."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    pytest.importorskip("flask", reason="moto's server mode needs flask (pip install 'moto[server]')")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield S3Endpoint(url=url, host_port=f"127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_endpoint: S3Endpoint) -> Iterator[S3Bucket]:
    """A new, empty bucket; deleted with its contents after the test."""
    filesystem = moto_endpoint.filesystem()
    name = f"tlsweep-test-{uuid.uuid4().hex[:12]}"
    filesystem.create_dir(name)
    yield S3Bucket(endpoint=moto_endpoint, name=name)
    filesystem.delete_dir(name)


@pytest.fixture
def s3_env(s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """``s3_bucket`` plus the standard AWS environment pointing at it (as a user of MinIO/Ceph would set it)."""
    endpoint = s3_bucket.endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", endpoint.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", endpoint.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", endpoint.region)
    monkeypatch.setenv("AWS_REGION", endpoint.region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/tlsweep-test-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/tlsweep-test-aws-credentials")
    return s3_bucket
