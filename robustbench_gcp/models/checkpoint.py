"""Turning a checkpoint file into a state dict with the project's key names (timm style).

Only files and tensors live here: nothing in this module knows the registered
models (matching, strict loading and :func:`inspect_checkpoint` are in
:mod:`robustbench_gcp.models.loading`). The layers:

1. :func:`read_checkpoint`: recognize the file (zip / pickle / safetensors, or an HTML
   page, a MindSpore ``.ckpt``, a truncated file ...) and ``torch.load`` it with
   ``weights_only=True``; a few harmless non-tensor types that training scripts
   store (NumPy scalars and arrays, ``argparse.Namespace``) are allow-listed,
   nothing else is ever unpickled.
2. :func:`select_state_dict`: the inner dict (``state_dict_ema`` first unless ``ema=False``,
   ``state_dict``, ``model``, ``model_state_dict``, ``net``, or the bare dict of tensors).
3. :func:`strip_wrappers`: drop ``module.`` (DataParallel, wherever it stands in a
   key, e.g. ``features.module.0``) and ``_orig_mod.`` (torch.compile).
4. :func:`~robustbench_gcp.models.layouts.detect_layout` and
   :func:`~robustbench_gcp.models.layouts.remap`: rename the published layouts
   (:mod:`robustbench_gcp.models.layouts`) onto the project's module names. Decided by key
   names only, never by file names.

:func:`read_state_dict` runs steps 1-4 (and checks the file's SHA-256);
:func:`checkpoint_dims` reads the number of classes and the width d from the
renamed tensors. Step 5, the strict load, is
:func:`robustbench_gcp.models.loading.load_strict`.

Example:
    >>> loaded = read_state_dict("mpncovresnet50-15991845.pth")  # doctest: +SKIP
    >>> loaded.layout.name, checkpoint_dims(loaded.tensors)  # doctest: +SKIP
    ('layer-reduce', (1000, 256))
"""

from __future__ import annotations

import math
import pickle
import re
import struct
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from robustbench_gcp.errors import CheckpointError, listed, not_a_file
from robustbench_gcp.fetch import SCHEMES, expected_sha256, file_sha256
from robustbench_gcp.file_format import check_format, safetensors_end, truncated
from robustbench_gcp.models.layouts import (
    AS_SAVED,
    LAYOUTS,
    Layout,
    UnknownLayoutError,
    detect_layout,
    refuse_collisions,
    remap,
    under_one_prefix,
)
from robustbench_gcp.pickle_scan import (
    code_global,
    data_pickle,
    pickles_complete,
    protocol_opcode,
    torch_legacy,
)

__all__ = [
    "AS_SAVED",
    "CLASSIFIER_WEIGHTS",
    "CONTAINER_KEYS",
    "EMA_KEYS",
    "LAYOUTS",
    "WRAPPER_COMPONENTS",
    "Layout",
    "StateDict",
    "UnknownLayoutError",
    "check_sha256",
    "checkpoint_dims",
    "detect_layout",
    "read_checkpoint",
    "read_state_dict",
    "remap",
    "select_state_dict",
    "strip_wrappers",
]

#: dict entries that may hold the weights, in order of preference: a training file's EMA
#: weights first, as the original evaluations use them (timm's train.py, e.g. DeiT + DropCov)
CONTAINER_KEYS = ("state_dict_ema", "state_dict", "model", "model_state_dict", "net")
#: the entries of CONTAINER_KEYS that hold EMA weights (passed over with ``ema=False``)
EMA_KEYS = ("state_dict_ema",)
#: key components removed wherever they stand
WRAPPER_COMPONENTS = ("module", "_orig_mod")
#: the last classifier weight of each architecture (project names); its rows are the classes
CLASSIFIER_WEIGHTS = ("fc.weight", "classifier.6.weight", "classifier.1.weight", "head.weight",
                      "classifier.cls_fc.weight")


# ----------------------------------------------------------------------------- files


