"""Runs of one model on the same images that differ in a setting that defines a run (shard size,
seed ...): eval says that it starts afresh and why, and report labels them apart."""

from __future__ import annotations

import csv
import io
import json
import os

from click.testing import CliRunner

from robustbench_gcp import plan, run
from robustbench_gcp.cli import main
from robustbench_gcp.engine.runner import ProgressHook


class Said(ProgressHook):
    def __init__(self):
        self.lines = []

    def say(self, text: str) -> None:
        self.lines.append(text)


def test_a_new_run_beside_another_says_what_differs_and_reports_tell_them_apart(demo_val, tmp_path):
    store = tmp_path / "s.db"
    common = dict(suite="imagenet-c", corruptions="fog", severities=[1], data=str(demo_val),
                  class_order="sorted", store=str(store), workers=0, limit=8)
    first = Said()
    run(plan("demo-gap", shard_size=4, **common), first)
    assert first.lines == []
    second = Said()
    run(plan("demo-gap", shard_size=2, **common), second)
    (line,) = second.lines
    assert line == ("demo-gap: a new run, starting afresh; the store's other run of this model on these "
                    "images (4 shards stored) differs in: shard size (its results stay there)")
    again = Said()
    run(plan("demo-gap", shard_size=2, **common), again)  # the same run: reused, nothing said
    assert again.lines == []
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--no-intervals"])
    assert result.exit_code == 0, result.output
    labels = [r["model"] for r in json.loads(result.stdout)["reports"]]
    assert labels == ["demo-gap[shard-size=4]", "demo-gap[shard-size=2]"]
    for chosen, expected in (("demo-gap[shard-size=2]", ["demo-gap[shard-size=2]"]), ("demo-gap", labels)):
        picked = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json",
                                           "--no-intervals", "--models", chosen])
        assert [r["model"] for r in json.loads(picked.stdout)["reports"]] == expected, picked.output
    # --reference takes a label with settings; the plain name is ambiguous here, and says so
    chosen = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--resamples",
                                       "100", "--reference", "demo-gap[shard-size=2]"])
    (comparison,) = json.loads(chosen.stdout)["comparisons"]
    assert comparison["reference"] == "demo-gap[shard-size=2]", chosen.output
    ambiguous = CliRunner().invoke(main, ["report", "--store", str(store), "--reference", "demo-gap"])
    assert ambiguous.exit_code != 0 and "names several runs" in ambiguous.stderr
    assert "demo-gap[shard-size=4], demo-gap[shard-size=2]" in ambiguous.stderr
    # a third run, of another seed: labels grow, and a label with some of the settings still selects
    run(plan("demo-gap", shard_size=4, seed=1, **common), Said())
    for chosen, expected in (("demo-gap[seed=1]", ["demo-gap[seed=1,shard-size=4]"]),
                             ("demo-gap[shard-size=4]", ["demo-gap[seed=0,shard-size=4]",
                                                         "demo-gap[seed=1,shard-size=4]"]),
                             ("demo-gap[seed=0,shard-size=2]", ["demo-gap[seed=0,shard-size=2]"])):
        picked = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json",
                                           "--no-intervals", "--models", chosen])
        assert picked.exit_code == 0, picked.output
        assert [r["model"] for r in json.loads(picked.stdout)["reports"]] == expected, picked.output
    # --reference takes such a label too, as --models does (only the full label was taken)
    chosen = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--resamples",
                                       "100", "--reference", "demo-gap[seed=1]"])
    assert chosen.exit_code == 0, chosen.output
    (comparison,) = json.loads(chosen.stdout)["comparisons"]
    assert comparison["reference"] == "demo-gap[seed=1,shard-size=4]", chosen.output
    # by the run's settings, as --models selects: one the labels do not show (all runs share it)
    hidden = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--resamples",
                                       "100", "--reference", "demo-gap[seed=1,precision=float32]"])
    assert json.loads(hidden.stdout)["comparisons"][0]["reference"] == "demo-gap[seed=1,shard-size=4]"
    two = CliRunner().invoke(main, ["report", "--store", str(store), "--reference", "demo-gap[shard-size=4]"])
    assert two.exit_code != 0 and "names several runs" in two.stderr
    assert "demo-gap[seed=0,shard-size=4], demo-gap[seed=1,shard-size=4]" in two.stderr
    unknown = CliRunner().invoke(main, ["report", "--store", str(store), "--models", "demo-gap[seed=2]"])
    assert unknown.exit_code != 0 and "unknown stored model 'demo-gap[seed=2]'" in unknown.stderr
    # a setting the runs lack reads none in labels, and selects as such (null, as before 0.7.15, too)
    for unrecorded in ("none", "null"):
        null = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json",
                                         "--no-intervals", "--models",
                                         f"demo-gap[seed=1,layer4-stride={unrecorded}]"])
        assert [r["model"] for r in json.loads(null.stdout)["reports"]] == ["demo-gap[seed=1,shard-size=4]"]
    # two runs on other images that differ in the seed alone: their own label selects that run alone
    other = {**common, "limit": 6}
    for seed in (0, 1):
        run(plan("demo-gap", shard_size=4, seed=seed, **other), Said())
    picked = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--no-intervals",
                                       "--models", "demo-gap[seed=1]"])
    assert [(r["model"], r["n_images"]) for r in json.loads(picked.stdout)["reports"]] == [
        ("demo-gap[seed=1]", 6)], picked.output
    fourth = Said()  # runs that differ alike are one line (a line for each of them repeated itself)
    run(plan("demo-gap", shard_size=8, **common), fourth)
    assert fourth.lines == [
        "demo-gap: a new run, starting afresh; the store's 2 other runs of this model on these images (12 "
        "shards stored) differ in: shard size (their results stay there)",
        "demo-gap: a new run, starting afresh; the store's other run of this model on these images (4 shards "
        "stored) differs in: seed, shard size (its results stay there)",
        f"demo-gap: a new run, starting afresh; the store's 2 runs of this model on {demo_val} (8 shards "
        "stored) were on other images of it (6 then, 8 now: another --limit, or files added, removed or "
        "relabelled; their results stay there)"], fourth.lines


