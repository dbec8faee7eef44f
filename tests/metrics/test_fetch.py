"""`rainbench weights fetch`: downloads checked before they are kept, and one line when
there is no network. The server is a local one on 127.0.0.1, started by the test."""

import dataclasses
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from rainbench.cli import main
from rainbench.metrics import weights
from rainbench.metrics.registry import MetricError

MUSIQ = "musiq_koniq_ckpt-e95806b9.pth"
BRISQUE = "brisque_svm_weights.pth"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path) -> Path:
    """Neither the user's weights nor pyiqa's cache leak in; returns the weights dir."""
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.delenv(weights.FETCH_URL_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "weights"


def test_a_file_whose_checksum_holds_is_kept(isolated, server, monkeypatch):
    folder, url = server
    data = b"musiq checkpoint bytes"
    (folder / MUSIQ).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    known = dataclasses.replace(weights.KNOWN_FILES[MUSIQ], sha256=digest[:8])
    monkeypatch.setitem(weights.KNOWN_FILES, MUSIQ, known)

    [found] = weights.fetch(["musiq"], base_url=url)

    assert found.path == isolated / MUSIQ and found.state == "ok"
    assert found.path.read_bytes() == data
    assert [s.state for s in weights.status() if s.file.name == MUSIQ] == ["ok"]


def test_two_fetches_of_one_file_at_once_both_keep_it(isolated, server, monkeypatch):
    # The first waits with its download written, before it checks it, while the second
    # is fetched whole; a partial file of the same name was taken from under it.
    folder, url = server
    data = b"musiq checkpoint bytes"
    (folder / MUSIQ).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()[:8]
    known = dataclasses.replace(weights.KNOWN_FILES[MUSIQ], sha256=digest)
    monkeypatch.setitem(weights.KNOWN_FILES, MUSIQ, known)
    ready, go = isolated.parent / "ready", isolated.parent / "go"
    script = f"""
import dataclasses, time
from pathlib import Path
from rainbench.metrics import weights
known = weights.KNOWN_FILES[{MUSIQ!r}]
weights.KNOWN_FILES[{MUSIQ!r}] = dataclasses.replace(known, sha256={digest!r})
copy = weights._copy
def paused(*arguments):
    copy(*arguments)
    Path({str(ready)!r}).touch()
    while not Path({str(go)!r}).exists():
        time.sleep(0.01)
weights._copy = paused
weights.fetch([{MUSIQ!r}], base_url={url!r})
"""
    first = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    while not ready.exists() and first.poll() is None:
        time.sleep(0.01)
    weights.fetch([MUSIQ], base_url=url)
    go.touch()
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert sorted(p.name for p in isolated.iterdir()) == [MUSIQ]
    assert (isolated / MUSIQ).read_bytes() == data


def test_a_mismatching_download_is_refused_and_nothing_stored(isolated, server):
    folder, url = server
    (folder / MUSIQ).write_bytes(b"not the checkpoint")
    with pytest.raises(MetricError, match="is not the expected musiq") as refused:
        weights.fetch([MUSIQ], base_url=url)
    assert "\n" not in str(refused.value)
    assert not (isolated / MUSIQ).exists() and list(isolated.iterdir()) == []


def test_a_file_without_a_published_checksum_is_kept_unverified(isolated, server, monkeypatch):
    folder, url = server
    (folder / BRISQUE).write_bytes(b"svm")
    monkeypatch.setenv(weights.FETCH_URL_ENV, url)
    [found] = weights.fetch(["brisque", BRISQUE])  # the same file named twice: once
    assert found.state == "unverified" and found.path.read_bytes() == b"svm"


def test_a_missing_file_on_the_server_is_one_line(isolated, server):
    _, url = server
    with pytest.raises(MetricError) as refused:
        weights.fetch(["brisque"], base_url=url)
    message = str(refused.value)
    assert "HTTP 404" in message and "rainbench weights import brisque_svm_weights.pth" in message
    assert "\n" not in message and not isolated.joinpath(BRISQUE).exists()


class _CutShort(BaseHTTPRequestHandler):
    """Promises 100,000 bytes, sends a few and closes: a connection dropped midway."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"PK\x03\x04 the start of a checkpoint")
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_a_download_cut_short_is_refused_and_nothing_stored(isolated):
    # http.client takes the closed connection for the end of the body: brisque's file,
    # with no checksum to catch it, was kept cut short and said to be fetched.
    httpd = HTTPServer(("127.0.0.1", 0), _CutShort)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"
        with pytest.raises(MetricError) as refused:
            weights.fetch(["brisque"], base_url=url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    message = str(refused.value)
    assert message == (
        f"the download of {url}{BRISQUE} was cut short: 30 of 100000 bytes; nothing stored"
    )
    assert list(isolated.iterdir()) == []


def test_a_folder_it_cannot_write_is_not_said_to_be_a_failed_download(isolated, server):
    # Said as "cannot download … without network: rainbench weights import …", whose
    # remedy fails the same way.
    folder, url = server
    (folder / BRISQUE).write_bytes(b"svm")
    partial = isolated / f".{BRISQUE}.{os.getpid()}.part"
    isolated.mkdir()
    # The download's file cannot be written, even by root: a link into no folder.
    partial.symlink_to(isolated / "gone" / "file")
    result = CliRunner().invoke(main, ["weights", "fetch", "brisque", "--from", url])
    assert result.exit_code == 1
    assert result.output == f"error: {partial}: No such file or directory\n"
    assert not (isolated / BRISQUE).exists()


def test_without_network_it_fails_in_one_line(isolated, monkeypatch):
    def blocked(*args, **kwargs):
        raise OSError("network is unreachable (sockets blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    with pytest.raises(MetricError) as refused:
        weights.fetch(["niqe"])
    message = str(refused.value)
    assert message.startswith("cannot download niqe_modelparameters.mat from https://")
    assert "rainbench weights extract-niqe" in message and "\n" not in message


def test_an_unknown_name_lists_the_known_ones(isolated):
    with pytest.raises(MetricError, match="known: brisque, musiq, niqe, topiq_nr"):
        weights.fetch(["psnr_y"])


@pytest.mark.parametrize("name", ["vgg16-397923af.pth", "cclgan-clip"])
def test_a_known_file_it_does_not_fetch_is_not_said_to_be_unknown(isolated, name):
    # It was "needs no weight file rainbench knows", of a file `weights status` lists.
    with pytest.raises(MetricError, match=r"is not fetched .*; provide it: rainbench weights "):
        weights.fetch([name])


def test_the_cli_prints_each_file_and_fails_with_one_line(isolated, server):
    folder, url = server
    (folder / BRISQUE).write_bytes(b"svm")
    runner = CliRunner()
    done = runner.invoke(main, ["weights", "fetch", "brisque", "--from", url])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"{isolated / BRISQUE}  unverified"
    failed = runner.invoke(main, ["weights", "fetch", "musiq", "--from", url])
    assert failed.exit_code == 1 and len(failed.output.strip().splitlines()) == 1
