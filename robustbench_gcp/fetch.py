"""Checkpoint files: hashing, and fetching URLs into a local cache.

Downloads happen only when a user names a URL (benchmarks.yaml or
``--checkpoint https://...``); tests and the demo use local files. A download
goes to a temporary name and is renamed only when complete (and, when a sha256
is known, verified), so an interrupted download never looks like a checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from robustbench_gcp.errors import (
    IS_A_FOLDER,
    NOT_REGULAR,
    CheckpointError,
    ConfigError,
    not_a_file,
    printable,
    real_path,
)
from robustbench_gcp.file_format import check_format

#: how a command that loads a checkpoint takes one (compare, the one without --checkpoint, by --model)
GIVE_FILE = "give the file (--checkpoint FILE; to compare, --model NAME=FILE)"


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def expected_sha256(expected: str) -> str:
    """A ``sha256`` as given (``--sha256``, benchmarks.yaml): its hex digits in lower case, a full
    digest or a prefix of at least 8, ``sha256:`` before them allowed.

    Raises:
        ConfigError: anything else.
    """
    want = str(expected).strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{8,64}", want):
        raise ConfigError(f"`sha256` (--sha256) should be 8 to 64 hexadecimal digits (a full SHA-256 or its "
                          f"prefix). Got {expected!r}")
    return want


def cache_root() -> Path:
    """gcp-robust's cache folder: ``$GCP_ROBUST_CACHE``, else ``$XDG_CACHE_HOME/gcp-robust``, else
    ``~/.cache/gcp-robust`` (fetched checkpoints; model descriptions)."""
    root = os.environ.get("GCP_ROBUST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gcp-robust"
    )
    return Path(root)


def cache_dir() -> Path:
    """Where fetched checkpoints are kept."""
    return cache_root() / "checkpoints"


def is_url(location: str) -> bool:
    return "://" in location


#: the URL schemes a checkpoint is downloaded from (urllib's)
SCHEMES = ("http", "https", "ftp", "file")


def unsupported_scheme(location: str, give_file: str = GIVE_FILE) -> str | None:
    """What to say of a URL whose scheme is not downloaded here (``s3://``, ``gs://``), else None."""
    scheme = urlparse(location).scheme.lower()
    if scheme in SCHEMES:
        return None
    return (f"gcp-robust downloads {', '.join(SCHEMES[:-1])} and {SCHEMES[-1]} URLs, not {scheme}://: "
            f"copy the file with your tools and {give_file}")


def malformed(location: str) -> str | None:
    """What is wrong with a URL that cannot be parsed, names no host, has a port that is no number
    or holds blanks (urllib said "no host given; without a network, fetch it elsewhere", that the
    server's reply was not HTTP, or Python's "Invalid IPv6 URL" came as a traceback), else None."""
    if location != location.strip():
        return "the URL has blanks around it (a line break copied with it?)"
    try:
        parts = urlparse(location)
        parts.port  # noqa: B018 - raises where the port is no number
    except ValueError as error:  # "Invalid IPv6 URL", "Port could not be cast to integer value"
        return f"the URL is malformed ({error})"
    if parts.scheme.lower() == "file":  # a local path: no host, and blanks as they are
        return None
    if not parts.hostname:
        return "the URL names no host"
    if any(char.isspace() for char in parts.netloc):
        return "the URL's host holds a blank"
    if any(char.isspace() for char in location):
        return "the URL holds a blank (write it as %20)"
    return None


#: the largest download taken (the largest checkpoints of the GCP model zoo are under 1 GiB)
MAX_DOWNLOAD_BYTES = 8 << 30


def resolve_checkpoint(location: str, *, sha256: str | None = None, source: str | None = None,
                       configured: bool = False, progress=None, give_file: str = GIVE_FILE) -> Path:
    """A local path for ``location`` (a path, or a URL fetched once into the cache).

    Args:
        configured: the location comes from benchmarks.yaml (not ``--checkpoint``): a missing
            local file is then also looked for in the cache folder under its file name, so the
            model-zoo files of the shipped configuration can be saved there once, wherever the
            package is installed, and the error says where to put the file.
        give_file: how the errors tell to give a local file instead (the command's own option).

    Raises:
        CheckpointError: the file does not exist, or the download failed.
    """
    if not is_url(location):
        path = Path(location).expanduser()
        said = not_a_file(path)  # a loop of links, a dangling link, a pipe: named as such
        if said is None:
            return path
        if said in (IS_A_FOLDER, NOT_REGULAR):
            raise CheckpointError(f"checkpoint file {path} {said}")
        hint = f" (source: {source})" if source else ""
        packaged = Path(__file__).resolve().parent / "resources"
        if configured and real_path(path).is_relative_to(packaged):  # package:NAME, of no download
            name = real_path(path).relative_to(packaged)
            hint += f"; package:{name} is no file of the package: check its name"
        elif configured:
            cached = cache_dir() / path.name
            if cached.is_file():
                return cached
            if said == "does not exist":
                hint += ("; environment variables are not expanded in benchmarks.yaml: write the path out "
                         "(~ is)" if "$" in location else  # benchmarks.yaml's paths are taken as written
                         f"; save the download there or in {cached.parent}, or {give_file}")
        raise CheckpointError(f"checkpoint file {path} {said}{hint}")
    if (problem := malformed(location)) is not None:  # urllib's errors blamed the network or the server
        raise CheckpointError(f"cannot download checkpoint {printable(location)}: {problem}")
    # urllib's "unknown url type" said offline
    if (problem := unsupported_scheme(location, give_file)) is not None:
        raise CheckpointError(f"cannot download checkpoint {location}: {problem}")
    want = expected_sha256(sha256) if sha256 is not None else None  # a bad one before the download
    name = Path(urlparse(location).path).name or "checkpoint.pth"
    # a folder per URL: files of one name (Google Drive's `uc`, `model_best.pth.tar`) are many files
    target = cache_dir() / hashlib.sha256(location.encode()).hexdigest()[:16] / name
    if target.is_file():  # downloaded before (an http:// one with its sha256 checked), or saved there
        return target
    if want is None and urlparse(location).scheme == "http":
        raise CheckpointError(f"cannot download checkpoint {location}: a plain http:// download without a "
                              "sha256 to check could be changed on its way; give its sha256 (--sha256, or "
                              "sha256: in benchmarks.yaml) or an https:// URL")
    flat = cache_dir() / name  # where gcp-robust 0.7.7 and before kept it: taken when its hash says so
    if want is not None and flat.is_file() and file_sha256(flat).startswith(want):
        return flat
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(location, timeout=60) as response:
            if want is None and urlparse(response.geturl()).scheme == "http":  # redirected to plain http
                raise CheckpointError(f"cannot download checkpoint {location}: it redirects to plain "
                                      f"{response.geturl()}, and without a sha256 to check the file could "
                                      "be changed on its way; give its sha256")
            total = int(response.headers.get("Content-Length") or 0)
            if progress is not None:
                progress.start_download(name, total)
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                done += len(block)
                if done > MAX_DOWNLOAD_BYTES:  # a server that never stops would fill the disk
                    raise CheckpointError(f"download of {location} is larger than {MAX_DOWNLOAD_BYTES:,} "
                                          "bytes: not a checkpoint of these models")
                if progress is not None:
                    progress.advance_download(len(block))
        if done < total:  # the connection closed early: http.client returns the bytes it got
            raise CheckpointError(f"cannot download checkpoint {location}: the download broke off after "
                                  f"{done:,} of {total:,} bytes; run the command again to download it again")
        # what a server sent instead (a login or quota page) is never cached: the next run would
        # take it for the file, with no download left to repeat (and its hash would only differ)
        check_format(Path(tmp), f"the download of {location}", name)
        actual = file_sha256(tmp) if want is not None else None
        if actual is not None and not actual.startswith(want):
            raise CheckpointError(f"download of {location} has sha256 {actual}, expected {want}")
        shutil.move(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as error:
        hint = ""  # HTTPException: a reply that is not HTTP, a chunked body cut off (IncompleteRead)
        offline = isinstance(error, (urllib.error.URLError, TimeoutError, ConnectionError)) \
            and urlparse(location).scheme.lower() != "file"  # a file:// URL to a missing file
        if isinstance(error, http.client.HTTPException) and not isinstance(error, ConnectionError):
            error = f"the server's reply broke off or is not HTTP ({type(error).__name__}: " \
                    f"{printable(str(error).strip())})"
        if offline and not isinstance(error, urllib.error.HTTPError):  # a server that answered
            hint = f"; without a network, fetch it elsewhere and {give_file}, or save it as {target}"
        raise CheckpointError(f"cannot download checkpoint {location}: {error}{hint}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        with contextlib.suppress(OSError):  # the URL's folder, left empty by a failed download
            target.parent.rmdir()
    return target
