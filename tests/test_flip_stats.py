"""flip_stats against a loop-by-loop port of the original ImageNet-P test.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustbench_gcp.metrics import comparison_pairs, figures_of_counts, flip_counts, flip_stats

rankdata = pytest.importorskip("scipy.stats").rankdata  # the reference; gpu-check machines may lack SciPy


def reference(logits: np.ndarray, noise: bool, difficulty: int) -> tuple[float, float]:
    """The original algorithm, written out: rankdata ordinal ranks, per-video means."""
    classes = logits.shape[-1]
    cum_sum_top5 = np.cumsum(np.asarray([0] + [1] * 5 + [0] * (classes - 1 - 5)))

    def dist(sigma):
        return np.sum(np.abs(cum_sum_top5[:5] - cum_sum_top5[sigma - 1][:5]))

    step = 1 if noise else difficulty
    fp = t5d = 0.0
    for video in logits:
        predictions = [int(np.argmax(frame)) for frame in video]
        ranks = [rankdata(-frame, method="ordinal").astype(np.int64) for frame in video]
        flips, distances = [], []
        for i in range(step):
            prev_pred, perm1 = predictions[i], ranks[i]
            perm1_inv = np.argsort(perm1)
            for pred, perm2 in zip(predictions[i::step][1:], ranks[i::step][1:]):
                flips.append(int(prev_pred != pred))
                distances.append(dist(perm2[perm1_inv]))
                if not noise:
                    prev_pred, perm1 = pred, perm2
                    perm1_inv = np.argsort(perm1)
        fp += np.mean(flips) / len(logits)
        t5d += np.mean(distances) / len(logits)
    return fp, t5d


@pytest.mark.parametrize("mode", ["noise", "sequential"])
@pytest.mark.parametrize("difficulty", [1, 2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_matches_the_original_loops(mode, difficulty, ties):
    rng = np.random.default_rng(difficulty + 10 * ties)
    shape = (6, 31, 20)
    if ties:  # few distinct values: many ties in argmax and in the rankings
        logits = rng.integers(0, 3, size=shape).astype(np.float32)
    else:  # slowly drifting logits so that flips are neither rare nor constant
        logits = np.cumsum(rng.normal(0, 0.4, size=shape), axis=1).astype(np.float32)
    ours = flip_stats(torch.from_numpy(logits), mode=mode, difficulty=difficulty)
    expected = reference(logits, mode == "noise", difficulty)
    assert ours == pytest.approx(expected, abs=1e-9)
    assert 0 < ours[0] < 1


def _summed(parts):
    """Counts of shards as the store adds them (records.combine_shards), in the given order."""
    total = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0) + value
    return total


def test_counts_add_up_over_batches_of_videos():
    logits = torch.randn(9, 41, 12, generator=torch.Generator().manual_seed(0))
    whole = flip_counts(logits, mode="sequential", difficulty=2)
    parts = [flip_counts(logits[i:i + 4], mode="sequential", difficulty=2) for i in (0, 4, 8)]
    for key, value in whole.items():
        assert sum(p[key] for p in parts) == pytest.approx(value)
    assert whole["comparisons"] == 9 * 39


def test_figures_are_the_same_bits_however_the_videos_are_split():
    # per-video rates k/29 summed in float64 depend on the order of the sums (shards of other
    # sizes, another order); the integer totals do not
    logits = torch.randn(60, 30, 10, generator=torch.Generator().manual_seed(3)).cumsum(1)
    whole = figures_of_counts(flip_counts(logits, mode="sequential", difficulty=1))
    rate_sums = set()
    for size in (1, 2, 3, 7, 11, 60):
        parts = [flip_counts(logits[i:i + size], mode="sequential") for i in range(0, 60, size)]
        for order in (parts, parts[::-1]):
            summed = _summed(order)
            assert figures_of_counts(summed) == whole
            rate_sums.add(summed["flip_rate_sum"])
    assert len(rate_sums) > 1  # the float sums alone would have differed in their last bits
    assert whole == pytest.approx(reference(logits.numpy(), False, 1), abs=1e-12)


def test_a_cell_resumed_across_the_totals_change_reads_its_rate_sums():
    # shards written before the integer totals (0.7.6 and older) carry only the rate sums
    logits = torch.randn(8, 10, 6, generator=torch.Generator().manual_seed(4)).cumsum(1)
    old = flip_counts(logits[:5], mode="noise")
    old = {k: v for k, v in old.items() if k not in ("flips", "distance_total", "videos_with_totals")}
    summed = _summed([old, flip_counts(logits[5:], mode="noise")])
    assert summed["videos_with_totals"] == 3 and summed["videos"] == 8
    # the rate sums times the pairs are the integer totals again: the same bits as a fresh cell
    assert figures_of_counts(summed) == flip_stats(logits, mode="noise")
    assert figures_of_counts(old) == flip_stats(logits[:5], mode="noise")
    with pytest.raises(ValueError, match="the counts hold no videos"):
        figures_of_counts({"videos": 0, "comparisons": 0})


def test_pairs_and_errors():
    assert comparison_pairs(5, mode="noise", difficulty=3) == ([0, 0, 0, 0], [1, 2, 3, 4])
    assert comparison_pairs(5, mode="sequential", difficulty=2) == ([0, 1, 2], [2, 3, 4])
    # the fewest frames each rule compares: a noise video's difficulty is no stride
    assert comparison_pairs(2, mode="noise", difficulty=3) == ([0], [1])
    assert comparison_pairs(3, mode="sequential", difficulty=2) == ([0], [2])
    for frames, mode, difficulty in ((1, "noise", 1), (2, "sequential", 2)):
        said = f"a video needs more than {difficulty} frame{'s' if difficulty > 1 else ''} for mode '{mode}'"
        with pytest.raises(ValueError, match=said + "[.]"):
            comparison_pairs(frames, mode=mode, difficulty=difficulty)
    # no classes: an IndexError from argmax; complex: cast to real with a warning only
    with pytest.raises(ValueError, match=r"shape \(V, T, K\), K >= 1 classes\. Got \(2, 31, 0\)"):
        flip_stats(torch.randn(2, 31, 0), mode="noise")
    with pytest.raises(TypeError, match="`logits` should be real numbers. Got torch.complex64"):
        flip_stats(torch.randn(2, 31, 3, dtype=torch.cfloat), mode="noise")
    with pytest.raises(ValueError, match="`mode` should be 'noise' or 'sequential'. Got 'flip'"):
        flip_stats(torch.zeros(1, 5, 10), mode="flip")
    with pytest.raises(ValueError, match="`difficulty` should be a positive integer. Got 0"):
        flip_stats(torch.zeros(1, 5, 10), mode="sequential", difficulty=0)
    with pytest.raises(ValueError, match=r"shape \(V, T, K\)"):
        flip_stats(torch.zeros(5, 10), mode="noise")
    nan = torch.zeros(1, 5, 10)
    nan[0, 2, 4] = float("nan")
    with pytest.raises(ValueError, match="`logits` holds NaN values"):
        flip_stats(nan, mode="noise")
    for given in (nan.numpy(), nan.tolist()):  # NumPy arrays and lists too (they gave numbers)
        with pytest.raises(ValueError, match="`logits` holds NaN values"):
            flip_stats(given, mode="noise")
    # a NumPy array or lists, as the library takes them (an AttributeError deep inside, before)
    logits = torch.zeros(1, 3, 10, dtype=torch.float64)
    logits[0, 1, 3] = 1.0
    expected = flip_stats(logits, mode="sequential")
    assert flip_stats(logits.numpy(), mode="sequential") == flip_stats(logits.tolist(), mode="sequential") \
        == expected == (1.0, 6.0)
    with pytest.raises(TypeError, match="`logits` should be a tensor"):
        flip_stats([["a", "b"]], mode="noise")
    # None and a None among numbers became NaN ("holds NaN"); a complex array was cast to real
    for given in (None, [[[1.0, None]]]):
        with pytest.raises(TypeError, match="`logits` should be a tensor .* of object"):
            flip_stats(given, mode="noise")
    with pytest.raises(TypeError, match="`logits` should be real numbers. Got complex128"):
        flip_stats(np.zeros((1, 3, 10), dtype=complex), mode="noise")
    assert flip_stats(logits.numpy().astype(np.float16), mode="sequential") == expected


@pytest.mark.parametrize("mode", ["noise", "sequential"])
def test_float64_logits_keep_their_precision(mode):
    # every frame's top two classes are 1e-12 apart: equal once cast to float32 (the tie
    # then goes to the lower class index), distinct in float64 (the higher class wins)
    rng = np.random.default_rng(5)
    logits = np.cumsum(rng.normal(0, 0.4, size=(4, 31, 20)), axis=1)
    for video in logits:
        for frame in video:
            low, high = np.sort(rng.choice(20, size=2, replace=False))
            frame[low] = frame.max() + 0.1
            frame[high] = frame[low] + 1e-12
    expected = reference(logits, mode == "noise", 2)  # NumPy, float64
    as_float32 = reference(logits.astype(np.float32), mode == "noise", 2)
    assert as_float32 != pytest.approx(expected)  # the cast would change the answer
    ours = flip_stats(torch.from_numpy(logits), mode=mode, difficulty=2)
    assert ours == pytest.approx(expected, abs=1e-12)
    # half precision is computed in float32
    half = torch.from_numpy(logits).to(torch.bfloat16)
    assert flip_stats(half, mode=mode, difficulty=2) == flip_stats(half.float(), mode=mode, difficulty=2)


def test_fewer_than_five_classes_rank_all_of_them():
    """Three classes: the distance between the top-3 rankings [2, 1, 0] and [0, 1, 2] is
    |0 - 2| + |1 - 1| + |2 - 0| = 4 (at most K (K + 1) / 2 = 6, not 15)."""
    assert flip_stats([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]], mode="sequential") == (1.0, 4.0)
    assert flip_stats([[[1.0, 2.0], [2.0, 1.0]]], mode="noise") == (1.0, 2.0)


def test_the_noise_perturbations_are_compared_with_their_clean_frame_0():
    """PROTOCOL.md: gaussian, shot and speckle noise compare every frame with frame 0, which is the
    clean image; all others compare frames d apart. Nothing pinned the set: shot_noise dropped from
    it was compared frame to frame, changing mFR and mT5D, and every test passed."""
    from corruptions import PERTURBATION_SUBSETS, perturbation_sequence
    from robustbench_gcp.metrics import flip_mode

    everything = PERTURBATION_SUBSETS["all"]
    noise = {"gaussian_noise", "shot_noise", "speckle_noise"}
    assert noise <= set(everything) and {p for p in everything if flip_mode(p) == "noise"} == noise
    x = torch.rand(2, 3, 32, 32).mul(255).round().div(255)
    for name in sorted(noise):
        frames = perturbation_sequence(x, name, 2, seed=[1, 2], frames=[0, 1], crop_size=32)
        assert torch.equal(frames[:, 0], x) and not torch.equal(frames[:, 1], x), name


def test_rate_sums_of_stores_before_0_7_7_round_to_their_integer_totals():
    """Shards stored before 0.7.7 hold each video's rate (an integer over its pairs) summed in
    float: 1/30 + 5/30 times 30 lands below 6, and truncating it lost a flip (flip probability
    5/60 for 6/60). PROTOCOL: the mean over videos of each video's flips over its pairs."""
    counts = {"videos": 2, "comparisons": 60, "flip_rate_sum": 1 / 30 + 5 / 30,
              "distance_rate_sum": 1 / 30 + 11 / 30}
    assert counts["flip_rate_sum"] * 30 < 6
    assert figures_of_counts(counts) == (6 / 2 / 30, 12 / 2 / 30)