def test_output_over_the_store_is_refused_and_the_store_kept(demo_val, tmp_path):
    store = tmp_path / "s.db"
    common = ["--model", "demo-gap", "--data", str(demo_val), "--class-order", "sorted", "--limit", "4",
              "--workers", "0", "--store", str(store)]
    # the store does not exist yet: refused before eval creates it (since 0.7.6; it was computed)
    created = CliRunner().invoke(main, ["eval", *common, "-o", str(store)])
    assert created.exit_code == 2 and not store.exists()
    assert f"is the results store (--store {store}) or part of it" in created.stderr
    assert CliRunner().invoke(main, ["eval", *common]).exit_code == 0
    for target in (store, f"{store}-wal"):  # now it exists: refused before anything runs
        refused = CliRunner().invoke(main, ["report", "--store", str(store), "-o", str(target)])
        assert refused.exit_code == 2 and "SQLite database" in refused.stderr
    # through a folder that does not exist: abspath dropped `missing/..`, the check found no store
    # there, and the report was written over the store (the kernel refuses such a path)
    other = CliRunner().invoke(main, ["report", "--store", str(store), "-o", f"{tmp_path}/missing/../s.db"])
    assert other.exit_code == 2, other.output
    assert f"the folder {tmp_path}/missing/.. of {tmp_path}/missing/../s.db does not exist" in other.stderr
    kept = CliRunner().invoke(main, ["eval", *common, "--format", "json"])
    assert kept.exit_code == 0 and json.loads(kept.stdout)["computed"]["computed"] == 0
    # where no file can be made though the folder's mode says it can (/proc as root), or through a
    # link to such a place: refused once everything was computed ("cannot write ...", exit 1)
    fresh = tmp_path / "fresh.db"
    (tmp_path / "link.csv").symlink_to("/proc/gcp-robust.csv")
    for target in ("/proc/gcp-robust.csv", str(tmp_path / "link.csv")):
        unwritable = CliRunner().invoke(main, ["eval", *common[:-1], str(fresh), "-o", target])
        assert unwritable.exit_code == 2 and not fresh.exists(), unwritable.output
        said = f"cannot write {target}: No such file or directory"
        not_root = target.startswith("/proc") and os.geteuid() != 0  # the folder's mode says so already
        assert said in unwritable.stderr or (not_root and "the folder /proc of " in unwritable.stderr), \
            unwritable.stderr
    written = tmp_path / "out.csv"  # a writable one: nothing left of the check
    assert CliRunner().invoke(main, ["report", "--store", str(store), "-o", str(written)]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if "probe" in p.name) == []


