"""Local object stores for the store tests, one of each per session, on 127.0.0.1: an S3
endpoint (moto in server mode) and a GCS emulator (gcp-storage-emulator, in memory). A
test that takes `bucket` runs once against each, in a fresh bucket, with the endpoints
and fake credentials in the environment the way a user sets them (AWS_ENDPOINT_URL,
STORAGE_EMULATOR_HOST, …); `s3_bucket` is for what only moto can do."""

import itertools
import json
import logging
import os
import urllib.request
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
def s3_auth_after(s3_endpoint):
    """`s3_auth_after(requests)`: make the local S3 endpoint check the key of every
    request after `requests` more (moto's own switch; "testing" is no key it knows);
    returns the setting it replaces."""

    def auth_after(requests: str) -> str:
        reset = urllib.request.Request(
            f"{s3_endpoint}/moto-api/reset-auth",
            data=requests.encode(),
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(reset) as answer:
            return json.loads(answer.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]

    return auth_after


@pytest.fixture(scope="session")
def gcs_endpoint(local_server):
    """A process of its own: the emulator prints a traceback for every connection a
    client closes early, which would land in the output of the commands tested here."""
    pytest.importorskip("gcp_storage_emulator")
    pytest.importorskip("gcsfs")
    # The port tests/conftest.py put in the environment before any worker started.
    port = urlsplit(os.environ["STORAGE_EMULATOR_HOST"]).port
    arguments = ["start", "--in-memory", "-q", "--host", "127.0.0.1", "--port", str(port)]
    server = local_server("gcp_storage_emulator", arguments, port)
    yield f"http://127.0.0.1:{port}"
    server.kill()
    server.wait()


@pytest.fixture(params=["s3", "gs"])
def bucket(request) -> str:
    """`s3://…` or `gs://…`: a new bucket on the local endpoint of each store in turn."""
    return request.getfixturevalue(f"{request.param}_bucket")


@pytest.fixture
def gs_bucket(gcs_endpoint, monkeypatch, tmp_path) -> str:
    """`gs://<a new bucket>` on the GCS emulator; rainbench's mirrors under tmp_path."""
    gcsfs = pytest.importorskip("gcsfs")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    monkeypatch.setenv("RAINBENCH_CACHE", str(tmp_path / "cache"))
    gcsfs.GCSFileSystem.clear_instance_cache()  # an earlier test's endpoint, if any
    name = f"bucket-{next(_buckets)}"
    gcsfs.GCSFileSystem().mkdir(name)
    return f"gs://{name}"


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, tmp_path) -> str:
    """`s3://<a new bucket>` on the local S3 endpoint; rainbench's mirrors under tmp_path."""
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
