"""What a checkpoint file is, from its first bytes: a zip archive (``torch.save``), a pickle (older
``torch.save``), safetensors, or what a failed download or a wrong file holds instead (an HTML
page, a MindSpore checkpoint, an archive), named in one message. Read before anything is
unpickled (:func:`robustbench_gcp.models.checkpoint.read_checkpoint`) and before a download is
cached (:func:`robustbench_gcp.fetch.resolve_checkpoint`)."""

from __future__ import annotations

import json
import pickletools
import re
import zipfile
import zlib
from pathlib import Path

from robustbench_gcp.errors import CheckpointError, listed, printable


def _mindspore_tensor_name(head: bytes) -> str | None:
    """First tensor name when ``head`` starts like a MindSpore checkpoint (protobuf), else None.

    MindSpore's ``Checkpoint`` message is ``repeated Value value = 1`` with
    ``Value {string tag = 1; TensorProto tensor = 2}``: the file starts with
    ``0x0a <varint> 0x0a <varint n> <n bytes of name> 0x12``.
    """

    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while pos < len(head) and shift < 64:
            byte = head[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not byte & 0x80:
                return value, pos
        return -1, pos

    if len(head) < 4 or head[0] != 0x0A:
        return None
    _, pos = varint(1)
    if pos >= len(head) or head[pos] != 0x0A:
        return None
    length, pos = varint(pos + 1)
    name = head[pos:pos + length]
    if not 0 < length <= 1024 or pos + length >= len(head) or head[pos + length] != 0x12:
        return None
    if not all(32 <= c < 127 for c in name):
        return None
    return name.decode("ascii")


#: how ``torch.save(..., pickle_protocol=0 or 1, _use_new_zipfile_serialization=False)`` starts: its
#: magic number as a protocol 0 long
_LEGACY_TEXT_MAGIC = b"L119547037146038801333356L\n."

#: the opcodes a protocol 0 or 1 pickle starts with: a global, a mark, an empty container, a
#: number or string, None (pickletools' names)
_OLD_PICKLE_STARTS = {"GLOBAL", "MARK", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "LONG", "INT", "BININT",
                      "BININT1", "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "NONE"}

#: their first bytes
OLD_PICKLE_FIRST_BYTES = frozenset(op.code.encode("latin-1") for op in pickletools.opcodes
                                   if op.name in _OLD_PICKLE_STARTS)

#: the largest file read to tell a protocol 0 or 1 pickle (larger ones are unrecognized data), and
#: the longest line of one (a text opcode's argument: a file of zeros read as one was read whole)
_OLD_PICKLE_SCAN, _OLD_PICKLE_LINE = 1 << 30, 64 << 20


class _Capped:
    """A binary file read through ``read`` / ``readline`` up to ``cap`` bytes in all, lines of at
    most :data:`_OLD_PICKLE_LINE` bytes (a longer one, cut, fails to decode)."""

    def __init__(self, handle, cap: int):
        self.handle, self.left = handle, cap

    def read(self, n: int = -1) -> bytes:
        data = self.handle.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        data = self.handle.readline(min(self.left, _OLD_PICKLE_LINE))
        self.left -= len(data)
        return data

    def tell(self) -> int:
        return self.handle.tell()


def _old_pickle(path: Path, head: bytes) -> bool:
    """Whether ``path`` is a protocol 0 or 1 pickle (no PROTO header): a legacy ``torch.save`` of
    such a protocol, or one pickle whose opcodes, from a first one of :data:`_OLD_PICKLE_STARTS`,
    read without error to a STOP on the file's last byte, streamed (files of at most
    :data:`_OLD_PICKLE_SCAN` bytes). A pickle that names ``os.system`` was "neither ... a
    pickle"; text that reads as a few opcodes ("N.B. ...": NONE, STOP) stops before the file's
    end. Nothing is unpickled."""
    if head.startswith(_LEGACY_TEXT_MAGIC):
        return True
    if head[:1] not in OLD_PICKLE_FIRST_BYTES:
        return False
    size = path.stat().st_size
    if size > _OLD_PICKLE_SCAN:
        return False
    with open(path, "rb") as handle:
        stream = _Capped(handle, size)
        last = None
        try:
            for opcode, _, _ in pickletools.genops(stream):
                last = opcode.name
        except Exception:  # noqa: BLE001 (any decoding error: not a pickle)
            return False
        return last == "STOP" and stream.tell() == size


def _sniff(path: Path, head: bytes, label: str, suffix: str) -> str:
    """``zip`` or ``pickle``, or raise a CheckpointError saying what the file (``label``) is instead."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<!--", b"<?xml")) \
            or b"<html" in text or b"<body" in text:
        title = re.search(rb"<title[^>]*>(.*?)</title>", head, re.IGNORECASE | re.DOTALL)
        title = f" titled '{title.group(1).decode('utf-8', 'replace').strip()}'" if title else ""
        page = "an XML document" if text.startswith(b"<?xml") else "an HTML page"
        raise CheckpointError(
            f"{label} is {page}{title}, not a checkpoint: the download failed. Google "
            "Drive serves such a page (a virus-scan or quota warning) instead of large files. "
            "Download the file again (e.g. `gdown --fuzzy <share link>` or the browser's "
            "'Download anyway') and check its size and sha256."
        )
    if text.startswith(b"version https://git-lfs.github.com/spec/"):
        size = re.search(rb"^size (\d+)", head, re.MULTILINE)
        size = f" of {int(size.group(1)):,} bytes" if size else ""
        raise CheckpointError(
            f"{label} is a Git LFS pointer, not a checkpoint: the repository was cloned without "
            f"its large files. Run `git lfs install && git lfs pull` in that clone to fetch the "
            f"file{size}, or download it from the repository's web page."
        )
    name = _mindspore_tensor_name(head)
    if name is None and _old_pickle(path, head):  # (before the guess by a .ckpt name alone)
        return "pickle"
    if name is not None or suffix.lower() == ".ckpt":
        found = f" (protobuf, first tensor '{name}')" if name else ""
        raise CheckpointError(
            f"{label} is a MindSpore checkpoint{found}, not a PyTorch file"
            f"{'' if name else ' (a .ckpt file without a zip or pickle header)'}. gcp-robust "
            "reads PyTorch checkpoints only: download the PyTorch release of the model, or "
            "convert it (mindspore.load_checkpoint, then torch.save of the tensors under the "
            "same key names)."
        )
    if head.startswith(b"\x1f\x8b"):
        kind = "a gzip-compressed file"
    elif head[257:262] == b"ustar":
        kind = "a tar archive"
    elif head.startswith(b"\x89HDF"):
        kind = "an HDF5 file (Keras / TensorFlow)"
    elif head.startswith(b"\x93NUMPY"):
        kind = "a NumPy array (.npy)"
    else:
        kind = f"unrecognized data (first bytes {head[:8].hex(' ')})"
    raise CheckpointError(
        f"{label} is not a PyTorch checkpoint: it holds {kind}, neither a zip archive "
        "(torch.save since PyTorch 1.6), a pickle (older torch.save) nor safetensors."
    )


def truncated(path: Path, detail: str, label: str | None = None) -> CheckpointError:
    size = path.stat().st_size
    return CheckpointError(
        f"{label or repr(str(path))} is truncated or corrupted ({size:,} bytes; {detail}). Download it again "
        "and compare its size and sha256 with the published ones."
    )


#: the longest JSON header the safetensors format allows (its reader refuses longer ones)
SAFETENSORS_MAX_HEADER = 100_000_000


def _is_safetensors(path: Path, head: bytes, label: str) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then the JSON header.

    Raises:
        CheckpointError: the file ends before the header it announces (a cut-off download: it was
            called "not a PyTorch checkpoint").
    """
    size = int.from_bytes(head[:8], "little") if len(head) >= 10 else 0
    if head[8:9] != b"{" or not 2 <= size <= SAFETENSORS_MAX_HEADER:
        return False
    if size > path.stat().st_size - 8:
        raise truncated(path, f"a safetensors file whose header of {size:,} bytes is cut off", label)
    return True


def safetensors_end(path: Path) -> int | None:
    """Where a safetensors file's last tensor ends, as its header says (None: a header that cannot
    be read or names no tensors)."""
    try:
        with open(path, "rb") as file:
            size = int.from_bytes(file.read(8), "little")
            header = json.loads(file.read(min(size, SAFETENSORS_MAX_HEADER)))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        return 8 + size + max(ends) if ends and all(isinstance(end, int) for end in ends) else None
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


#: a compressed zip member that inflates to more than this many bytes, and more than this ratio of
#: its compressed size, is refused (torch.save stores its members; a zip -r of its files is
#: deflated, weights by a few percent; a crafted 2 MB member inflated to 2 GiB)
BOMB_BYTES, BOMB_RATIO = 64 << 20, 100


#: the compression methods of zip members that torch.load's reader (miniz) does not read, by number
_METHODS = {9: "Deflate64 (Windows Explorer's, for large files)", 12: "bzip2", 14: "LZMA",
            93: "Zstandard", 95: "xz"}


def _check_members(members: list[zipfile.ZipInfo], label: str) -> None:
    """Refuse a member that is a zip bomb, encrypted, or compressed in a way torch.load cannot read
    (each raised out of zipfile's reading as a traceback, or read by torch as a 'corrupted' file)."""
    for member in members:
        name = printable(member.filename)
        if member.flag_bits & 0x1 or member.compress_type == 99:
            raise CheckpointError(f"{label} is an encrypted (password-protected) zip archive (member "
                                  f"{name}); torch.load reads no encrypted archive: extract it with its "
                                  "password and save the weights again with torch.save")
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = _METHODS.get(member.compress_type, f"compression method {member.compress_type}")
            raise CheckpointError(f"{label} is a zip archive whose member {name} is compressed with "
                                  f"{method}; torch.load reads stored or deflated members only: extract it "
                                  "and zip it again with `zip -r` (deflate), or save the weights again with "
                                  "torch.save")
        if member.compress_type != zipfile.ZIP_STORED and member.file_size > BOMB_BYTES \
                and member.file_size > BOMB_RATIO * member.compress_size:
            # weights do not shrink so: inflating it (for its CRC) would take long
            raise CheckpointError(f"{label} is not a checkpoint of weights: its zip member {name} inflates "
                                  f"{member.compress_size:,} bytes to {member.file_size:,} (a zip bomb)")


def _check_zip(path: Path, label: str) -> None:
    """torch.save's archive whole: its central directory there, every entry's bytes matching their
    CRC-32 (torch.load reads tensors without checking it: a damaged tensor loaded silently).

    Raises:
        CheckpointError: naming what is damaged.
    """
    if not zipfile.is_zipfile(path):
        raise truncated(path, "the zip archive has no central directory", label)
    try:
        with zipfile.ZipFile(path) as archive:
            _check_members(archive.infolist(), label)
            names = archive.namelist()
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as error:
        raise truncated(path, f"the zip archive cannot be read ({error})", label) from None
    if damaged is not None:
        raise truncated(path, f"the bytes of {damaged} do not match their CRC-32", label)
    _check_torch_archive(names, label)


def _check_torch_archive(names: list[str], label: str) -> None:
    """Refuse a zip archive that is not torch.save's (one folder holding ``data.pkl``), and a
    TorchScript archive (its model is code), each by name: torch.load said "[enforce fail at
    inline_container.cc:180] ..." of the first, and of the second, that re-running it with
    ``weights_only=False`` "will likely succeed"."""
    folders = {name.split("/", 1)[0] for name in names}
    if names and all(name.endswith(".npy") for name in names):  # numpy.savez's
        shown = listed([printable(name.removesuffix(".npy")) for name in names], 3)
        raise CheckpointError(
            f"{label} is a NumPy .npz archive of {len(names)} arrays ({shown}), not a PyTorch checkpoint: "
            "save its arrays as tensors, e.g. torch.save({k: torch.from_numpy(v) for k, v in "
            "numpy.load(FILE).items()}, 'weights.pth')")
    if len(folders) != 1 or f"{next(iter(folders))}/data.pkl" not in names:
        shown = listed([printable(name) for name in names], 3) or "nothing"
        raise CheckpointError(f"{label} is a zip archive, not a PyTorch checkpoint (torch.save's holds one "
                              f"folder with data.pkl; this one holds {shown})")
    folder = next(iter(folders))
    if f"{folder}/constants.pkl" in names or any(name.startswith(f"{folder}/code/") for name in names):
        raise CheckpointError(f"{label} is a TorchScript archive (torch.jit.save), whose model is code; "
                              "gcp-robust reads weights saved with torch.save. Only if you trust the file, "
                              "load it with torch.jit.load and save its state_dict() with torch.save (the "
                              "architecture: --model package.module:callable)")


def check_format(path: Path, label: str | None = None, name: str | None = None) -> str:
    """What a checkpoint file holds, from its first bytes (and a zip archive's CRCs): ``zip``,
    ``pickle`` or ``safetensors``. ``label`` names the file in messages (default: its path);
    ``name`` is the file name it will have (a MindSpore ``.ckpt`` is told by it; default: its own).

    Raises:
        CheckpointError: the file is empty, an HTML page (a failed download), a MindSpore
            checkpoint, another kind of file, or a damaged zip archive.
    """
    label = label or f"'{path}'"
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head:
        raise CheckpointError(f"{label} is empty (0 bytes): the download or copy failed")
    if _is_safetensors(path, head, label):
        return "safetensors"
    kind = _sniff(path, head, label, Path(name or path).suffix)
    if kind == "zip":
        _check_zip(path, label)
    return kind
