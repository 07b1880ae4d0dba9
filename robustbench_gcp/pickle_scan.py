"""Reading a checkpoint's pickles without unpickling them (``pickletools`` opcodes only): the
code a file would run, and whether a legacy file's pickles are whole. Used by
:func:`robustbench_gcp.models.checkpoint.read_checkpoint` to say why ``torch.load`` refused it."""

from __future__ import annotations

import pickletools
import zipfile
from _compat_pickle import IMPORT_MAPPING
from pathlib import Path

# Globals that run code when a pickle calls them: the weights-only unpickler refuses them (it
# blocks sys, os, posix and nt outright); naming them tells the user what the file would do.
_CODE_MODULES = {"os", "posix", "nt", "sys", "subprocess", "shutil", "socket", "importlib",
                 "runpy", "pty", "ctypes", "code", "codeop", "webbrowser", "marshal", "pickle",
                 "multiprocessing", "signal", "tempfile", "urllib", "http", "ftplib", "smtplib",
                 "asyncio", "io", "_io", "pydoc", "zipfile", "socketserver"}
# and single names of harmless modules (types.SimpleNamespace is a training script's config)
_CODE_NAMES = {"types.FunctionType", "types.LambdaType", "types.CodeType", "types.MethodType",
               "logging.FileHandler"}
_CODE_BUILTINS = {"eval", "exec", "compile", "__import__", "open", "getattr", "setattr",
                  "delattr", "globals", "locals", "vars", "breakpoint", "input", "exit", "quit"}


def code_global(path: Path, kind: str) -> str | None:
    """The first ``module.name`` that a pickle in the file would call to run code (e.g.
    ``posix.system``, ``builtins.eval``), found by reading opcodes with pickletools: nothing
    is unpickled. None when there is none or the stream cannot be read. A name this list does not
    know says nothing of the file's safety: other globals can run code too (``types.FunctionType``
    of a code object), and a crafted stream can hide its names from this reading."""
    for name in file_globals(path, kind):
        module, _, attr = name.rpartition(".")
        # a protocol 2 pickle names Python 2's modules (httplib for http.client, __builtin__ for
        # builtins): as unpickled
        top = IMPORT_MAPPING.get(module, module).split(".")[0]
        if top in _CODE_MODULES or name in _CODE_NAMES or (top == "builtins" and attr in _CODE_BUILTINS):
            return name
    return None


def data_pickle(archive: zipfile.ZipFile) -> str | None:
    """The name of the pickle in ``torch.save``'s zip archive (``<folder>/data.pkl``), else None."""
    return next((n for n in archive.namelist() if n.endswith("data.pkl")), None)


def file_globals(path: Path, kind: str) -> list[str]:
    """``module.name`` of every global the pickles of a checkpoint file name (its ``data.pkl`` in
    a zip), read without unpickling; none where the file cannot be read."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                name = data_pickle(archive)
                streams = [archive.read(name)] if name else []
        else:
            with open(path, "rb") as handle:
                streams = [handle.read()]
    except (OSError, zipfile.BadZipFile):
        return []
    return [name for data in streams for name in pickle_globals(data)]


def pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every GLOBAL / STACK_GLOBAL in the pickles at the start of ``data``
    (a legacy torch file holds several in a row), read without unpickling."""
    import io

    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(4):
        if not stream.read(1):
            break
        stream.seek(-1, io.SEEK_CUR)
        strings: list[str] = []  # string pushes, for STACK_GLOBAL's two arguments
        memo: dict[int, str] = {}  # memo index -> the string stored there
        memoized = 0  # MEMOIZE numbers every object it stores (a dict, a tuple ...), not strings alone
        top: str | None = None  # the string on top of the stack, where the last push was one
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                name = opcode.name
                if name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                    top = None
                elif name == "STACK_GLOBAL":
                    if len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    top = None
                elif isinstance(arg, str) and ("UNICODE" in name or "STRING" in name):
                    strings.append(str(arg))
                    top = str(arg)
                elif name == "MEMOIZE":
                    if top is not None:
                        memo[memoized] = top
                    memoized += 1
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    if top is not None:
                        memo[int(arg)] = top
                    else:
                        memo.pop(int(arg), None)
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    top = memo.get(int(arg))
                    if top is not None:
                        strings.append(top)
                elif name not in ("FRAME", "PROTO"):  # (these two leave the stack as it is)
                    top = None
        except Exception:  # noqa: BLE001 - a broken stream: report what was read
            break
    return found


def pickles_complete(path: Path) -> bool:
    """Whether the pickles at the start of a legacy torch file are whole.

    A legacy ``torch.save`` file is four pickles (magic number, protocol, system
    info, the object) followed by raw storages; ``pickle.dump`` writes one. A file
    cut inside one of them ends before that pickle's STOP opcode.
    """
    with open(path, "rb") as handle:
        for _ in range(4):
            start = handle.tell()
            if not handle.read(1):
                return True  # clean end between pickles
            handle.seek(start)
            try:
                for _ in pickletools.genops(handle):
                    pass
            except Exception:  # noqa: BLE001 - any decoding failure means the stream breaks off
                return False
    return True


def protocol_opcode(operand: int) -> bool:
    """Whether an opcode the weights-only unpickler refused is one of pickle protocols 4 and 5
    (SHORT_BINUNICODE 0x8c .. READONLY_BUFFER 0x98: FRAME, MEMOIZE, STACK_GLOBAL ...)."""
    return 0x8C <= operand <= 0x98


#: ``torch.save``'s legacy files start with this number, pickled (LONG1: 10 little-endian bytes)
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def torch_legacy(head: bytes) -> bool:
    """Whether a file's first bytes are a legacy ``torch.save`` file's magic number."""
    return _LEGACY_MAGIC in head[:64]
