"""Checkpoint locations: local files, the cache folder, and URLs (file:// here: no network)."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest
import torch

from robustbench_gcp.errors import CheckpointError, ConfigError
from robustbench_gcp.fetch import cache_dir, resolve_checkpoint


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GCP_ROBUST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints"


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "zoo" / "model-1234.pth"
    path.parent.mkdir()
    torch.save({"w": torch.arange(1000.0)}, path)
    return path


def test_cache_folder_follows_the_environment(cache):
    assert cache_dir() == cache


def test_local_files(weights, tmp_path, cache):
    assert resolve_checkpoint(str(weights)) == weights
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        resolve_checkpoint(str(tmp_path))
    missing = tmp_path / "missing.pth"
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint(str(missing))
    assert str(error.value) == f"checkpoint file {missing} does not exist"


def test_a_configured_file_is_also_found_in_the_cache(weights, tmp_path, cache):
    configured = tmp_path / "checkpoints" / weights.name  # where benchmarks.yaml points
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint(str(configured), source="a model zoo", configured=True)
    assert str(error.value) == (
        f"checkpoint file {configured} does not exist (source: a model zoo); save the download there "
        f"or in {cache}, or give the file (--checkpoint FILE; to compare, --model NAME=FILE)"
    )
    cache.mkdir(parents=True)
    (cache / weights.name).write_bytes(weights.read_bytes())
    assert resolve_checkpoint(str(configured), configured=True) == cache / weights.name
    with pytest.raises(CheckpointError, match="does not exist$"):  # --checkpoint: exactly that file
        resolve_checkpoint(str(configured))


def test_a_configured_dangling_link_is_found_in_the_cache_and_named_otherwise(weights, tmp_path, cache):
    """A benchmarks.yaml checkpoint that is a link to a file gone (an unmounted disk) is looked for
    in the cache, as a missing file is; without a copy there, the error says it is such a link."""
    configured = tmp_path / weights.name
    configured.symlink_to(tmp_path / "unmounted" / weights.name)
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint(str(configured), source="a model zoo", configured=True)
    assert str(error.value) == (f"checkpoint file {configured} is a symbolic link to "
                                f"{tmp_path / 'unmounted' / weights.name}, which does not exist (source: a "
                                "model zoo)")
    cache.mkdir(parents=True)
    (cache / weights.name).write_bytes(weights.read_bytes())
    assert resolve_checkpoint(str(configured), configured=True) == cache / weights.name


def test_a_configured_path_with_a_variable_says_variables_are_not_expanded(tmp_path, cache):
    """benchmarks.yaml's `checkpoint: $HOME/x.pth` became <config folder>/$HOME/x.pth, and the error
    told the user to save the download there."""
    configured = tmp_path / "$HOME" / "x.pth"
    with pytest.raises(CheckpointError, match=r"\$HOME/x.pth does not exist; environment variables are not "
                                              r"expanded in benchmarks.yaml: write the path out \(~ is\)$"):
        resolve_checkpoint(str(configured), configured=True)
    with pytest.raises(CheckpointError, match=r"x.pth does not exist$"):  # --checkpoint: the shell expands
        resolve_checkpoint(str(configured))


def test_url_is_downloaded_once_and_verified(weights, cache):
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    url = weights.as_uri()
    path = resolve_checkpoint(url, sha256=digest[:8].upper())  # a prefix, any case, as for a file
    assert path.parent.parent == cache and path.name == weights.name
    assert path.read_bytes() == weights.read_bytes()
    weights.unlink()  # the second call uses the cached copy
    assert resolve_checkpoint(url, sha256=digest) == path
    # another file of the same name (every Google Drive link is `uc`): another download, not this one
    other = weights.parent / "elsewhere" / weights.name
    other.parent.mkdir()
    torch.save({"w": torch.ones(3)}, other)
    again = resolve_checkpoint(other.as_uri())
    assert again != path and again.read_bytes() == other.read_bytes() != path.read_bytes()
    # a file fetched by gcp-robust 0.7.7 or before, in the cache folder itself: used when its hash says so
    flat = cache / "legacy.pth"
    flat.write_bytes(b"legacy weights")
    gone = "file:///nowhere/legacy.pth"
    assert resolve_checkpoint(gone, sha256=hashlib.sha256(b"legacy weights").hexdigest()[:10]) == flat
    with pytest.raises(CheckpointError, match="cannot download checkpoint"):  # no hash: not taken for it
        resolve_checkpoint(gone)
    with pytest.raises(ConfigError, match="should be 8 to 64 hexadecimal digits"):  # before downloading
        resolve_checkpoint("https://example.invalid/w.pth", sha256="xyz")


def test_a_corrupt_download_leaves_nothing_behind(weights, cache):
    with pytest.raises(CheckpointError, match=f"has sha256 [0-9a-f]{{64}}, expected {'0' * 64}"):
        resolve_checkpoint(weights.as_uri(), sha256="0" * 64)
    assert list(cache.iterdir()) == []  # neither the file nor its partial download
    with pytest.raises(CheckpointError, match="cannot download checkpoint file://") as failed:
        resolve_checkpoint((weights.parent / "gone.pth").as_uri())
    assert list(cache.iterdir()) == []
    assert "No such file" in str(failed.value) and "without a network" not in str(failed.value)  # it said so
    # offline, where no server answers: where a copy fetched elsewhere goes (a 404 is not offline)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(CheckpointError, match="cannot download checkpoint http://") as failed:
        resolve_checkpoint(f"http://127.0.0.1:{port}/gone.pth", sha256="0" * 64)
    assert list(cache.iterdir()) == []
    assert re.search(r"without a network, fetch it elsewhere and give the file \(--checkpoint FILE; "
                     r"to compare, --model NAME=FILE\), or save it as "
                     rf"{re.escape(str(cache))}/[0-9a-f]{{16}}/gone\.pth$", str(failed.value)), failed.value


def test_a_page_sent_instead_of_the_file_is_not_cached(weights, cache):
    """A login or quota page saved as the checkpoint broke every later run: the cached copy was taken
    as it was, and the error's advice (download it again) could not be followed."""
    page = weights.parent / "uc"
    page.write_text("<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head></html>")
    with pytest.raises(CheckpointError) as error:
        resolve_checkpoint(page.as_uri())
    assert str(error.value).startswith(f"the download of {page.as_uri()} is an HTML page titled 'Google "
                                       "Drive - Quota exceeded', not a checkpoint"), error.value
    assert not any(path.is_file() for path in cache.rglob("*"))  # nothing kept, no partial file
    with pytest.raises(CheckpointError, match="is an HTML page titled"):  # not "has sha256 ..., expected"
        resolve_checkpoint(page.as_uri(), sha256="f37072fd")
    page.write_bytes(weights.read_bytes())  # the server sends the file: the next run downloads it
    assert resolve_checkpoint(page.as_uri()).read_bytes() == weights.read_bytes()


