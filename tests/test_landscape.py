"""The landscape suite: loss and gradient along the gradient, per image, at the stem or the pixels.

The stored values are checked against an independent computation: a forward hook that puts
X in at the stem (the demo ResNets' max pool), autograd, and a plain loop over images and
steps, one image at a time.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from robustbench_gcp import evaluate
from robustbench_gcp.cli import main
from robustbench_gcp.config import load_config
from robustbench_gcp.data.folders import scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.models import load_model
from robustbench_gcp.reports.comparison import ALIGNED

STEM_ETAS = "0:0.3:4"  # includes eta = 0 (skipped by beta-smoothness, change_0 = 0)
STATS = ("loss", "loss_band", "grad_change_max", "beta_smoothness", "grad_norm")


def landscape_eval(demo_val, store, **kwargs):
    options = dict(suite="landscape", data=str(demo_val), class_order="sorted", store=str(store),
                   batch_size=5, limit=10, etas=STEM_ETAS, workers=0)
    options.update(kwargs)
    return evaluate(options.pop("model", "demo-isqrt"), **options)


def stored_values(report, name="clean"):
    (cell,) = [r for r in report.cells if r.key.kind == "landscape" and r.key.name == name]
    return cell.extra


def demo_images(demo_val, model, limit):
    cfg = model.pretrained_cfg
    images = scan_folder(demo_val, class_order="sorted").limit(limit)
    batches = iterate_batches(images.paths(), Preprocess(cfg.resize_size, cfg.input_size), batch_size=50)
    return torch.cat([b for b, _ in batches]).float() / 255, list(images.labels), list(images.indices)


def independent(demo_val, model_name, *, at="stem", direction="ascent", etas=(0.0, 0.1, 0.2, 0.3), limit=10,
                sqrt=None, transform=None, dtype=torch.float64):
    """Per image: L(X), ||g||, loss_k, change_k, one image and one step at a time, in ``dtype``
    (the suite's default precision, float64)."""
    spec = load_config().model(model_name)
    net = load_model(spec.arch, spec.checkpoint, sqrt=sqrt).eval().to(dtype)
    cfg = net.pretrained_cfg
    x, labels, indices = demo_images(demo_val, net, limit)
    if transform is not None:
        x = transform(x, indices)
    x = x.to(dtype)
    mean, std = (torch.tensor(v, dtype=dtype).view(1, 3, 1, 1) for v in (cfg.mean, cfg.std))
    sign = 1.0 if direction == "ascent" else -1.0

    def one_image(image, y):
        def loss_and_grad(point):
            point = point.detach().requires_grad_(True)
            if at == "pixels":
                logits = net((point - mean) / std)
            else:  # the stem's output replaced by `point`
                hook = net.maxpool.register_forward_hook(lambda module, args, out: point)
                logits = net((image - mean) / std)
                hook.remove()
            loss = F.cross_entropy(logits, y)
            (grad,) = torch.autograd.grad(loss, point)
            return loss.item(), grad

        if at == "pixels":
            base = image.clone()
        else:
            seen = {}
            hook = net.maxpool.register_forward_hook(lambda module, args, out: seen.setdefault("x", out))
            with torch.no_grad():
                net((image - mean) / std)
            hook.remove()
            base = seen["x"]
        loss0, g = loss_and_grad(base)
        losses, changes = [], []
        for eta in etas:
            loss, grad = loss_and_grad(base + sign * eta * g)
            losses.append(loss)
            changes.append((grad - g).norm().item())
        return [loss0, g.norm().item(), *losses, *changes]

    rows = [one_image(image[None], torch.tensor([label])) for image, label in zip(x, labels)]
    return np.array(rows)


def summaries_of(values, etas):
    k = len(etas)
    losses, changes = values[:, 2:2 + k], values[:, 2 + k:]
    etas = np.array(etas)
    moved = etas > 0
    return {"loss": values[:, 0].mean(), "grad_norm": values[:, 1].mean(),
            "loss_band": (losses.max(1) - losses.min(1)).mean(), "grad_change_max": changes.max(1).mean(),
            "beta_smoothness": (changes[:, moved] / (etas[moved] * values[:, 1:2])).max(1).mean()}


def assert_values_close(stored, expected, atol=1e-5):
    """Equal up to float32 rounding; ``atol`` relative to the largest value."""
    np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=atol * np.abs(expected).max())


def test_stem_ascent_equals_independent_recomputation_and_the_json_schema(demo_val, tmp_path):
    report = landscape_eval(demo_val, tmp_path / "s.db")
    expected = independent(demo_val, "demo-isqrt")
    stored = stored_values(report)
    assert stored.dtype == np.float32 and stored.shape == (10, 2 + 2 * 4)
    assert_values_close(stored, expected)
    assert np.all(stored[:, 2 + 4] < 1e-4 * stored[:, 1])  # change at eta = 0

    data = report.to_json()
    entry = data["landscape"]
    assert set(entry) == {"at", "direction", "precision", "n", "per_eta", "loss", "loss_band",
                          "grad_change_max", "beta_smoothness", "grad_norm"}
    assert (entry["at"], entry["direction"], entry["precision"], entry["n"]) == ("stem", "ascent", "float64",
                                                                                10)
    assert [e["eta"] for e in entry["per_eta"]] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [set(e) for e in entry["per_eta"]] == [{"eta", "mean_loss", "mean_grad_change"}] * 4
    assert [e["mean_loss"] for e in entry["per_eta"]] == pytest.approx(expected[:, 2:6].mean(0), rel=1e-4)
    assert [e["mean_grad_change"] for e in entry["per_eta"]] == pytest.approx(expected[:, 6:].mean(0),
                                                                              rel=1e-3, abs=1e-7)
    want = summaries_of(expected, [0.0, 0.1, 0.2, 0.3])
    for name in STATS:
        assert entry[name] == pytest.approx(want[name], rel=1e-3), name
    assert entry["loss_band"] > 0 and entry["grad_change_max"] > 0
    assert data["landscape_cells"] == [] and data["clean"]["n"] == 10
    json.dumps(data)  # plain types only


