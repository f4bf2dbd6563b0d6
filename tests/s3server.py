"""A real S3-compatible HTTP server for the tests of the S3 store: moto's standalone server on a free local
port, one fresh bucket per test; boto3 talks to it over HTTP exactly as it would to MinIO."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "cirweb-test",
    "AWS_SECRET_ACCESS_KEY": "cirweb-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # nothing of the machine running the tests: no profile files, no instance metadata service
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a local S3-compatible server, running for the whole session."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is not installed (requirements-dev.txt)")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials the test server accepts, and none of the machine's own AWS configuration."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    return AWS_TEST_ENV


@pytest.fixture
def new_bucket(s3_endpoint: str, aws_env: dict[str, str]) -> Callable[[], str]:
    """Makes a fresh, empty bucket on the test server and returns its name."""
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)

    def make() -> str:
        name = f"cirweb-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=name)
        return name

    return make
