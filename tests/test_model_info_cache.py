"""The disk cache of model descriptions (``gcp-robust models`` and ``inspect`` start in a fraction of
the time): the same descriptions as building the models, and never a stale or foreign file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from robustbench_gcp.models import factory, info_cache, list_models, model_info


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    def forget():
        info_cache._entries.cache_clear()
        factory.model_info.cache_clear()

    monkeypatch.setenv("GCP_ROBUST_CACHE", str(tmp_path))
    forget()
    yield tmp_path
    forget()


def test_cached_descriptions_equal_built_ones(cache_dir):
    built = {name: factory._describe(name, factory.model_entrypoint(name)) for name in list_models()}
    assert [model_info(name) for name in list_models()] == list(built.values())
    stored = json.loads((cache_dir / info_cache.FILE_NAME).read_text())
    assert stored["key"] == info_cache.cache_key() and set(stored["models"]) == set(built)
    # a new process reads them back without building anything
    code = ("import json, dataclasses; from robustbench_gcp.models import factory, list_models, model_info\n"
            "factory._describe = None\n"  # building would fail
            "print(json.dumps([dataclasses.asdict(model_info(n)) for n in list_models()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "GCP_ROBUST_CACHE": str(cache_dir)})
    assert json.loads(out.stdout) == [stored["models"][name] for name in list_models()]


def test_a_file_of_another_key_or_damaged_is_passed_over(cache_dir):
    path = cache_dir / info_cache.FILE_NAME
    wrong = {"key": "another version", "models": {"resnet50-isqrt": {"name": "resnet50-isqrt", "depth": 50,
             "head": "isqrt", "num_params": 1, "input_size": 224, "reduction_dim": 256,
             "num_classes": 1000, "pooling": "x", "description": "x"}}}
    path.write_text(json.dumps(wrong))
    assert model_info("resnet50-isqrt").num_params > 1_000_000
    assert json.loads(path.read_text())["key"] == info_cache.cache_key()  # started afresh
    for text in ("{not json", json.dumps({"key": info_cache.cache_key(), "models": {"resnet50-isqrt": {}}})):
        path.write_text(text)
        info_cache._entries.cache_clear()
        factory.model_info.cache_clear()
        assert model_info("resnet50-isqrt").num_params > 1_000_000


def test_no_cache_where_none_can_be_written(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("GCP_ROBUST_CACHE", str(blocked / "sub"))  # its parent is a file
    info_cache._entries.cache_clear()
    factory.model_info.cache_clear()
    assert model_info("resnet18-gap").head == "gap"
    assert not list(tmp_path.rglob("*.tmp"))
    info_cache._entries.cache_clear()
    factory.model_info.cache_clear()


def test_models_registered_outside_the_package_are_not_cached():
    def mine(**kwargs):
        raise AssertionError
    mine.__module__ = "my_lab.models"
    assert not info_cache.cacheable(mine)
    assert info_cache.cacheable(factory.model_entrypoint("resnet50-gap"))


@pytest.mark.parametrize("change", [
    {"head": "mpncov-typo"}, {"num_params": "many"}, {"num_params": True}, {"depth": 5.5},
    {"name": "resnet50-gap"}, {"input_size": 0},
])
def test_an_entry_of_the_wrong_kind_is_described_afresh(cache_dir, change):
    """A damaged or foreign entry is not believed: the head decides a run's identity."""
    model_info("resnet18-isqrt")
    path = cache_dir / info_cache.FILE_NAME
    stored = json.loads(path.read_text())
    stored["models"]["resnet18-isqrt"].update(change)
    path.write_text(json.dumps(stored))
    info_cache._entries.cache_clear()
    factory.model_info.cache_clear()
    info = model_info("resnet18-isqrt")
    assert (info.name, info.head) == ("resnet18-isqrt", "isqrt") and info.num_params > 1_000_000


def test_only_a_regular_file_of_sensible_size_is_read(cache_dir):
    import os

    path = cache_dir / info_cache.FILE_NAME
    os.mkfifo(path)  # reading it would block every command
    info_cache._entries.cache_clear()
    assert info_cache._entries() == {}
    path.unlink()
    path.write_text(" " * (info_cache.MAX_BYTES + 1))
    info_cache._entries.cache_clear()
    assert info_cache._entries() == {}


def test_the_key_changes_with_the_packages_code_and_with_timm(tmp_path, monkeypatch):
    """A description is valid for the code that built it: an upgrade that edits a file under the same
    name, or another timm (which builds DeiT-S), makes a new key (a key of file names alone, or
    without timm, believed the old descriptions: head, parameters, input size)."""
    import shutil

    package = tmp_path / "robustbench_gcp"
    (package / "models").mkdir(parents=True)
    shutil.copy(info_cache.PACKAGE / "models" / "heads.py", package / "models" / "heads.py")
    monkeypatch.setattr(info_cache, "PACKAGE", package)

    def key():
        info_cache.cache_key.cache_clear()
        return info_cache.cache_key()

    try:
        before = key()
        assert key() == before
        with open(package / "models" / "heads.py", "a", encoding="utf-8") as file:
            file.write("\n# a later release\n")
        edited = key()
        assert edited != before
        real = info_cache.metadata.version
        monkeypatch.setattr(info_cache.metadata, "version",
                            lambda name: "0.0.1" if name == "timm" else real(name))
        assert key() != edited
    finally:
        info_cache.cache_key.cache_clear()