def test_pixels_descent_equals_independent_recomputation(demo_val, tmp_path):
    report = landscape_eval(demo_val, tmp_path / "s.db", model="demo-gap", landscape_at="pixels",
                            direction="descent", etas="0.5:2:3", limit=6)
    expected = independent(demo_val, "demo-gap", at="pixels", direction="descent", etas=(0.5, 1.25, 2.0),
                           limit=6)
    assert_values_close(stored_values(report), expected)
    entry = report.to_json()["landscape"]
    assert (entry["at"], entry["direction"]) == ("pixels", "descent")
    assert entry["per_eta"][-1]["mean_loss"] < entry["loss"]  # descending lowers the loss
    # steps not starting at 0: the band is over the steps' losses (against L(X) it went negative)
    want = summaries_of(expected, [0.5, 1.25, 2.0])
    for name in STATS:
        assert entry[name] == pytest.approx(want[name], rel=1e-3), name


def test_sqrt_eig_and_newton_schulz_each_equal_their_recomputation(demo_val, tmp_path):
    values = {}
    # the exact root's backward has 1/(s_i + s_j) terms: float32 rounding of a batch against a
    # single image is amplified there, up to ~1e-3 of ||g|| in the small gradient changes
    for sqrt, atol in (("eig", 1e-3), ("newton-schulz", 1e-5)):
        report = landscape_eval(demo_val, tmp_path / "s.db", sqrt=sqrt, limit=6)
        values[sqrt] = stored_values(report)
        assert_values_close(values[sqrt], independent(demo_val, "demo-isqrt", sqrt=sqrt, limit=6), atol)
    difference = np.abs(values["eig"] - values["newton-schulz"])
    assert difference[:, 0].max() > 1e-3 and difference[:, 6:].max() > 1e-4  # loss, gradient changes


def test_stored_values_do_not_depend_on_the_batch_size(demo_val, tmp_path):
    one = stored_values(landscape_eval(demo_val, tmp_path / "a.db", batch_size=1, shard_size=4))
    seven = stored_values(landscape_eval(demo_val, tmp_path / "b.db", batch_size=7))
    # bit for bit: each image is measured in passes of its own copies only (landscape_measure.ROWS)
    np.testing.assert_array_equal(one, seven)


def test_a_corruption_cell_is_the_landscape_of_the_imagenet_c_images(demo_val, tmp_path):
    from corruptions import corrupt, storage_roundtrip
    from robustbench_gcp.engine.seeding import image_seeds

    report = landscape_eval(demo_val, tmp_path / "s.db", corruptions="gaussian_noise", severities=[3],
                            limit=6, shard_size=4)  # the second shard's images keep their own seeds

    def noisy(x, indices):
        return storage_roundtrip(corrupt(x, "gaussian_noise", 3,
                                         seed=image_seeds(0, "imagenet-c/gaussian_noise/3", indices)))

    expected = independent(demo_val, "demo-isqrt", limit=6, transform=noisy)
    assert_values_close(stored_values(report, "gaussian_noise"), expected)
    data = report.to_json()
    (cell,) = data["landscape_cells"]
    assert (cell["corruption"], cell["severity"], cell["n"]) == ("gaussian_noise", 3, 6)
    assert cell["loss"] == pytest.approx(expected[:, 0].mean(), rel=1e-4)
    assert data["landscape"]["n"] == 6 and data["storage_roundtrip"] is True
    # Markdown's detail table has the corrupted cell beside the clean images (it had the clean only)
    from robustbench_gcp.reports.many_reports import detail_markdown

    rows = [line for line in detail_markdown([report]).splitlines() if line.startswith("| demo-isqrt")]
    assert [row.split("|")[2].strip() for row in rows] == ["clean", "gaussian_noise/3"]
    assert f"{cell['loss']:.4g}" in rows[1]


def test_corrupted_cells_made_otherwise_are_not_paired(demo_val, tmp_path):
    """demo-gap's fog/3 without the storage round trip and demo-isqrt's with it: the comparison
    leaves both out (they were paired as one cell), and steps differing past 3 digits are
    experiments apart."""
    from robustbench_gcp.reports.comparison import compare_reports

    store = tmp_path / "s.db"
    common = dict(corruptions="fog", severities=[3], limit=4, etas="0:0.29312:2")
    gap = landscape_eval(demo_val, store, model="demo-gap", storage_roundtrip=False, **common)
    isqrt = landscape_eval(demo_val, store, model="demo-isqrt", **common)
    assert (gap.to_json()["storage_roundtrip"], isqrt.to_json()["storage_roundtrip"]) == (False, True)
    (comparison,) = compare_reports([gap, isqrt], resamples=100)
    assert not any(metric.endswith("fog/3") for metric in comparison["models"][1]["metrics"])
    assert comparison["notes"][:2] == [
        "demo-gap: 1 cell that not every compared model has is left out of the comparison "
        "(fog/3 without the round trip)" + ALIGNED,
        "demo-isqrt: 1 cell that not every compared model has is left out of the comparison "
        "(fog/3 with the storage round trip)" + ALIGNED]
    other = landscape_eval(demo_val, store, model="demo-gap", **{**common, "etas": "0:0.29314:2"})
    assert len(compare_reports([other, isqrt], resamples=100)) == 2


