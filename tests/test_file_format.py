"""What a checkpoint file is, from its first bytes: the kinds of wrong file named, protobuf look-alikes
that are not MindSpore checkpoints, and zip archives torch.load cannot read (damaged, encrypted,
compressed in another way) refused with a message rather than a traceback."""

from __future__ import annotations

import gzip
import io
import re
import struct
import tarfile
import zipfile

import pytest
import torch

from robustbench_gcp.errors import CheckpointError
from robustbench_gcp.file_format import check_format


def refused(path, match):
    with pytest.raises(CheckpointError) as error:
        check_format(path)
    assert re.search(match, str(error.value)), str(error.value)
    return str(error.value)


def tar_bytes():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"weights" * 100
        info = tarfile.TarInfo("model/weights.bin")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("content, kind", [
    (gzip.compress(b"weights" * 100, mtime=0), "a gzip-compressed file"),
    (tar_bytes(), "a tar archive"),
    (b"\x89HDF\r\n\x1a\n" + bytes(600), r"an HDF5 file \(Keras / TensorFlow\)"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" + bytes(12),
     r"a NumPy array \(\.npy\)"),
])
def test_other_kinds_of_file_are_named(tmp_path, content, kind):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    refused(path, rf"is not a PyTorch checkpoint: it holds {kind}, neither a zip archive")


@pytest.mark.parametrize("text, page", [
    ('<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>', "an XML document"),
    ("Quota exceeded.\n<html><title>Too many requests</title>", "an HTML page titled 'Too many requests'"),
    ("HTTP/1.1 403\n<BODY>Forbidden</BODY>", "an HTML page"),
], ids=["xml", "html-after-text", "body-only"])
def test_a_page_is_a_failed_download(tmp_path, text, page):
    """An S3 error document, and pages whose markup starts after a line of text."""
    path = tmp_path / "model.pth"
    path.write_text(text)
    refused(path, rf"is {page}, not a checkpoint: the download failed")


@pytest.mark.parametrize("head", [
    b"\x0a" + b"\xff" * 20,                  # the first length never ends (a varint of 20 bytes)
    b"\x0a\x20\x0b\x05conv1\x12" + bytes(40),  # the value does not start with its tag (field 1)
    b"\x0a\x20\x0a\x00\x12" + bytes(40),       # an empty tensor name
    b"\x0a\x20\x0a\x05conv1\x1a" + bytes(40),  # the name not followed by the tensor (field 2)
    b"\x0a\x20\x0a\x05co\x01v1\x12" + bytes(40),  # a name that is not printable text
    b"\x0a\x20\x0a\x7fconv1\x12",             # a name running past the bytes read
], ids=["endless-varint", "no-tag", "empty-name", "no-tensor", "binary-name", "short"])
def test_protobuf_look_alikes_are_not_mindspore_checkpoints(tmp_path, head):
    """Only a head that parses as MindSpore's first Value (tag, then tensor) is called one; other
    bytes starting 0x0a under a .pth name are unrecognized data."""
    path = tmp_path / "model.pth"
    path.write_bytes(head)
    message = refused(path, r"is not a PyTorch checkpoint: it holds unrecognized data \(first bytes 0a ")
    assert "MindSpore" not in message


@pytest.mark.parametrize("name", ["model.pth", "model.ckpt"])
def test_a_git_lfs_pointer_says_to_fetch_the_file(tmp_path, name):
    """A repository cloned without git-lfs holds pointers of three lines where its checkpoints
    should be (a .ckpt one is not taken for a MindSpore file)."""
    path = tmp_path / name
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:" + "ab" * 32 + "\nsize 102502400\n")
    refused(path, r"is a Git LFS pointer, not a checkpoint: .* `git lfs install && git lfs pull` "
                  r"in that clone to fetch the file of 102,502,400 bytes")