def test_an_interrupted_comparison_says_which_evaluation_stopped(demo_val, tmp_path):
    import pytest

    from robustbench_gcp.errors import Interrupted
    from robustbench_gcp.pipeline.execution import run_all

    class StopInSecond(ProgressHook):
        def item(self, index, total, label):
            self.index = index

        def advance(self, n_images):
            if self.index == 1:
                raise KeyboardInterrupt

    common = dict(suite="imagenet-c", corruptions="fog", severities=[1], data=str(demo_val),
                  class_order="sorted", store=str(tmp_path / "s.db"), workers=0, limit=8, shard_size=4)
    plans = [plan("demo-gap", **common), plan("demo-isqrt", **common)]
    with pytest.raises(Interrupted) as stop:
        run_all(plans, StopInSecond())
    message = str(stop.value)
    assert message.startswith("interrupted after 0 of 4 shards; re-run the same command to resume "
                              "(evaluation 2 of 2: demo-isqrt imagenet-c;"), message
    assert stop.value.exit_code == 130
    assert not isinstance(stop.value, Exception)  # a notebook's `except Exception` lets Ctrl-C through


def test_a_failed_comparison_says_which_evaluation_failed_and_where_the_ones_before_are(
        demo_val, tmp_path, on_sys_path):
    """A comparison whose second model fails said only the model's error: the first model's
    stored results went unmentioned (nothing is printed on stdout)."""
    (tmp_path / "fails_second.py").write_text(
        "import torch\n\n\nclass Fails(torch.nn.Module):\n"
        "    def __init__(self, num_classes=10):\n"
        "        super().__init__()\n        self.fc = torch.nn.Linear(3, num_classes)\n\n"
        "    def forward(self, x):  # the planning's probe of 2 images passes\n"
        "        if len(x) > 2:\n            raise RuntimeError('a bug in the model')\n"
        "        return self.fc(x.mean((2, 3)))\n")
    store = tmp_path / "my store.db"
    common = ["--suite", "imagenet-c", "--corruptions", "fog", "--severities", "1", "--data", str(demo_val),
              "--class-order", "sorted", "--limit", "4", "--store", str(store), "--preprocess",
              "resize_size=73,input_size=64"]
    failed = CliRunner().invoke(main, ["compare", "-m", "demo-gap", "-m", "fails_second:Fails", *common])
    assert failed.exit_code == 1 and failed.stdout == "", failed.output
    said = failed.stderr.strip().splitlines()
    assert "raised RuntimeError: a bug in the model" in said[-2], said
    assert said[-1] == (f"  evaluation 2 of 2 (fails_second:Fails imagenet-c) failed; the one before it is "
                        f"stored: `gcp-robust report --store '{store}'` shows what is stored")
    shown = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["reports"][0]["model"] == "demo-gap"
    first = CliRunner().invoke(main, ["compare", "-m", "fails_second:Fails", "-m", "demo-gap", *common])
    assert first.exit_code == 1 and "evaluation 1 of" not in first.stderr  # nothing before it to mention


def test_a_covariance_resnet_at_stride_2_is_a_run_of_its_own(image_folder, tmp_path):
    """SVD-Pade ResNets are built at torchvision's layer4 stride since 0.7: their identity says so,
    so a run stored at stride 1 is not reused; other models' identities are unchanged."""
    from robustbench_gcp.store import Store

    store = tmp_path / "s.db"
    for name in ("resnet18-svdpade", "resnet18-isqrt"):
        run(plan(name, random_weights=True, data=str(image_folder), store=str(store), workers=0,
                 limit=4))
    with Store(store, read_only=True) as s:
        strides = {r.model: r.identity.get("last_stride") for r in s.runs()}
        # and, since 0.7.2, DifferentiableSVD's covariance: also another run than those before
        covariances = {r.model: r.identity.get("covariance") for r in s.runs()}
    assert strides == {"resnet18-svdpade": 2, "resnet18-isqrt": None}
    assert covariances == {"resnet18-svdpade": "svd-pade", "resnet18-isqrt": None}


