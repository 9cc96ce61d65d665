"""`needle data download` against an HTTP server on 127.0.0.1 serving files this test made:
sums checked, atomic writes, no second fetch, clear messages offline and on bad data."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import socket
import stat
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from needle import download as download_module
from needle.fileio import TEMP_PREFIX
from needle_cli.app import app

runner = CliRunner()
NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


class _Server:
    """A static file server on a free loopback port, counting the requests it answers."""

    def __init__(self, folder: Path) -> None:
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):  # noqa: N802 - the name http.server calls
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """Four small gzipped files served over HTTP, with their sums pinned in place of MNIST's."""
    served = tmp_path / "served"
    served.mkdir()
    sums = {}
    for i, name in enumerate(NAMES):
        data = gzip.compress(bytes([i]) * (1000 + 37 * i))
        (served / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(download_module.SHA256, "mnist", sums)
    monkeypatch.delenv(download_module.MIRROR_ENV, raising=False)
    server = _Server(served)
    yield server, served, sums
    server.close()


def download(*args):
    return runner.invoke(app, ["data", "download", *map(str, args)])


def test_download_checks_sums_and_skips_what_is_there(mirror, tmp_path):
    server, served, sums = mirror
    to = tmp_path / "data" / "mnist"
    result = download("mnist", "--to", to, "--mirror", server.url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert [f["status"] for f in report["files"]] == ["downloaded"] * 4
    for name in NAMES:
        assert (to / name).read_bytes() == (served / name).read_bytes()
    assert sorted(server.requests) == sorted("/" + n for n in NAMES)
    again = download("mnist", "--to", to, "--mirror", server.url)
    assert again.exit_code == 0
    assert again.stdout.count("present") == 4 and len(server.requests) == 4  # nothing fetched
    assert not list(to.glob(f"{TEMP_PREFIX}*"))


def test_mirror_from_the_environment(mirror, tmp_path, monkeypatch):
    server, _, _ = mirror
    monkeypatch.setenv(download_module.MIRROR_ENV, server.url.rstrip("/"))
    result = download("mnist", "--to", tmp_path / "m")
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 4


def test_a_wrong_sum_keeps_nothing(mirror, tmp_path):
    server, served, sums = mirror
    (served / NAMES[1]).write_bytes(b"something else")
    to = tmp_path / "m"
    result = download("mnist", "--to", to, "--mirror", server.url)
    assert result.exit_code == 1
    got = hashlib.sha256(b"something else").hexdigest()
    assert result.stderr == (
        f"error: {server.url}{NAMES[1]} sent a file with SHA-256 {got}, expected "
        f"{sums[NAMES[1]]}; it was not saved (an interrupted transfer, or a different file on "
        "the mirror)\n"
    )
    assert sorted(p.name for p in to.iterdir()) == [NAMES[0]]  # the good one, no temporary


def test_missing_file_on_the_mirror(mirror, tmp_path):
    server, served, _ = mirror
    (served / NAMES[2]).unlink()
    result = download("mnist", "--to", tmp_path / "m", "--mirror", server.url)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {server.url}{NAMES[2]}: HTTP 404 ")


def test_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv(download_module.MIRROR_ENV, raising=False)
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    to = tmp_path / "m"
    result = download("fashion_mnist", "--to", to, "--mirror", f"http://127.0.0.1:{port}/")
    assert result.exit_code == 1
    message = result.stderr
    assert message.startswith(
        f"error: cannot download http://127.0.0.1:{port}/train-images-idx3-ubyte.gz ("
    )
    assert message.endswith(
        f"To install fashion_mnist by hand, put these files, gzipped as published, in '{to}': "
        f"{', '.join(NAMES)} (SHA-256 sums are in needle/download.py); or fetch from another "
        "copy with --mirror URL or $NEEDLE_DATA_MIRROR.\n"
    )
    assert list(to.iterdir()) == []


def test_a_transfer_that_stalls_is_a_download_error_not_a_write_error(tmp_path, monkeypatch):
    """A timeout half-way through the body is the network's fault: the message names the URL
    and says how to install by hand, and nothing is left in the folder."""
    monkeypatch.delenv(download_module.MIRROR_ENV, raising=False)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    done = threading.Event()

    def serve_a_few_bytes_then_stall():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + bytes(10))
            done.wait(5)

    threading.Thread(target=serve_a_few_bytes_then_stall, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    to = tmp_path / "m"
    try:
        with pytest.raises(download_module.NeedleError) as caught:
            download_module.download("mnist", to, mirror=url, timeout=0.2)
    finally:
        done.set()
        listener.close()
    message = str(caught.value)
    assert message.startswith(f"cannot download {url}{NAMES[0]} (timed out). ")
    assert "To install mnist by hand" in message
    assert list(to.iterdir()) == []


def test_bad_names_and_mirrors_are_usage_errors(tmp_path):
    result = download("mnsit", "--to", tmp_path)
    assert (result.exit_code, result.stderr) == (
        2,
        "error: unknown dataset to download 'mnsit'; did you mean 'mnist'?\n",
    )
    result = download("mnist", "--to", tmp_path, "--mirror", "ftp://example.org/")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: mirror 'ftp://example.org/' must be an http://, https:// or file:// URL\n",
    )


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_downloaded_files_and_folders_follow_the_umask(mirror, tmp_path, umask):
    server, _, _ = mirror
    previous = os.umask(umask)
    try:
        assert (
            download("mnist", "--to", tmp_path / "data" / "mnist", "--mirror", server.url).exit_code
            == 0
        )
    finally:
        os.umask(previous)
    for path in [tmp_path / "data", *(tmp_path / "data").rglob("*")]:
        default = 0o777 if path.is_dir() else 0o666
        assert oct(stat.S_IMODE(path.stat().st_mode)) == oct(default & ~umask), path


def test_downloaded_folder_trains(mirror, tmp_path):
    """The files a mirror serves are what `dataset: mnist` reads (real idx content here)."""
    import numpy as np

    from needle.data import write_idx

    server, served, _ = mirror
    rng = np.random.default_rng(0)
    sums = {}
    for name, array in zip(
        NAMES,
        [
            rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
            (np.arange(20) % 10).astype(np.uint8),
            rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
            (np.arange(10) % 10).astype(np.uint8),
        ],
        strict=True,
    ):
        write_idx(served / name, array, gzip=True)
        sums[name] = hashlib.sha256((served / name).read_bytes()).hexdigest()
    download_module.SHA256["mnist"] = sums  # monkeypatched by the fixture; restored after
    to = tmp_path / "mnist"
    assert download("mnist", "--to", to, "--mirror", server.url).exit_code == 0
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{dataset: mnist, path: '{to}'}}\nmodel: {{layers: [{{linear: 10}}]}}\n"
        "train: {epochs: 1, batch_size: 10}\n"
    )
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["epochs"] == 1