def test_markdown_says_which_landscape_each_table_is(demo_val, tmp_path):
    """One report's Markdown heads with the measurement point, direction and steps (it read as any
    landscape), and a store of two settings titles each detail table with its experiment."""
    from robustbench_gcp.reports.many_reports import detail_markdown
    from robustbench_gcp.reports.one_report import to_report_markdown

    store = tmp_path / "s.db"
    stem = landscape_eval(demo_val, store, limit=4, etas="0:0.3:2")
    pixels = landscape_eval(demo_val, store, limit=4, etas="0:2:2", direction="descent",
                            landscape_at="pixels")
    heading = "### demo-isqrt on landscape (pixels, descent, 2 etas 0 to 2, float64, 10 classes)"
    assert to_report_markdown(pixels).startswith(heading)
    detail = detail_markdown([stem, pixels])
    assert "_landscape (stem, ascent, 2 etas 0 to 0.3, float64, 10 classes), 4 images:_" in detail
    assert "_landscape (pixels, descent, 2 etas 0 to 2, float64, 10 classes), 4 images:_" in detail
    assert "_landscape" not in detail_markdown([stem])  # one experiment: no heading needed


def test_figures_of_descent_say_against_the_gradient(demo_val, tmp_path, monkeypatch):
    """Steps X - eta g were titled "Loss along the gradient"."""
    from robustbench_gcp.reports import figures
    from robustbench_gcp.suites.landscape import grad_change_vs_eta, loss_vs_eta

    titles = []
    original = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: (
        titles.append((fig._suptitle.get_text(), fig.axes[0].get_ylabel())), original(fig, path))[1])
    descent = landscape_eval(demo_val, tmp_path / "s.db", limit=2, etas="0:2:2", direction="descent",
                             landscape_at="pixels")
    loss_vs_eta([descent], tmp_path / "loss.png")
    grad_change_vs_eta([descent], tmp_path / "change.png")
    heading = descent.heading  # the run's settings, as the tables' titles: "(pixels, descent, ..."
    assert "(pixels, descent, " in heading
    assert titles == [(f"{heading}: loss against the gradient", "loss L(X - eta g)"),
                      (f"{heading}: gradient change against the gradient", "||grad L(X - eta g) - g||")]


def test_settings_are_cells_and_a_second_run_computes_nothing(demo_val, tmp_path):
    store = tmp_path / "s.db"
    landscape_eval(demo_val, store, limit=4)
    again = landscape_eval(demo_val, store, limit=4)
    assert again.computed["computed"] == 0
    descent = landscape_eval(demo_val, store, limit=4, direction="descent")
    assert descent.computed["computed"] == 1  # the clean cell is shared; the landscape is new
    listed = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--no-intervals"])
    assert listed.exit_code == 0, listed.output
    reports = json.loads(listed.stdout)["reports"]
    assert sorted(r["landscape"]["direction"] for r in reports if r.get("landscape")) == ["ascent", "descent"]