def test_amp_runs_of_covariance_models_say_their_classifier_runs_in_float32(demo_val, tmp_path):
    """0.7.2 runs a covariance model's classifier in float32 under --amp: those runs' identity says
    so (their --amp runs stored before are other runs); float32 runs and GAP models are unchanged."""
    from robustbench_gcp.store import Store

    store = tmp_path / "s.db"
    for name, amp in (("demo-isqrt", True), ("demo-isqrt", False), ("demo-gap", True)):
        run(plan(name, data=str(demo_val), class_order="sorted", store=str(store), workers=0, limit=2,
                 amp=amp))
    with Store(store, read_only=True) as s:
        found = {(r.model, r.identity["precision"]): r.identity.get("classifier") for r in s.runs()}
    assert found == {("demo-isqrt", "bfloat16"): "float32", ("demo-isqrt", "float32"): None,
                     ("demo-gap", "bfloat16"): None}
    # the --amp run as 0.7.1 stored it (no mark): a new run, and eval says why in words
    import hashlib
    import sqlite3

    from robustbench_gcp.store.records import canonical_json

    with sqlite3.connect(store) as db:
        (key, text), = db.execute("SELECT key, identity FROM runs WHERE identity LIKE '%classifier%'")
        identity = json.loads(text)
        del identity["classifier"]
        old = canonical_json(identity)
        db.execute("UPDATE runs SET key = ?, identity = ? WHERE key = ?",
                   (hashlib.sha256(old.encode()).hexdigest()[:32], old, key))
    said = Said()
    run(plan("demo-isqrt", data=str(demo_val), class_order="sorted", store=str(store), workers=0, limit=2,
             amp=True), said)
    assert ("demo-isqrt: a new run, starting afresh; the store's other run of this model on these images "
            "(1 shard stored) differs in: the classifier's precision under --amp (float32 since 0.7.2) (its "
            "results stay there)") in said.lines, said.lines


def test_a_limit_beyond_the_images_is_said(demo_val, tmp_path):
    planned = plan("demo-gap", data=str(demo_val), class_order="sorted", store=str(tmp_path / "s.db"),
                   workers=0, limit=10_000)
    said = Said()
    run(planned, said)
    assert said.lines == [f"demo-gap: --limit 10000 is more than the {planned.available} images: all of "
                          "them were used"]
    assert len(planned.images) == planned.available


def test_a_new_run_on_other_images_of_the_same_folder_says_so(demo_val, tmp_path):
    """A file added to the folder (or another --limit) makes other images, so a new run: said, not
    a silent restart of a long run."""
    store = tmp_path / "s.db"
    common = dict(suite="imagenet-c", corruptions="fog", severities=[1], data=str(demo_val),
                  class_order="sorted", store=str(store), workers=0, shard_size=4)
    run(plan("demo-gap", limit=8, **common), Said())
    second = Said()
    run(plan("demo-gap", limit=6, **common), second)
    (line,) = second.lines
    assert line == (f"demo-gap: a new run, starting afresh; the store's run of this model on {demo_val} "
                    "(4 shards stored) was on other images of it (8 then, 6 now: another --limit, or files "
                    "added, removed or relabelled; its results stay there)")


