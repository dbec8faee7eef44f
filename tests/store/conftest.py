"""A local S3 endpoint for the store tests: moto in server mode on 127.0.0.1, one per
session, and a fresh bucket per test, with the endpoint and fake credentials in the
environment the way a user sets them (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, …)."""

import itertools
import logging
import os
from urllib.parse import urlsplit

import pytest

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    # The port tests/conftest.py put in the environment before any worker started.
    port = urlsplit(os.environ["AWS_ENDPOINT_URL"]).port
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, tmp_path) -> str:
    """`s3://<a new bucket>` on the local endpoint; rainbench's mirrors under tmp_path."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "cache"))
    s3fs.S3FileSystem.clear_instance_cache()  # an earlier test's endpoint, if any
    name = f"bucket-{next(_buckets)}"
    s3fs.S3FileSystem().mkdir(name)
    return f"s3://{name}"