def test_checkpoint_errors_of_a_benchmarks_yaml_model_name_its_entry(tmp_path, gap_checkpoint, demo_val):
    """A wrong arch, a package: typo or a wrong sha256 in benchmarks.yaml gave errors that named the
    file and --model only (and, for a packaged file, advice to save a download)."""
    import torch
    from click.testing import CliRunner

    from robustbench_gcp.cli import main
    from robustbench_gcp.models import create_model as reference_model

    zeros = "0" * 64
    (tmp_path / "b.yaml").write_text(
        "models:\n"
        f"  my-r18: {{arch: resnet18-isqrt, checkpoint: {gap_checkpoint}}}\n"
        "  typo: {arch: demo-gap, checkpoint: 'package:demo/demo-gapp.pth'}\n"
        f"  badsha: {{arch: resnet18-gap, checkpoint: {gap_checkpoint}, sha256: '{zeros}'}}\n"
        "suites:\n  clean: {}\n")
    entry = "[checkpoint, sha256 and arch from models.{} of " + str(tmp_path / "b.yaml") + "]"
    torch.save(reference_model("resnet18-isqrt").state_dict(), tmp_path / "isqrt.pth")
    (tmp_path / "b.yaml").write_text((tmp_path / "b.yaml").read_text().replace(
        "suites:", f"  mp: {{arch: resnet18-mpncov, checkpoint: {tmp_path / 'isqrt.pth'}}}\nsuites:"))
    expected = {
        "my-r18": r"It fits 'resnet18-gap' \(1000 classes\): set models\.my-r18\.arch to resnet18-gap\. ",
        "mp": r"It fits 'resnet18-isqrt' \(d=256, 1000 classes\): set models\.mp\.arch to resnet18-isqrt, "
              r"and pass --sqrt eig to evaluate it with the eig square root\. ",
        "typo": r"demo-gapp\.pth does not exist; package:demo/demo-gapp\.pth is no file of the package: "
                r"check its name ",
        "badsha": f"sha256 mismatch for '{re.escape(str(gap_checkpoint))}': expected {zeros}",
    }
    for name, message in expected.items():
        result = CliRunner().invoke(main, ["eval", "--config", str(tmp_path / "b.yaml"), "--model", name,
                                           "--suite", "clean", "--data", str(demo_val), "--class-order",
                                           "sorted", "--limit", "10", "--store", str(tmp_path / "s.db")])
        text = " ".join(result.output.split())
        assert result.exit_code == 1 and re.search(message, text), text
        assert text.endswith(entry.format(name)), text
    # given on the command line, the file is the user's: no entry named
    result = CliRunner().invoke(main, ["eval", "--config", str(tmp_path / "b.yaml"), "--model", "my-r18",
                                       "--checkpoint", str(gap_checkpoint), "--suite", "clean", "--data",
                                       str(demo_val), "--class-order", "sorted", "--limit", "10",
                                       "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 1 and "use --model resnet18-gap." in result.output
    assert "models.my-r18" not in result.output


def test_a_server_that_answers_an_error_gets_no_offline_hint(tmp_path, cache):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(CheckpointError) as error:
            resolve_checkpoint(f"http://127.0.0.1:{server.server_port}/nope.pth", sha256="0" * 64)
    finally:
        server.shutdown()
        server.server_close()
    assert "HTTP Error 404" in str(error.value) and "without a network" not in str(error.value)


def test_plain_http_needs_a_sha256_and_a_download_has_a_size_limit(tmp_path, cache, monkeypatch):
    """A plain http:// download without a hash to check could be changed on its way, and a server
    that never stopped would fill the disk (security audit)."""
    import functools
    import http.server
    import threading

    import robustbench_gcp.fetch as fetch

    with pytest.raises(CheckpointError, match="a plain http:// download without a sha256 to check could be "
                                              "changed on its way"):
        resolve_checkpoint("http://example.invalid/w.pth")
    (tmp_path / "big.pth").write_bytes(bytes(4096))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(fetch, "MAX_DOWNLOAD_BYTES", 1000)
    try:
        with pytest.raises(CheckpointError, match="is larger than 1,000 bytes: not a checkpoint"):
            resolve_checkpoint(f"http://127.0.0.1:{server.server_port}/big.pth", sha256="0" * 64)
    finally:
        server.shutdown()
        server.server_close()
    assert not list(cache.rglob("*.part"))


def test_a_url_of_a_scheme_not_downloaded_here_says_so(tmp_path, monkeypatch):
    """s3:// failed with urllib's "unknown url type" and a hint to fetch it without a network."""
    from robustbench_gcp.errors import CheckpointError
    from robustbench_gcp.fetch import resolve_checkpoint

    monkeypatch.setenv("GCP_ROBUST_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"s3://b/r\.pth: gcp-robust downloads http, https, ftp and "
                                              r"file URLs, not s3://: copy the file with your tools"):
        resolve_checkpoint("s3://b/r.pth")
    assert not any(tmp_path.rglob("*.part"))


def test_an_https_download_redirected_to_plain_http_needs_a_sha256(cache, monkeypatch):
    import io
    import urllib.request

    class Redirected(io.BytesIO):
        headers: dict = {}

        def geturl(self):
            return "http://mirror.invalid/w.pth"

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Redirected(b"weights"))
    with pytest.raises(CheckpointError, match="it redirects to plain http://mirror.invalid/w.pth, and "
                                              "without a sha256"):
        resolve_checkpoint("https://example.invalid/w.pth")


def test_a_sha256_is_8_to_64_digits_and_checked_whole(cache, weights):
    """A prefix shorter than 8 digits is refused (one digit matches one file in 16); a full digest
    is compared whole (its first 8 digits alone passed, the test's wrong digest differing within
    them)."""
    from robustbench_gcp.fetch import expected_sha256

    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    for short in (digest[:7], digest[:1]):
        with pytest.raises(ConfigError, match="should be 8 to 64 hexadecimal digits"):
            expected_sha256(short)
    with pytest.raises(ConfigError, match="should be 8 to 64 hexadecimal digits"):
        resolve_checkpoint(weights.as_uri(), sha256=digest[:1])
    wrong = digest[:8] + ("0" * 56 if digest[8:] != "0" * 56 else "1" * 56)
    with pytest.raises(CheckpointError, match="has sha256"):
        resolve_checkpoint(weights.as_uri(), sha256=wrong)
    assert resolve_checkpoint(weights.as_uri(), sha256=digest).is_file()


def test_a_file_in_the_older_cache_place_is_taken_only_with_its_hash(cache):
    """0.7.7 kept downloads as checkpoints/<name>: such a file stands for a URL of that name only when
    the given sha256 says it is that file (any sha256 let it through)."""
    cache.mkdir(parents=True)
    (cache / "legacy.pth").write_bytes(b"legacy weights")
    with pytest.raises(CheckpointError, match="cannot download"):
        resolve_checkpoint("file:///nowhere/legacy.pth", sha256="0" * 64)
    digest = hashlib.sha256(b"legacy weights").hexdigest()
    assert resolve_checkpoint("file:///nowhere/legacy.pth", sha256=digest) == cache / "legacy.pth"


def one_reply_server(reply: bytes) -> int:
    """A port on 127.0.0.1 whose one connection gets ``reply`` (whatever the request) and is closed."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def answer():
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(reply)

    threading.Thread(target=answer, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize("reply, match", [
    (b"HELLO THERE\r\n\r\n", r"the server's reply broke off or is not HTTP \(BadStatusLine: HELLO THERE\)$"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nPK\x03\x04",
     r"the server's reply broke off or is not HTTP \(IncompleteRead: "),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nPK\x03\x04",
     "the download broke off after 4 of 5,000 bytes; run the command again to download it again$"),
], ids=["not-http", "chunked-cut", "length-cut"])
def test_a_download_that_breaks_off_is_said_to_and_leaves_nothing(cache, reply, match):
    """A reply that is not HTTP or whose chunked body was cut off raised http.client's exceptions (a
    traceback); one cut short of its Content-Length was called a damaged checkpoint."""
    port = one_reply_server(reply)
    start = rf"^cannot download checkpoint http://127\.0\.0\.1:{port}/w\.pth: "
    with pytest.raises(CheckpointError, match=start + match):
        resolve_checkpoint(f"http://127.0.0.1:{port}/w.pth", sha256="0" * 64)
    assert not cache.exists() or not list(cache.rglob("*"))


def test_a_sha256_of_the_command_line_is_not_said_to_come_from_benchmarks_yaml(demo_val, tmp_path):
    """`--sha256 deadbeef` on demo-gap: the error's bracket said "checkpoint, sha256 and arch from
    models.demo-gap of benchmarks.yaml", though the hash was the command line's."""
    from click.testing import CliRunner

    from robustbench_gcp.cli import main
    from robustbench_gcp.config import default_config_path

    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", "--sha256", "deadbeef", "--data",
                                       str(demo_val), "--class-order", "sorted", "--store",
                                       str(tmp_path / "s.db")])
    assert result.exit_code == 1
    assert " ".join(result.stderr.split()).endswith(
        f"[checkpoint and arch from models.demo-gap of {default_config_path()}]")