def test_channels_last_is_a_run_of_its_own_and_amp_alone_is_said_as_such(demo_val, tmp_path):
    """--channels-last changes the landscape's gradients in their last digits, but a channels-last
    eval reused the default layout's run; adding --amp was said as "the classifier's precision
    under --amp (float32 since 0.7.2), precision", as if the stored run were an old one."""
    store = tmp_path / "s.db"
    common = dict(data=str(demo_val), class_order="sorted", store=str(store), workers=0, limit=2)
    run(plan("demo-isqrt", **common), Said())
    said = Said()
    run(plan("demo-isqrt", channels_last=True, **common), said)
    assert any(line.endswith("differs in: --channels-last (its results stay there)")
               for line in said.lines), said.lines
    said = Said()
    run(plan("demo-isqrt", amp=True, **common), said)
    assert any("other run of this model on these images (1 shard stored) differs in: precision (its "
               "results" in line for line in said.lines), said.lines
    # a field only the stored run has is a difference too (it was left out: "differs in: " and nothing)
    assert any("other run of this model on these images (1 shard stored) differs in: precision, "
               "--channels-last (its results" in line for line in said.lines), said.lines
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--no-intervals"])
    labels = sorted(r["model"] for r in json.loads(result.stdout)["reports"])
    assert labels == ["demo-isqrt[precision=bfloat16,memory-format=contiguous]",
                      "demo-isqrt[precision=float32,memory-format=channels_last]",
                      "demo-isqrt[precision=float32,memory-format=contiguous]"], labels
    # a report says its memory format (eval's own said "cpu float32" of a channels-last run)
    formats = sorted((r["precision"], r["memory_format"]) for r in json.loads(result.stdout)["reports"])
    assert formats == [("bfloat16", "contiguous"), ("float32", "channels_last"), ("float32", "contiguous")]
    for layout in ("long", "wide"):  # the CSV tables too, after precision
        args = ["report", "--store", str(store), "--format", "csv", "--layout", layout, "--no-intervals"]
        header, *rows = csv.reader(io.StringIO(CliRunner().invoke(main, args).stdout))
        assert header[header.index("precision") + 1] == "memory_format", header
        assert {row[header.index("memory_format")] for row in rows} == {"contiguous", "channels_last"}
    own = CliRunner().invoke(main, ["eval", "--model", "demo-isqrt", "--data", str(demo_val), "--class-order",
                                    "sorted", "--store", str(store), "--workers", "0", "--limit", "2",
                                    "--channels-last"], env={"COLUMNS": "200"})
    assert own.exit_code == 0 and "cpu float32 channels-last" in own.stdout, own.output


def test_an_images_seed_is_fixed_by_the_seed_the_cell_and_the_index():
    """Stored runs are resumed on the promise that (seed, cell, image index) gives the same draws: a
    change of the derivation must come with a new run identity, so it is pinned here, and every
    part of it counts (a seed without the cell gave every cell the same noise)."""
    from robustbench_gcp.engine.seeding import image_seed, image_seeds

    assert image_seed(0, "imagenet-c/fog/3", 7) == 5797296706407170440
    assert image_seed(1, "imagenet-c/fog/3", 7) == 5234923515206234809
    assert image_seed(0, "imagenet-c/fog/4", 7) == 5409679542519609724
    seeds = image_seeds(0, "imagenet-c/fog/3", range(1000))
    assert len(set(seeds)) == 1000 and all(0 <= s < 2**63 for s in seeds)


def test_top5_counts_a_label_ranked_fifth_as_right_and_sixth_as_wrong():
    import torch

    from robustbench_gcp.engine.runner import classification_counts

    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3], [9.0, 8, 7, 6, 5, 4, 3], [9.0, 8, 7, 6, 5, 4, 3]])
    result = classification_counts(logits, torch.tensor([4, 5, 0]))  # ranked 5th, 6th, 1st
    assert {k: int(v) for k, v in result.counts.items()} == {"top1_errors": 2, "top5_errors": 1}
    assert result.correct.tolist() == [False, False, True]


