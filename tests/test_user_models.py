"""Any model a user brings: ``--model package.module:callable``, ``--model torchvision:<name>``,
and ``evaluate(model=<nn.Module>)``, through the same store and reports as registry models."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

from robustbench_gcp import evaluate
from robustbench_gcp.cli import main
from robustbench_gcp.errors import ConfigError
from robustbench_gcp.store import Store

USER_MODULE = '''
import torch
import torchvision


def resnet18_like():
    """A user's callable: a GAP ResNet-18 (its weights come from --checkpoint)."""
    return torchvision.models.resnet18()


def two_classes():
    return torchvision.models.resnet18(num_classes=2)


def not_a_module():
    return "resnet18"


def with_transform():
    """As clip.load does: the module and its preprocessing."""
    return torchvision.models.resnet18(), None


def flat_output():
    return torch.nn.Sequential(torch.nn.Flatten(0))


def broken():
    raise RuntimeError("no GPU here")


class Squeezed(torch.nn.Module):
    """squeeze() drops the batch axis of a batch of one (a shard's last image alone)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=8), torch.nn.AdaptiveAvgPool2d(1))
        self.fc = torch.nn.Linear(4, 1000)

    def forward(self, x):
        return self.fc(self.body(x).squeeze())


def squeezed():
    return Squeezed()


class Ranks(Squeezed):
    def forward(self, x):
        return self.fc(self.body(x).flatten(1)).argsort(dim=1)


def integer_output():
    return Ranks()


_KEPT = []


def kept():
    """Builds once and returns the same module ever after (a lazy singleton)."""
    if not _KEPT:
        _KEPT.append(torchvision.models.resnet18())
    return _KEPT[0]


def stemless():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=8), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 1000))



BUILDS = []


def counted():
    """Counts its builds."""
    BUILDS.append(1)
    return torchvision.models.resnet18()


NOT_CALLABLE = 3


def lazy():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1000))


def meta():
    with torch.device("meta"):
        return torchvision.models.resnet18()


class WithExtraState(torch.nn.Module):
    """A GAP ResNet-18 that keeps a non-tensor in its state dict (get_extra_state)."""

    def __init__(self):
        super().__init__()
        self.net = torchvision.models.resnet18()
        self.note = {"temperature": 1.0}

    def get_extra_state(self):
        return dict(self.note)

    def set_extra_state(self, state):
        self.note = dict(state)

    def forward(self, x):
        return self.net(x) / self.note["temperature"]


def with_extra_state():
    return WithExtraState()


class Wrapped(torch.nn.Module):
    """A user's module whose child is called `module`, as DataParallel's."""

    def __init__(self):
        super().__init__()
        self.module = torchvision.models.resnet18()

    def forward(self, x):
        return self.module(x)
'''


@pytest.fixture
def user_package(tmp_path, on_sys_path):
    """A module ``usernets_<id>`` in a temporary folder on sys.path."""
    name = f"usernets_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    return name


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def eval_json(model, image_folder, store, *extra):
    result = run("eval", "--model", model, "--data", image_folder, "--store", store, "--workers", 0,
                 "--batch-size", 6, "--suite", "imagenet-c", "--corruptions", "contrast",
                 "--severities", "2", "--format", "json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def cells_of(store, model):
    with Store(store, read_only=True) as s:
        (run_info,) = [r for r in s.runs() if r.model == model]
        return {key: s.cell_result(cid, key, run_info.n_shards) for cid, key in s.cells(run_info.id)}


def test_callable_and_torchvision_models_give_the_registry_models_counts(
        user_package, image_folder, gap_checkpoint, tmp_path):
    store = tmp_path / "s.db"
    names = ["resnet18-gap", f"{user_package}:resnet18_like", "torchvision:resnet18"]
    reports = [eval_json(name, image_folder, store, "--checkpoint", gap_checkpoint) for name in names]
    assert len({json.dumps([r["clean"], r["cells"]], sort_keys=True) for r in reports}) == 1
    assert [r["arch"] for r in reports] == names
    reference = cells_of(store, "resnet18-gap")
    for name in names[1:]:
        cells = cells_of(store, name)
        assert cells.keys() == reference.keys()
        for key, cell in cells.items():
            assert cell.counts == reference[key].counts
            assert (cell.correct == reference[key].correct).all()
    # the same weights again: nothing is computed, and for your own module (not torchvision's) that
    # is said: its code is not part of what finds the run
    note = (f"results stored for these weights are reused: a module you bring is found by {names[1]} and "
            "its weights, not its code; if the code changed since, give another --store")
    for name in names[1:]:
        again = run("eval", "--model", name, "--data", image_folder, "--store", store, "--workers", 0,
                    "--batch-size", 6, "--suite", "imagenet-c", "--corruptions", "contrast",
                    "--severities", "2", "--format", "json", "--checkpoint", gap_checkpoint)
        assert again.exit_code == 0 and json.loads(again.stdout)["computed"]["computed"] == 0
        assert (note in " ".join(again.stderr.split())) == (name == names[1]), again.stderr
        # and kept in the report: a library caller, with no progress hook, was told nothing
        assert (note in json.loads(again.stdout)["notes"]) == (name == names[1])


def test_a_compare_does_not_call_its_own_results_reused(user_package, image_folder, gap_checkpoint, tmp_path):
    """compare over two suites into a new store: the second suite's run held the clean cell the first
    had just computed, and said "results stored for these weights are reused" (helper-218); a second
    compare says it, of the results the first stored."""
    store = tmp_path / "s.db"
    args = ["compare", "--model", f"{user_package}:resnet18_like={gap_checkpoint}", "--suite",
            "clean,imagenet-c", "--corruptions", "contrast", "--severities", "2", "--data", image_folder,
            "--store", store, "--workers", 0, "--format", "json"]
    note = "results stored for these weights are reused"
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert note not in " ".join(first.stderr.split()) and note not in first.stdout, first.stderr
    again = run(*args)
    assert again.exit_code == 0 and note in " ".join(again.stderr.split()), again.stderr


def test_bench_says_a_users_module_has_its_own_weights(user_package):
    """`bench attack` titled a module you bring "(random weights)" and its JSON said "random (seed 0)",
    though it comes with its own (--random-weights is refused for it) (helper-216)."""
    out = run("bench", "attack", "--device", "cpu", "--model", f"{user_package}:two_classes", "--images", 2,
              "--steps", 1, "--repeats", 1, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["weights"] == "the module's own", out.stdout
    shown = run("bench", "attack", "--device", "cpu", "--model", f"{user_package}:two_classes", "--images", 2,
                "--steps", 1, "--repeats", 1)
    title = f"{user_package}:two_classes (its own weights) on cpu"
    assert title in " ".join(shown.output.split()), shown.output


def test_a_users_module_is_built_once_per_eval(user_package, image_folder, gap_checkpoint, tmp_path):
    """The plan builds, loads and runs it to check it; the run takes that module."""
    import importlib

    builds = importlib.import_module(user_package).BUILDS
    report = eval_json(f"{user_package}:counted", image_folder, tmp_path / "s.db", "--checkpoint",
                       gap_checkpoint)
    assert builds == [1] and report["computed"]["computed"] > 0
    # a file changed between the plan and the run is read again: the run evaluates what it finds
    from robustbench_gcp import plan, run

    mine = tmp_path / "mine.pth"
    mine.write_bytes(gap_checkpoint.read_bytes())
    planned = plan(f"{user_package}:counted", checkpoint=str(mine), data=str(image_folder),
                   store=str(tmp_path / "t.db"), workers=0)
    weights = torch.load(mine, weights_only=True)
    torch.save({**weights, "fc.bias": weights["fc.bias"] + 1}, tmp_path / "new.pth")
    (tmp_path / "new.pth").replace(mine)  # a new file, whatever the file system's mtime resolution
    run(planned)
    assert len(builds) == 3

    def weights_of(store):
        with Store(store, read_only=True) as s:
            return [r.identity["weights"] for r in s.runs()]

    assert weights_of(tmp_path / "t.db") != weights_of(tmp_path / "s.db")


def test_two_weight_files_under_one_name_are_two_runs(user_package, image_folder, gap_checkpoint,
                                                      tmp_path):
    other = tmp_path / "other.pth"
    state = torch.load(gap_checkpoint, weights_only=True)
    state["fc.bias"] = state["fc.bias"] + 1.0
    torch.save(state, other)
    store = tmp_path / "s.db"
    model = f"{user_package}:resnet18_like"
    first = eval_json(model, image_folder, store, "--checkpoint", gap_checkpoint)
    second = eval_json(model, image_folder, store, "--checkpoint", other)
    assert first["run"] != second["run"]
    assert second["computed"]["computed"] > 0
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM runs WHERE arch = ?", (model,)).fetchone()[0] == 2


def test_the_library_takes_a_module_object(image_folder, gap_checkpoint, tmp_path):
    store = tmp_path / "s.db"
    common = dict(data=image_folder, store=store, suite="imagenet-c", corruptions="contrast",
                  severities=[2], batch_size=6)
    registry = evaluate("resnet18-gap", checkpoint=str(gap_checkpoint), **common)
    net = torchvision.models.resnet18()
    net.load_state_dict(torch.load(gap_checkpoint, weights_only=True))
    mine = evaluate(net, name="my-gap", **common)
    assert mine.model == "my-gap" and mine.arch == "module:my-gap"
    assert mine.sections["clean"] == registry.sections["clean"]
    assert mine.sections["cells"] == registry.sections["cells"]
    assert evaluate(net, name="my-gap", **common).computed["computed"] == 0  # same weights: reused
    # under another name too, as a registry model's run (helper-293: the name was in its identity)
    renamed = evaluate(net, name="gap-again", **common)
    assert renamed.computed["computed"] == 0 and renamed.run == mine.run and renamed.model == "gap-again"
    assert renamed.arch == "module:gap-again" and {*[
        "the store holds a run of these weights and settings as my-gap: its results are reused, and reports "
        "show it as gap-again from now on (`report --models gap-again`; a run takes the name it is evaluated "
        "under); to keep both names apart, give another --store",
        "results stored for these weights are reused: a module you bring is found by its weights and its "
        "classes, not its code; if the code changed since, give another --store"]} <= set(renamed.notes), \
        renamed.notes
    # the same weights in other classes (a GELU for each ReLU) are another model: another run
    gelu = torchvision.models.resnet18()
    gelu.load_state_dict(net.state_dict())
    for child in list(gelu.modules()):
        for attribute, sub in list(child.named_children()):
            if isinstance(sub, torch.nn.ReLU):
                setattr(child, attribute, torch.nn.GELU())
    other = evaluate(gelu, name="gelu-gap", **common)
    assert other.run != mine.run and other.computed["computed"] > 0
    with Store(store, read_only=True) as s:
        (stored,) = [r for r in s.runs() if r.key == mine.run]
        assert stored.identity["arch"] == "module" and "structure" in stored.identity
        assert stored.model == "gap-again" and stored.arch == "module:gap-again"
    with torch.no_grad():
        net.fc.bias.add_(1.0)
    changed = evaluate(net, name="my-gap", **common)
    assert changed.run != mine.run and changed.computed["computed"] > 0
    # preprocessing can be given: another crop is another run
    cropped = evaluate(net, name="my-gap", preprocess={"input_size": 192, "resize_size": 220}, **common)
    assert cropped.run != changed.run
    # a file for the module object would be loaded into the caller's module (it changed it): refused
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ConfigError, match=r"^`checkpoint` applies to model names; load the file into your "
                                          r"module first \(my-gap\.load_state_dict"):
        evaluate(net, name="my-gap", checkpoint=str(gap_checkpoint), **common)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_module_objects_run_stored_under_its_name_is_taken_over(image_folder, tmp_path):
    """Before 0.7.30 a module object's run had ``module:NAME`` in its identity: evaluated again under
    that name, that run, with its cells, takes the identity without the name, and a note says so (the
    classes it was computed with were not recorded); a read-only store is read as it is."""
    import json as json_module

    store = tmp_path / "s.db"
    common = dict(data=image_folder, store=store, suite="clean", batch_size=6, limit=6)
    net = torchvision.models.resnet18().eval()
    first = evaluate(net, name="mine", **common)
    with sqlite3.connect(store) as db:  # as 0.7.29 stored it
        (key, text), = db.execute("SELECT key, identity FROM runs").fetchall()
        old = json_module.loads(text)
        old["arch"] = "module:mine"
        del old["structure"]
        from robustbench_gcp.store.records import canonical_json
        from robustbench_gcp.store.results_store import _run_key

        db.execute("UPDATE runs SET key = ?, identity = ? WHERE key = ?",
                   (_run_key(canonical_json(old)), canonical_json(old), key))
    store.chmod(0o444)
    try:
        held = evaluate(net, name="mine", **common)  # read-only: read under its old identity
        assert held.computed["computed"] == 0 and held.sections == first.sections
    finally:
        store.chmod(0o644)
    again = evaluate(net, name="mine", **common)
    assert again.computed["computed"] == 0 and again.sections == first.sections
    assert ("results stored for mine before 0.7.30 (a module's run was found by its name and weights) are "
            "this module's now: the classes of the module they were computed with were not recorded; if it "
            "was another, give another --store") in again.notes
    with Store(store, read_only=True) as s:
        (run,) = s.runs()
        assert run.identity["arch"] == "module" and run.key == first.run


class Named(torch.nn.Module):
    """A module with a child called `name` and timm's kind of `pretrained_cfg` (a dict)."""

    def __init__(self):
        super().__init__()
        self.name = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 1000)
        self.pretrained_cfg = {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5)}
        self.num_classes = 7  # wrong, and the user's to keep

    def forward(self, x):
        return self.head(self.name(x).mean((2, 3)))


