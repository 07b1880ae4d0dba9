"""Library calls given arguments of the wrong kind: the library's own errors, before any work (a
probe of the documented entry points found raw errors from deep inside)."""

from __future__ import annotations

import re

import pytest

from robustbench_gcp import inspect_checkpoint, load_config, load_model, plan, run
from robustbench_gcp.errors import ConfigError
from robustbench_gcp.pipeline.planning import EvalOptions
from robustbench_gcp.store import Store


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"checkpoint": 3}, "`checkpoint` should be a path. Got 3"),  # a pathlib TypeError
    ({"checkpoint": "w.pth", "sha256": 12345678}, "`sha256` should be text. Got 12345678"),  # taken as text
    ({"ema": "no"}, "`ema` should be True or False. Got 'no'"),  # taken as True
])
def test_load_model_checks_its_options_as_plan_does(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_model("demo-gap", **kwargs)


def test_run_takes_a_plan_and_a_progress_hook_and_creates_nothing_otherwise(demo_val, tmp_path):
    """run("demo-gap") failed on an attribute of a str; run(plan, progress=3) after creating the run."""
    with pytest.raises(TypeError, match=r"`plan` should be a Plan, made by robustbench_gcp.plan\(...\)"):
        run("demo-gap")
    store = tmp_path / "s.db"
    planned = plan("demo-gap", suite="clean", data=str(demo_val), class_order="sorted", limit=2,
                   store=str(store), workers=0)
    with pytest.raises(TypeError, match="`progress` should be a ProgressHook"):
        run(planned, progress=3)
    from robustbench_gcp import ProgressHook

    class Count(ProgressHook):
        pass

    with pytest.raises(TypeError, match=r"^`progress` should be a ProgressHook instance: give Count\(\)"):
        run(planned, progress=Count)  # the README snippet's class (the engine's plan() call failed)
    if store.exists():
        with Store(store, read_only=True) as s:
            assert s.runs() == []


def test_a_preprocess_string_is_refused_as_a_whole(demo_val, tmp_path):
    """"input_size=32" was read letter by letter: "unknown keys ['2', '3', '=', '_', 'e' ..."."""
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
    with pytest.raises(ConfigError, match=r"`preprocess` should be a dict of .* Got 'input_size=32'"):
        plan(net, preprocess="input_size=32", suite="clean", data=str(demo_val), class_order="sorted",
             limit=2, store=str(tmp_path / "s.db"), workers=0)


@pytest.mark.parametrize(("call", "what"), [
    (Store, "a store file"),  # Path's "expected str, bytes or os.PathLike object, not int"
    (load_config, "a benchmarks.yaml"),
    (inspect_checkpoint, "a checkpoint file"),
])
def test_a_path_of_another_type_is_named_as_the_path_it_should_be(call, what):
    for given in (3, None) if call is not load_config else (3, b"benchmarks.yaml"):  # None: the shipped one
        with pytest.raises(TypeError, match=rf"`path` should be {what}'s path \(str or Path\)\. Got "):
            call(given)


def test_a_flag_given_twice_or_an_empty_name_is_refused():
    """plan(corruptions="fog", flags={"corruptions": "snow"}) took one of the two without a word, and
    name="" the default name."""
    with pytest.raises(TypeError, match="'corruptions' is given twice: as a keyword and in `flags`"):
        plan("demo-gap", suite="imagenet-c", corruptions="fog", flags={"corruptions": "snow"})
    for flags in ("fog", [], 0):  # [] and 0 were taken for no flags
        said = f"`flags` should be a dict of suite flags. Got {flags!r}"
        with pytest.raises(ConfigError, match=re.escape(said)):
            plan("demo-gap", suite="imagenet-c", flags=flags)
    options = EvalOptions.of(corruptions=None, flags={"corruptions": "fog"})  # None: not given
    assert options.flags["corruptions"] == "fog"
    for name in ("", "  "):
        with pytest.raises(ConfigError, match="`name` should be text: the name reports show"):
            plan("demo-gap", suite="clean", name=name)
    with pytest.raises(TypeError, match="^`name` and `label` are one option"):  # label dropped: helper-266
        plan("demo-gap", suite="clean", name="a", label="b")


def test_paths_as_a_shell_gives_them_and_numpy_switches(demo_val, tmp_path, monkeypatch):
    """helper-266: data="" evaluated the working folder (its subfolders for classes); store, config
    and a checkpoint given with ~ were "does not exist"; amp=np.bool_(False) passed the checks and
    failed in torch's autocast mid-run."""
    import shutil

    import numpy as np

    from robustbench_gcp import evaluate
    from robustbench_gcp.config import package_resource

    common = dict(suite="clean", data=str(demo_val), class_order="sorted", limit=2, workers=0)
    for name in ("data", "store", "config", "labels", "checkpoint"):
        with pytest.raises(ConfigError, match=rf"^`{name}` is an empty path"):
            plan("demo-gap", **{**common, name: ""})
    with pytest.raises(Exception, match=r"^`checkpoint` is an empty path: give a file, or None with "
                                        r"random_weights=True"):
        load_model("demo-gap", "")
    with pytest.raises(Exception, match=r"^`path` is an empty path: give the checkpoint file to inspect$"):
        inspect_checkpoint("")  # (None: random weights, as load_model's said, has nothing to inspect)
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copyfile(package_resource("demo/demo-gap.pth"), tmp_path / "gap.pth")
    report = evaluate("demo-gap", checkpoint="~/gap.pth", store="~/s.db", amp=np.bool_(False), **common)
    assert (tmp_path / "s.db").exists() and report.sections["clean"]["n"] == 2
    assert load_model("demo-gap", "~/gap.pth").checkpoint_sha256 == report.checkpoint_sha256
    assert inspect_checkpoint("~/gap.pth").arch == "demo-gap"


def test_options_made_directly_and_hooks_checked_before_any_work(demo_val, tmp_path):
    """helper-267: EvalOptions(...) given to plan_options missed the normalizing of `of`; run_all
    called a hook class's item() before run() checked it; a class of static methods is a hook."""
    import numpy as np

    from robustbench_gcp import ProgressHook
    from robustbench_gcp.pipeline import run_all

    options = EvalOptions(data=str(demo_val), amp=np.bool_(False), workers=np.int64(0), store="~/x.db")
    assert options.amp is False and type(options.workers) is int and not options.store.startswith("~")
    with pytest.raises(ConfigError, match="^`data` is an empty path"):
        EvalOptions(data="")

    class Count(ProgressHook):
        def item(self, index, total, label): ...

    with pytest.raises(TypeError, match=r"give Count\(\)"):
        run_all([], progress=Count)

    class Static:
        for name in ("plan", "cell_start", "advance", "cell_done", "say"):
            locals()[name] = staticmethod(lambda *args: None)

    run_all([], progress=Static)  # (no plan: nothing run, the hook accepted)


def test_threads_that_import_foolbox_at_once_each_get_the_whole_module():
    """Its first import under a lock (a sys.modules shortcut handed the others a module half
    made: "partially initialized module 'foolbox' has no attribute 'attacks'", helper-267)."""
    import subprocess
    import sys

    script = (
        "import threading, time\n"
        "from robustbench_gcp.suites import attacks\n"
        "out = []\n"
        "def use(): out.append(attacks._foolbox().attacks.LinfPGD.__name__)\n"
        "threads = [threading.Thread(target=use) for _ in range(4)]\n"
        "for t in threads: t.start(); time.sleep(0.05)\n"
        "for t in threads: t.join()\n"
        "print(out)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == str(["LinfProjectedGradientDescentAttack"] * 4), \
        done.stdout + done.stderr


@pytest.mark.parametrize("moving", ["the data folder", "a class folder", "a file in its place"])
def test_a_data_folder_moved_mid_run_is_named_and_the_run_resumes_once_it_is_back(demo_val, tmp_path, moving):
    """A renamed data folder was "cannot read image ...: file not found ... replace the file with a
    readable one of the same name": every file was missing, its folder was the thing to put back."""
    import shutil

    from robustbench_gcp import ProgressHook
    from robustbench_gcp.errors import DataError

    data = tmp_path / "photos"
    shutil.copytree(demo_val, data / "val")
    # the last class (sorted), read in the last shard: long after the first shard starts
    folder = data if moving == "the data folder" else max((data / "val").iterdir())
    moved = tmp_path / "moved"

    class MoveTheFolder(ProgressHook):
        def cell_start(self, label, shard, n_shards, n_images):
            if shard >= 1 and not moved.exists():
                folder.rename(moved)
                if moving == "a file in its place":
                    folder.write_text("not a folder")

    planned = plan("demo-gap", suite="imagenet-c", corruptions=["fog"], severities=[1],
                   data=str(data / "val"), class_order="sorted", shard_size=10, store=str(tmp_path / "s.db"),
                   workers=0)
    with pytest.raises(DataError) as stopped:
        run(planned, progress=MoveTheFolder())
    named = re.escape(str(folder))
    how = r"is a file now" if moving == "a file in its place" else r"is gone \(moved or renamed\?\)"
    said = re.fullmatch(rf"cannot read image {named}/\S+: (file not found|.*Not a directory.*)\. (\d+) of "
                        rf"(\d+) shards are stored: the folder {named} {how}: put it back and re-run the "
                        r"same command to resume \(.+\)", str(stopped.value))
    assert said and 0 < int(said.group(2)) < int(said.group(3)) == 20, stopped.value
    folder.unlink(missing_ok=True)
    moved.rename(folder)
    report = run(planned)
    assert report.sections["clean"]["n"] == 100


def test_another_ranks_gone_folder_reaches_rank_0():
    """A rank's DataError crossed to rank 0 as its message alone: the folder it found gone was lost, and
    rank 0 (whose data folder was there) said "replace the file" (helper-273)."""
    from robustbench_gcp.engine.distributed import _Failed
    from robustbench_gcp.errors import DataError

    gone = "the folder /d/val/a is gone (moved or renamed?)"  # as rank 1's machine saw it
    error = _Failed("DataError", "cannot read image /d/val/a/x.JPEG: file not found", gone).error(1, 2)
    assert isinstance(error, DataError) and error.gone == gone
    assert str(error) == "rank 1 of 2: cannot read image /d/val/a/x.JPEG: file not found"
    assert _Failed("DataError", "unreadable").error(1, 2).gone is None


def test_what_is_said_gone(tmp_path, monkeypatch):
    """helper-274: a CIFAR batch file given as --data was "a file now" at any later data error; a link
    whose folder moved was "gone" while it stood there; a folder one may not search crashed the error."""
    from pathlib import Path

    from robustbench_gcp.errors import gone_said

    (tmp_path / "val" / "cls").mkdir(parents=True)
    batch = tmp_path / "test_batch"
    batch.write_bytes(b"x")
    assert gone_said(tmp_path / "val" / "cls") is None
    assert gone_said(batch, folder=False) is None  # a data root that is a file, as it always was
    assert gone_said(tmp_path / "a" / "b" / "c") == f"the folder {tmp_path / 'a'} is gone (moved or renamed?)"
    assert gone_said(batch / "cls") == f"the folder {batch} is a file now"
    assert gone_said(batch) == f"the folder {batch} is a file now"  # an image's folder: was one
    (tmp_path / "link").symlink_to("real")  # relative: said from the link's folder
    assert gone_said(tmp_path / "link" / "cls") == \
        f"the link {tmp_path / 'link'} -> {tmp_path / 'real'} points to nothing now (moved or renamed?)"
    (tmp_path / "to-file").symlink_to(batch)
    assert gone_said(tmp_path / "to-file" / "cls") == \
        f"the link {tmp_path / 'to-file'} -> {batch} points to a file now"
    # a released folder is one: a file in its place is said (a data root may be a file, as CIFAR's)
    assert gone_said(batch) == f"the folder {batch} is a file now"
    assert gone_said(tmp_path / "gone-batch", folder=False) == \
        f"the file or folder {tmp_path / 'gone-batch'} is gone (moved or renamed?)"

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_dir", denied)
    assert gone_said(tmp_path / "val" / "cls") is None  # cannot tell: the error says what it is


def test_a_model_name_of_another_type_and_a_stores_options_are_said_so(tmp_path):
    """create_model(Path("resnet18-gap")) was "unknown model 'resnet18-gap'. Did you mean
    'resnet18-gap'?"; a Store took timeout="5" (failing at its first wait), -1 and read_only="no" (as
    True), and a closed one raised an AttributeError of None (helper-293)."""
    from pathlib import Path

    from robustbench_gcp import create_model
    from robustbench_gcp.errors import StoreError

    for name in (Path("resnet18-gap"), None, 18):
        with pytest.raises(ConfigError, match=r"^`name` should be a model name \(text; list_models\(\) "
                                              rf"lists them\)\. Got {re.escape(repr(name))}$"):
            create_model(name)
        with pytest.raises(ConfigError, match=r"^`name` should be a model name"):
            load_model(name)
    path = tmp_path / "s.db"
    wrong = [({"timeout": "5"}, TypeError, "`timeout` should be a number of seconds. Got '5'"),
             ({"timeout": -1}, ValueError, r"`timeout` should be a finite number of seconds >= 0\. Got -1"),
             ({"lease_seconds": 0}, ValueError, r"`lease_seconds` .* > 0\. Got 0"),
             ({"checkpoint_seconds": float("inf")}, ValueError, "checkpoint_seconds"),
             ({"read_only": "no"}, TypeError, "`read_only` should be True or False. Got 'no'")]
    for kwargs, error, said in wrong:
        with pytest.raises(error, match=said):
            Store(path, **kwargs)
    assert not path.exists()
    store = Store(path, timeout=0, checkpoint_seconds=0)  # no wait, a checkpoint at every commit
    store.close()
    store.close()  # twice: nothing more
    with pytest.raises(StoreError, match=r"^store .*s\.db is closed: open it again \(Store\(path\)\) to "
                                         r"use it$"):
        store.runs()



def test_load_model_asks_for_weights_or_random_weights():
    """load_model("demo-gap") gave random weights in silence, which looked like the model evaluate
    scores with benchmarks.yaml's file (helper-293); random ones are asked for, as evaluate asks."""
    import torch

    from robustbench_gcp import create_model

    with pytest.raises(ConfigError, match=r"^load_model\('demo-gap'\) needs its weights: give a checkpoint "
                                          r"file \(benchmarks.yaml's, which evaluate\('demo-gap'\) takes: "
                                          r"load_config\(\)\.model\('demo-gap'\)\.checkpoint, where it names "
                                          r"one\), or random_weights=True for random ones"):
        load_model("demo-gap")
    with pytest.raises(ConfigError, match="`random_weights` and `checkpoint` exclude each other"):
        load_model("demo-gap", load_config().model("demo-gap").checkpoint, random_weights=True)
    with pytest.raises(ConfigError, match="`random_weights` should be True or False. Got 'yes'"):
        load_model("demo-gap", random_weights="yes")
    torch.manual_seed(0)
    drawn = load_model("demo-gap", random_weights=True)
    torch.manual_seed(0)
    built = create_model("demo-gap").eval()
    assert drawn.checkpoint_sha256 is None and not drawn.training
    assert all(torch.equal(a, b) for a, b in zip(drawn.state_dict().values(), built.state_dict().values()))
