"""The weights hash of a module a user brings (:func:`module_hash`): what identifies its run
in the store, so that the same weights reuse stored results and changed ones never pass for them.

Every value the module computes with counts: its state dict (tensors by their bytes, extra
state element by element, the same in every process) and the tensors it keeps outside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["module_hash", "structure_hash"]


def module_hash(model: nn.Module) -> str:
    """SHA-256 of a module's state dict: names, dtypes, shapes and values, in key order; then
    the tensors it computes with but does not save (:func:`_unsaved_tensors`), where it has any
    (a module without keeps the hash it had before they counted)."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):  # a module's extra state (get_extra_state)
            digest.update(f"{key}\textra\n".encode())
            _hash_extra(digest, tensor)
            continue
        _hash_tensor(digest, key, tensor)
    unsaved = _unsaved_tensors(model)
    if unsaved:
        digest.update(b"unsaved\n")
        for key, tensor in unsaved:
            _hash_unsaved(digest, key, tensor)
    return digest.hexdigest()


def structure_hash(model: nn.Module) -> str:
    """The first 16 hex digits of the SHA-256 of a module's tree: each submodule's name and class
    (module and qualified name), in order. What tells apart two modules of the same weights and
    other code, as far as their classes say (a ReLU swapped for a GELU); settings kept in plain
    Python values, or a forward pass edited in place, are not seen."""
    tree = "\n".join(f"{name}\t{_class_name(m)}" for name, m in model.named_modules())
    return hashlib.sha256(tree.encode()).hexdigest()[:16]


def _class_name(module: nn.Module) -> str:
    """A module's class, as ``module.qualname``; a TorchScript module's is its wrapper's for every
    submodule (RecursiveScriptModule), so the class it was scripted from is added (``original_name``:
    a ReLU and a GELU copy, scripted, were one tree: helper-295)."""
    name = f"{type(module).__module__}.{type(module).__qualname__}"
    if isinstance(module, torch.jit.ScriptModule):
        name += f":{getattr(module, 'original_name', '')}"
    return name


def _hash_tensor(digest, key: str, tensor: torch.Tensor) -> None:
    digest.update(f"{key}\t{tensor.dtype}\t{tuple(tensor.shape)}\n".encode())
    digest.update(_tensor_bytes(tensor))


def _hash_unsaved(digest, key: str, tensor: torch.Tensor) -> None:
    """A tensor kept outside the state dict: by its values; a nested one by its components'; one
    with no data to read (on the meta device: a shape probe) by its kind alone (its bytes raised)."""
    if tensor.is_nested:
        digest.update(f"{key}\tnested {tensor.dtype}\n".encode())
        for k, part in enumerate(tensor.unbind()):
            _hash_unsaved(digest, f"{key}[{k}]", part)
    elif tensor.is_meta:
        digest.update(f"{key}\tmeta {tensor.dtype}\t{tuple(tensor.shape)}\n".encode())
    else:
        _hash_tensor(digest, key, tensor)


#: what every module keeps in its ``__dict__`` (its parameters, buffers, children, hooks): the
#: state dict's or no tensors
_MODULE_STATE = frozenset(vars(nn.Module()))


def _unsaved_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The tensors ``model`` may compute with that its state dict leaves out: non-persistent
    buffers (``register_buffer(..., persistent=False)``: a normalization's mean, a table of
    positions) and tensors kept as plain attributes (``self.scale = torch.tensor(2.0)``, or in
    lists, tuples and dicts of them, :data:`_CONTAINER_DEPTH` deep), by qualified name; not the
    model's own parameters and buffers held there too (an RNN's ``_flat_weights``). Two modules
    differing only in those give other outputs: one hash reused a run's results for the other."""
    own = {id(t) for t in (*model.parameters(), *model.buffers())}
    found = []
    for prefix, module in model.named_modules():
        prefix = f"{prefix}." if prefix else ""
        for name in sorted(module._non_persistent_buffers_set):
            buffer = module._buffers.get(name)
            if buffer is not None:
                found.append((f"{prefix}{name}", buffer))
        for name, value in vars(module).items():
            if not name.startswith("__") and name not in _MODULE_STATE:
                found += [(key, tensor) for key, tensor in _tensors_in(value, f"{prefix}{name} (attribute)")
                          if id(tensor) not in own]
    return found


#: how deep in lists, tuples and dicts an attribute's tensors are looked for
_CONTAINER_DEPTH = 4