def test_evaluate_leaves_the_attributes_of_the_users_module_alone(image_folder, tmp_path):
    """The engine's attributes live beside a module you bring: a child called `name` crashed the
    run (TypeError), and timm's `pretrained_cfg` dict and the module's `num_classes` were replaced."""
    torch.manual_seed(0)
    net = Named()
    report = evaluate(net, name="named", data=image_folder, store=tmp_path / "s.db", suite="clean",
                      batch_size=4)
    assert report.model == "named" and report.sections["clean"]["n"] > 0
    assert isinstance(net.name, torch.nn.Conv2d) and net.num_classes == 7
    assert net.pretrained_cfg == {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5)}
    assert not hasattr(net, "weights_hash") and not hasattr(net, "head_type")


def error_of(*args) -> str:
    result = run("eval", *args)
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    return line


@pytest.mark.parametrize("attribute, message", [
    ("missing", r"module '{module}' \(.*\) has no 'missing'\. Choose from: .*, broken, counted, "),
    ("resnet18_lik", r"has no 'resnet18_lik'\. Did you mean 'resnet18_like'\?$"),
    ("NOT_CALLABLE", r"'NOT_CALLABLE' is an int, not a callable that returns an nn.Module"),
    ("not_a_module", r"not_a_module\(\) returned a str, not a torch.nn.Module"),
    ("with_transform", r"with_transform\(\) returned a tuple \(ResNet, NoneType\), not a torch.nn.Module: "
                       r"return the module alone"),
    ("broken", r"broken\(\) raised RuntimeError: no GPU here"),
    ("flat_output", r"the forward pass of a \(2, 3, 224, 224\) batch|is \(.*\), not \(2, classes\)"),
    ("squeezed", r"the output for a \(1, 3, 224, 224\) batch is \(1000,\), not \(1, classes\) logits"),
    ("integer_output", r"the output for a \(2, 3, 224, 224\) batch is torch.int64, not floating-point "
                       r"logits"),
])
def test_errors_of_a_users_module_are_one_line_before_compute(user_package, image_folder, tmp_path,
                                                               attribute, message):
    import re

    store = tmp_path / "s.db"
    line = error_of("--model", f"{user_package}:{attribute}", "--data", image_folder, "--store", store)
    assert re.search(message.format(module=user_package), line), line
    assert not store.exists()


def test_more_errors_of_models_you_bring(user_package, image_folder, gap_checkpoint, tmp_path):
    store = tmp_path / "s.db"
    data = ["--data", image_folder, "--store", store]
    missing = error_of("--model", "no_such_pkg_xyz.nets:build", *data)
    assert "cannot import module 'no_such_pkg_xyz.nets': ModuleNotFoundError" in missing
    assert missing.endswith("; put its folder on PYTHONPATH (PYTHONPATH=/path/to/folder gcp-robust ...)")
    # in the working folder: the console script does not look there ("or run from that folder" was said)
    (tmp_path / "here_only_xyz.py").write_text("def build():\n    return None\n")
    command = Path(sys.executable).parent / "gcp-robust"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(command), "eval", "--model", "here_only_xyz:build", *map(str, data)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().endswith(
        "; here_only_xyz is in this folder, which the gcp-robust command does not import from: "
        "PYTHONPATH=. gcp-robust ..."), result.stderr
    assert "unknown torchvision classification model 'resnet181'" in error_of(
        "--model", "torchvision:resnet181", "--random-weights", *data)
    # the data's class index 3 (and more) against a 2-class model
    assert "but model" in error_of("--model", f"{user_package}:two_classes", *data)
    assert "has no checkpoint" in error_of("--model", "torchvision:resnet18", *data)
    assert error_of("--model", f"{user_package}:resnet18_like", "--random-weights", *data).endswith(
        f"{user_package}:resnet18_like comes with its own weights: drop it")
    assert "apply to the registry's GCP models" in error_of(
        "--model", "torchvision:resnet18", "--random-weights", "--sqrt", "eig", *data)
    wrong = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet34().state_dict(), wrong)
    assert "does not fit torchvision:resnet18" in error_of(
        "--model", "torchvision:resnet18", "--checkpoint", wrong, *data)
    # a file that fits no registered model either: no registry model is offered for your own
    odd = tmp_path / "odd.pth"
    state = torchvision.models.resnet18().state_dict()
    del state["fc.bias"]
    torch.save(state, odd)
    said = run("eval", "--model", "torchvision:resnet18", "--checkpoint", odd, *data)
    assert said.exit_code == 1 and "does not fit torchvision:resnet18" in said.stderr
    assert "1 missing key (first: fc.bias)" in said.stderr and "closest" not in said.stderr, said.stderr
    # modules without values yet: a lazy layer, the meta device (tracebacks before)
    assert error_of("--model", f"{user_package}:lazy", "--checkpoint", odd, *data).endswith(
        "has lazy layers (nn.LazyLinear ...) not yet built: run one forward pass in your callable before "
        "returning the module")
    assert error_of("--model", f"{user_package}:meta", "--checkpoint", odd, *data).endswith(
        "is on the meta device (no values): build it on a real device, e.g. with torch.device('cpu')")
    assert not store.exists()


def test_compare_mixes_registry_and_user_models(user_package, image_folder, gap_checkpoint, tmp_path):
    result = run("compare", "--model", f"resnet18-gap={gap_checkpoint}",
                 "--model", f"torchvision:resnet18={gap_checkpoint}",
                 "--model", f"{user_package}:resnet18_like={gap_checkpoint}",
                 "--data", image_folder, "--store", tmp_path / "s.db", "--workers", 0,
                 "--resamples", 100, "--format", "json")
    assert result.exit_code == 0, result.output
    (comparison,) = json.loads(result.stdout)["comparisons"]
    errors = {m["model"]: m["metrics"]["clean_error"]["estimate"] for m in comparison["models"]}
    assert len(errors) == 3 and len(set(errors.values())) == 1
    # --random-weights: torchvision:<name> gets them, a module keeps the weights it comes with
    mixed = run("compare", "--model", "torchvision:resnet18", "--model", f"{user_package}:resnet18_like",
                "--random-weights", "--data", image_folder, "--store", tmp_path / "t.db", "--workers", 0,
                "--limit", 2, "--no-intervals", "--format", "json")
    assert mixed.exit_code == 0, mixed.output
    notes = {r["model"]: r["notes"] for r in json.loads(mixed.stdout)["reports"]}
    random = [model for model, said in notes.items()
              if any(n.startswith("weights: seeded random") for n in said)]
    assert random == ["torchvision:resnet18"], notes


