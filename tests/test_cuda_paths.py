"""What only a CUDA run would take, tested on the CPU: the pieces CUDA's random draws are made
in (so that a seed gives the same numbers on every GPU model), and the float32 settings that
corruptions keep on CUDA whatever the caller's.
"""

from __future__ import annotations

import torch

from corruptions import _draws
from corruptions._draws import CUDA_DRAW_CHUNK, draw_in_chunks, draw_slices


def test_cuda_draws_are_made_in_pieces_every_gpu_launches_whole():
    """torch's CUDA random kernels spread a draw over a grid capped by the GPU's size: a 224 px
    image's 150,528 values got other numbers on another GPU model (glass_blur's 290,400 differed
    between an A100 and an H100, a 224 px image's noise between an A100 and an L4)."""
    cuda = torch.device("cuda")  # a device name: no GPU is needed to ask
    assert draw_slices(150_528, cuda) == [slice(s, s + CUDA_DRAW_CHUNK) for s in range(0, 150_528, 16_384)]
    assert draw_slices(16_384, cuda) == [slice(0, 16_384)]
    assert draw_slices(150_528, torch.device("cpu")) == [slice(0, 150_528)]  # sequential generators


def test_pieces_fill_every_value_in_order(monkeypatch):
    # CPU generators are sequential, so pieces drawn one after another give the whole draw's numbers
    monkeypatch.setattr(_draws, "draw_slices", lambda numel, device: [slice(s, s + 1024)
                                                                    for s in range(0, numel, 1024)])
    uniform = lambda view, gen: view.uniform_(generator=gen)  # noqa: E731
    normal = lambda view, gen: view.normal_(generator=gen)  # noqa: E731
    for fill in (uniform, normal):
        sizes = []
        whole = fill(torch.empty(3, 50, 70), torch.Generator().manual_seed(1))

        def counted(view, gen, fill=fill, sizes=sizes):
            sizes.append(view.numel())
            return fill(view, gen)

        pieces = draw_in_chunks(torch.empty(3, 50, 70), torch.Generator().manual_seed(1), counted)
        assert torch.equal(whole, pieces) and sizes == [1024] * 10 + [10_500 - 10_240]


class _CudaFloat32:
    """What ``ieee_matmul`` looks at of a float32 CUDA tensor."""

    is_cuda = True
    dtype = torch.float32


def test_corruptions_matrix_products_are_ieee_float32_whatever_the_caller_set(monkeypatch):
    """A program that had called torch.set_float32_matmul_precision("high") got TF32 in spatter's
    and elastic_transform's banded products on CUDA (spatter: values up to 89 levels off)."""
    from corruptions import _ops

    matmul = torch.backends.cuda.matmul
    before, legacy = matmul.fp32_precision, torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        assert matmul.fp32_precision == "tf32"
        with _ops.ieee_matmul(_CudaFloat32()):
            assert matmul.fp32_precision == "ieee"
        assert matmul.fp32_precision == "tf32"  # the caller's, back
        with _ops.ieee_matmul(torch.ones(2)):  # CPU: TF32 does not apply, nothing set
            assert matmul.fp32_precision == "tf32"
    finally:
        torch.set_float32_matmul_precision(legacy)
        matmul.fp32_precision = before

    entered = []
    real = _ops.ieee_matmul
    monkeypatch.setattr(_ops, "ieee_matmul", lambda x: entered.append(x.shape) or real(x))
    band = _ops.AxisMatrix(_ops.gaussian_matrix(64, 2.0), torch.float32, torch.device("cpu"))
    band.cols(band.rows(torch.rand(3, 64, 64)))
    assert entered == [(3, 64, 64), (3, 64, 64)]


def test_a_flat_channels_contrast_mean_is_numpys_running_mean_on_cuda():
    """CUDA's cumsum adds in parallel: a flat channel's mean landed on the other side of its
    level, and np.uint8 then put the whole channel a level away from the original's (41 of 64
    flat channels, emulated). Flat rows of a level's double take NumPy's running mean."""
    import numpy as np

    from corruptions._ops import grid_doubles
    from corruptions.digital import _flat_rows_exact, flat_means

    n = 224 * 224
    table = flat_means(n)
    for k in (0, 1, 5, 77, 128, 200, 254, 255):
        assert table[k] == np.mean(np.full((224, 224, 3), k, np.uint8) / 255.0, axis=(0, 1))[0]
    levels = torch.tensor([[7.0], [130.0], [255.0]]).expand(3, n).clone()
    levels[2, 5] = 254  # not flat
    rows = grid_doubles(levels / 255).unsqueeze(0)  # (1, 3, n) doubles k / 255
    off_grid = torch.full((1, 1, n), 0.3, dtype=torch.float64)  # flat, but no level's double
    values = torch.cat([rows, off_grid], 1)
    parallel = values.sum(-1, keepdim=True) / n  # another order of additions than NumPy's
    exact = _flat_rows_exact(values, parallel).flatten().tolist()
    assert exact[:2] == [table[7], table[130]] != parallel.flatten().tolist()[:2]
    assert exact[2:] == parallel.flatten().tolist()[2:]  # the others as given