@pytest.mark.parametrize(("url", "said"), [
    ("https://", "the URL names no host"),
    ("https:///weights/x.pth", "the URL names no host"),
    ("https://exa mple.com/x.pth", "the URL's host holds a blank"),
    ("https://example.com/my weights.pth", r"the URL holds a blank \(write it as %20\)"),
    ("https://example.com/x.pth\n", r"the URL has blanks around it \(a line break copied with it\?\)"),
    ("https://[::1/x.pth", r"the URL is malformed \(Invalid IPv6 URL\)"),  # was a traceback
    ("https://example.com:abc/x.pth", r"the URL is malformed \(Port could not be cast to integer value"),
])
def test_a_malformed_url_is_said_so_not_the_network(url, said, cache):
    """urllib's "no host given" came with "without a network, fetch it elsewhere", and a blank in
    the host with "the server's reply broke off or is not HTTP": nothing was asked of a server."""
    shown = re.escape(url.replace("\n", "\\n"))
    with pytest.raises(CheckpointError, match=rf"^cannot download checkpoint {shown}: {said}"):
        resolve_checkpoint(url)
    assert not cache_dir().exists() or not any(cache_dir().iterdir())  # nothing fetched


def test_a_file_url_with_a_blank_is_read(weights, tmp_path, cache):
    spaced = tmp_path / "my weights.pth"
    spaced.write_bytes(weights.read_bytes())
    path = resolve_checkpoint(f"file://{spaced}")
    assert path.read_bytes() == weights.read_bytes()


def test_a_cached_http_download_is_used_without_its_sha256(cache, weights):
    """A plain http:// URL is downloaded only with a sha256 to check; once in the cache (an eval with
    --sha256 put it there) it is used without one: `inspect URL` refused it (helper-288)."""
    import hashlib as _hashlib

    url = "http://127.0.0.1:9/zoo/model-1234.pth"  # nothing listens there: no download is tried
    with pytest.raises(CheckpointError, match="a plain http:// download without a sha256"):
        resolve_checkpoint(url)
    target = cache / _hashlib.sha256(url.encode()).hexdigest()[:16] / weights.name
    target.parent.mkdir(parents=True)
    target.write_bytes(weights.read_bytes())
    assert resolve_checkpoint(url) == target
