"""Tiny-ImageNet's own files, read wrong: each error names the file, the line and what was expected
(the loader's bad-input branches had no test)."""

from __future__ import annotations

import pytest

from robustbench_gcp.data.tiny_imagenet import (
    read_val_annotations,
    read_wnids,
    scan_tiny_imagenet_c,
    scan_tiny_imagenet_val,
)
from robustbench_gcp.errors import DataError


def test_wnids_are_sorted_and_a_bad_list_is_refused_at_its_line(tmp_path):
    path = tmp_path / "wnids.txt"
    path.write_text("n02\n\nn01\n")
    assert read_wnids(path) == ("n01", "n02")  # sorted: the class order; blank lines skipped
    for text, said in (("n01\nn02 n03\n", "line 2: expected one wnid, got 'n02 n03'"),
                       ("n01\nn02\nn01\n", "line 3: n01 is already on line 1"),
                       ("\n \n", "is empty: expected one wnid per line")):
        path.write_text(text)
        with pytest.raises(DataError, match=f"{path}.*{said}" if "line" in said else said):
            read_wnids(path)
    path.write_bytes(b"n01\n\xff\xfe\n")
    with pytest.raises(DataError, match=f"cannot read {path}"):
        read_wnids(path)
    with pytest.raises(DataError, match="cannot read .*nowhere.txt"):
        read_wnids(tmp_path / "nowhere.txt")


def test_annotations_take_two_or_six_fields_once_per_image(tmp_path):
    path = tmp_path / "val_annotations.txt"
    path.write_text("a.JPEG\tn01\t0\t1\t60\t61\nb.JPEG\tn02\n")
    assert read_val_annotations(path) == {"a.JPEG": ("n01", 1), "b.JPEG": ("n02", 2)}
    for text, said in (("a.JPEG\tn01\t0\t1\n", r"line 1: expected '<file>\\t<wnid>"),
                       ("a.JPEG\tn01\tx\ty\tz\tw\n", "line 1: expected"),
                       ("a.JPEG\tn01\na.JPEG\tn02\n", "line 2: a.JPEG is already annotated on line 1"),
                       ("\n", "is empty")):
        path.write_text(text)
        with pytest.raises(DataError, match=said):
            read_val_annotations(path)
    with pytest.raises(DataError, match="annotations file .*nowhere.txt does not exist"):
        read_val_annotations(tmp_path / "nowhere.txt")


def test_a_folder_that_is_not_tiny_imagenet_says_which_layout_it_expected(tmp_path):
    with pytest.raises(DataError, match="Tiny-ImageNet folder .*missing does not exist"):
        scan_tiny_imagenet_val(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="expected the Tiny-ImageNet-200 layout <root>/wnids.txt"):
        scan_tiny_imagenet_val(tmp_path / "other")
    with pytest.raises(DataError, match="Tiny-ImageNet-C folder .*missing does not exist"):
        scan_tiny_imagenet_c(tmp_path / "missing", "fog", 1)
    with pytest.raises(DataError, match="has no fog/1"):
        scan_tiny_imagenet_c(tmp_path / "other", "fog", 1)