def test_a_bad_preprocess_is_refused_before_compute(tmp_path, image_folder):
    from robustbench_gcp.errors import ConfigError

    net = torchvision.models.resnet18()
    own = (r"^preprocess input_size=300 does not fit resize_size 256, ImageNet's \(the model has no "
           r"pretrained_cfg\)")
    for bad, message in (({"interpolation": "lanczos9"}, "should be one of"),
                         ({"input_size": 300}, own),
                         ({"input_size": 16}, r"^`preprocess\['input_size'\]` should be an integer >= 32. "
                                              "Got 16"),
                         ({"input_size": 96, "resize_size": 64},
                          r"^`preprocess\['input_size'\]` 96 should be <= `preprocess\['resize_size'\]` 64"),
                         ({"crop": 224}, "unknown keys")):
        with pytest.raises(ConfigError, match=message):
            evaluate(net, name="x", data=image_folder, store=tmp_path / "s.db", preprocess=bad)
    assert not (tmp_path / "s.db").exists()


def test_torchvision_models_take_their_published_preprocessing_and_preprocess_is_an_option(
        tmp_path, image_folder):
    """inception_v3 ran at 256 / 224 (its weights were trained at 342 / 299), efficientnet_b4 at 224
    bilinear (384 / 380 bicubic), and the command line could not say otherwise."""
    from robustbench_gcp import plan
    from robustbench_gcp.errors import CheckpointError, ConfigError
    from robustbench_gcp.models.preprocessing import torchvision_preprocess
    from robustbench_gcp.models.resnet import PreprocessConfig

    assert torchvision_preprocess("inception_v3") == PreprocessConfig(299, 342)
    assert torchvision_preprocess("efficientnet_b4") == PreprocessConfig(380, 384, "bicubic")
    assert torchvision_preprocess("efficientnet_v2_l") == PreprocessConfig(480, 480, "bicubic", (0.5,) * 3,
                                                                           (0.5,) * 3)
    assert torchvision_preprocess("resnet18") == PreprocessConfig()
    assert torchvision_preprocess("resnet50") is None  # V1 at 256, V2 at 232: ImageNet's then
    common = dict(data=image_folder, store=tmp_path / "s.db", random_weights=True)
    for ref, expected in (("torchvision:inception_v3", PreprocessConfig(299, 342)),
                          ("torchvision:resnet50", PreprocessConfig())):
        assert plan(ref, **common).model.external.preprocess == expected, ref
    given = plan("torchvision:inception_v3", preprocess={"input_size": 288, "resize_size": 320}, **common)
    assert given.model.external.preprocess == PreprocessConfig(288, 320)
    # where torchvision's weights differ, ImageNet's, and the report says so
    assert plan("torchvision:resnet50", **common).model.external.note == (
        "preprocessing: ImageNet's (resize 256, crop 224, bilinear); torchvision's published resnet50 "
        "weights differ in theirs (256 / 224 bilinear; 232 / 224 bilinear): give --preprocess (preprocess=) "
        "to match the checkpoint's")
    assert plan("torchvision:resnet18", **common).model.external.note == ""
    assert plan("torchvision:resnet50", preprocess={"resize_size": 232}, **common).model.external.note == ""
    # a ViT is built for its input size: torchvision's SWAG weights (384 px) did not load
    from robustbench_gcp.models.external import external_source

    vit = external_source("torchvision:vit_b_16", {"resize_size": 384, "input_size": 384}).build()
    assert vit.image_size == 384 and vit.encoder.pos_embedding.shape == (1, 577, 768)
    # and without the size given, the file's position embeddings say which (a shape mismatch did not):
    # the check comes before the keys' (these files hold the embeddings alone, not 350 MB of weights)
    def refused(tensors: dict, **preprocess) -> str:
        torch.save(tensors, tmp_path / "vit.pth")
        with pytest.raises(CheckpointError) as error:
            plan("torchvision:vit_b_16", data=image_folder, store=tmp_path / "s.db",
                 checkpoint=tmp_path / "vit.pth", preprocess=preprocess or None)
        return str(error.value)

    assert re.fullmatch(
        r"'.*vit.pth': its position embeddings \(encoder.pos_embedding, 577 tokens\) are of 384x384 images; "
        r"torchvision:vit_b_16 was built for 224x224: give --preprocess input_size=384,resize_size=384,"
        r"interpolation=bicubic \(as torchvision preprocesses its weights of that size\)",
        refused({"encoder.pos_embedding": vit.encoder.pos_embedding.detach()}))
    # where torchvision's weights of that size have two recipes (224 px: 256 bilinear, 224 bicubic), both
    at_224 = refused({"encoder.pos_embedding": torch.zeros(1, 197, 768)}, input_size=384, resize_size=384)
    assert at_224.endswith(
        "are of 224x224 images; torchvision:vit_b_16 was built for 384x384: give --preprocess input_size=224,"
        "resize_size=224 or the resize its weights of that size were made with (torchvision's: "
        "resize_size=224,interpolation=bicubic; resize_size=256,interpolation=bilinear)")
    # another ViT's file (patches of 32, or another width) is not taken for another image size
    for tensors in ({"encoder.pos_embedding": torch.zeros(1, 50, 768),
                     "conv_proj.weight": torch.zeros(768, 3, 32, 32)},
                    {"encoder.pos_embedding": torch.zeros(1, 50, 1024)}):
        said = refused(tensors)
        assert "does not fit torchvision:vit_b_16" in said and "position embeddings" not in said

    store = tmp_path / "cli.db"
    args = ("--model", "torchvision:resnet18", "--random-weights", "--data", image_folder, "--store", store,
            "--workers", 0, "--limit", 4)
    result = run("eval", *args, "--preprocess", "resize_size=96, input_size=64,interpolation=bicubic,"
                                                "mean=0.5:0.5:0.5,std=0.25:0.25:0.25")
    assert result.exit_code == 0, result.output
    with Store(store, read_only=True) as s:
        (stored,) = s.runs()
    assert stored.identity["preprocess"] == [96, 64, [0.5] * 3, [0.25] * 3, "bicubic"]
    said = "Invalid value for '--preprocess': "
    for bad, message in (("resize_size=x", "`resize_size` should be an integer >= 32. Got 'x'"),
                         ("std=0:1:1", f"{said}`std` should hold 3 positive finite numbers. Got (0.0"),
                         ("mean=nan:0:0", f"{said}`mean` should hold 3 finite numbers"),
                         ("resize_size", "expected key=value items separated by commas. Got 'resize_size'"),
                         ("mean=a:b:c", "`mean` should be three numbers R:G:B. Got 'a:b:c'"),
                         ("input_size=64,input_size=96", "input_size is given twice"),
                         ("crop=64", "unknown key 'crop'. Choose from: resize_size, input_size, "),
                         ("resize=256", f"{said}unknown key 'resize'. Did you mean 'resize_size'?"),
                         ("input_size=299", "preprocess input_size=299 does not fit the model's own "
                                            "resize_size 256"),
                         ("input_size=0", f"{said}`input_size` should be an integer >= 32. Got 0"),
                         ("input_size=64,resize_size=48", f"{said}`input_size` 64 should be <= `resize_size` "
                                                          "48: the crop is of the resized image"),
                         ("interpolation=cubic", f"{said}`interpolation` should be one of nearest, "),
                         ("mean=1:2", f"{said}`mean` should hold 3 numbers")):
        assert message in error_of(*args, "--preprocess", bad), bad
    assert "`preprocess` applies to models you bring; resnet18-gap has its own" in error_of(
        "--model", "resnet18-gap", "--random-weights", "--data", image_folder, "--store", store,
        "--preprocess", "input_size=64")
    with pytest.raises(ConfigError, match=r"`preprocess\['input_size'\]` should be an integer >= 32"):
        plan("torchvision:resnet18", preprocess={"input_size": "224"}, **common)
    with pytest.raises(ConfigError, match=r"`preprocess\['mean'\]` should hold 3 numbers \(R, G, B\). "
                                          r"Got '123'"):
        plan("torchvision:resnet18", preprocess={"mean": "123"}, **common)  # it was (1.0, 2.0, 3.0)


def test_landscape_at_the_stem_of_a_users_model(user_package, image_folder, gap_checkpoint, tmp_path):
    """A user's module (also one whose builder keeps what it returns) gives the registry model's
    landscape at the stem; a module without a known stem is refused in one line."""
    store = tmp_path / "s.db"
    sections = []
    for model in ("resnet18-gap", f"{user_package}:resnet18_like", f"{user_package}:kept"):
        result = run("eval", "--model", model, "--checkpoint", gap_checkpoint, "--data", image_folder,
                     "--store", store, "--suite", "landscape", "--landscape-at", "stem", "--limit", 3,
                     "--etas", "0.01:0.1:2", "--workers", 0, "--format", "json")
        assert result.exit_code == 0, result.output
        sections.append(json.loads(result.stdout)["landscape"])
    assert sections[1] == sections[0] and sections[2] == sections[0]
    line = error_of("--model", f"{user_package}:stemless", "--data", image_folder, "--store", store,
                    "--suite", "landscape", "--landscape-at", "stem")
    assert f"model '{user_package}:stemless'" in line and "has no known stem" in line, line


FLOAT32_MODULE = '''
import threading

import torch


class Float32Only(torch.nn.Module):
    """A weight kept as a plain attribute (no parameter nor buffer): .to(float64) leaves it float32."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=8), torch.nn.AdaptiveAvgPool2d(1),
                                        torch.nn.Flatten())
        self.w = torch.randn(1000, 4)

    def forward(self, x):
        return torch.nn.functional.linear(self.body(x), self.w)


def float32_only():
    return Float32Only()


class Locked(Float32Only):
    """Holds a lock: copy.deepcopy fails."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()


def locked():
    return Locked()
'''


