"""A disk cache of :func:`~robustbench_gcp.models.factory.model_info` for the registry's own models.

Describing a model builds it on the "meta" device; for the 29 registry models that takes
seconds, most of ``gcp-robust models`` and ``inspect``. The descriptions depend only on this
package's code and the versions of torch, torchvision and timm, so they are kept in one JSON
file, found again under a key made of those: any change of the code or a version is a new key,
and the file then starts afresh. Models registered from outside the package are never cached.

The file is ``model-info.json`` in gcp-robust's cache folder, beside fetched checkpoints
(``$GCP_ROBUST_CACHE``, else ``$XDG_CACHE_HOME/gcp-robust``, else ``~/.cache/gcp-robust``). It is
a courtesy: a file that cannot be read or written is passed over, and the description computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

from robustbench_gcp.fetch import cache_root

FILE_NAME = "model-info.json"
MAX_BYTES = 1 << 20  # a larger file is not this cache's (about 9 KB for the registry)
PACKAGE = Path(__file__).resolve().parent.parent  # robustbench_gcp/


def cache_file() -> Path:
    """Where the descriptions are kept: in :func:`~robustbench_gcp.fetch.cache_root`."""
    return cache_root() / FILE_NAME


@cache
def cache_key() -> str:
    """A hash of this package's source and the versions of the libraries that build the models."""
    digest = hashlib.sha256()
    # python -OO strips the docstrings that descriptions quote
    digest.update(f"python={sys.version_info[:2]} optimize={sys.flags.optimize}\n".encode())
    for name in ("torch", "torchvision", "timm"):
        try:
            digest.update(f"{name}={metadata.version(name)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name}=none\n".encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cacheable(entrypoint) -> bool:
    """Whether a model's description may be cached: the package's own models only."""
    return getattr(entrypoint, "__module__", "").startswith("robustbench_gcp.")


@cache
def _entries() -> dict[str, dict]:
    """The cached descriptions under the current key (none when the file is absent, unreadable,
    not a regular file (a FIFO would block), too large, of another key or not ours)."""
    path = cache_file()
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return {}
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict) or stored.get("key") != cache_key():
        return {}
    models = stored.get("models")
    return dict(models) if isinstance(models, dict) else {}


def cached(name: str, types: dict[str, tuple[type, ...]]) -> dict | None:
    """The cached description of ``name``, when it has exactly the fields of ``types`` with values
    of those types (a bool is no int); else None (it is described afresh)."""
    entry = _entries().get(name)
    if not isinstance(entry, dict) or set(entry) != set(types):
        return None
    for field, allowed in types.items():
        value = entry[field]
        if isinstance(value, bool) or not isinstance(value, allowed):
            return None
    return entry


def keep(name: str, info) -> None:
    """Add the description ``info`` (a dataclass) of ``name`` to the file, written whole and
    replaced atomically (concurrent writers: the last one wins, each file complete)."""
    path = cache_file()
    entries = _entries()
    entries[name] = dataclasses.asdict(info)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".model-info-", suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump({"key": cache_key(), "models": entries}, out)
        os.replace(temporary, path)
    except OSError:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