@pytest.mark.parametrize("args, message", [
    (("--etas", "0.1:0.3"), "`--etas` should be A:B:K"),
    (("--etas", "a:b:c"), "`--etas` should be A:B:K"),
    (("--etas", "0.1:0.3:1"), "K (the number of steps) should be an integer >= 2. Got 1"),
    (("--etas", "0.1:0.3:2.5"), "K (the number of steps) should be an integer >= 2"),
    (("--etas", "0:1:1e9"), "K (the number of steps) should be at most 10,000 (the papers use 50). Got 1e9"),
    (("--amp",), "`--amp` computes in bfloat16 on cpu, whose rounding swamps the landscape suite's"),
    (("--etas", "0.3:0.1:5"), "the first step A should be < the last step B. Got 0.3 >= 0.1"),
    (("--etas", "0.5:0.5:3"), "the first step A should be < the last step B. Got 0.5 >= 0.5"),
    (("--etas", "0:1:nan"), "K (the number of steps) should be an integer >= 2. Got nan"),
    (("--etas", "0:1:inf"), "K (the number of steps) should be an integer >= 2. Got inf"),
    (("--etas", "-0.1:0.3:5"), "the first step A should be >= 0. Got -0.1"),
    # no step moved X in float32: a loss band, gradient change and beta-smoothness of 0 were reported
    (("--etas", "0:1e-50:3"), "the step 5e-51 rounds to 0 in float32, in which steps can be taken "
                              "(--landscape-precision)"),
    # numpy warned of an overflow, then the model's logits were NaN
    (("--etas", "0:1e300:2"), "the last step 1e+300 is infinite in float32, in which steps can be taken "
                              "(--landscape-precision; its largest: 3.4e+38)"),
    (("--model", "alexnet", "--random-weights"), "`--landscape-at stem`: model 'alexnet' (alexnet) has no "
                                                  "known stem; models with one: resnet"),
    (("--attacks", "fgsm"), "`--attacks` applies to the adversarial suite, not to 'landscape'"),
    (("--perturbations", "translate"),
     "`--perturbations` applies to the imagenet-p suite, not to 'landscape'"),
    (("--severities", "3"), "`--severities` chooses the severities of corrupted landscape cells"),
    (("--no-storage-roundtrip",), "`--no-storage-roundtrip` applies to corrupted landscape cells: name the "
                                  "corruptions with --corruptions"),
])
def test_bad_input_is_one_line_before_any_compute(demo_val, tmp_path, args, message):
    store = tmp_path / "s.db"
    command = ["eval", "--suite", "landscape", "--data", str(demo_val), "--class-order", "sorted",
               "--store", str(store)]
    if "--model" not in args:
        command += ["--model", "demo-gap"]
    result = CliRunner().invoke(main, [*command, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not store.exists()


def test_steps_that_move_no_image_are_said_to_be_rounding(demo_val, tmp_path):
    """--etas 1e-12:2e-12:2 passes the parse (no step rounds to 0) but moves no point in float32: a
    loss band, gradient change and beta-smoothness of 0 were shown as a smooth landscape. In
    float64 (the default) such steps move X; 1e-30 do not."""
    common = ["eval", "--model", "demo-gap", "--suite", "landscape", "--data", str(demo_val), "--class-order",
              "sorted", "--limit", "10", "--workers", "0", "--store", str(tmp_path / "s.db"), "--format",
              "json"]
    wide = CliRunner().invoke(main, [*common, "--etas", "1e-30:2e-30:2"])
    (said,) = [n for n in json.loads(wide.stdout)["notes"] if "by rounding" in n]
    assert " of 10 images no step (up to eta = 2e-30) changed the loss or the gradient in float64 (the " \
        "losses as stored, in float32): their loss band" in said, said
    moved = CliRunner().invoke(main, [*common, "--etas", "1e-12:2e-12:2"])
    assert not [n for n in json.loads(moved.stdout)["notes"] if "by rounding" in n]
    common += ["--landscape-precision", "float32"]
    tiny = CliRunner().invoke(main, [*common, "--etas", "1e-12:2e-12:2"])
    assert tiny.exit_code == 0, tiny.output
    report = json.loads(tiny.stdout)
    said = [n for n in report["notes"] if "by rounding" in n]
    assert len(said) == 1 and said[0].startswith("landscape clean: for ")
    assert " of 10 images no step (up to eta = 2e-12) changed the loss or the gradient in float32" in said[0]
    plain = CliRunner().invoke(main, common)
    assert not [n for n in json.loads(plain.stdout)["notes"] if "by rounding" in n]
    # steps that move some images' gradient but not their loss (a random-weight MobileNetV2's
    # gradient of norm 6e-10 gave beta-smoothness 837, rounding, unsaid)
    small = json.loads(CliRunner().invoke(main, [*common, "--etas", "1e-7:2e-7:2"]).stdout)
    (said,) = [n for n in small["notes"] if "changed the loss in float32 (their loss band is 0)" in n]
    # how many sit at float32's edge hangs on the demo's pixels (Pillow's JPEG codec: 1, then 2 of them)
    count = re.match(r"landscape clean: for (\d+) of 10 images no step \(up to eta = 2e-07\) ", said)
    assert count and 1 <= int(count[1]) < 10, said  # some images, not all (those the first note says)
    assert said.endswith("measure rounding more than the landscape, their gradient change and "
                         "beta-smoothness too; raise the steps (--etas)")


def test_etas_take_fractions():
    from robustbench_gcp.suites.landscape_measure import DEFAULT_ETAS, parse_etas

    assert parse_etas("0.1/256:75/256:50") == DEFAULT_ETAS["stem"]
    assert DEFAULT_ETAS["stem"].values()[[0, -1]].tolist() == [0.1 / 256, 75 / 256]
    assert parse_etas("0.1:2:4").values()[-1] == 2.0  # the last step is B (was 1.9999999999999998)
    zero = parse_etas("-0:1:3")  # was a cell of its own, labelled "-0 to 1"
    assert zero == parse_etas("0:1:3") and math.copysign(1, zero.low) == 1


def test_plots_of_two_step_settings_are_two_files_in_the_folder(demo_val, tmp_path):
    """Each setting is its own experiment: its own figures, named from its steps with safe
    characters (no "/" from 0.1/256 making folders)."""
    store = tmp_path / "s.db"
    landscape_eval(demo_val, store, model="demo-gap", limit=2, etas="0.1/256:75/256:3")
    landscape_eval(demo_val, store, model="demo-gap", limit=2, etas="0.01:0.1:2")
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "landscape",
                                       "--no-intervals", "--plot", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "plots"
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert len(written) == 4 and all("/" not in name for name in written), written
    name = "landscape_stem_ascent_3_etas_0.1_256_to_75_256_float64_10_classes_loss_vs_eta.png"
    assert name in written, written


def test_reports_name_the_steps_as_people_give_them():
    import json

    from robustbench_gcp.suites import get_suite
    from robustbench_gcp.suites.landscape_measure import DEFAULT_ETAS, LandscapeSettings, parse_etas

    def label(at, etas):
        variant = LandscapeSettings(at, "ascent", etas).variant()
        return get_suite("landscape").source_label(json.dumps(variant))

    assert label("stem", DEFAULT_ETAS["stem"]) == "stem, ascent, 50 etas 0.1/256 to 75/256, float64"
    assert label("pixels", parse_etas("0.01:0.5:3")) == "pixels, ascent, 3 etas 0.01 to 0.5, float64"
    # exact: labels tell experiments apart (3 digits joined 0.29312 with 0.29314, 6 1/3 with 0.333333)
    assert label("pixels", parse_etas("1/3:2/3:2")) == "pixels, ascent, 2 etas 1/3 to 2/3, float64"
    assert label("pixels", parse_etas("0.333333:2/3:2")) == "pixels, ascent, 2 etas 0.333333 to 2/3, float64"
    assert label("pixels", parse_etas("0:0.29312:2")) == "pixels, ascent, 2 etas 0 to 0.29312, float64"


def test_a_mobilenetv2_gets_its_authors_steps_at_the_stem(demo_val, tmp_path):
    """landscape/MobileNetV2 steps 0.045 to 1.5 over a batch of 96 (scripts/train.sh): per image
    0.045/96 to 1.5/96 (torchvision's mobilenet_v2's too); given steps stay; ResNets keep their authors'
    0.1/256 to 75/256."""
    from robustbench_gcp.pipeline import plan

    common = dict(suite="landscape", data=str(demo_val), class_order="sorted", store=str(tmp_path / "s.db"),
                  random_weights=True)
    for model in ("mobilenetv2-isqrt", "torchvision:mobilenet_v2"):  # torchvision's own MobileNetV2 too
        mobile = plan(model, **common).selection.settings.etas
        assert (mobile.low, mobile.high, mobile.count) == (0.045 / 96, 1.5 / 96, 50), model
    given = plan("mobilenetv2-isqrt", etas="0.1:1:5", **common).selection.settings.etas
    assert (given.low, given.high, given.count) == (0.1, 1.0, 5)
    resnet = plan("resnet18-isqrt", **common).selection.settings.etas
    assert (resnet.low, resnet.high, resnet.count) == (0.1 / 256, 75 / 256, 50)
    pixels = plan("mobilenetv2-isqrt", landscape_at="pixels", **common).selection.settings.etas
    assert (pixels.low, pixels.high) == (0.01, 1.0)


def test_pixels_take_any_model(demo_val, tmp_path):
    report = landscape_eval(demo_val, tmp_path / "s.db", model="alexnet", random_weights=True,
                            landscape_at="pixels", limit=2, etas="0.01:1:2")
    assert report.sections["landscape"]["at"] == "pixels"


def test_compare_pairs_the_models_and_report_and_plots_come_from_the_store(demo_val, tmp_path):
    store, plots = str(tmp_path / "s.db"), tmp_path / "plots"
    common = ["--suite", "landscape", "--data", str(demo_val), "--class-order", "sorted", "--store", store,
              "--limit", "20", "--etas", "0.01:0.3:3", "--workers", "0", "--resamples", "200"]
    result = CliRunner().invoke(main, ["compare", "--model", "demo-gap", "--model", "demo-isqrt", *common,
                                       "--format", "json", "--plot", str(plots)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (comparison,) = out["comparisons"]
    gap, isqrt = comparison["models"]
    assert set(isqrt["metrics"]) == {"clean_error", *STATS} and isqrt["paired"]
    for name in STATS:
        delta, own, ref = isqrt["delta"][name], isqrt["metrics"][name], gap["metrics"][name]
        assert delta["estimate"] == pytest.approx(own["estimate"] - ref["estimate"])
        assert delta["low"] <= delta["estimate"] <= delta["high"]
        assert own["low"] <= own["estimate"] <= own["high"]
    for r in out["reports"]:
        assert r["landscape"]["n"] == 20 and len(r["landscape"]["per_eta"]) == 3
    # every quantity's mean difference has its paired test (sign flips over the 20 images), in the
    # model's Holm family with the clean images' McNemar test
    assert set(isqrt["tests"]) == {"clean", *STATS} and gap["tests"] is None
    for name in STATS:
        test = isqrt["tests"][name]
        assert test["method"] in ("sign-flip 10000 draws", "sign-flip exact")
        assert 0 < test["p_value"] <= test["p_holm"] <= 1
        assert test["only_a"] + test["only_b"] <= 20

    for name in ("landscape_loss_vs_eta.png", "landscape_grad_change_vs_eta.png"):
        with Image.open(plots / name) as image:
            assert image.info["Axes"] == "1"

    stored = CliRunner().invoke(main, ["report", "--store", store, "--format", "json", "--resamples", "200"])
    assert stored.exit_code == 0, stored.output
    rebuilt = json.loads(stored.stdout)
    by_model = {r["model"]: r["landscape"] for r in rebuilt["reports"] if r.get("landscape")}
    assert by_model == {r["model"]: r["landscape"] for r in out["reports"]}
    (again,) = rebuilt["comparisons"]
    assert again["models"][1]["delta"]["loss_band"] == isqrt["delta"]["loss_band"]
    table = CliRunner().invoke(main, ["report", "--store", store, "--resamples", "200"],
                               env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "loss band" in table.stdout and "beta-smoothness" in table.stdout
    # the paired p-values, and the caption names the tests
    assert "paired p" in table.stdout and "Holm p" in table.stdout
    assert "the sign-flip test of each quantity's mean over the images" in " ".join(table.stdout.split())
    csv = CliRunner().invoke(main, ["report", "--store", store, "--format", "csv", "--no-intervals"])
    assert csv.exit_code == 0 and "loss_band" in csv.stdout.splitlines()[0]
    markdown = CliRunner().invoke(main, ["report", "--store", store, "--format", "markdown",
                                         "--resamples", "200"])
    assert markdown.exit_code == 0 and "Loss landscape (per-image means)" in markdown.stdout


def test_the_bench_command_prints_the_ratio_and_both_paths_agree():
    result = CliRunner().invoke(main, ["bench", "landscape", "--images", "4", "--batch-size", "4",
                                       "--etas", "0:0.3:3", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    suite, naive = json.loads(result.stdout)["rows"]
    assert (suite["path"], naive["path"]) == ("suite", "naive")
    # the suite: one pass for g, one of X and the 2 steps not 0 (it said 4 passes, the naive loop's)
    assert (suite["passes"], suite["rows"], naive["passes"], naive["rows"]) == (2, 4, 4, 4)
    assert suite["ratio"] > 0 and suite["max_rel_diff"] < 1e-3


def test_the_passes_said_per_image_are_the_passes_measure_makes():
    """``bench landscape`` printed K + 1 passes per image for the suite, which stacks the steps."""
    from robustbench_gcp.engine.classifier import Classifier
    from robustbench_gcp.suites import landscape_measure as lm

    spec = load_config().model("demo-gap")
    net = load_model(spec.arch, spec.checkpoint).eval()
    cfg = net.pretrained_cfg
    classifier = Classifier(net, torch.device("cpu"), mean=cfg.mean, std=cfg.std)
    to_x, rest = lm.measurement_split(classifier, "stem")
    calls = []

    def counted(points):
        calls.append(len(points))
        return rest(points)

    for etas in ("0.01:0.3:40", "0:0.3:31", "0.01:0.3:62"):
        settings = lm.LandscapeSettings("stem", "ascent", lm.parse_etas(etas), "float32")  # the split's
        calls.clear()
        x = torch.rand(2, 3, 64, 64)
        lm.measure(x, torch.tensor([0, 1]), classifier, settings, split=(to_x, counted))
        assert (len(calls) // 2, sum(calls) // 2) == lm.passes_per_image(settings), etas


def test_benchmarks_yaml_settings(tmp_path):
    from robustbench_gcp.config import default_config_path
    from robustbench_gcp.errors import ConfigError

    spec = load_config().suite("landscape")
    assert (spec.kind, spec.at, spec.direction, spec.etas, spec.corruptions) == \
        ("landscape", "stem", "ascent", None, ())
    text = default_config_path().read_text(encoding="utf-8")
    path = tmp_path / "benchmarks.yaml"
    path.write_text(text.replace("\nsuites:\n", "\nsuites:\n  mine:\n    kind: landscape\n"
                                 "    etas: '0.5:0.1:3'\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"suites\.mine\.etas"):
        load_config(path)
    # a suite's steps are for its own measurement point: at the other, that point's default
    from robustbench_gcp.suites import get_suite
    from robustbench_gcp.suites.landscape_measure import DEFAULT_ETAS, parse_etas

    path.write_text(text.replace("\nsuites:\n", "\nsuites:\n  mine:\n    kind: landscape\n"
                                 "    etas: '0.2:0.6:3'\n", 1), encoding="utf-8")
    mine, suite = load_config(path).suite("mine"), get_suite("landscape")
    assert suite.select(mine, {}).settings.etas == parse_etas("0.2:0.6:3")
    pixels = suite.select(mine, {"landscape_at": "pixels"})
    assert pixels.settings.etas == DEFAULT_ETAS["pixels"] and pixels.default_etas
    given = suite.select(mine, {"landscape_at": "pixels", "etas": "0.1:1:2"})
    assert given.settings.etas == parse_etas("0.1:1:2")
    # the precision: float64 unless the suite or --landscape-precision says float32
    assert suite.select(mine, {}).settings.precision == "float64"
    assert suite.select(mine, {"landscape_precision": "float32"}).settings.precision == "float32"
    path.write_text(text.replace("\nsuites:\n", "\nsuites:\n  mine:\n    kind: landscape\n"
                                 "    precision: float32\n", 1), encoding="utf-8")
    assert suite.select(load_config(path).suite("mine"), {}).settings.precision == "float32"
    path.write_text(text.replace("\nsuites:\n", "\nsuites:\n  mine:\n    kind: landscape\n"
                                 "    precision: float16\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"suites\.mine\.precision \(line \d+\): should be one of float64, "
                                          r"float32, got 'float16'"):
        load_config(path)


def test_an_exact_root_is_measured_in_float64_not_in_float32s_rounding(demo_val, tmp_path):
    """demo-isqrt with an eigendecomposition root measured in float32: its gradient changes at the
    small steps were float32's rounding (the null space of a rank-deficient covariance), and
    beta-smoothness came out 20x float64's (helper-233): `compare --sqrt newton-schulz,eig` said
    eig's landscape far rougher. The suite measures in float64 unless asked for float32; float32
    cells carry no mark (those stored before are float32's) and float64's carry theirs."""
    from robustbench_gcp.suites.landscape_measure import LandscapeSettings, parse_etas

    etas = "0.1/256:75/256:10"
    values = tuple(parse_etas(etas).values())
    store = tmp_path / "s.db"
    exact_report = landscape_eval(demo_val, store, sqrt="eig", etas=etas, limit=6)
    exact = stored_values(exact_report)
    expected = independent(demo_val, "demo-isqrt", sqrt="eig", etas=values, limit=6)
    assert_values_close(exact, expected)
    rough_report = landscape_eval(demo_val, store, sqrt="eig", etas=etas, limit=6,
                                  landscape_precision="float32")
    rough = stored_values(rough_report)
    beta = [summaries_of(v, values)["beta_smoothness"] for v in (exact, rough, expected)]
    assert beta[0] == pytest.approx(beta[2], rel=1e-3) and beta[1] > 3 * beta[2], beta
    # the reports name their cells' precision in the landscape's table (the header's is the run's, the
    # clean error's: helper-236, helper-238), and float32's say its rounding, whatever ran last (a run's
    # notes are the last command's)
    from robustbench_gcp.suites import get_suite

    titles = [get_suite("landscape").tables(r)[0].title for r in (exact_report, rough_report)]
    assert titles == ["Loss landscape (stem, ascent, 10 etas 0.1/256 to 75/256, float64, 10 classes): "
                      "per-image means",
                      "Loss landscape (stem, ascent, 10 etas 0.1/256 to 75/256, float32, 10 classes): "
                      "per-image means"], titles
    assert exact_report.precision == rough_report.precision == "float32"
    from robustbench_gcp.reports.stored import reports_from_store

    stored = reports_from_store(store, load_config(), suites=["landscape"], baseline="alexnet")
    notes = {r.source: r.notes for r in stored}
    said = [any(n.startswith("measured in the run's precision") for n in notes[source])
            for source in sorted(notes)]
    assert said == [True, False], notes  # "..., float32" sorts before "..., float64"
    settings = LandscapeSettings("stem", "ascent", parse_etas(etas), "float32")
    assert "precision" not in settings.variant()
    assert LandscapeSettings.of_variant(settings.variant()) == settings
    ours = LandscapeSettings("stem", "ascent", parse_etas(etas))
    assert ours.variant()["precision"] == "float64" and LandscapeSettings.of_variant(ours.variant()) == ours


def test_an_undefined_gradient_is_said_as_such_not_blamed_on_the_steps(demo_val, tmp_path):
    """A signed square root at exact zeros has finite logits and a NaN gradient: every step from X
    was NaN, and the error said to lower --etas (no step is small enough)."""
    from robustbench_gcp import evaluate
    from robustbench_gcp.errors import NonFiniteError

    class SignedSqrt(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)
            self.fc = torch.nn.Linear(16, 10)
            with torch.no_grad():
                self.conv.bias[:2] = -100.0  # two dead channels: their sqrt is taken at 0

        def forward(self, x):  # bilinear pooling, signed square root (a B-CNN's head)
            f = torch.relu(self.conv(x)).flatten(2)
            b = (f @ f.transpose(1, 2) / f.shape[-1]).flatten(1)
            return self.fc(torch.sign(b) * b.abs().sqrt())

    store = tmp_path / "s.db"
    with pytest.raises(NonFiniteError, match=r"the gradient of the loss is NaN or infinite at 1 of 1 "
                                             r"points .* backward pass is undefined there"):
        evaluate(SignedSqrt(), name="signed-sqrt", suite="landscape", data=demo_val, class_order="sorted",
                 store=store, limit=2, landscape_at="pixels", etas="0:1e-9:2", workers=0,
                 preprocess={"resize_size": 73, "input_size": 64})

    class Exploding(SignedSqrt):  # finite at X, infinite logits a large step away
        def forward(self, x):
            return self.fc(torch.exp(torch.relu(self.conv(x)).mean((2, 3)))[:, 2:3].expand(-1, 16))

    said = r"NaN or infinite logits for 1 of 2 points \(X and its steps\), at a step of up to eta = 1e\+06"
    with pytest.raises(NonFiniteError, match=said + " from the pixels: lower the last"):
        evaluate(Exploding(), name="exploding", suite="landscape", data=demo_val, class_order="sorted",
                 store=tmp_path / "e.db", limit=1, landscape_at="pixels", etas="0:1e6:2", workers=0,
                 preprocess={"resize_size": 73, "input_size": 64})


def test_a_store_of_corrupted_cells_shows_the_last_made_and_tests_every_cell(demo_val, tmp_path):
    """Of a corrupted cell made twice (without, then with the round trip), reports show the one stored
    last; the summary's rows are the clean images' (a corrupted cell's stood under "clean"); and the
    comparison tests each quantity of each corrupted cell in the Holm family, not the clean ones only."""
    from robustbench_gcp.reports.comparison import compare_reports
    from robustbench_gcp.suites import get_suite

    store = tmp_path / "s.db"
    common = dict(corruptions="fog", severities=[3], limit=6, etas="0:0.3:2")
    landscape_eval(demo_val, store, model="demo-gap", storage_roundtrip=False, **common)
    gap = landscape_eval(demo_val, store, model="demo-gap", **common)
    isqrt = landscape_eval(demo_val, store, model="demo-isqrt", **common)
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "json", "--resamples",
                                       "100"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (stored,) = [r for r in out["reports"] if r["model"] == "demo-gap"]
    assert stored["storage_roundtrip"] is True
    assert stored["landscape_cells"] == gap.to_json()["landscape_cells"]
    assert any("landscape cells made in several ways (fog/3): only the one stored last is shown" in note
               for note in stored["notes"]), stored["notes"]

    rows = {row["metric"]: row["value"] for row in get_suite("landscape").summary_rows(gap)}
    clean, (fog,) = gap.sections["landscape"], gap.sections["landscape_cells"]
    assert rows["landscape (clean): mean L(X), the clean loss at X"] == f"{clean['loss']:.4g}"
    assert f"{clean['loss']:.4g}" != f"{fog['loss']:.4g}"
    assert not any(metric.startswith("landscape (fog") for metric in rows)

    (comparison,) = compare_reports([gap, isqrt], resamples=100)
    tests = comparison["models"][1]["tests"]
    assert set(tests) == {"clean", *STATS, *(f"{name} fog/3" for name in STATS)}, sorted(tests)
    (stored_comparison,) = out["comparisons"]  # the report's, from the store: the same tests
    assert stored_comparison["models"][1]["tests"] == tests


def test_a_figure_has_a_panel_per_cell_with_the_band_of_the_images(demo_val, tmp_path, monkeypatch):
    """Five cells are five panels on two rows of four (a row count rounded down dropped the fifth), and
    each panel's shaded band runs from the 10th to the 90th percentile of the images' losses."""
    from robustbench_gcp.reports import figures
    from robustbench_gcp.suites.landscape import loss_vs_eta, settings_of, summaries

    shown = []
    original = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: (shown.append(fig), original(fig, path))[1])
    report = landscape_eval(demo_val, tmp_path / "s.db", model="demo-gap", limit=10, etas="0:0.3:3",
                            corruptions="gaussian_noise,fog,contrast,pixelate", severities=[5])
    loss_vs_eta([report], tmp_path / "loss.png")
    (fig,) = shown
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["clean", "gaussian noise/5", "fog/5", "contrast/5",
                                                 "pixelate/5"]
    clean = next(r for r in report.cells if r.key.kind == "landscape" and not r.key.level)
    losses = summaries(clean.extra, settings_of(clean.key))["losses"]
    (band,) = panels[0].collections
    heights = band.get_paths()[0].vertices[:, 1]
    low, high = np.percentile(losses, [10, 90], axis=0)
    assert heights.min() == pytest.approx(low.min()) and heights.max() == pytest.approx(high.max())
    assert np.isin(np.round(np.concatenate([low, high]), 6), np.round(heights, 6)).all()
    with Image.open(tmp_path / "loss.png") as image:  # the panels shown, not the three hidden
        assert image.info["Axes"] == "5"


def test_unquoted_etas_in_yaml_are_told_to_be_quoted(tmp_path):
    """YAML 1.1 reads etas: 1:2:3 as 3723 (base 60): the message echoed a number never written."""
    config = tmp_path / "c.yaml"
    config.write_text("suites:\n  ls:\n    kind: landscape\n    at: pixels\n    etas: 1:2:3\n")
    result = CliRunner().invoke(main, ["suites", "--config", str(config)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.stderr.rstrip().endswith("Got 3723; an unquoted A:B:K in YAML is a base-60 number: quote "
                                           'it ("1:2:3")')
    config.write_text('suites:\n  ls:\n    kind: landscape\n    at: pixels\n    etas: "1:2:3"\n')
    assert CliRunner().invoke(main, ["suites", "--config", str(config)]).exit_code == 0


def test_models_measured_with_other_steps_on_the_same_images_are_said_to_be_compared_apart(demo_val,
                                                                                          tmp_path):
    """A MobileNetV2 takes its authors' steps by default: compared with ResNets at theirs, each
    model had a comparison table of its own, and nothing said why."""
    store = tmp_path / "s.db"
    landscape_eval(demo_val, store, model="demo-gap", limit=4)
    landscape_eval(demo_val, store, model="demo-isqrt", limit=4, etas="0:0.2:3")
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--resamples", "100", "--format",
                                       "json"])
    assert result.exit_code == 0, result.output
    comparisons = json.loads(result.stdout)["comparisons"]
    assert len(comparisons) == 2
    for comparison in comparisons:
        (model,) = [m["model"] for m in comparison["models"]]
        other = "demo-isqrt" if model == "demo-gap" else "demo-gap"
        (note,) = [n for n in comparison["notes"] if "compared apart" in n]
        assert note.startswith(f"{model} (landscape (")
        assert f"is compared apart from {other} (landscape (" in note
        assert note.endswith("measured on the same images another way")


@pytest.mark.parametrize("message, of_dtypes", [
    ("expected m1 and m2 to have the same dtype, but got: double != float", True),
    ("Input type (double) and bias type (float) should be the same", True),
    ("expected scalar type Double but found Float", True),
    # an in-place change under the float64 copy names its DoubleTensor: it was told to use float32
    ("one of the variables needed for gradient computation has been modified by an inplace operation: "
     "[torch.DoubleTensor [1, 3, 224, 224]], which is output 0 of Mul, is at version 1", False),
    ("element 0 of tensors does not require grad and does not have a grad_fn", False),
])
def test_a_modules_error_of_mixed_dtypes_is_told_from_its_others(message, of_dtypes):
    """Only a module's error of mixed dtypes names --landscape-precision float32 (CI: a no-grad and
    an in-place module were told so, their exit status 2 where 1 is theirs)."""
    from robustbench_gcp.errors import ModelCodeError
    from robustbench_gcp.suites.landscape_measure import _of_dtypes

    assert _of_dtypes(ModelCodeError(f"the forward pass of 'm' raised RuntimeError: {message}")) is of_dtypes


def test_images_whose_gradient_is_zero_are_said_to_be_flat_by_definition(demo_val, tmp_path):
    """A model that rounds its input has a gradient of exactly 0: its table of zeros read as the
    smoothest landscape, without a word (helper-257); a model with gradients gets no such note."""
    class Rounding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 10)

        def forward(self, x):
            return self.fc(torch.round(x * 4).mean((2, 3)) / 4)

    common = dict(suite="landscape", data=demo_val, class_order="sorted", limit=4, landscape_at="pixels",
                  etas="0.01:1:3", workers=0, preprocess={"resize_size": 73, "input_size": 64})
    torch.manual_seed(0)
    report = evaluate(Rounding(), name="rounding", store=tmp_path / "s.db", **common)
    assert report.sections["landscape"]["beta_smoothness"] == 0
    assert ("landscape clean: 4 of 4 images have an input gradient of exactly 0 in float64 (the loss "
            "saturated, or the model masks its gradient): no step moves them, and their loss band, gradient "
            "change and beta-smoothness are 0 by definition, not smoothness; the cell's means count them"
            ) in report.notes
    report = landscape_eval(demo_val, tmp_path / "t.db", model="demo-gap", limit=4)
    assert not [note for note in report.notes if "input gradient of exactly 0" in note]