def test_a_module_that_computes_in_float32_only_is_told_of_the_landscapes_float64(on_sys_path, image_folder,
                                                                                tmp_path):
    """The landscape measures a float64 copy of the model: a module that computes in float32 only
    said "mend the model's code", one that cannot be copied gave a traceback (helper-236); both run
    with --landscape-precision float32, which the errors name."""
    package = f"f32nets_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{package}.py").write_text(FLOAT32_MODULE)
    common = ("--data", image_folder, "--store", tmp_path / "s.db", "--suite", "landscape", "--landscape-at",
              "pixels", "--limit", 2, "--etas", "0.01:0.1:2", "--workers", 0)
    for model, said in (("float32_only", "runs a float64 copy of the model"), ("locked", "cannot be copied")):
        line = error_of("--model", f"{package}:{model}", *common)
        assert said in line and "give --landscape-precision float32" in line, line
        result = run("eval", "--model", f"{package}:{model}", *common, "--landscape-precision", "float32")
        assert result.exit_code == 0, result.output


def test_the_header_says_whose_weights_a_module_without_checkpoint_has(user_package, image_folder, tmp_path):
    """A callable's module as it comes (its own weights, maybe pretrained) is not 'random weights'."""
    common = ["--data", image_folder, "--store", tmp_path / "s.db", "--workers", 0, "--limit", 4]
    own = run("eval", "--model", f"{user_package}:resnet18_like", *common)
    assert own.exit_code == 0 and "weights the module's own (state dict sha256 " in own.stdout, own.output
    random = run("eval", "--model", "torchvision:resnet18", "--random-weights", *common)
    assert random.exit_code == 0 and "weights random weights (state dict sha256 " in random.stdout
    # a file of the same weights evaluated first: the run is found by its weights, and the header of the
    # module's own run named that file
    fresh = [*common[:2], "--store", tmp_path / "t.db", *common[4:]]
    torch.manual_seed(0)  # as the tool builds it (seed 0): the module's own weights
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "same.pth")
    filed = run("eval", "--model", f"{user_package}:resnet18_like", "--checkpoint", tmp_path / "same.pth",
                *fresh)
    assert filed.exit_code == 0 and f"weights {tmp_path / 'same.pth'}" in " ".join(filed.stdout.split())
    own = run("eval", "--model", f"{user_package}:resnet18_like", *fresh)
    assert own.exit_code == 0 and "results stored for these weights are reused" in own.output, own.output
    assert "weights the module's own (state dict sha256 " in own.stdout and "same.pth" not in own.stdout


def test_a_misspelled_keyword_of_the_library_suggests_the_option(tmp_path):
    from robustbench_gcp import plan

    for wrong, right in (("corruption", "corruptions"), ("batchsize", "batch_size")):
        with pytest.raises(TypeError, match=rf"^unexpected option '{wrong}'\. Did you mean '{right}'\?$"):
            evaluate("demo-gap", data=str(tmp_path), **{wrong: 1})
    with pytest.raises(TypeError, match="Did you mean 'severities'"):
        plan("demo-gap", data=str(tmp_path), flags={"severity": [1]})


def test_the_library_refuses_a_name_that_is_not_text_and_a_model_of_none(tmp_path):
    """name=["a"] failed in the store ("Error binding parameter 2"), name=5 was the int 5 in
    evaluate's report and '5' read back from the store; evaluate(None) looked for a model 'NoneType'."""
    from robustbench_gcp.errors import ConfigError

    for name in (["a"], 5):
        with pytest.raises(ConfigError, match=r"^`name` should be text: the name reports show\. Got "):
            evaluate("demo-gap", name=name, data=str(tmp_path), store=str(tmp_path / "s.db"))
    with pytest.raises(ConfigError, match=r"^`model` should be a model name or a torch.nn.Module\. Got None"):
        evaluate(None, data=str(tmp_path), store=str(tmp_path / "s.db"))
    assert not (tmp_path / "s.db").exists()


def test_the_library_refuses_options_of_another_type_by_name(tmp_path):
    """suite=None, dataset=10, checkpoint=123, data=3, config=3: TypeErrors from difflib, fetch or
    pathlib, deep in the stack."""
    import torch

    from robustbench_gcp.errors import ConfigError

    for option, value, what in (("suite", None, "a suite's name"), ("suite", 3, "a suite's name"),
                                ("dataset", 10, "a dataset's name"), ("checkpoint", 123, "a path or URL"),
                                ("data", 3, "a path"), ("config", 3, "a path or a Config"),
                                ("baseline", None, "a baseline's name"),
                                ("device", 0, "cpu, cuda, cuda:N, mps or auto (text or a torch.device)")):
        kwargs = {"data": str(tmp_path), "store": str(tmp_path / "s.db"), option: value}
        with pytest.raises(ConfigError, match=rf"^`{option}` should be {re.escape(what)}\. Got {value!r}$"):
            evaluate("demo-gap", **kwargs)
    assert not (tmp_path / "s.db").exists()
    from robustbench_gcp.pipeline.planning import EvalOptions

    EvalOptions(device=torch.device("cpu"), data=tmp_path).validate()  # a torch.device, a Path: taken


def test_a_checkpoint_gone_between_plan_and_run_is_a_checkpoint_error(user_package, image_folder,
                                                                      gap_checkpoint, tmp_path):
    from robustbench_gcp import plan, run
    from robustbench_gcp.errors import CheckpointError

    mine = tmp_path / "mine.pth"
    mine.write_bytes(gap_checkpoint.read_bytes())
    planned = plan(f"{user_package}:resnet18_like", checkpoint=str(mine), data=str(image_folder),
                   store=str(tmp_path / "s.db"), workers=0)
    mine.unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint file .*mine.pth does not exist"):
        run(planned)


def test_a_users_module_with_a_child_called_module_loads_its_own_file(user_package, tmp_path):
    """`module.` is stripped as DataParallel's prefix, but not from a module whose own keys hold it
    (a DataParallel file of such a module had both stripped: it did not load)."""
    import importlib

    from robustbench_gcp.models.external import external_source, load_external

    torch.manual_seed(3)
    wrapped = importlib.import_module(user_package).Wrapped().eval()
    torch.save(wrapped.state_dict(), tmp_path / "wrapped.pth")
    loaded = load_external(external_source(f"{user_package}:Wrapped"), "w", tmp_path / "wrapped.pth")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), wrapped(x))
    # saved from DataParallel (module.module.*) or torch.compile (_orig_mod.module.*), it loads too
    for prefix in ("module.", "_orig_mod."):
        torch.save({prefix + k: v for k, v in wrapped.state_dict().items()}, tmp_path / "dp.pth")
        loaded = load_external(external_source(f"{user_package}:Wrapped"), "w", tmp_path / "dp.pth")
        with torch.no_grad():
            assert torch.equal(loaded(x), wrapped(x))
    # a plain module saved from DataParallel still loads, its prefix stripped
    plain = wrapped.module
    torch.save({f"module.{k}": v for k, v in plain.state_dict().items()}, tmp_path / "dp.pth")
    loaded = load_external(external_source(f"{user_package}:resnet18_like"), "p", tmp_path / "dp.pth")
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))


class Both(torch.nn.Module):
    """Own keys that differ by `module.` alone: `module.fc.*` and `fc.*`."""

    def __init__(self):
        super().__init__()
        self.module = torch.nn.Sequential()
        self.module.fc = torch.nn.Linear(3, 4)
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(x.mean((2, 3))) + self.module.fc(x.mean((2, 3)))


def test_keys_that_differ_by_a_wrapper_name_alone_load_plain_and_from_data_parallel(tmp_path):
    from robustbench_gcp.models.checkpoint import strip_wrappers

    net = Both()
    own = net.state_dict()
    for prefix in ("", "module.", "_orig_mod.module."):
        tensors, _ = strip_wrappers({prefix + k: v for k, v in own.items()}, own.keys())
        assert list(tensors) == list(own) and all(tensors[k] is own[k] for k in own)
    assert strip_wrappers({}, own.keys()) == ({}, [])  # an empty dict: peeling never stopped


def test_a_brought_module_keeps_what_its_run_identity_reads_and_is_wrapped_once(tmp_path):
    """BroughtModel hid the module's `strides` (a covariance ResNet's run identity lost its
    last_stride), and a module the library returned was wrapped again (another hash: a new run)."""
    from robustbench_gcp.models import create_model
    from robustbench_gcp.models.external import BroughtModel, load_external, module_source, state_dict_hash
    from robustbench_gcp.pipeline.identity import _stride_identity

    torch.manual_seed(0)
    inner = create_model("resnet18-svdpade").eval()
    brought = load_external(module_source(inner, "mine"), "mine")
    assert isinstance(brought, BroughtModel) and brought.strides == inner.strides
    assert _stride_identity(brought) == _stride_identity(inner) == {"last_stride": 2}
    again = load_external(module_source(brought, "again"), "again")
    assert again.net is inner and state_dict_hash(again) == state_dict_hash(inner) == brought.weights_hash


def test_a_library_run_keeps_the_callers_state_and_files_the_weights_it_used(image_folder, tmp_path):
    """A module whose weights change between plan() and run() is stored under the weights the run
    used (it was filed under the plan's, so the old weights later reused its results); the caller's
    global RNG and torch's TF32 settings are as they were."""
    from robustbench_gcp import evaluate, plan, run
    from robustbench_gcp.engine.device import exact_float32, kept_float32_settings
    from robustbench_gcp.models.external import STATE_DICT_SHA256, state_dict_hash

    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    store = tmp_path / "s.db"
    options = dict(name="mine", data=str(image_folder), store=str(store), workers=0, batch_size=6)
    planned = plan(net, **options)
    with torch.no_grad():
        net.fc.bias.add_(1.0)
    changed = state_dict_hash(net)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    run(planned)
    assert torch.equal(torch.rand(3), expected)  # no draw from the caller's generator
    with Store(store, read_only=True) as s:
        (stored,) = s.runs()
    assert stored.identity["weights"] == f"{STATE_DICT_SHA256}{changed}"
    net.load_state_dict(before)
    again = evaluate(net, **options)
    assert again.to_json()["computed"]["computed"] > 0  # other weights: computed, not reused
    # what a CUDA run turns off is on again afterwards
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    was = (conv.fp32_precision, matmul.fp32_precision)
    with kept_float32_settings():
        exact_float32()
        assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
    assert (conv.fp32_precision, matmul.fp32_precision) == was
    # a caller's float64 default dtype: the model is still built in float32 (it failed on the
    # float32 images), and the default is the caller's again afterwards
    torch.set_default_dtype(torch.float64)
    try:
        evaluate("resnet18-gap", random_weights=True, data=str(image_folder), store=str(tmp_path / "t.db"),
                 workers=0, limit=2)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)


