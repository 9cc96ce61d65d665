"""`needle data download` against an HTTP server on 127.0.0.1 serving files this test made:
sums checked, atomic writes, no second fetch, clear messages offline and on bad data."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import stat
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from cli_contract import one_line_error
from typer.testing import CliRunner

from needle import download as download_module
from needle.data import CIFAR10Dataset, Corpus
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


# -- CIFAR-10 and the Penn Treebank -------------------------------------------------------


def _serve(tmp_path, monkeypatch, dataset, files: dict[str, bytes]):
    """Serve `files` and pin their sums as `dataset`'s; returns the server."""
    served = tmp_path / "served"
    served.mkdir(exist_ok=True)
    for name, data in files.items():
        (served / name).write_bytes(data)
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    monkeypatch.setitem(download_module.SHA256, dataset, sums)
    monkeypatch.delenv(download_module.MIRROR_ENV, raising=False)
    return _Server(served)


@pytest.fixture
def serve(tmp_path, monkeypatch):
    servers = []

    def start(dataset, files):
        servers.append(_serve(tmp_path, monkeypatch, dataset, files))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _cifar_archive(rng) -> tuple[bytes, dict[str, bytes]]:
    """A cifar-10-python.tar.gz in the published layout, with tiny batches."""
    batches = {}
    for name, n in [*((f"data_batch_{i}", i) for i in range(1, 6)), ("test_batch", 2)]:
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        batches[name] = pickle.dumps({b"data": images, b"labels": list(range(n))})
    folder = tarfile.TarInfo("cifar-10-batches-py")
    folder.type = tarfile.DIRTYPE
    members = [(folder, None)]
    members += [_file(f"cifar-10-batches-py/{name}", data) for name, data in batches.items()]
    members.append(_file("cifar-10-batches-py/readme.html", b"<html></html>"))
    return _tar_gz(members), batches


def test_cifar10_downloads_and_unpacks(serve, tmp_path):
    archive, batches = _cifar_archive(np.random.default_rng(0))
    server = serve("cifar10", {"cifar-10-python.tar.gz": archive})
    to = tmp_path / "data"
    result = download("cifar10", "--to", to, "--mirror", server.url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[-1])
    assert [f["status"] for f in report["files"]] == ["downloaded"]
    assert (to / "cifar-10-python.tar.gz").read_bytes() == archive
    for name, data in batches.items():
        assert (to / "cifar-10-batches-py" / name).read_bytes() == data
    assert len(report["unpacked"]) == len(batches) + 1
    train = CIFAR10Dataset(to / "cifar-10-batches-py", train=True)
    assert len(train) == 1 + 2 + 3 + 4 + 5
    again = download("cifar10", "--to", to, "--mirror", server.url)
    assert again.exit_code == 0 and len(server.requests) == 1  # present: not fetched again
    folder = to / "cifar-10-batches-py"
    expected = f"read it with needle.data.CIFAR10Dataset('{folder}', train)"
    assert expected in "".join(again.stdout.split("\n"))  # rich wraps at the terminal width


def test_cifar10_wrong_sum_leaves_nothing(serve, tmp_path, monkeypatch):
    archive, _ = _cifar_archive(np.random.default_rng(1))
    server = serve("cifar10", {"cifar-10-python.tar.gz": archive})
    monkeypatch.setitem(download_module.SHA256, "cifar10", {"cifar-10-python.tar.gz": "0" * 64})
    to = tmp_path / "data"
    result = download("cifar10", "--to", to, "--mirror", server.url)
    message = one_line_error(result, 1)
    assert "cifar-10-python.tar.gz sent a file with SHA-256" in message
    assert list(to.iterdir()) == []


@pytest.mark.parametrize(
    "bad, why",
    [
        (_file("cifar-10-batches-py/../../escaped", b"x"), "has an absolute name or a '..' part"),
        (_file("/tmp/absolute-escape", b"x"), "has an absolute name or a '..' part"),
        ("symlink", "is a link or a special file"),
        ("hardlink", "is a link or a special file"),
    ],
)
def test_an_archive_that_reaches_outside_is_refused_before_writing(serve, tmp_path, bad, why):
    if bad in ("symlink", "hardlink"):
        info = tarfile.TarInfo("cifar-10-batches-py/link")
        info.type = tarfile.SYMTYPE if bad == "symlink" else tarfile.LNKTYPE
        info.linkname = "/etc/passwd"
        bad = (info, None)
    good = _file("cifar-10-batches-py/data_batch_1", b"first")
    server = serve("cifar10", {"cifar-10-python.tar.gz": _tar_gz([good, bad])})
    to = tmp_path / "a" / "b"
    result = download("cifar10", "--to", to, "--mirror", server.url)
    message = one_line_error(result, 1)
    assert message == (
        f"'{to / 'cifar-10-python.tar.gz'}' holds the member {bad[0].name!r}, which {why}; "
        "nothing was unpacked"
    )
    assert [p.name for p in to.iterdir()] == ["cifar-10-python.tar.gz"]  # the good one not either
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "a" / "escaped").exists()


def test_ptb_downloads_under_the_names_corpus_reads(serve, tmp_path):
    texts = {
        "ptb.train.txt": b" the cat sat \n the mat \n",
        "ptb.valid.txt": b" a cat \n",
        "ptb.test.txt": b" the dog \n",
    }
    server = serve("ptb", texts)
    to = tmp_path / "ptb"
    result = download("ptb", "--to", to, "--mirror", server.url)
    assert result.exit_code == 0, result.output
    for published, saved in download_module.SAVE_AS["ptb"].items():
        assert (to / saved).read_bytes() == texts[published]
    assert sorted(p.name for p in to.iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    corpus = Corpus(to)
    assert [corpus.dictionary.idx2word[i] for i in corpus.test] == ["the", "dog", "<eos>"]
    again = download("ptb", "--to", to, "--mirror", server.url)
    assert again.stdout.count("present") == 3 and len(server.requests) == 3
    assert f"read it with needle.data.Corpus('{to}')" in "".join(again.stdout.split("\n"))


def test_ptb_offline_names_the_saved_files(tmp_path, monkeypatch):
    monkeypatch.delenv(download_module.MIRROR_ENV, raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    to = tmp_path / "p"
    result = download("ptb", "--to", to, "--mirror", f"http://127.0.0.1:{port}/")
    assert one_line_error(result, 1).endswith(
        f"To install ptb by hand, put these files, as published, in '{to}': train.txt "
        "(published as ptb.train.txt), valid.txt (published as ptb.valid.txt), test.txt "
        "(published as ptb.test.txt) (SHA-256 sums are in needle/download.py); or fetch from "
        "another copy with --mirror URL or $NEEDLE_DATA_MIRROR."
    )


def test_the_table_is_whole_and_names_the_choices(tmp_path):
    """Every dataset in SHA256 has a mirror and a how-to-use line; the CLI's choices are that
    table's keys, so a name just outside it is refused with a suggestion."""
    table = download_module.SHA256
    assert set(download_module.MIRRORS) == set(table) == set(download_module.USE_WITH)
    for dataset, renames in download_module.SAVE_AS.items():
        assert set(renames) <= set(table[dataset])
    for dataset, archive in download_module.UNPACK.items():
        assert archive in table[dataset]
    result = download("cifar100", "--to", tmp_path)
    assert one_line_error(result, 2) == (
        "unknown dataset to download 'cifar100'; did you mean 'cifar10'?"
    )