def test_a_numpy_npz_archive_is_named_with_how_to_convert_it(tmp_path):
    import numpy as np

    path = tmp_path / "weights.pth"
    with open(path, "wb") as handle:
        np.savez(handle, **{"conv1.weight": np.zeros((2, 3)), "fc.bias": np.ones(4)})
    refused(path, r"is a NumPy \.npz archive of 2 arrays \(conv1\.weight, fc\.bias\), not a PyTorch "
                  r"checkpoint: save its arrays as tensors, e\.g\. torch\.save\(")


def saved_zip(tmp_path, name="model.pth", method=zipfile.ZIP_STORED):
    """A torch.save file, its members rewritten with ``method``."""
    plain = tmp_path / "plain.pth"
    torch.save({"fc.weight": torch.arange(600.0).reshape(20, 30)}, plain)
    path = tmp_path / name
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(path, "w", method) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    return path


def patch_every_header(path, offset_local, offset_central, update):
    """Rewrite a 16-bit field of every local header and central directory entry of a zip file."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", offset_local), (b"PK\x01\x02", offset_central)):
        start = data.find(signature)
        while start >= 0:
            field = slice(start + offset, start + offset + 2)
            data[field] = struct.pack("<H", update(struct.unpack("<H", data[field])[0]))
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("method, name", [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")])
def test_members_torch_cannot_inflate_are_named_not_called_corrupted(tmp_path, method, name):
    """A checkpoint zipped again with bzip2 or LZMA: Python reads it, torch.load does not ('an
    internal miniz error ... your checkpoint file is corrupted'), and it was called truncated."""
    path = saved_zip(tmp_path, method=method)
    with pytest.raises(RuntimeError, match="unsupported method"):
        torch.load(path, weights_only=True)
    message = refused(path, rf"is a zip archive whose member plain/\S+ is compressed with {name}; "
                            "torch.load reads stored or deflated members only")
    assert "truncated" not in message


def test_deflate64_members_are_named_not_a_traceback(tmp_path):
    """Windows Explorer compresses large files with Deflate64, which zipfile raised as
    NotImplementedError (a traceback)."""
    path = saved_zip(tmp_path)
    patch_every_header(path, 8, 10, lambda method: 9)  # compression method: Deflate64
    refused(path, r"is compressed with Deflate64 \(Windows Explorer's, for large files\)")


def test_an_encrypted_zip_is_named_not_a_traceback(tmp_path):
    """A password-protected archive: zipfile raised RuntimeError (a traceback)."""
    path = saved_zip(tmp_path)
    patch_every_header(path, 6, 8, lambda flags: flags | 0x1)  # general purpose flag: encrypted
    refused(path, r"is an encrypted \(password-protected\) zip archive \(member plain/\S+\); "
                  "torch.load reads no encrypted archive")


def test_damaged_deflated_bytes_and_a_damaged_directory_are_a_truncated_file(tmp_path):
    """Deflated bytes that do not inflate raised zlib.error (a traceback); a central directory
    whose entries are damaged is a file to download again."""
    deflated = saved_zip(tmp_path, method=zipfile.ZIP_DEFLATED)
    torch.load(deflated, weights_only=True)  # whole, torch reads it
    data = bytearray(deflated.read_bytes())
    with zipfile.ZipFile(deflated) as archive:
        member = max(archive.infolist(), key=lambda info: info.compress_size)
    start = member.header_offset + 30 + len(member.filename.encode())
    data[start:start + 40] = bytes(b ^ 0x5A for b in data[start:start + 40])
    deflated.write_bytes(bytes(data))
    refused(deflated, r"is truncated or corrupted \([\d,]+ bytes; the zip archive cannot be read \(Error -3 "
                      r"while decompressing data")
    directory = saved_zip(tmp_path, name="directory.pth")
    data = bytearray(directory.read_bytes())
    start = data.find(b"PK\x01\x02")
    data[start:start + 4] = b"XXXX"
    directory.write_bytes(bytes(data))
    refused(directory, r"is truncated or corrupted .*the zip archive cannot be read \(Bad magic number for "
                       "central directory\\)")