def test_library_options_take_numpy_integers_and_paths_and_refuse_what_they_cannot_use():
    import numpy as np

    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.pipeline.planning import EvalOptions

    options = EvalOptions.of(limit=np.int64(4), batch_size=np.int32(3), seed=np.int64(1),
                             checkpoint=Path("w.pth"))
    options.validate()
    assert (options.limit, options.batch_size, options.seed, options.checkpoint) == (4, 3, 1, "w.pth")
    assert type(options.limit) is int
    for given, said in ((dict(limit=True), "`--limit` should be a positive integer. Got True"),
                        (dict(amp="no"), "`amp` should be True or False. Got 'no'"),
                        (dict(channels_last="no"), "`channels_last` should be True or False. Got 'no'"),
                        (dict(store=None), "`store` should be the path of a store file. Got None")):
        with pytest.raises(ConfigError) as error:
            EvalOptions.of(**given).validate()
        assert str(error.value) == said


def test_a_reports_json_is_the_callers_to_change(image_folder, tmp_path):
    from robustbench_gcp import evaluate

    report = evaluate("resnet18-gap", random_weights=True, data=str(image_folder),
                      store=str(tmp_path / "s.db"), workers=0, limit=4)
    first = report.to_json()
    first["clean"]["top1_error"] = 0.99
    assert report.to_json()["clean"]["top1_error"] != 0.99 and report.sections["clean"]["top1_error"] != 0.99


def test_models_you_bring_take_the_raw_weights_extra_state_and_torchvisions_input_transform(
        user_package, image_folder, tmp_path):
    """--no-ema took a training file's EMA weights for a module you bring; torchvision's googlenet
    was built without the input transform its published weights expect (same keys: loaded, other
    logits); a module with extra state (get_extra_state) broke the hash and the file's reading."""
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.models import create_model
    from robustbench_gcp.pipeline.weights import choose_model, load_chosen

    config = load_config()
    torch.manual_seed(0)
    raw, ema = torchvision.models.resnet18(), torchvision.models.resnet18()
    training = tmp_path / "training.pth.tar"
    torch.save({"state_dict": raw.state_dict(), "state_dict_ema": ema.state_dict()}, training)
    for take_ema, source in ((True, ema), (False, raw)):
        choice = choose_model(config, "torchvision:resnet18", checkpoint=str(training), ema=take_ema)
        loaded = load_chosen(choice, "cpu")
        assert torch.equal(loaded.net.fc.weight, source.fc.weight)

    published = torchvision.models.googlenet(weights=None, transform_input=True, aux_logits=True,
                                             init_weights=False).eval()
    torch.save(published.state_dict(), tmp_path / "googlenet.pth")
    googlenet = str(tmp_path / "googlenet.pth")
    ours = load_chosen(choose_model(config, "torchvision:googlenet", checkpoint=googlenet), "cpu")
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), published(x))

    reference = eval_json(f"{user_package}:with_extra_state", image_folder, tmp_path / "a.db")
    saved = build_user(user_package, "with_extra_state")
    saved.note = {"temperature": 2.0}
    torch.save(saved.state_dict(), tmp_path / "extra.pth")
    choice = choose_model(config, f"{user_package}:with_extra_state", checkpoint=str(tmp_path / "extra.pth"))
    loaded = load_chosen(choice, "cpu")
    assert loaded.net.note == {"temperature": 2.0}
    from_file = eval_json(f"{user_package}:with_extra_state", image_folder, tmp_path / "a.db",
                          "--checkpoint", tmp_path / "extra.pth")
    assert from_file["run"] != reference["run"]  # the extra state is part of the weights' hash

    with pytest.raises(ConfigError, match=r"`--sha256` checks a checkpoint file, and .* runs with its own "):
        choose_model(config, f"{user_package}:with_extra_state", sha256="0" * 64)
    with pytest.raises(ConfigError, match="`last_stride` applies to the ResNets; mobilenetv2-isqrt has no"):
        create_model("mobilenetv2-isqrt", last_stride=1)


def build_user(package, name):
    import importlib

    return getattr(importlib.import_module(package), name)()


def test_extra_state_hashes_by_value_and_only_torchvision_refs_carry_the_input_transform(
        user_package, tmp_path):
    """Extra state was hashed by its repr: a BytesIO's names its address (each process a new run),
    a long tensor's is summarized (two models, one run). A module you bring built with
    transform_input=True got a new run key in 0.7.6 though nothing of it changed."""
    import io

    from robustbench_gcp import plan
    from robustbench_gcp.models.external import state_dict_hash
    from robustbench_gcp.pipeline.identity import _transform_input_identity

    class Stateful(torch.nn.Linear):
        def __init__(self, state):
            torch.manual_seed(0)
            super().__init__(2, 2)
            self.state = state

        def get_extra_state(self):
            return self.state

    def with_state(state):
        return Stateful(state)

    buffers = [with_state(io.BytesIO(b"amax")) for _ in range(2)]
    assert state_dict_hash(buffers[0]) == state_dict_hash(buffers[1])
    changed = torch.arange(2000)
    changed[1000] = 7
    long = [with_state({"amax": torch.arange(2000)}), with_state({"amax": changed})]
    assert state_dict_hash(long[0]) != state_dict_hash(long[1])
    # NumPy arrays likewise (a repr of 2,000 values shows 6), sets in any process's order, objects
    # with Python's default repr (their address) by their attributes
    numpy_changed = np.arange(2000)
    numpy_changed[1000] = 7
    assert state_dict_hash(with_state(np.arange(2000))) != state_dict_hash(with_state(numpy_changed))
    assert state_dict_hash(with_state(np.arange(2000))) == state_dict_hash(with_state(np.arange(2000)))

    class Settings:
        def __init__(self, scale):
            self.scale = scale

    assert state_dict_hash(with_state(Settings(2))) == state_dict_hash(with_state(Settings(2))) != \
        state_dict_hash(with_state(Settings(3)))

    class Slotted:  # its state is not in vars(): by its repr (an address), never one hash for two
        __slots__ = ("scale",)

        def __init__(self, scale):
            self.scale = scale

    import random

    for one, other in ((Slotted(2), Slotted(3)), (random.Random(1), random.Random(2)),
                       (np.ma.array([1, 2, 3], mask=[0, 0, 0]), np.ma.array([1, 2, 3], mask=[0, 1, 0])),
                       (np.zeros(2, [("a", "<f4"), ("b", "<f4")]),
                        np.zeros(2, [("a", "<i4"), ("b", "<i4")]))):
        assert state_dict_hash(with_state(one)) != state_dict_hash(with_state(other)), (one, other)
    deep = Settings(None)
    for _ in range(1000):  # deeper than Python's recursion allows: hashed (a RecursionError)
        deep = Settings(deep)
    state_dict_hash(with_state(deep))
    script = ("import torch; from robustbench_gcp.models.external import state_dict_hash\n"
              "class M(torch.nn.Linear):\n    def get_extra_state(self):\n"
              "        return {'classes': {f'class {k}' for k in range(50)}}\n"
              "torch.manual_seed(0); print(state_dict_hash(M(2, 2)))")
    hashes = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(hashes) == 1, hashes
    # a sparse buffer: its values (contiguous() refused its layout, a traceback)
    sparse = [torch.nn.Linear(2, 2) for _ in range(2)]
    for net, value in zip(sparse, (1.0, 2.0)):
        net.register_buffer("adjacency", (value * torch.eye(3)).to_sparse())
    assert state_dict_hash(sparse[0]) != state_dict_hash(sparse[1])
    image_folder = tmp_path / "images"
    for k in range(2):
        (image_folder / f"c{k}").mkdir(parents=True)
        # 96 px: ImageNet-like images (64 px ones are taken for Tiny-ImageNet's, which a 224 px
        # model is refused when planned)
        image = torchvision.transforms.functional.to_pil_image(torch.rand(3, 96, 96))
        image.save(image_folder / f"c{k}" / "a.png")
    common = dict(data=image_folder, class_order="sorted", store=tmp_path / "s.db", suite="clean")
    assert _transform_input_identity(plan("torchvision:googlenet", random_weights=True, **common)) == {
        "transform_input": True}
    assert _transform_input_identity(plan(f"{user_package}:resnet18_like", **common)) == {}


