"""Fetching raw files: mirror folder by name, checksum, clear errors, and no partial file after a failure."""
import functools
import hashlib
import http.server
import os
import threading
import time

import pytest

from conftest import HalfPayloadServer
from kdstgcn.data.download import (MIRROR_ENV, DownloadError, check_mirror, fetch, mirror_folder, missing_files_message,
                              unavailable_files, url_problem)

PAYLOAD = bytes(range(256)) * 800  # 204,800 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
UNREACHABLE = "http://127.0.0.1:9/x"  # discard port: connection refused at once


def leftovers(folder):
    """Everything in the target folder (temporary .part files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def mirror(tmp_path):
    nested = tmp_path / "mirror" / "pems08" / "deeper"
    nested.mkdir(parents=True)
    (nested / "data.bin").write_bytes(PAYLOAD)
    (tmp_path / "mirror" / "other.bin").write_bytes(b"not it")
    return tmp_path / "mirror"


def test_fetch_from_nested_mirror_verifies_checksum(mirror, tmp_path):
    target = tmp_path / "raw" / "data.bin"
    source = fetch("data.bin", [UNREACHABLE], SHA, target, mirror)
    assert source.endswith(os.path.join("pems08", "deeper", "data.bin"))
    assert target.read_bytes() == PAYLOAD
    assert leftovers(target.parent) == ["data.bin"]


def test_config_mirror_wins_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "env"))
    assert mirror_folder("") == tmp_path / "env"
    assert mirror_folder(str(tmp_path / "cfg")) == tmp_path / "cfg"
    monkeypatch.delenv(MIRROR_ENV)
    assert mirror_folder("") is None


def test_wrong_checksum_leaves_nothing(mirror, tmp_path):
    target = tmp_path / "raw" / "data.bin"
    with pytest.raises(DownloadError, match="sha256") as info:
        fetch("data.bin", [], "0" * 64, target, mirror)
    assert "data.bin" in str(info.value)
    assert not target.exists()
    assert leftovers(target.parent) == []


def test_no_mirror_and_no_network_says_how_to_supply_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    target = tmp_path / "raw" / "pems08_288_62_170.mat"
    tic = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        fetch("pems08_288_62_170.mat", [UNREACHABLE], SHA, target, mirror_folder(""), timeout=10)
    assert time.perf_counter() - tic < 10
    message = str(info.value)
    assert "pems08_288_62_170.mat" in message
    assert "`mirror`" in message  # the config key
    assert MIRROR_ENV in message
    assert UNREACHABLE in message
    assert leftovers(target.parent) == []


def test_mirror_without_the_file_falls_back_and_says_so(mirror, tmp_path):
    with pytest.raises(DownloadError, match="has no file named missing.csv"):
        fetch("missing.csv", [UNREACHABLE], None, tmp_path / "raw" / "missing.csv", mirror, timeout=5)


def test_directory_as_source_leaves_no_file(tmp_path):
    """A source that fails midway (here: a directory, which cannot be copied) leaves no target and no temp file."""
    (tmp_path / "mirror" / "data.bin").mkdir(parents=True)  # a folder with the file's name is not the file
    folder = tmp_path / "raw"
    with pytest.raises(DownloadError):
        fetch("data.bin", [str(tmp_path / "mirror" / "data.bin")], None, folder / "data.bin", tmp_path / "mirror")
    assert leftovers(folder) == []


def test_interrupted_download_with_checksum_leaves_no_file(tmp_path):
    target = tmp_path / "raw" / "data.bin"
    with HalfPayloadServer(PAYLOAD) as server, pytest.raises(DownloadError):
        fetch("data.bin", [server.url], SHA, target, None, timeout=10)
    assert leftovers(target.parent) == []


def test_interrupted_download_without_checksum_leaves_no_file(tmp_path):
    target = tmp_path / "raw" / "data.bin"
    with HalfPayloadServer(PAYLOAD) as server, pytest.raises(DownloadError):
        fetch("data.bin", [server.url], None, target, None, timeout=10)
    assert leftovers(target.parent) == []


# ---------------------------------------------------------------------------------------------------------
# the check before any job: which raw files no source provides
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def file_server(tmp_path):
    """A local HTTP server of one folder (HEAD and GET; 404 for a missing file)."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "served.csv").write_text("1,2\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_every_unavailable_file_is_named_and_present_ones_are_not(mirror, tmp_path, file_server):
    raw = tmp_path / "results" / "ds" / "raw"
    raw.mkdir(parents=True)
    (raw / "already.csv").write_text("here")
    needed = {str(raw / "already.csv"): [UNREACHABLE],             # downloaded before
              str(raw / "data.bin"): [UNREACHABLE],                # in the mirror (nested)
              str(raw / "served.csv"): [f"{file_server}/served.csv"],  # at a URL that answers
              str(raw / "gone.csv"): [f"{file_server}/gone.csv", UNREACHABLE],
              str(raw / "nowhere.csv"): [UNREACHABLE],
              str(raw / "no_url.csv"): []}
    tic = time.perf_counter()
    lines = unavailable_files(needed, mirror, timeout=3)
    assert time.perf_counter() - tic < 5
    assert [line.split(" (")[0] for line in lines] == [str(raw / n) for n in ("gone.csv", "no_url.csv", "nowhere.csv")]
    assert "HTTP 404" in lines[0] and "refused" in lines[2].lower() and "no URL configured" in lines[1]
    assert all(f"not in the mirror {mirror}" in line for line in lines)
    message = missing_files_message(lines)
    assert message.startswith("3 raw file(s)") and "`mirror`" in message and MIRROR_ENV in message


def test_a_server_that_refuses_head_still_counts_as_a_source():
    with HalfPayloadServer(PAYLOAD) as server:  # answers GET only: HEAD gets 501
        assert url_problem(server.url, timeout=3) is None


def test_a_mirror_folder_that_does_not_exist_is_rejected(tmp_path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    with pytest.raises(DownloadError, match="mirror folder .*nonexistent does not exist.*`mirror`"):
        check_mirror(str(tmp_path / "nonexistent"))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "nonexistent"))
    with pytest.raises(DownloadError, match=MIRROR_ENV):
        check_mirror("")
    assert check_mirror(str(tmp_path)) == tmp_path