def test_top1_and_top5_rank_ties_by_class_index_as_argmax_and_a_stable_sort():
    """topk ordered tied logits as its kernel did: a model of constant logits got 100% top-1 error
    and 0% top-5, and the adversarial suite (argmax) gave it another clean accuracy. Recomputed
    here from a stable descending sort (NaN first, as torch sorts it), on logits full of ties."""
    import torch

    from robustbench_gcp.engine.runner import classification_counts

    constant = torch.zeros(4, 10)
    result = classification_counts(constant, torch.tensor([0, 3, 4, 5]))  # ranks 0, 3, 4, 5
    assert result.correct.tolist() == [True, False, False, False]
    assert {k: int(v) for k, v in result.counts.items()} == {"top1_errors": 3, "top5_errors": 1}
    generator = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 4, (500, 12), generator=generator).float()  # ties everywhere
    logits[::7, 3] = float("nan")
    logits[::11, :] = float("nan")
    labels = torch.randint(0, 12, (500,), generator=generator)
    order = torch.sort(torch.where(logits.isnan(), float("inf"), logits), dim=1, descending=True,
                       stable=True).indices
    rank = (order == labels[:, None]).int().argmax(1)
    result = classification_counts(logits, labels)
    assert torch.equal(result.correct, rank == 0)
    assert torch.equal(result.correct, logits.argmax(1) == labels)
    assert int(result.counts["top5_errors"]) == int((rank >= 5).sum())
    # a label the model has no output for is wrong (a 10-class model on ImageNet's labels)
    result = classification_counts(torch.zeros(2, 10), torch.tensor([10, 999]))
    assert result.correct.tolist() == [False, False] and int(result.counts["top5_errors"]) == 2


def test_the_seed_reaches_the_draws_and_the_random_weights(demo_val, tmp_path, monkeypatch):
    """--seed named a run of its own, but nothing checked that the engine drew with it (the noise of
    seed 0 under the label seed=1), nor that --random-weights built that seed's weights."""
    import torch

    from robustbench_gcp.engine import runner
    from robustbench_gcp.pipeline.weights import load_chosen

    used = set()
    real = runner.image_seeds

    def recorded(seed, token, indices):
        used.add(seed)
        return real(seed, token, indices)

    monkeypatch.setattr(runner, "image_seeds", recorded)
    common = dict(suite="imagenet-c", corruptions="gaussian_noise", severities=[1], data=str(demo_val),
                  class_order="sorted", workers=0, limit=4)
    run(plan("demo-gap", seed=7, store=str(tmp_path / "s.db"), **common), Said())
    assert used == {7}
    weights = [load_chosen(plan("demo-isqrt", random_weights=True, seed=seed, store=str(tmp_path / "w.db"),
                                **common).model).state_dict() for seed in (0, 1, 1)]
    assert not torch.equal(weights[0]["fc.weight"], weights[1]["fc.weight"])
    assert all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1])


def test_a_run_is_found_by_its_architecture_and_not_by_its_batch_size_or_workers(demo_val, tmp_path):
    """Two architectures with seeded random weights are two runs (with `arch` left out of the identity
    demo-isqrt reused demo-gap's run and reported its numbers); batch size and loader processes do
    not change results, so another of either reuses the run."""
    store = str(tmp_path / "s.db")
    common = dict(suite="clean", data=str(demo_val), class_order="sorted", store=store, limit=4,
                  random_weights=True)
    first = run(plan("demo-gap", batch_size=4, workers=0, **common), Said())
    other_arch = run(plan("demo-isqrt", batch_size=4, workers=0, **common), Said())
    again = run(plan("demo-gap", batch_size=1, workers=1, **common), Said())
    assert other_arch.run != first.run and other_arch.computed["images"] == 4
    assert again.run == first.run and again.computed["images"] == 0


def test_runs_differing_only_in_a_later_identity_field_get_labels_of_their_own():
    """Labels named the settings of a fixed list, which lacked the CUDA draws (0.7.16) and the
    corruptions' base size (0.7.13): runs differing only there were both labelled ``m``."""
    from robustbench_gcp.reports.stored import _chosen, run_labels
    from robustbench_gcp.store.records import RunInfo

    base = {"version": 3, "arch": "m", "data": "d", "seed": 0, "shard_size": 500, "device_type": "cuda"}

    def runs(**extra):
        return [RunInfo(k, f"k{k}", "m", "m", None, "d", 10, 500, {**base, **more}, "")
                for k, more in enumerate([{}, extra])]

    for extra, tags in [({"draws": 16384}, ["draws=none", "draws=16384"]),
                        ({"corruption_base": [256, 224]},
                         ["corruption-base=none", "corruption-base=[256,224]"]),
                        ({"a_later_field": "x"}, ["a-later-field=none", "a-later-field=x"]),
                        # a checkpoint changed at the same path: its hash's first 8 hex digits
                        ({"weights": "a" * 64}, ["weights=none", "weights=aaaaaaaa"])]:
        both = runs(**extra)
        labels = run_labels(both)
        assert [labels[run.key] for run in both] == [f"m[{tag}]" for tag in tags]
        # a label selects its run alone; one that names no setting, none
        assert [run.key for run in both if _chosen(run, [labels["k1"]], labels)] == ["k1"]
        assert not any(_chosen(run, ["m[]"], labels) for run in both)
    one_seed = runs(seed=1, draws=16384)  # seed in its place, before the later fields
    assert run_labels(one_seed)["k1"] == "m[seed=1,draws=16384]"