def check_sha256(path: str | Path, expected: str, actual: str | None = None) -> str:
    """Compare the file's SHA-256 (``actual`` where it was computed already) with ``expected`` (full
    digest or a prefix of >= 8 hex digits).

    Returns:
        The file's full digest.

    Raises:
        ConfigError: ``expected`` is not hex of length 8..64.
        CheckpointError: the digests differ.
    """
    want = expected_sha256(expected)
    actual = actual or file_sha256(path)
    if not actual.startswith(want):
        # the digest given may be the wrong one: only a new download was advised (helper-227)
        raise CheckpointError(
            f"sha256 mismatch for '{path}': expected {want}, got {actual}. Either the file is "
            "incomplete, corrupted or another one (download or copy it again), or the digest given "
            "(--sha256, or the configuration's sha256:) is not this file's."
        )
    return actual


def _safe_globals() -> list:
    """Harmless non-tensor types found in training checkpoints, for the weights-only unpickler."""
    import argparse
    import types

    allowed: list = [argparse.Namespace, types.SimpleNamespace]  # a training script's settings
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with torch in practice
        return allowed
    core = getattr(np, "_core", None) or np.core
    for obj in (core.multiarray.scalar, core.multiarray._reconstruct):
        allowed.append(obj)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # NumPy 1 and 2 names
            allowed.append((obj, f"{module}.{obj.__name__}"))
    allowed += [np.dtype, np.ndarray]
    allowed += [getattr(np.dtypes, n) for n in dir(getattr(np, "dtypes", None))
                if n.endswith("DType")]
    return allowed


#: torch.load(weights_only=True) runs code from crafted files before 2.6 (CVE-2025-32434)
SAFE_TORCH = (2, 6)


def check_torch_version(version: str | None = None) -> None:
    """Refuse to unpickle checkpoints with a torch whose weights-only loading is unsafe.

    Raises:
        CheckpointError: torch older than :data:`SAFE_TORCH`.
    """
    version = version or torch.__version__
    found = re.match(r"(\d+)\.(\d+)", version)
    if found and tuple(map(int, found.groups())) < SAFE_TORCH:
        raise CheckpointError(f"torch {version} runs code from crafted checkpoint files even with "
                              "weights_only=True (CVE-2025-32434): gcp-robust needs torch 2.6 or newer "
                              "to read checkpoints; upgrade it (pip install -U torch torchvision)")


#: what to do with a file of a pickle protocol that weights-only loading cannot read
_SAVE_AGAIN = ("Only if you trust the file and where it came from, load it yourself with "
               "torch.load(..., weights_only=False) and save it again with torch.save's default protocol")


def _old_protocol(path: Path, kind: str) -> bool:
    """Whether the pickle of a checkpoint (a zip's ``data.pkl``) has no PROTO opcode: protocol 0 or
    1 (``torch.save(..., pickle_protocol=0)``), which ``weights_only=True`` cannot read (a zip of
    one was called damaged)."""
    import zipfile

    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                member = data_pickle(archive)
                first = archive.open(member).read(1) if member else b"\x80"
        else:
            with open(path, "rb") as handle:
                first = handle.read(1)
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    from robustbench_gcp.file_format import OLD_PICKLE_FIRST_BYTES

    return first in OLD_PICKLE_FIRST_BYTES  # (garbage in a zip's data.pkl is damage)