def test_tensors_a_module_computes_with_but_does_not_save_are_in_its_weights_hash(image_folder, tmp_path):
    """A non-persistent buffer (a normalization's mean) or a tensor kept as a plain attribute
    changes a module's outputs but not its state dict: two such modules had one weights hash,
    and the second reused the first's stored results. A module without any keeps its old hash."""
    from robustbench_gcp.models.external import state_dict_hash

    class Normalized(torch.nn.Module):
        def __init__(self, mean, scale):
            super().__init__()
            torch.manual_seed(0)
            self.net = torchvision.models.resnet18()
            self.net.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.scale = torch.tensor(scale)

        def forward(self, x):
            return self.net((x - self.net.mean) * self.scale)

    base = Normalized([0.5, 0.5, 0.5], 2.0)
    assert state_dict_hash(base) == state_dict_hash(Normalized([0.5, 0.5, 0.5], 2.0))
    assert state_dict_hash(base) != state_dict_hash(Normalized([0.4, 0.5, 0.5], 2.0))
    assert state_dict_hash(base) != state_dict_hash(Normalized([0.5, 0.5, 0.5], 3.0))
    # the hash of a module with none is the one earlier versions stored (their runs are found)
    plain = torch.nn.Linear(3, 2)
    with torch.no_grad():
        plain.weight.copy_(torch.arange(6.0).reshape(2, 3))
        plain.bias.copy_(torch.tensor([0.5, -1.0]))
    plain.register_buffer("seen", torch.tensor([3]))
    assert state_dict_hash(plain) == "0d9ee3e67419c551cfb431dcf25eebba4a4f7e52f7e775a0bd23f5949ee36c5f"
    # a tensor with no data (a shape probe on the meta device) is hashed by its kind (a traceback),
    # a nested one by its parts, tensors in a list or dict attribute by their values
    probe = torch.nn.Linear(3, 2)
    probe.shape_probe = torch.empty(0, 3, device="meta")
    state_dict_hash(probe)
    nested = [torch.nn.Linear(3, 2) for _ in range(2)]
    for net, value in zip(nested, (1.0, 2.0)):
        torch.manual_seed(0)
        net.load_state_dict(plain.state_dict(), strict=False)
        net.parts = torch.nested.nested_tensor([torch.ones(2) * value, torch.ones(3)])
    assert state_dict_hash(nested[0]) != state_dict_hash(nested[1])
    listed = [torch.nn.Linear(3, 2) for _ in range(2)]
    for net, value in zip(listed, (1.0, 2.0)):
        net.load_state_dict(plain.state_dict(), strict=False)
        net.stats = [torch.tensor(value)]
    assert state_dict_hash(listed[0]) != state_dict_hash(listed[1])
    # deeper in containers too; a meta tensor there is hashed by its kind; only the tensors of a
    # container count (a function's repr holds an address: another hash in each process), and
    # not the model's own parameters an RNN keeps in a list (its stored runs were recomputed)
    from robustbench_gcp.models.weights_hash import _unsaved_tensors

    deep = [torch.nn.Linear(3, 2) for _ in range(2)]
    for net, value in zip(deep, (1.0, 2.0)):
        net.load_state_dict(plain.state_dict(), strict=False)
        net.norm = {"scale": (torch.tensor(value),), "probes": [torch.empty(0, 3, device="meta")],
                    "ops": [torch.relu]}
    assert state_dict_hash(deep[0]) != state_dict_hash(deep[1])
    assert [key for key, _ in _unsaved_tensors(deep[0])] == [
        "norm (attribute)['scale'][0]", "norm (attribute)['probes'][0]"]
    assert _unsaved_tensors(torch.nn.LSTM(3, 4)) == []
    options = dict(name="mine", data=str(image_folder), store=str(tmp_path / "s.db"), workers=0,
                   batch_size=6, suite="clean")
    first = evaluate(Normalized([0.5, 0.5, 0.5], 2.0).eval(), **options)
    other = evaluate(Normalized([0.1, 0.2, 0.3], 2.0).eval(), **options)
    assert other.to_json()["computed"]["computed"] > 0  # computed, not the first's results
    assert first.to_json()["computed"]["computed"] > 0


def test_the_plan_checks_the_weights_the_run_takes_ema_or_raw(tmp_path):
    """The plan-time check read a training file's EMA weights whatever --no-ema said: raw weights
    that do not fit (or are NaN) passed it and failed after other models were computed."""
    from robustbench_gcp.config import load_config
    from robustbench_gcp.errors import CheckpointError
    from robustbench_gcp.pipeline.weights import check_weights, choose_model

    config = load_config()
    training = tmp_path / "training.pth.tar"
    torch.save({"state_dict": torchvision.models.resnet18(num_classes=10).state_dict(),
                "state_dict_ema": torchvision.models.resnet18().state_dict()}, training)
    assert check_weights(choose_model(config, "resnet18-gap", checkpoint=str(training))) == 1000
    assert check_weights(choose_model(config, "resnet18-gap", checkpoint=str(training), ema=False)) == 10
    raw = torchvision.models.resnet18().state_dict()
    raw["fc.weight"][0, 0] = float("nan")
    torch.save({"state_dict": raw, "state_dict_ema": torchvision.models.resnet18().state_dict()}, training)
    check_weights(choose_model(config, "resnet18-gap", checkpoint=str(training)))
    with pytest.raises(CheckpointError, match="fc.weight"):
        check_weights(choose_model(config, "resnet18-gap", checkpoint=str(training), ema=False))


def test_a_module_in_another_precision_is_told_to_call_float(image_folder, tmp_path):
    """A float64 (or float16) module failed on torch's dtype mismatch, with no word on the fix."""
    net = torchvision.models.resnet18(num_classes=10).double()
    with pytest.raises(ConfigError) as error:
        evaluate(net, name="double", data=image_folder, store=tmp_path / "s.db", limit=4)
    # named as the library was given it (it was "`--model module:double`", a command line never written)
    assert str(error.value).startswith("model 'double': the forward pass of a (2, 3, 224, 224) batch failed")
    # (it said "--amp runs it in half precision", and --amp failed alike: it casts no weights)
    assert str(error.value).endswith("(its weights are torch.float64, the images float32: return the model "
                                     "in float32, .float(); --amp then runs its operators in half precision "
                                     "where they allow)"), error.value


@pytest.mark.parametrize("option, said", [
    ({"sqrt": "eig"}, "`sqrt` / `ns_iters` apply to the registry's GCP models, not to model 'x'"),
    ({"random_weights": True}, "`random_weights` gives seeded random weights to the registry's models and "
                               "torchvision:<name>; model 'x' comes with its own weights: drop it"),
    ({"sha256": "0" * 64}, "`sha256` checks a checkpoint file, and model 'x' runs with its own weights: "
                           "drop it"),
    ({"random_weights": True, "sha256": "0" * 64},
     "`random_weights` and `sha256` exclude each other: the hash checks a checkpoint file"),
])
def test_a_module_given_to_the_library_is_refused_options_in_the_librarys_words(image_folder, tmp_path,
                                                                               option, said):
    """They named the command line's flags and "module:x", and advised a --checkpoint the library refuses
    with a module."""
    from robustbench_gcp import plan

    with pytest.raises(ConfigError) as error:
        plan(torchvision.models.resnet18(num_classes=4), name="x", data=image_folder, store=tmp_path / "s.db",
             **option)
    assert str(error.value) == said


def test_a_module_that_returns_probabilities_is_refused_where_gradients_are_taken(image_folder, tmp_path):
    """A softmax at the end was accepted as logits, its gradients flattened by the attacks' own
    softmax. Suites that only rank the outputs take it; log-probabilities are logits (the
    cross-entropy is the same)."""
    torch.manual_seed(0)
    logits = torchvision.models.resnet18()
    softmax = torch.nn.Sequential(logits, torch.nn.Softmax(dim=1))
    common = dict(data=image_folder, store=tmp_path / "s.db", limit=6, batch_size=6)
    attack = dict(suite="adversarial", attacks="fgsm", epsilons="1/255")
    for suite in (attack, dict(suite="landscape", landscape_at="pixels")):
        with pytest.raises(ConfigError, match=r"^model 'soft' returns probabilities, not logits "
                                              r"\(its outputs for two random images are >= 0 and sum to 1 "
                                              rf"per image\): the {suite['suite']} suite takes the cross-"):
            evaluate(softmax, name="soft", **common, **suite)
    ranked = evaluate(softmax, name="soft", **common)  # clean: the same top-1 as the logits'
    assert ranked.sections["clean"] == evaluate(logits, name="plain", **common).sections["clean"]
    log = evaluate(torch.nn.Sequential(logits, torch.nn.LogSoftmax(dim=1)), name="log", **common, **attack)
    assert log.sections["attacks"] == evaluate(logits, name="plain", **common, **attack).sections["attacks"]


def test_what_a_users_module_prints_goes_to_stderr_and_the_report_to_stdout(image_folder, tmp_path,
                                                                             on_sys_path):
    """"mynets imported" (printed on import) came before `--format json`'s report on stdout, which
    then did not parse; the builder's and forward's prints too."""
    name = f"printing_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        import torchvision
        print("imported")

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = torchvision.models.resnet18(num_classes=10)

            def forward(self, x):
                print("forward")
                return self.net(x)

        def build():
            print("built")
            return Net()
    """))
    for command in ("eval", "compare"):
        result = run(command, "--model", f"{name}:build", "--data", image_folder, "--store",
                     tmp_path / f"{command}.db", "--workers", 0, "--format", "json", "--limit", 4,
                     "--class-order", "sorted")
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)
        assert "built" in result.stderr and "forward" in result.stderr and "forward" not in result.stdout
        assert ("imported" in result.stderr) == (command == "eval")  # imported once in this process
    # the bench commands that take a model: their --json too
    landscape = ["landscape", "--etas", "0.01:0.02:2", "--landscape-at", "pixels"]
    for bench in (["attack", "--steps", "1"], landscape):
        result = run("bench", *bench, "--model", f"{name}:build", "--images", 1, "--batch-size", 1,
                     "--repeats", 1, "--device", "cpu", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["model"] == f"{name}:build"
        assert "forward" in result.stderr and "forward" not in result.stdout


def test_a_file_path_as_model_says_the_module_name_and_folder(image_folder, tmp_path):
    """`um/mynets.py:tiny` was said to be "in this folder ... PYTHONPATH=." (which failed again), and
    `./um/mynets.py:tiny` got importlib's "the 'package' argument is required"."""
    for given, folder, stem in (("um/mynets.py", "um", "mynets"), ("./um/mynets.py", "um", "mynets"),
                                ("mynets.py", ".", "mynets")):
        with pytest.raises(ConfigError, match=re.escape(
                f"`--model {given}:tiny`: '{given}' is a file's path, and --model takes a module's name: "
                f"PYTHONPATH={folder} gcp-robust ... --model {stem}:tiny")):
            evaluate(f"{given}:tiny", data=image_folder, store=tmp_path / "s.db")


def test_an_error_inside_torchvisions_code_names_no_line_of_it():
    """``torchvision:<name>``'s own code is not the user's: the one line names the error alone (it
    named torchvision's resnet.py as the line to mend)."""
    from robustbench_gcp.errors import ModelCodeError
    from robustbench_gcp.models.external import BroughtModel
    from robustbench_gcp.models.resnet import PreprocessConfig

    brought = BroughtModel(torchvision.models.resnet18(num_classes=3).eval(), "torchvision:resnet18", 3,
                           PreprocessConfig())
    with pytest.raises(ModelCodeError, match=r"^the forward pass of 'torchvision:resnet18' raised "
                                             r"RuntimeError: Given groups=1, [^(]*to have 3 channels, but "
                                             r"got 5 channels instead$"):
        brought(torch.rand(1, 5, 32, 32))


