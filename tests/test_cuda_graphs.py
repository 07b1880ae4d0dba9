"""CUDA graphs of the per-image draws (corruptions/_graphs.py, ``GCP_ROBUST_CUDA_GRAPHS=1``).

On the CPU: the switch, when a graph is used, and the fallback to the loop when a capture
fails. On CUDA (``make gpu-check``): a graph's draws are the loop's bit for bit, for every
random corruption at every severity, across replays with other seeds, and the images'
generators are left where the loop leaves them.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

import corruptions._graphs as graphs
from corruptions import corrupt, get_corruption, list_corruptions
from corruptions._rng import CUDA_DRAW_CHUNK, ImageRandom

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _fresh_cache():
    graphs.clear()
    yield
    graphs.clear()


@pytest.mark.parametrize(("value", "on"), [("1", True), ("on", True), (" TRUE ", True), ("yes", True),
                                           ("0", False), ("", False), ("off", False), ("no", False)])
def test_the_switch_reads_the_environment(monkeypatch, value, on):
    monkeypatch.setenv(graphs.ENV, value)
    assert graphs.cuda_graphs_enabled() is on


def test_the_graphs_are_off_by_default(monkeypatch):
    monkeypatch.delenv(graphs.ENV, raising=False)
    assert graphs.cuda_graphs_enabled() is False
    assert not graphs.worthwhile(256, 3 * 224 * 224, torch.device("cuda"))


def test_a_bad_value_of_the_switch_is_named(monkeypatch):
    monkeypatch.setenv(graphs.ENV, "maybe")
    with pytest.raises(ValueError, match=r"^`GCP_ROBUST_CUDA_GRAPHS` should be 1 .* or 0\. Got 'maybe'$"):
        graphs.cuda_graphs_enabled()


def test_a_graph_is_used_for_many_launches_of_several_images_on_cuda(monkeypatch):
    monkeypatch.setenv(graphs.ENV, "1")
    noise = 3 * 224 * 224  # 10 launches an image
    assert graphs.worthwhile(8, noise, torch.device("cuda"))
    assert graphs.worthwhile(2, graphs.MIN_PIECES * CUDA_DRAW_CHUNK, "cuda:0")
    assert not graphs.worthwhile(8, (graphs.MIN_PIECES - 1) * CUDA_DRAW_CHUNK, "cuda")  # too few launches
    assert not graphs.worthwhile(1, noise, "cuda")  # one image: nothing to gather
    assert not graphs.worthwhile(8, noise, "cpu")  # one draw an image there already


def test_on_the_cpu_the_switch_changes_nothing(monkeypatch):
    monkeypatch.delenv(graphs.ENV, raising=False)
    images = torch.rand(3, 3, 96, 96)
    off = corrupt(images, "gaussian_noise", 3, seed=[1, 2, 3])
    monkeypatch.setenv(graphs.ENV, "1")
    assert torch.equal(corrupt(images, "gaussian_noise", 3, seed=[1, 2, 3]), off)
    assert not graphs._cache


def test_a_capture_that_fails_falls_back_to_the_loop_and_says_so_once(monkeypatch):
    """The CPU's draws taken for a graph's (``worthwhile`` made to say yes): the capture fails
    (there is no CUDA graph here), a warning says so once, the numbers are the loop's, and no
    capture is tried again in the process (a failed capture can leave torch's own generator
    state half-captured: torch before 2.14)."""
    expected = ImageRandom(4, torch.device("cpu"), seeds=[5, 6, 7, 8])
    want = expected.normal(3, 8, 8), expected.uniform(2)
    monkeypatch.setattr(graphs, "worthwhile", lambda batch, numel, device: True)
    tries = []
    real = graphs.DrawGraph

    def counted(*args, **kwargs):
        tries.append(args[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(graphs, "DrawGraph", counted)
    with pytest.warns(RuntimeWarning, match=r"could not be captured \(ValueError: .*\); the draws are "
                                            r"launched one by one from now on \(GCP_ROBUST_CUDA_GRAPHS=0 "
                                            r"turns the graphs off\)"):
        rng = ImageRandom(4, torch.device("cpu"), seeds=[5, 6, 7, 8])
        got = rng.normal(3, 8, 8), rng.uniform(2)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        again = ImageRandom(4, torch.device("cpu"), seeds=[5, 6, 7, 8]).normal(3, 8, 8)
    assert torch.equal(again, want[0])
    assert tries == [(4, (3, 8, 8))]  # one try in all
    graphs.clear()  # forgets it
    with pytest.warns(RuntimeWarning, match="could not be captured"):
        ImageRandom(4, torch.device("cpu"), seeds=[5, 6, 7, 8]).normal(3, 8, 8)
    assert len(tries) == 2


class _Captured:
    """What draw_graph keeps of a capture (its CUDA part cannot run here): its size."""

    made: list = []

    def __init__(self, batch, shape, dtype, device, fill):
        self.nbytes = batch * math.prod(shape) * 4
        self.released = False
        _Captured.made.append(shape)

    def release(self):
        self.released = True


def test_the_cache_drops_the_least_recently_used_and_gives_up_on_a_key_asked_again_and_again(monkeypatch):
    monkeypatch.setattr(graphs, "worthwhile", lambda batch, numel, device: True)
    monkeypatch.setattr(graphs, "DrawGraph", _Captured)
    monkeypatch.setattr(_Captured, "made", [])
    monkeypatch.setattr(graphs, "CACHE_BYTES", 2 * 4 * 10 * 4)  # two draws of 4 images x 10 values
    cpu = torch.device("cpu")

    def ask(mean):
        return graphs.draw_graph(4, (10,), torch.float32, cpu, ("normal", mean, 1.0), None)

    first = ask(0.0)
    assert ask(0.0) is first  # cached
    ask(1.0)
    ask(2.0)  # over the limit: 0.0's goes, once its last copy out is done
    assert first.released and [key[-1][1] for key in graphs._cache] == [1.0, 2.0]
    assert ask(0.0) is not None and [key[-1][1] for key in graphs._cache] == [2.0, 0.0]  # again
    ask(1.0)  # (1.0's second) drops 2.0's
    assert ask(2.0) is not None  # 2.0's second: drops 0.0's
    assert ask(0.0) is None  # a third capture of 0.0's: the loop (the cache is too small for the run)
    assert len(_Captured.made) == 6
    assert graphs.draw_graph(4, (10,), torch.float32, cpu, ("normal", float("nan"), 1.0), None) is None
    assert graphs.draw_graph(4, (100,), torch.float32, cpu, ("normal", 5.0, 1.0), None) is None  # too big
    assert len(_Captured.made) == 6


def test_a_draw_whose_parameters_are_tensors_takes_the_loop(monkeypatch):
    monkeypatch.setattr(graphs, "worthwhile", lambda batch, numel, device: True)
    assert graphs.draw_graph(4, (3, 8, 8), torch.float32, torch.device("cpu"),
                             ("normal", torch.tensor(0.0), 1.0), lambda view, gen: None) is None
    assert not graphs._cache


# --------------------------------------------------------------------------------------
# on CUDA


RANDOM = [name for name in list_corruptions("all") if get_corruption(name).random]
#: those with a draw of 4 pieces or more an image at 224 px (impulse_noise draws its own way; motion_blur's
#: and frost's draws are a few values an image)
GRAPHED = {"gaussian_noise", "shot_noise", "speckle_noise", "glass_blur", "snow", "spatter", "fog",
           "elastic_transform"}


@pytest.fixture(scope="module")
def photos224() -> torch.Tensor:
    from robustbench_gcp.bench.photos import photos

    return photos(2, 224)


def _captured() -> int:
    return sum(entry is not None for entry in graphs._cache.values())


@pytest.mark.parametrize("name", RANDOM)
@pytest.mark.cuda
@needs_cuda
def test_a_graph_draws_the_loops_numbers_at_every_severity(monkeypatch, name, photos224):
    images = photos224.repeat(4, 1, 1, 1).to("cuda")
    for severity in range(1, 6):
        for seeds in (list(range(8)), list(range(100, 108))):  # a replay with other seeds
            monkeypatch.setenv(graphs.ENV, "0")
            loop = corrupt(images, name, severity, seed=seeds)
            monkeypatch.setenv(graphs.ENV, "1")
            graphed = corrupt(images, name, severity, seed=seeds)
            assert torch.equal(loop, graphed), f"{name} at severity {severity}, seeds {seeds[0]}..."
    print(f"{name}: {_captured()} graphs captured")
    assert (_captured() > 0) == (name in GRAPHED)  # else the test compares the loop with itself


@pytest.mark.cuda
@needs_cuda
def test_a_graph_is_captured_for_the_noise_and_leaves_the_generators_where_the_loop_does(monkeypatch):
    seeds = [3, 1 << 63, 17, 2**64 - 1]  # a seed's every bit

    def draws():
        rng = ImageRandom(4, torch.device("cuda"), seeds=seeds)
        first = rng.normal(3, 224, 224)
        second = rng.uniform(3, 224, 224, low=-1.0, high=1.0)
        third = rng.randint(-2, 2, 6, 120, 120)
        after = [gen.get_offset() for gen in rng.generators]
        last = rng.uniform(2)  # a small draw after them: the loop's, from where the graphs left off
        return first, second, third, after, last

    monkeypatch.setenv(graphs.ENV, "0")
    loop = draws()
    assert _captured() == 0
    monkeypatch.setenv(graphs.ENV, "1")
    graphed = draws()
    assert _captured() == 3
    again = draws()  # replays
    for got in (graphed, again):
        for a, b in zip(got, loop):
            assert (a == b) if isinstance(a, list) else torch.equal(a, b)


@pytest.mark.cuda
@needs_cuda
def test_the_least_recently_used_graphs_are_dropped_over_the_cache_bytes(monkeypatch):
    monkeypatch.setenv(graphs.ENV, "1")
    one = 4 * 3 * 224 * 224 * 4
    monkeypatch.setattr(graphs, "CACHE_BYTES", 2 * one)
    rng = ImageRandom(4, torch.device("cuda"), seeds=[1, 2, 3, 4])
    for mean in (0.0, 1.0, 2.0):
        rng.normal(3, 224, 224, mean=mean)
    assert [key[-1] for key in graphs._cache] == [("normal", 1.0, 1.0), ("normal", 2.0, 1.0)]
    monkeypatch.setattr(graphs, "CACHE_BYTES", one - 1)  # larger than the cache: the loop
    rng.normal(3, 224, 224, mean=3.0)
    assert len(graphs._cache) == 2


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "speckle_noise"])
@pytest.mark.cuda
@needs_cuda
def test_a_replay_makes_the_host_wait_no_more_than_the_loop(monkeypatch, name, photos224):
    from test_gpu_parity import WAITS, _device_waits

    monkeypatch.setenv(graphs.ENV, "1")
    images = photos224.repeat(4, 1, 1, 1).to("cuda")
    seeds = list(range(8))
    corrupt(images, name, 3, seed=seeds, check_values=False)  # captures
    torch.cuda.synchronize()
    assert _captured() >= 1
    baseline = len(_device_waits(lambda: None))
    made_by = _device_waits(lambda: corrupt(images, name, 3, seed=seeds, check_values=False))
    assert len(made_by) - baseline <= WAITS.get(name, 0), made_by


@pytest.mark.cuda
@needs_cuda
def test_two_threads_on_two_streams_draw_the_loops_numbers(monkeypatch):
    """One graph, two callers at once, each on a stream of its own: each gets its own images'
    numbers (the buffer is copied out before the other's replay overwrites it)."""
    import threading

    monkeypatch.setenv(graphs.ENV, "0")
    seeds = {k: list(range(10 * k, 10 * k + 8)) for k in range(2)}
    loop = {k: ImageRandom(8, torch.device("cuda"), seeds=s).normal(3, 224, 224) for k, s in seeds.items()}
    monkeypatch.setenv(graphs.ENV, "1")
    ImageRandom(8, torch.device("cuda"), seeds=seeds[0]).normal(3, 224, 224)  # captured here
    got, errors = {k: [] for k in seeds}, []

    def work(k):
        try:
            with torch.cuda.stream(torch.cuda.Stream()):
                for _ in range(20):
                    got[k].append(ImageRandom(8, torch.device("cuda"), seeds=seeds[k]).normal(3, 224, 224))
                torch.cuda.current_stream().synchronize()
        except Exception as error:  # noqa: BLE001 - said below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and _captured() == 1
    for k in seeds:
        assert all(torch.equal(draw, loop[k]) for draw in got[k]), k


@pytest.mark.cuda
@needs_cuda
def test_a_graph_dropped_meanwhile_draws_nothing_and_the_loop_does(monkeypatch):
    """A thread that got a graph from the cache as another dropped it: no replay of a graph whose
    memory may be freed once the last reference goes; the loop draws instead."""
    monkeypatch.setenv(graphs.ENV, "1")
    seeds = list(range(8))
    graph = graphs.draw_graph(8, (3, 224, 224), torch.float32, torch.device("cuda"), ("normal", 0.0, 1.0),
                              lambda view, gen: view.normal_(0.0, 1.0, generator=gen))
    assert graph is not None
    graphs.clear()  # another thread's eviction
    assert graph.draw(ImageRandom(8, torch.device("cuda"), seeds=seeds).generators) is None
    monkeypatch.setenv(graphs.ENV, "0")
    loop = ImageRandom(8, torch.device("cuda"), seeds=seeds).normal(3, 224, 224)
    monkeypatch.setenv(graphs.ENV, "1")
    assert torch.equal(ImageRandom(8, torch.device("cuda"), seeds=seeds).normal(3, 224, 224), loop)


FAILING_CAPTURE = """
import warnings
import torch
import corruptions._graphs as graphs
from corruptions._draws import draw_in_chunks

def fill(view, gen):  # waits for the device: no capture can hold that
    view.normal_(generator=gen)
    float(view.sum())

gens = [torch.Generator(device="cuda").manual_seed(s) for s in range(4)]
with warnings.catch_warnings(record=True) as said:
    warnings.simplefilter("always")
    assert graphs.draw_graph(4, (3, 224, 224), torch.float32, torch.device("cuda"), ("odd",), fill) is None
assert [str(w.message) for w in said if "could not be captured" in str(w.message)], [str(w) for w in said]
out = torch.empty(4, 3, 224, 224, device="cuda")
for image, gen in enumerate(gens):  # the loop still draws
    draw_in_chunks(out[image], gen, lambda view, g: view.normal_(generator=g))
torch.rand(8, device="cuda").sum().item()  # and so does torch's own generator
assert graphs.draw_graph(4, (3, 224, 224), torch.float32, torch.device("cuda"), ("normal", 0.0, 1.0),
                         lambda view, g: view.normal_(generator=g)) is None  # none tried again
print("ok")
"""


@pytest.mark.cuda
@needs_cuda
@pytest.mark.skipif(not graphs.REGISTERS_ITSELF, reason="before torch 2.14 a failed capture left torch's "
                    "default CUDA generator half-captured (the warning says so)")
def test_a_failed_capture_leaves_the_process_drawing(tmp_path):
    """In a process of its own: a capture that fails (a host wait inside it) is said, the loop and
    torch's default generator still draw, and no capture is tried again."""
    import os
    import subprocess
    import sys

    env = {**os.environ, graphs.ENV: "1"}
    done = subprocess.run([sys.executable, "-c", FAILING_CAPTURE], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