def _runs_code(path: Path, name: str) -> CheckpointError:
    return CheckpointError(
        f"'{path}' was refused: unpickling it would import and call {name}, i.e. run code from "
        "the file. gcp-robust loads checkpoints with weights_only=True and never runs a "
        "file's code; get the weights from a source you trust."
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (timm's and the hub's format: tensors only, no code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        end = safetensors_end(path)  # cut off after its header: "incomplete metadata"
        if end is not None and end > path.stat().st_size:
            raise truncated(path, f"a safetensors file whose tensors end at byte {end:,}") from None
        raise CheckpointError(f"'{path}' is a safetensors file that cannot be read: {error}") from None


def read_checkpoint(path: str | Path) -> Any:
    """Load a checkpoint file with ``torch.load(..., map_location="cpu", weights_only=True)``.

    Raises:
        CheckpointError: the file is missing, empty, an HTML page (failed Google
            Drive download), a MindSpore checkpoint, truncated, not a PyTorch
            file, or holds Python objects the weights-only unpickler refuses.
    """
    if str(path).lower().startswith(tuple(f"{scheme}://" for scheme in SCHEMES)):  # file:// was "file:/..."
        raise CheckpointError(f"'{path}' is a URL: download the checkpoint and pass the file")
    path = Path(path)
    if (said := not_a_file(path)) is not None:
        raise CheckpointError(f"checkpoint file {path} {said}")
    kind = check_format(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    check_torch_version()
    try:
        with warnings.catch_warnings():
            # torch's warnings of what a file holds (a pickle protocol, quantized or sparse tensors):
            # not the user's to act on; what is wrong with the file is said below, or after reading
            warnings.simplefilter("ignore")
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        blocked = re.search(r"GLOBAL (\S+) whose module \S+ is blocked", message)
        code = blocked.group(1) if blocked else code_global(path, kind)
        if code is not None:
            raise _runs_code(path, code) from None
        unsafe = re.search(r"GLOBAL ([A-Za-z_][\w.]*) was not an allowed global", message)  # not damaged
        if unsafe and (kind == "zip" or pickles_complete(path)):
            raise CheckpointError(
                f"'{path}' contains Python objects that are not loaded with weights_only=True "
                f"(first: {unsafe.group(1)}); gcp-robust never unpickles arbitrary code, and cannot "
                "tell what unpickling them would run. Only if you trust the file and where it came "
                "from, load it yourself with torch.load(..., weights_only=False) and save its weights "
                "alone with torch.save: the module's state_dict(), or the training file's "
                "'state_dict' entry"
            ) from None
        if unsafe or "truncated" in message or "was not an allowed global" in message:
            raise truncated(path, "the pickle stream breaks off") from None
        reason = re.search(r"(Unsupported operand (\d+)|Invalid magic number[^.]*)", message)
        with open(path, "rb") as handle:
            torch_file = kind == "zip" or torch_legacy(handle.read(64))
        if torch_file and reason and reason.group(2) and protocol_opcode(int(reason.group(2))):
            raise CheckpointError(
                f"'{path}' was saved with pickle protocol 4 or 5 (opcode {reason.group(2)}), which "
                f"torch.load(weights_only=True) cannot read (or it is damaged). {_SAVE_AGAIN}") from None
        if reason and reason.group(2) and _old_protocol(path, kind):
            raise CheckpointError(
                f"'{path}' is a pickle of protocol 0 or 1 (opcode {reason.group(2)}), which "
                f"torch.load(weights_only=True) cannot read. {_SAVE_AGAIN}") from None
        if kind == "zip":  # torch.save's archive, with its data.pkl damaged
            raise truncated(path, reason.group(1) if reason else message) from None
        raise CheckpointError(
            f"'{path}' is a Python pickle but not a PyTorch checkpoint"
            f"{f' ({reason.group(1)})' if reason else ''}."
        ) from None
    except EOFError:
        raise truncated(path, "unexpected end of file") from None
    except MemoryError:  # a crafted array or storage of a size no machine holds
        raise CheckpointError(f"'{path}' declares more data than this machine's memory holds: it is "
                              "damaged or not a checkpoint") from None
    except (IndexError, KeyError, TypeError, ValueError, struct.error, AssertionError,
            AttributeError) as error:  # a broken legacy stream ("storage key ... not found", a tuple read
        raise truncated(path, f"{type(error).__name__}: {error}") from None  # where a tensor stands)
    except RuntimeError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "Invalid magic number" in message:  # a pickle, but not written by torch.save
            code = code_global(path, kind)
            if code is not None:
                raise _runs_code(path, code) from None
            raise CheckpointError(
                f"'{path}' is a Python pickle but not a PyTorch checkpoint ({message})."
            ) from None
        if "EOF" in message or "zip archive" in message or "corrupt" in message.lower():
            raise truncated(path, message) from None
        raise CheckpointError(f"'{path}' cannot be read by torch.load: {message}") from None


# ------------------------------------------------------------------------ state dicts


def select_state_dict(obj: Any, *, ema: bool = True) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The dict of tensors inside a loaded checkpoint.

    Looks at the object itself (a bare state dict), then, one level at a time,
    under :data:`CONTAINER_KEYS` (``state_dict_ema``, ``state_dict``, ``model``).

    Args:
        obj: what ``torch.load`` returned.
        ema: take a training file's EMA weights (``state_dict_ema``) when it has them;
            False takes the raw ones (``state_dict`` / ``model``).

    Returns:
        ``(state_dict, path)``: ``path`` lists the container keys followed.

    Raises:
        CheckpointError: no dict of tensors is found (the message lists what is there), or
            ``ema=False`` and the file holds EMA weights only.
    """
    keys = CONTAINER_KEYS if ema else tuple(k for k in CONTAINER_KEYS if k not in EMA_KEYS)
    obj = arrays_as_tensors(obj)
    route: list[str] = []
    for _ in range(4):
        if not isinstance(obj, Mapping):
            where = "".join(f"[{k!r}]" for k in route) or "the file"
            raise CheckpointError(
                f"{where} contains a {type(obj).__name__}, not a state dict (a dict of tensors)"
            )
        if obj and all(isinstance(v, torch.Tensor) or f"{k}".endswith("_extra_state")
                       for k, v in obj.items()):  # a module's get_extra_state(): any value
            return dict(obj), route
        # a container that holds tensors: {'model': {'arch': ...}, 'model_state_dict': ...} took the
        # first, and an empty state_dict_ema was "an empty dict" beside the weights
        inner = next((k for k in keys if holds_tensors(obj.get(k))), None)
        if inner is None and any(holds_tensors(obj.get(k)) for k in EMA_KEYS):
            raise CheckpointError(
                "the checkpoint holds EMA weights only ('state_dict_ema'), no raw weights: load "
                "it with ema=True (the default; the CLI's --ema)"
            )
        if inner is None:
            odd = [f"{k!r} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
            where = "the checkpoint" + "".join(f"[{k!r}]" for k in route)  # its place, inside containers
            # a state dict with a stray entry (a number, a dict of settings): name it; not where a
            # dict of tensors under an unknown name may be the weights
            if 2 * len(odd) < len(obj) and not any(holds_tensors(v) for v in obj.values()):
                raise CheckpointError(
                    f"no state dict found: a dict of {len(obj) - len(odd)} tensors"
                    f"{f' ({where})' if route else ''} also holds "
                    f"{listed(odd)}, not tensors; a state dict holds tensors only (save it without them)")
            kinds = {k: "empty dict" if isinstance(v, Mapping) and not v else type(v).__name__
                     for k, v in list(obj.items())[:8]}
            entries = ", ".join(f"{k} ({kind})" for k, kind in kinds.items())
            raise CheckpointError(
                "no state dict found: expected a dict of tensors or one under "
                f"{', '.join(repr(k) for k in keys)}; {where} holds {entries or 'an empty dict'}"
            )
        obj = obj[inner]
        route.append(inner)
    raise CheckpointError("no state dict found: containers nested too deeply")


def arrays_as_tensors(value: Any, depth: int = 4) -> Any:
    """``value`` with the numeric NumPy arrays in its dicts (``depth`` down at most) made tensors: a
    state dict converted from another framework, or saved from ``tensor.numpy()``, loads as one."""
    import numpy as np

    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":  # (not a scalar: np.float64(77.3))
        return torch.from_numpy(np.array(value))  # (a copy: writable, and what torch.load would own)
    if not isinstance(value, Mapping) or depth == 0:
        return value
    return {k: arrays_as_tensors(v, depth - 1) for k, v in value.items()}


def holds_tensors(value: Any, depth: int = 3) -> bool:
    """Whether ``value`` is a dict with a tensor in it (``depth`` dicts down at most)."""
    if not isinstance(value, Mapping) or depth == 0:
        return False
    return any(isinstance(v, torch.Tensor) or holds_tensors(v, depth - 1) for v in value.values())


def strip_wrappers(state_dict: Mapping[str, torch.Tensor], own_keys: Collection[str] = ()
                   ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Drop ``module`` and ``_orig_mod`` components wherever they stand in a key. With ``own_keys``
    (a module you bring, whose children may be called so): leading ones go while the keys are not
    those (DataParallel's ``module.module.fc.bias`` -> ``module.fc.bias``); else a key becomes the
    one that is the same once those components are dropped from both.

    Returns:
        ``(state_dict, stripped)``, ``stripped`` the prefixes removed (``["module."]``).
    """
    def bare(key: str) -> str:
        return ".".join(p for p in key.split(".") if p not in WRAPPER_COMPONENTS)

    keys, known = list(state_dict), set(own_keys)
    while known and set(keys) != known and min((k.partition(".")[0] in WRAPPER_COMPONENTS for k in keys),
                                               default=False):
        keys = [k.partition(".")[2] for k in keys]  # a wrapper's prefix on every key
    if set(keys) != known:
        own = {bare(k): k for k in known}
        keys = [own.get(bare(k), bare(k)) for k in keys]
    stripped = {p + "." for key, kept in zip(state_dict, keys) for p in WRAPPER_COMPONENTS
                if key.split(".").count(p) > kept.split(".").count(p)}
    prefixes = " and ".join(f"`{p}`" for p in sorted(stripped))
    plural = "es are" if len(stripped) > 1 else " is"
    refuse_collisions(state_dict, keys, f"once the {prefixes} prefix{plural} dropped")
    return dict(zip(keys, state_dict.values())), sorted(stripped)


def checkpoint_dims(state_dict: Mapping[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """``(num_classes, reduction_dim)`` read from a project-named state dict (None if absent).

    The classes are the rows of the first of :data:`CLASSIFIER_WEIGHTS` present
    (``fc.weight`` of a ResNet, ``classifier.6.weight`` of AlexNet). A size of 0 is None too: no
    model has it, and the file's shapes are then said not to fit (it named a `num_classes` option).
    """
    fc = next((state_dict[k] for k in CLASSIFIER_WEIGHTS if k in state_dict), None)
    reduce = state_dict.get("global_pool.reduce.weight")
    return (int(fc.shape[0]) if fc is not None and fc.ndim == 2 and fc.shape[0] else None,
            int(reduce.shape[0]) if reduce is not None and reduce.ndim == 4 and reduce.shape[0] else None)


@dataclass
class StateDict:
    """A state dict renamed onto the project's names, with where it came from."""

    tensors: dict[str, torch.Tensor]
    path: Path
    sha256: str | None
    layout: Layout
    container: list[str]
    stripped: list[str]
    metadata: dict[str, Any]
    has_ema: bool = False  # the file holds EMA weights (state_dict_ema), taken or not
    layout_keys: tuple[str, ...] = ()  # the keys in the layout's names, before remap renamed them

    def nonfinite(self) -> list[str]:
        """Names of the floating-point tensors that hold a NaN or an infinity, with counts:
        ``["layer1.0.conv1.weight (1 NaN)", "fc.bias (2 inf)"]``."""
        found = []
        for name, tensor in self.tensors.items():
            if not (isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex())):
                continue
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            if nan or inf:
                counts = [f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n]
                found.append(f"{name} ({', '.join(counts)})")
        return found

    @property
    def origin(self) -> str:
        """``layout 'x' (description), inner dict ['state_dict'], prefixes module. stripped``."""
        where = "".join(f"[{k!r}]" for k in self.container) or "bare state dict"
        text = f"layout '{self.layout.name}' ({self.layout.description}); {where}"
        if self.stripped:
            text += f"; stripped {', '.join(self.stripped)}"
        return text


def _scalars(obj: Any) -> dict[str, Any]:
    """Scalar entries of the outer dict (epoch, arch, best accuracy ...)."""
    if not isinstance(obj, Mapping):
        return {}
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            if value.is_meta or value.is_quantized or value.layout != torch.strided:
                continue  # no plain value to show
            # a float32 71.2 is 71.19999694824219 in float64: the shortest decimal of its own type
            value = _shortest(value.item(), value.dtype)
        elif hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalar
            value = _shortest(value.item(), getattr(getattr(value, "dtype", None), "type", None))
        if isinstance(value, (str, int, float, bool)):
            out[str(key)] = value
    return out


def _shortest(value: float, dtype: Any) -> float:
    """``value``, a number of the floating-point ``dtype`` (torch's or numpy's) widened to float64,
    as the shortest decimal that reads back as the same number of that type: a float32 71.2 is
    71.19999694824219 in float64, and 71.2 here."""
    import numpy as np

    narrow = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.float32}.get(
        dtype, dtype if dtype in (np.float32, np.float16) else None)
    if narrow is None or not math.isfinite(value):
        return value
    return float(str(narrow(value)))


#: the floating-point types weights load from (float8's have no isnan / isinf on the CPU, and no
#: model here computes in them); integers, bool and complex are refused where a model's are floats
#: (:func:`~robustbench_gcp.models.loading.check_fit`)
FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _unloadable(tensors: Mapping[Any, Any]) -> str | None:
    """What makes a state dict's entries unloadable (a key that is no name; a tensor without values,
    quantized, sparse, or of a float type weights do not come in), or None. Each was a traceback
    (an AttributeError on the key, NotImplementedError from isinf, or load_state_dict's own)."""
    for key, value in tensors.items():
        if not isinstance(key, str):
            return (f"the state dict has a key {key!r} ({type(key).__name__}), not a name: a state dict's "
                    "keys are strings")
        if not isinstance(value, torch.Tensor):  # a module's get_extra_state()
            continue
        if value.is_meta:
            return f"{key} is a meta tensor, which holds no values (saved from a model on the meta device)"
        if value.is_quantized:
            return (f"{key} is a quantized tensor ({str(value.dtype).removeprefix('torch.')}): save the "
                    "float model's weights (dequantize them)")
        if value.layout != torch.strided:
            return (f"{key} is a {str(value.layout).removeprefix('torch.')} tensor: save it dense "
                    "(.to_dense())")
        if value.is_floating_point() and value.dtype not in FLOAT_TYPES:
            return (f"{key} is {str(value.dtype).removeprefix('torch.')}, which weights are not loaded "
                    "from: save them in float32 (or float16 / bfloat16)")
    return None


def read_state_dict(path: str | Path, *, sha256: str | None = None,
                    compute_sha256: bool = True, ema: bool = True,
                    layout: Layout | None = None, own_keys: Collection[str] = ()) -> StateDict:
    """Steps 1-4: read, check the hash, pick the inner dict, strip wrappers, remap.

    Args:
        path: checkpoint file.
        sha256: expected digest (full or a prefix of >= 8 hex digits), or None.
        compute_sha256: compute the digest even when none is expected.
        ema: a training file's EMA weights when it has them (see :func:`select_state_dict`).
        layout: the layout to apply instead of detecting one from the keys (a model you
            bring keeps the file's own names: :data:`AS_SAVED`).
        own_keys: the state-dict keys of the module to load into (a model you bring): wrapper
            components its own keys hold (a child called ``module``) are kept.

    Raises:
        CheckpointError: unreadable file, hash mismatch, no state dict, unknown layout.
        ConfigError: malformed ``sha256``.
    """
    obj = read_checkpoint(path)
    path = Path(path)
    digest = None
    if sha256 is not None:
        digest = check_sha256(path, sha256)
    elif compute_sha256:
        digest = file_sha256(path)
    try:
        tensors, container = select_state_dict(obj, ema=ema)
    except CheckpointError as error:  # which file, where a command reads several
        raise CheckpointError(f"'{path}': {error}") from None
    problem = _unloadable(tensors)
    if problem is not None:
        raise CheckpointError(f"'{path}': {problem}")
    try:
        tensors, stripped = strip_wrappers(tensors, own_keys)
    except CheckpointError as error:
        raise CheckpointError(f"'{path}': {error}") from None
    if layout is None:
        try:
            layout = detect_layout(tensors)
        except UnknownLayoutError as error:
            found = under_one_prefix(tensors)
            if found is None:  # which file, where a command reads several
                raise UnknownLayoutError(f"'{path}': {error}") from None
            tensors, layout, prefix = found
            stripped = [*stripped, prefix]
    has_ema = isinstance(obj, Mapping) and any(holds_tensors(obj.get(k)) for k in EMA_KEYS)
    try:
        renamed = remap(tensors, layout)
    except CheckpointError as error:
        raise type(error)(f"'{path}': {error}") from None
    return StateDict(renamed, path, digest, layout, container, stripped,
                     _scalars(obj) if container else {}, has_ema, tuple(tensors))