class Counted(ProgressHook):
    """The plan's totals, and the images the bars advanced by."""

    def plan(self, total_images, units, finished_units):
        self.planned = (total_images, units, finished_units)
        self.advanced = 0

    def advance(self, n_images):
        self.advanced += n_images


def test_the_plan_counts_the_images_of_every_pending_cell(demo_val, tmp_path):
    """The bar's total is the cell-images still to compute (the clean cell and each corruption's
    on each image), and the run advances it by that much; cells stored before count as finished."""
    common = dict(suite="imagenet-c", corruptions="fog", data=str(demo_val), class_order="sorted",
                  store=str(tmp_path / "s.db"), workers=0, limit=8, shard_size=4)
    first = Counted()
    run(plan("demo-gap", severities=[1, 2], **common), first)
    assert first.planned == (3 * 8, 3 * 2, 0) and first.advanced == 3 * 8
    more = Counted()
    run(plan("demo-gap", severities=[1, 2, 3], **common), more)  # one severity added
    assert more.planned == (8, 4 * 2, 3 * 2) and more.advanced == 8


def test_labels_split_at_commas_outside_brackets():
    from robustbench_gcp.reports.stored import split_labels

    assert split_labels("demo-gap[seed=1,shard-size=4], demo-isqrt") == ["demo-gap[seed=1,shard-size=4]",
                                                                         "demo-isqrt"]
    assert split_labels("a],b,") == ["a]", "b"]  # a stray bracket opens nothing


def test_images_edited_in_place_are_not_mixed_into_a_resumed_run(demo_val, tmp_path):
    """A run is found by its images' names and labels: one stopped, then resumed after images of
    its stored shards were edited in place, held results of both versions and equalled neither."""
    import shutil

    import pytest
    from PIL import Image

    from robustbench_gcp.errors import DataError

    data = tmp_path / "val"
    shutil.copytree(demo_val, data)
    common = dict(suite="imagenet-c", corruptions="fog", data=str(data), class_order="sorted",
                  store=str(tmp_path / "s.db"), workers=0, limit=8, shard_size=4, batch_size=4)

    class StopAtThirdBatch(ProgressHook):  # the clean and fog cells of shard 0 are stored by then
        batches = 0

        def advance(self, n_images):
            self.batches += 1
            if self.batches == 3:
                raise KeyboardInterrupt

    def edit(index):
        path = plan("demo-gap", severities=[1], **common).images.paths()[index]
        before = path.stat().st_size
        Image.open(path).rotate(180).save(path, format="JPEG", quality=60)
        assert path.stat().st_size != before
        return path

    with pytest.raises(KeyboardInterrupt):
        run(plan("demo-gap", severities=[1], **common), StopAtThirdBatch())
    edit(5)  # shard 1: nothing of it stored, so the resumed run computes it from the file as it is
    resumed = run(plan("demo-gap", severities=[1], **common))
    assert resumed.computed["computed"] == 2 and not any("edited" in n for n in resumed.notes)
    path = edit(2)  # shard 0: its results are of the earlier file
    with pytest.raises(DataError, match=rf"^1 of the 8 images of --data \({path} first\) are not the size "
                                        "they were when this run stored their results: edited since, or "
                                        "files of the same names in another folder"):
        run(plan("demo-gap", severities=[1, 2], **common))  # more to compute: refused
    complete = run(plan("demo-gap", severities=[1], **common))  # nothing to compute: reused, and said
    assert complete.computed["computed"] == 0
    assert any(n.endswith("these results are of the earlier files: give another --store to evaluate "
                          "them as they are now") for n in complete.notes), complete.notes