def test_bench_timings_of_cuda_models_are_of_ieee_float32_as_eval(monkeypatch):
    """bench heads and bench perturbations timed CUDA models under cuDNN's default TF32, which
    eval turns off: their figures were of another computation than eval's."""
    from robustbench_gcp.engine import device as device_module

    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    try:
        conv.fp32_precision = "tf32"
        with device_module.float32_as_eval(torch.device("cuda")):
            assert conv.fp32_precision == "ieee"
        assert conv.fp32_precision == "tf32"  # the caller's, back
        with device_module.float32_as_eval(torch.device("cpu")):
            assert conv.fp32_precision == "tf32"
    finally:
        conv.fp32_precision = before
    from robustbench_gcp.bench import head_speed, perturbation_speed

    entered = []
    real = device_module.float32_as_eval
    monkeypatch.setattr(device_module, "float32_as_eval",
                        lambda device: entered.append(device) or real(device))
    monkeypatch.setattr(head_speed, "float32_as_eval", device_module.float32_as_eval)
    head_speed.bench_heads("cpu", batch_size=2, repeats=1, heads=["isqrt"], in_channels=64, reduction_dim=16,
                           num_classes=10)
    perturbation_speed.model_speed(torch.nn.Conv2d(3, 4, 3), crop_size=16, batch_size=2,
                                   device=torch.device("cpu"), repeats=1)
    # the model timed beside each sequence too (only model_speed entered it, helper-244)
    perturbation_speed.measure(["brightness"], device="cpu", model="demo-gap", batch_size=1, repeats=1)
    assert [str(device) for device in entered] == ["cpu", "cpu", "cpu"]


def test_a_generator_of_another_device_than_the_images_is_named():
    """A CPU generator for CUDA images failed deep in a draw with torch's "Expected a 'cuda' device
    type for generator", and a deterministic corruption ignored it."""
    import pytest

    from corruptions._rng import check_randomness

    with pytest.raises(ValueError, match=r"^`generator` is a cpu generator and `images` are on cuda: make "
                                         r"it with torch.Generator\(device='cuda'\)$"):
        check_randomness(None, torch.Generator(), torch.device("cuda"))
    check_randomness(None, torch.Generator(), torch.device("cpu"))
    check_randomness(None, torch.Generator(), torch.device("meta"))  # shapes only


def test_cuda_runs_of_the_earlier_draws_are_other_runs(demo_val, tmp_path):
    """CUDA cells stored before 0.7.16 hold other draws: CUDA runs carry the piece size, so they
    are not resumed with the new draws; CPU runs keep their identity (their draws are unchanged)."""
    from robustbench_gcp.pipeline import load_chosen, plan
    from robustbench_gcp.pipeline.identity import run_identity
    from robustbench_gcp.pipeline.run_notes import differences

    planned = plan("demo-gap", suite="clean", data=str(demo_val), class_order="sorted",
                   store=str(tmp_path / "s.db"), device="cpu")
    net = load_chosen(planned.model, torch.device("cpu"))
    cpu = run_identity(planned, net, "float32", torch.device("cpu"))
    cuda = run_identity(planned, net, "float32", torch.device("cuda"))
    assert "draws" not in cpu and cuda["draws"] == CUDA_DRAW_CHUNK and cuda["arithmetic"] == "ieee"
    earlier = {key: value for key, value in cuda.items() if key != "draws"}
    assert differences(earlier, cuda) == "CUDA random draws (in pieces of 16,384 values since 0.7.16)"


def test_review_fixes_of_the_cuda_and_bench_paths():
    """A NaN channel indexed the level table at INT64_MIN (a device-side assert on CUDA); a checkpoint
    named random_init.pth was titled "random weights"; list_models() was capitalised."""
    import pytest

    from corruptions.digital import _flat_rows_exact
    from robustbench_gcp.cli.options import bench_model_words
    from robustbench_gcp.errors import UnknownNameError
    from robustbench_gcp.models.registry import model_entrypoint

    values = torch.full((1, 2, 16), float("nan"), dtype=torch.float64)
    assert _flat_rows_exact(values, values[..., :1]).isnan().all()
    assert bench_model_words({"model": "m", "weights": "random_init.pth", "device": "cpu"}) == \
        "m (random_init.pth) on cpu"
    with pytest.raises(UnknownNameError, match=r"^unknown model 'qqqq'\. See list_models\(\)\.$"):
        model_entrypoint("qqqq")