def _tensors_in(value: Any, key: str, depth: int = 0) -> list[tuple[str, torch.Tensor]]:
    """The tensors of an attribute's ``value`` (itself, or in its lists, tuples and dicts), by
    their place: ``norm (attribute)['scale'][0]``; nothing else of it (a function beside them has
    an address in its repr: another hash in each process)."""
    if isinstance(value, torch.Tensor):
        return [(key, value)]
    if depth >= _CONTAINER_DEPTH:
        return []
    if isinstance(value, dict):
        items = [(f"{key}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        return []
    return [found for place, item in items for found in _tensors_in(item, place, depth + 1)]


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A tensor's values as the bytes of its dtype, in row-major order, wherever it lies (a sparse
    one's dense values: ``contiguous`` refuses its layout)."""
    tensor = tensor.detach().cpu()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


_MAX_DEPTH = 100  # nesting past which extra state is hashed by its repr


def _reduced(value) -> tuple | None:
    """What pickle would save of an object with Python's default repr (its address): its class,
    arguments and state (``__slots__`` and C-level state too: a ``random.Random``'s), the items
    of a list or dict subclass; None where it cannot be pickled."""
    try:
        reduced = value.__reduce_ex__(4)
    except Exception:  # noqa: BLE001 (any object's own reduce may raise anything)
        return None
    if not isinstance(reduced, tuple) or len(reduced) < 2:
        return None
    func, args, *rest = reduced
    items = [None if it is None else list(it) for it in rest[1:3]]
    return (getattr(func, "__qualname__", repr(func)), args, rest[0] if rest else None, *items)


def _hash_extra(digest, value, seen: tuple[int, ...] = ()) -> None:
    """A module's extra state into ``digest``, the same in every process: containers element by
    element, tensors and NumPy arrays by their bytes (a repr summarizes them: arrays differing
    in the middle of 2,000 values had one hash), buffers (``io.BytesIO``) by their contents, sets
    in the order of their elements' hashes (their order is the process's hash seed's), and an
    object with the default repr (its address) by what pickle saves of it (:func:`_reduced`).
    Anything else, and anything nested deeper than ``_MAX_DEPTH``, by its repr (an address in it
    makes each process's hash another: a new run, never another run's results)."""
    import io

    import numpy as np

    if id(value) in seen:  # a container holding one it is in: which one, by its depth
        digest.update(f"cycle {seen.index(id(value))}\n".encode())
        return
    inner = (*seen, id(value))
    if len(seen) > _MAX_DEPTH:
        digest.update(f"{type(value).__name__} {value!r}\n".encode())
    elif isinstance(value, torch.Tensor):
        digest.update(f"tensor {value.dtype} {tuple(value.shape)}\n".encode())
        digest.update(_tensor_bytes(value))
    elif isinstance(value, np.ma.MaskedArray):
        _hash_extra(digest, ("masked", np.ma.getdata(value), np.ma.getmaskarray(value),
                             value.fill_value), inner)
    elif isinstance(value, np.ndarray):
        array = np.asarray(value)  # a subclass's values (its type in the header)
        digest.update(f"{type(value).__qualname__} {array.dtype!s} {array.shape}\n".encode())
        if array.dtype.hasobject:
            _hash_extra(digest, array.ravel().tolist(), inner)
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    elif isinstance(value, (set, frozenset)):
        digest.update(f"{type(value).__name__} {len(value)}\n".encode())
        parts = []
        for item in value:
            part = hashlib.sha256()
            _hash_extra(part, item, inner)
            parts.append(part.digest())
        digest.update(b"".join(sorted(parts)))
    elif isinstance(value, Mapping):
        digest.update(f"dict {len(value)}\n".encode())
        for key, item in value.items():
            _hash_extra(digest, key, inner)
            _hash_extra(digest, item, inner)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)}\n".encode())
        for item in value:
            _hash_extra(digest, item, inner)
    elif isinstance(value, io.BytesIO):
        digest.update(b"bytesio\n" + value.getvalue())
    elif isinstance(value, (bytes, bytearray)):
        digest.update(b"bytes\n" + bytes(value))
    elif type(value).__repr__ is object.__repr__ and (reduced := _reduced(value)) is not None:
        # "<... object at 0x7f...>": the address, each process another
        digest.update(f"object {type(value).__module__}.{type(value).__qualname__}\n".encode())
        _hash_extra(digest, reduced, inner)
    else:  # numbers, strings, None ...: their repr
        digest.update(f"{type(value).__name__} {value!r}\n".encode())