def test_a_modules_own_pretrained_cfg_is_checked_and_a_module_that_exits_is_named(on_sys_path, capsys):
    from robustbench_gcp.models import PreprocessConfig
    from robustbench_gcp.models.external import external_source
    from robustbench_gcp.models.preprocessing import preprocess_config

    net = torch.nn.Linear(2, 2)
    net.pretrained_cfg = PreprocessConfig(input_size=64, resize_size=72, interpolation="cubic")
    with pytest.raises(ConfigError, match=r"pretrained_cfg\['interpolation'\]"):
        preprocess_config(None, net)
    with pytest.raises(ConfigError, match=r"^`preprocess\['input_size'\]` 300 should be <= "
                                          r"`preprocess\['resize_size'\]` 256"):
        preprocess_config(PreprocessConfig(input_size=300, resize_size=256))
    with pytest.raises(ConfigError, match="3 numbers"):
        preprocess_config({"mean": 0.5})
    (on_sys_path / "exits_on_import.py").write_text("import sys\nsys.exit(2)\n")
    with pytest.raises(ConfigError, match="exits instead of returning"):
        external_source("exits_on_import:build")
    # a training script parsing its command line when imported: it read gcp-robust's, and its usage
    # ("usage: gcp-robust [-h] --lr LR") came above the error; now its own name
    (on_sys_path / "parses_on_import.py").write_text(
        "import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--lr', required=True)\n"
        "args = parser.parse_args()\n")
    argv = list(sys.argv)
    with pytest.raises(ConfigError, match=r"SystemExit: 2; it exits instead of returning"):
        external_source("parses_on_import:build")
    assert sys.argv == argv
    assert "parses_on_import: error: the following arguments are required: --lr" in capsys.readouterr().err


def test_some_preprocess_keys_are_laid_over_what_the_model_would_have(on_sys_path):
    """``--preprocess mean=...`` alone took ImageNet's 256 / 224 for the rest, not the module's own
    73 / 64 (clean error 0 % -> 60 %, unsaid) nor torchvision's published 342 / 299."""
    from robustbench_gcp.models import PreprocessConfig
    from robustbench_gcp.models.external import external_source, load_external, preprocess_config

    plain = torch.nn.Linear(2, 2)
    plain.pretrained_cfg = {"input_size": 64, "resize_size": 73, "interpolation": "bicubic"}
    mean = (0.3, 0.35, 0.4)
    assert preprocess_config({"mean": mean}, plain) == PreprocessConfig(64, 73, "bicubic", mean)
    assert preprocess_config({"resize_size": 80}, plain) == PreprocessConfig(64, 80, "bicubic")
    assert preprocess_config({"mean": mean}) == PreprocessConfig(mean=mean)  # no module: ImageNet's
    inception = external_source("torchvision:inception_v3", {"mean": (0.5, 0.5, 0.5)}).preprocess
    assert (inception.resize_size, inception.input_size, inception.mean) == (342, 299, (0.5, 0.5, 0.5))
    # a module of the user's: its own pretrained_cfg, read once it is built, under the keys given
    (on_sys_path / "small_net.py").write_text(
        "import torch\n\n"
        "def build():\n"
        "    nn = torch.nn\n"
        "    net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))\n"
        "    net.pretrained_cfg = {'input_size': 64, 'resize_size': 73}\n"
        "    return net\n")
    for given, expected in (({"mean": mean}, PreprocessConfig(64, 73, mean=mean)),
                            (None, PreprocessConfig(64, 73)),
                            (PreprocessConfig(mean=mean), PreprocessConfig(mean=mean))):  # whole: as given
        brought = load_external(external_source("small_net:build", given), "small")
        assert brought.pretrained_cfg == expected, given
    # sizes alone fit the module's own sizes, not ImageNet's (resize 90 was refused as not fitting
    # "the model's own input_size 224", before the module was built)
    brought = load_external(external_source("small_net:build", {"resize_size": 90}), "small")
    assert brought.pretrained_cfg == PreprocessConfig(64, 90)
    with pytest.raises(ConfigError, match=r"preprocess resize_size=50 does not fit the model's own "
                                          r"input_size 64: the crop"):
        load_external(external_source("small_net:build", {"resize_size": 50}), "small")
    (on_sys_path / "plain_net.py").write_text(
        "import torch\n\n"
        "def build():\n"
        "    nn = torch.nn\n"
        "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))\n")
    with pytest.raises(ConfigError, match=r"preprocess resize_size=90 does not fit input_size 224, "
                                          r"ImageNet's \(the model has no pretrained_cfg\): the crop .*; "
                                          r"give input_size too$"):
        load_external(external_source("plain_net:build", {"resize_size": 90}), "plain")


def test_a_timm_models_own_pretrained_cfg_is_read_as_timm_evaluates_it():
    """timm's dict was passed over: its models ran at ImageNet's 256 / 224 bilinear, unsaid."""
    import timm

    from robustbench_gcp.models import PreprocessConfig
    from robustbench_gcp.models.preprocessing import preprocess_config

    resnet = timm.create_model("resnet18", pretrained=False, num_classes=3)  # test size 288, crop 1.0
    assert preprocess_config(None, resnet) == PreprocessConfig(input_size=288, resize_size=288,
                                                                interpolation="bicubic")
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=3)
    assert preprocess_config(None, deit) == PreprocessConfig(input_size=224, resize_size=248,  # 224 / 0.9
                                                              interpolation="bicubic")
    plain = torch.nn.Linear(2, 2)
    plain.pretrained_cfg = {"input_size": 64, "resize_size": 73}  # this tool's keys: a traceback in timm's
    assert preprocess_config(None, plain) == PreprocessConfig(input_size=64, resize_size=73)
    plain.pretrained_cfg = {"input_size": 64, "crop": 1}
    with pytest.raises(ConfigError, match=r"`pretrained_cfg` is a dict, read as timm's, whose input_size is"):
        preprocess_config(None, plain)
    resnet.pretrained_cfg = {**resnet.pretrained_cfg, "crop_mode": "squash"}
    with pytest.raises(ConfigError, match=r"crop mode 'squash'; gcp-robust takes square centre crops: give "
                                          r"both input_size and resize_size$"):
        preprocess_config(None, resnet)
    # both sizes given: the rest is timm's (they were refused again, helper-285); one alone is not enough
    assert preprocess_config({"input_size": 224, "resize_size": 256}, resnet) == PreprocessConfig(
        input_size=224, resize_size=256, interpolation="bicubic")
    with pytest.raises(ConfigError, match=r"square centre crops: give both input_size and resize_size$"):
        preprocess_config({"input_size": 224}, resnet)


def test_a_squeezenet_checkpoint_of_other_classes_rebuilds_it(tmp_path):
    """Its classifier is a 1x1 convolution: a 10-class file failed with two shape mismatches."""
    import torchvision

    from robustbench_gcp.models.external import external_source, load_external

    torch.save(torchvision.models.squeezenet1_1(num_classes=10).state_dict(), tmp_path / "sq10.pth")
    source = external_source("torchvision:squeezenet1_1")
    model = load_external(source, "sq", tmp_path / "sq10.pth", device="cpu")
    assert model.num_classes == 10


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_torchvisions_architectures_with_an_input_transform_are_built_with_it(name):
    """torchvision's published googlenet and inception_v3 weights expect transform_input=True, which
    its builders set only when they load the weights themselves: inception_v3 built without it loads
    the same keys and gives other logits (only googlenet was checked). They are built without the
    FutureWarning about init_weights that a user of the command line could do nothing about."""
    import warnings

    from robustbench_gcp.models.external import external_source

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert external_source(f"torchvision:{name}").build().transform_input is True


def test_the_library_reports_what_eval_says_before_it_starts(demo_val, tmp_path):
    """evaluate() of a module you bring, again: its report said nothing of the stored results it
    reused (eval printed it to stderr, the library has no such hook); nor of a store's run of other
    settings that a new run does not reuse. A `baseline` where nothing is normalized was ignored."""
    from robustbench_gcp import plan
    from robustbench_gcp.models import create_model

    net = create_model("resnet18-gap", num_classes=10)
    common = dict(suite="clean", data=str(demo_val), class_order="sorted", limit=4,
                  store=str(tmp_path / "s.db"), workers=0)
    first = evaluate(net, **common)
    assert first.computed["computed"] > 0 and not any("reused" in note for note in first.notes)
    again = evaluate(net, **common)
    assert again.computed["computed"] == 0
    assert any(note.startswith("results stored for these weights are reused") for note in again.notes)
    other = evaluate(net, shard_size=2, **common)
    assert any("a new run, starting afresh; the store's other run of this model on these images" in note
               and "differs in: shard size" in note for note in other.notes), other.notes
    with pytest.raises(ConfigError, match="`--baseline` normalizes the metrics of the imagenet-c/imagenet-p "
                                          "suites; the clean suite has none to normalize"):
        plan("demo-gap", baseline="nope", **common)
    assert plan("demo-gap", baseline="alexnet", **common).suite.kind == "clean"  # the default: as not given


class _Small(torch.nn.Module):
    def __init__(self, norm=None):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.norm = norm if norm is not None else torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


class _Trains(_Small):
    def forward(self, x):
        self.norm.train()
        return super().forward(x)


class _Counts(_Small):
    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        self.seen += x.shape[0]
        return super().forward(x) * self.seen


class _Exits(_Small):
    def forward(self, x):
        if x.shape[0] == 1:  # the plan's check runs batches of 2 and 1
            raise SystemExit("usage: train.py [-h]")
        return super().forward(x)


SECOND_CALL = r"its forward pass gives other outputs for the same images at a second call \(state it changes"


class _HiddenCounter(_Small):
    def __init__(self, persistent=False):
        super().__init__()
        self.register_buffer("seen", torch.zeros(()), persistent=persistent)

    def forward(self, x):
        self.seen += 1
        return super().forward(x) + self.seen


class _EditsData(_Small):
    def forward(self, x):
        self.fc.bias.data.add_(1.0)  # (no version counter sees it)
        return super().forward(x)


class _KeepsDropout(_Small):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        self.drop.train()  # Monte Carlo dropout
        return self.drop(super().forward(x))


class _OwnTrain(_Small):
    def train(self, mode=True):  # does not pass the mode on to its children
        self.training = mode
        return self


class _TensorExtraState(_Small):
    def get_extra_state(self):
        return torch.tensor([1.0, 2.0])  # a new tensor at every call (TransformerEngine's)

    def set_extra_state(self, state):
        pass


@pytest.mark.parametrize("net, message", [
    (_Trains(), r"its forward pass puts 'norm' in training mode: in training mode BatchNorm normalizes "
                r"each batch by its own statistics and Dropout drops at random"),
    (_KeepsDropout(), r"its forward pass puts 'drop' in training mode"),
    (_OwnTrain().train(), r"eval\(\) leaves 'conv', 'norm', 'fc' in training mode \(a train\(\) of its "
                          r"own that does not pass the mode on\?\)"),
    (_HiddenCounter(), SECOND_CALL),
    (_EditsData(), SECOND_CALL),
    (_Small(torch.nn.BatchNorm2d(4, track_running_stats=False)),
     r"BatchNorm 'norm' keeps no running statistics \(track_running_stats=False\), so in eval mode it "
     r"normalizes each batch by its own: results would depend on the batch size"),
    (_Counts(), SECOND_CALL),
    (_Exits(), r"the forward pass of a \(1, 3, 32, 32\) batch failed: SystemExit: usage: train.py \[-h\]; "
               r"it exits instead of returning"),
], ids=["puts-itself-in-training-mode", "dropout", "own-train", "non-persistent-counter", "edits-data",
         "batch-statistics", "changes-a-buffer", "exits"])
def test_a_module_whose_outputs_depend_on_the_batch_or_that_exits_is_refused(image_folder, tmp_path, net,
                                                                            message):
    """Two batch sizes gave two errors stored as one run, and a forward's sys.exit(0) ended eval with
    exit 0 and no report (helper-255); an InstanceNorm (per image) is fine."""
    common = dict(data=image_folder, store=tmp_path / "s.db", suite="clean", batch_size=6,
                  class_order="sorted", preprocess={"input_size": 32, "resize_size": 36})
    with pytest.raises(ConfigError, match=message):
        evaluate(net, name="odd", **common)
    assert evaluate(_Small(torch.nn.InstanceNorm2d(4)), name="per-image", **common).sections["clean"]


class _CachesATable(_Small):
    """A table made at the first call (timm's LeViT attention biases), the last features kept for a plot."""
    def __init__(self):
        super().__init__()
        self.register_buffer("table", None, persistent=False)

    def forward(self, x):
        if self.table is None:
            self.table = torch.linspace(0, 1, 4)
        self.last_features = self.conv(x)
        return super().forward(x) + self.table


def _spectral():
    torch.manual_seed(0)
    net = _Small()
    net.conv = torch.nn.utils.spectral_norm(net.conv)  # (the hook-based one: weight set at each call)
    return net


def test_modules_whose_state_changes_but_not_their_outputs_are_taken(image_folder, tmp_path):
    """A quantized module's state dict unpacks its weights anew at every call, and a tensor extra state
    is made anew (review helper-256); a cache made at the first call, a kept feature map and
    spectral_norm's weight change state without changing outputs (review helper-258)."""
    common = dict(data=image_folder, store=tmp_path / "s.db", suite="clean", batch_size=6,
                  class_order="sorted", preprocess={"input_size": 32, "resize_size": 36})
    assert evaluate(_CachesATable(), name="cache", **common).sections["clean"]
    assert evaluate(_spectral(), name="spectral", **common).sections["clean"]
    assert evaluate(_TensorExtraState(), name="extra", **common).sections["clean"]
    quantization = getattr(torch.ao, "quantization", None)  # deprecated in torch 2.x
    if quantization is not None:  # dynamic quantization scales each batch's activations by its own range
        torch.manual_seed(0)
        quantized = quantization.quantize_dynamic(_Small(), {torch.nn.Linear}, dtype=torch.qint8)
        with pytest.raises(ConfigError, match="its outputs for an image depend on the images batched"):
            evaluate(quantized, name="quantized", **common)


def test_compare_no_ema_applies_to_the_models_that_read_a_checkpoint(demo_val, tmp_path):
    """--no-ema with --random-weights for the others is documented use: the per-model refusal of eval
    failed the whole comparison (review helper-256); with no checkpoint read at all it is refused."""
    import robustbench_gcp

    weights = Path(robustbench_gcp.__file__).parent / "resources" / "demo" / "demo-gap.pth"
    common = ["--data", demo_val, "--class-order", "sorted", "--suite", "clean", "--limit", 4,
              "--workers", 0, "--store", tmp_path / "s.db", "--no-ema", "--format", "json"]
    result = run("compare", "--model", f"demo-gap={weights}", "--model", "demo-isqrt",
                 "--random-weights", *common)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["reports"]) == 2
    result = run("compare", "--model", "demo-gap", "--model", "demo-isqrt", "--random-weights", *common)
    assert result.exit_code == 2, result.output
    assert result.output.strip().endswith("`--no-ema` chooses checkpoints' raw weights over their EMA ones, "
                                          "and no model here reads a checkpoint: leave it out")


def test_a_forward_that_exits_mid_run_is_a_model_error_that_keeps_the_shards_done(image_folder, tmp_path,
                                                                                   on_sys_path):
    (on_sys_path / "exits_mid_run.py").write_text(textwrap.dedent('''
        import sys, torch

        class Net(torch.nn.Module):
            calls = 0
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(3, 4)
            def forward(self, x):
                Net.calls += 1
                if Net.calls > 5:  # 3 calls check the model, then one a shard
                    sys.exit(0)
                return self.fc(x.mean((2, 3)))

        def build():
            torch.manual_seed(0)
            return Net()
    '''))
    result = run("eval", "--model", "exits_mid_run:build", "--data", image_folder,
                 "--store", tmp_path / "s.db", "--workers", 0, "--batch-size", 3, "--shard-size", 3,
                 "--suite", "clean", "--class-order", "sorted",
                 "--preprocess", "input_size=32,resize_size=36")
    assert result.exit_code == 1, result.output
    assert re.search(r"the forward pass of 'exits_mid_run:build' raised SystemExit: 0 "
                     r"\(at exits_mid_run.py:\d+, in forward\); nothing was stored for this shard\. "
                     r"2 of 4 shards are stored", result.output)


@pytest.mark.parametrize("model, extra, weights", [
    ("{package}:resnet18_like", [], "its own weights"),
    ("torchvision:resnet18", ["--random-weights"], "seeded random weights"),
    ("resnet18-gap", ["--random-weights"], "seeded random weights"),
])
def test_no_ema_without_a_checkpoint_is_refused(user_package, image_folder, tmp_path, model, extra, weights):
    """--no-ema was accepted and ignored where no file is read (--sha256 was refused)."""
    model = model.format(package=user_package)
    result = run("eval", "--model", model, *extra, "--no-ema", "--data", image_folder,
                 "--store", tmp_path / "s.db", "--suite", "clean")
    assert result.exit_code == 2, result.output
    assert result.output.strip().endswith(f"`--no-ema` chooses a checkpoint's raw weights over its EMA "
                                          f"ones, and {model} runs with {weights}: drop it")
    with pytest.raises(ConfigError, match=r"^`ema=False` chooses a checkpoint's raw weights over its EMA "
                                          r"ones, and model 'mine' runs with its own weights: drop it$"):
        evaluate(torch.nn.Linear(3, 4), name="mine", data=image_folder, store=tmp_path / "t.db", ema=False)


class _SmallBatchMean(_Small):
    """Outputs below 1e-3 that depend on the batch (7 % of their size): a floor of 1e-3 on the tolerance
    passed them (review helper-259)."""
    def forward(self, x):
        out = super().forward(x)
        return (out - 0.5 * out.mean(0, keepdim=True)) * 1e-3


class _ThirdCallTuple(_Small):
    calls = 0

    def forward(self, x):
        _ThirdCallTuple.calls += 1
        out = super().forward(x)
        return (out, out) if _ThirdCallTuple.calls == 3 else out


class _NaNColumn(_Small):
    def forward(self, x):
        out = super().forward(x)
        out[:, 0] = float("nan")
        return out


def test_the_model_check_is_relative_to_the_outputs_and_checks_every_pass():
    from robustbench_gcp.models.probe import probe_output

    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="its outputs for an image depend on the images batched with it"):
        probe_output(_SmallBatchMean(), 16, "nets:small")
    with pytest.raises(ConfigError, match=r"^`--model nets:third`: the output for a \(2, 3, 16, 16\) batch "
                                          r"is tuple, not \(2, classes\) logits$"):
        probe_output(_ThirdCallTuple(), 16, "nets:third")
    # NaN logits are the engine's to name (NonFiniteError, with the cell and images), not a changing state
    assert probe_output(_NaNColumn(), 16, "nets:nan") == (4, False)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_classes_tree_tells_scripted_and_traced_copies_apart():
    """A TorchScript module's submodules are all RecursiveScriptModule (traced: TracedModule): a ReLU
    and a GELU copy of the same weights were one tree, so one run (helper-295)."""
    from robustbench_gcp.models.weights_hash import structure_hash

    relu = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    gelu = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU()).eval()
    gelu.load_state_dict(relu.state_dict())
    x = torch.rand(1, 3, 8, 8)
    assert structure_hash(relu) != structure_hash(gelu)
    assert structure_hash(torch.jit.script(relu)) != structure_hash(torch.jit.script(gelu))
    assert structure_hash(torch.jit.trace(relu, x)) != structure_hash(torch.jit.trace(gelu, x))
    assert structure_hash(torch.jit.script(relu)) == structure_hash(torch.jit.script(relu))
