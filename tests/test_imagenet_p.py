"""The ImageNet-P suite: generated sequences, released MP4 files, stored baselines and FR."""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from original_p import write_mp4

import robustbench_gcp
from robustbench_gcp.cli import main
from robustbench_gcp.config import load_config
from robustbench_gcp.data.folders import scan_folder
from robustbench_gcp.data.loader import Preprocess, iterate_batches
from robustbench_gcp.engine.seeding import image_seeds
from robustbench_gcp.errors import DataError
from robustbench_gcp.metrics import flip_stats
from robustbench_gcp.models import load_model


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def p_args(demo_val, store, *extra, suite="imagenet-p"):
    return ["--data", demo_val, "--class-order", "sorted", "--store", store, "--suite", suite,
            "--limit", 10, "--workers", 0, "--format", "json", *extra]


def test_generated_sequences_give_the_flip_statistics_of_a_direct_computation(demo_val, tmp_path):
    report = run("eval", "--model", "demo-isqrt", *p_args(demo_val, tmp_path / "s.db", "--perturbations",
                                                           "snow,gaussian_noise", "--difficulties", "1,2"))
    entries = {(e["perturbation"], e["difficulty"]): e for e in report["perturbations"]}
    assert sorted(entries) == [("gaussian_noise", 1), ("gaussian_noise", 2), ("snow", 1), ("snow", 2)]
    assert all(e["n_videos"] == 10 and e["FR"] is None for e in entries.values())
    assert any("unnormalized" in note for note in report["notes"])
    # independent re-computation: the same images, seeds and sequences, classified directly
    from corruptions import perturbation_sequence

    images = scan_folder(demo_val, class_order="sorted").limit(10)
    # the square whose centre 64 px crop is the image's (test_suite_options checks that crop)
    x, _ = next(iterate_batches(images.paths(), Preprocess(73, 73, centred_on=64), batch_size=10))
    model = load_model("demo-isqrt", load_config().model("demo-isqrt").checkpoint)
    mean = torch.tensor(model.pretrained_cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.pretrained_cfg.std).view(1, -1, 1, 1)
    for (name, difficulty), entry in entries.items():
        # noise: each difficulty is its own noise level; others: one sequence, compared at stride d
        token = f"imagenet-p/{name}/{difficulty}" if name == "gaussian_noise" else f"imagenet-p/{name}"
        seeds = image_seeds(0, token, images.indices)
        frames = perturbation_sequence(x.float() / 255, name, difficulty, seed=seeds, crop_size=64)
        with torch.no_grad():
            logits = model((frames.flatten(0, 1) - mean) / std).view(10, frames.shape[1], -1)
        mode = "noise" if name == "gaussian_noise" else "sequential"
        fp, t5d = flip_stats(logits, mode=mode, difficulty=1 if mode == "noise" else difficulty)
        assert entry["flip_probability"] == pytest.approx(fp, abs=1e-12)
        assert entry["top5_distance"] == pytest.approx(t5d, abs=1e-12)


def test_released_mp4_files_give_the_flip_statistics_of_their_frames(demo_val, tmp_path):
    """Videos written in the released layout, read back through --corrupted-dir, against the same
    frames classified straight from tensors. Codec loss: lossless H.264 still rounds RGB through
    YUV (a level or two), so the two may differ on a comparison or two near a decision boundary.
    The frames are ImageNet-P's 224 px, read as they are by a model of 64 px (they were refused:
    every video "has 41 frames of 224x224 px, expected 41 of 64x64", after the run had started)."""
    from corruptions import perturbation_sequence

    images = scan_folder(demo_val, class_order="sorted").limit(10)
    x, _ = next(iterate_batches(images.paths(), Preprocess(256, 256), batch_size=10))
    frames = perturbation_sequence(x.float() / 255, "translate", seed=0, crop_size=224)  # 41 frames
    pixels = (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    released = tmp_path / "ImageNet-P"
    for name, video in zip(images.names, pixels):
        write_mp4(released / "translate" / name.rsplit(".", 1)[0].__add__(".mp4"), video)
    report = run("eval", "--model", "demo-gap", *p_args(demo_val, tmp_path / "s.db", "--perturbations",
                                                         "translate", "--corrupted-dir", released))
    (entry,) = report["perturbations"]
    assert entry["n_videos"] == 10 and report["corrupted_dir"] == str(released)
    assert ("the model's inputs are 64 px, but the released ImageNet-P frames are 224 px: they are given "
            "to it as they are") in report["notes"]
    model = load_model("demo-gap", load_config().model("demo-gap").checkpoint)
    mean = torch.tensor(model.pretrained_cfg.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.pretrained_cfg.std).view(1, -1, 1, 1)
    with torch.no_grad():
        direct = torch.from_numpy(pixels).permute(0, 1, 4, 2, 3).float().div(255).flatten(0, 1)
        logits = model((direct - mean) / std).view(10, 41, -1)
    fp, t5d = flip_stats(logits, mode="sequential")
    assert entry["flip_probability"] == pytest.approx(fp, abs=2 / 40)  # at most 2 of 40 pairs per video
    assert entry["top5_distance"] == pytest.approx(t5d, abs=0.25)

    # videos of another size: refused before any compute, the first one named
    small = tmp_path / "small-P" / "translate" / images.names[0].rsplit(".", 1)[0].__add__(".mp4")
    write_mp4(small, pixels[0, :, :64, :64])
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *map(str, p_args(
        demo_val, tmp_path / "u.db", "--perturbations", "translate", "--corrupted-dir", small.parents[2]))])
    assert result.exit_code == 1 and not (tmp_path / "u.db").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: released video {small} has frames of 64x64 px, but ImageNet-P's are 224x224: is "
        "--corrupted-dir the right folder?")

    broken = released / "translate" / images.names[0].rsplit(".", 1)[0].__add__(".mp4")
    broken.write_bytes(b"not a video")
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *map(str, p_args(
        demo_val, tmp_path / "t.db", "--perturbations", "translate", "--corrupted-dir", released))])
    assert result.exit_code == 1 and f"cannot decode video {broken}" in result.stderr


def moving_blocks(frames: int, seed: int = 0) -> np.ndarray:
    """(frames, 224, 224, 3) uint8: 8 px blocks of random colours, a pixel further right each frame."""
    blocks = np.random.default_rng(seed).random((28, 28, 3))
    image = (np.kron(blocks, np.ones((8, 8, 1))) * 255).astype(np.uint8)
    return np.stack([np.roll(image, k, axis=1) for k in range(frames)])


def damage(path, at: float = 0.5) -> None:
    """40 bytes inverted ``at`` that fraction of the file's mdat box (its H.264 stream)."""
    data = bytearray(path.read_bytes())
    box = data.index(b"mdat") - 4
    start = box + int(int.from_bytes(data[box:box + 4], "big") * at)
    data[start:start + 40] = bytes(255 - b for b in data[start:start + 40])
    path.write_bytes(bytes(data))


def test_a_damaged_video_is_named_and_a_clean_one_read(tmp_path):
    """FFmpeg conceals damage in an H.264 stream: every frame decoded, nothing raised, so the
    figures moved silently; it logs errors, and marks the frame (in one thread). A file may log no
    error, its frame marked alone. PyAV's log settings are the process's: put back after each
    read, and threads reading at once each see their own file's messages. PyAV skips a message
    that repeats the last one logged: a file whose only message was the one before's (the same
    file read again) passed as clean. Where the damage falls is the encoder's (x264 of PyAV's
    wheel; qp, not crf, whose files vary from run to run)."""
    import av

    from robustbench_gcp.data.video import read_video

    clean = tmp_path / "clean.mp4"
    write_mp4(clean, moving_blocks(31), pix_fmt="yuv420p", options={"qp": "20"})  # lossy, 4:2:0
    damaged, once, concealed = (tmp_path / f"{name}.mp4" for name in ("damaged", "once", "concealed"))
    for path, at in ((damaged, 0.5), (once, 0.65), (concealed, 0.525)):
        path.write_bytes(clean.read_bytes())
        damage(path, at)
    assert read_video(clean).shape == (31, 224, 224, 3)
    said = rf"^video {re.escape(str(damaged))} is damaged: (.+)$"
    with pytest.raises(DataError, match=said) as caught:  # "left block unavailable for requested intra mode"
        read_video(damaged)
    first = re.match(said, str(caught.value)).group(1)
    assert av.logging.get_level() is None and av.logging.get_skip_repeated()
    for _ in range(2):  # its one message
        with pytest.raises(DataError, match=rf"^video {re.escape(str(once))} is damaged: error while "
                                            r"decoding MB 7 5, bytestream -8$"):
            read_video(once)
    with pytest.raises(DataError, match=rf"^video {re.escape(str(concealed))} is damaged: FFmpeg concealed "
                                        r"errors in frame 1 of 31$"):  # logged at INFO alone
        read_video(concealed)

    def outcome(path) -> str:
        try:
            return str(read_video(path).shape)
        except DataError as error:
            return str(error)

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(outcome, [clean, damaged] * 6))
    assert outcomes == ["(31, 224, 224, 3)", f"video {damaged} is damaged: {first}"] * 6
    assert av.logging.get_level() is None and av.logging.get_skip_repeated()


def test_a_video_stream_without_a_decoder_is_named(tmp_path):
    """Its codec tag unknown to FFmpeg (damaged 'avc1'): PyAV gives no codec context, and an
    AttributeError ("'NoneType' object has no attribute 'thread_count'") ended the run."""
    from robustbench_gcp.data.video import check_frame_size, read_video

    folder = tmp_path / "translate" / "n01440764"
    folder.mkdir(parents=True)
    path = folder / "a.mp4"
    write_mp4(path, moving_blocks(31), pix_fmt="yuv420p", options={"qp": "20"})
    path.write_bytes(path.read_bytes().replace(b"avc1", b"xxxx"))
    check_frame_size(tmp_path / "translate", 224, "ImageNet-P")  # said when it is read
    with pytest.raises(DataError, match=rf"^cannot decode video {re.escape(str(path))}: FFmpeg has no "
                                        r"decoder for its video stream \(damaged, or another codec"):
        read_video(path)


def test_a_damaged_released_video_stops_the_run_with_the_shards_before_it_stored(demo_val, tmp_path):
    """The damaged file is named as the run stops; the shard before it stays stored, and the run
    resumes from it once the file is replaced."""
    images = scan_folder(demo_val, class_order="sorted").limit(10)
    released = tmp_path / "ImageNet-P"
    videos = [released / "translate" / (name.rsplit(".", 1)[0] + ".mp4") for name in images.names]
    for k, path in enumerate(videos):
        write_mp4(path, moving_blocks(41, seed=k))
    kept = videos[-1].read_bytes()
    damage(videos[-1])  # in the second shard of 5
    args = ["eval", "--model", "demo-gap", *map(str, p_args(demo_val, tmp_path / "s.db", "--perturbations",
                                                            "translate", "--corrupted-dir", released,
                                                            "--shard-size", 5))]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    stored = re.fullmatch(rf"Error: video {re.escape(str(videos[-1]))} is damaged: .+\. (\d+) of (\d+) "
                          r"shards are stored: replace the file .+", result.stderr.strip().splitlines()[-1])
    assert stored and 0 < int(stored.group(1)) < int(stored.group(2)), result.stderr
    videos[-1].write_bytes(kept)
    resumed = CliRunner().invoke(main, args)
    assert resumed.exit_code == 0, resumed.output
    assert f"{stored.group(1)} of {stored.group(2)}" in " ".join(resumed.stderr.split())


def test_released_frames_keep_their_rows_and_columns(tmp_path):
    """A frame of 224 x 224 read transposed passed every test (moving blocks keep their statistics):
    the frames equal those written, row for row."""
    from robustbench_gcp.data.video import VideoFiles

    path = tmp_path / "v.mp4"
    frames = moving_blocks(31, seed=3)
    frames[:, :100, :, 0] = 255  # red across the top rows only: a transpose moves it to the left columns
    write_mp4(path, frames)
    video, _, error = VideoFiles([path], frames=31, size=224)[0]
    assert not error, error
    expected = torch.from_numpy(frames).permute(0, 3, 1, 2)
    assert float((video.double() - expected.double()).abs().mean()) < 3


def test_a_video_of_the_wrong_length_is_said_in_words(tmp_path):
    """One frame is "1 frame", not "1 frames"."""
    from robustbench_gcp.data.video import VideoFiles

    short = tmp_path / "short.mp4"
    write_mp4(short, moving_blocks(1))
    video, position, error = VideoFiles([short], frames=31, size=224)[0]
    assert video.shape == (31, 3, 224, 224) and position == 0
    assert error == f"video {short} has 1 frame of 224x224 px, expected 31 of 224x224"


def test_a_long_or_large_video_is_refused_as_it_is_decoded(tmp_path, monkeypatch):
    """Only a folder's first video was size-checked before compute; the others were decoded whole
    (a 108 KB file of 4000 frames: 1.7 GB) before their shape was (security audit)."""
    from robustbench_gcp.data import video as video_module
    from robustbench_gcp.data.video import VideoFiles

    long, large = tmp_path / "long.mp4", tmp_path / "large.mp4"
    write_mp4(long, moving_blocks(40))
    write_mp4(large, np.zeros((3, 256, 256, 3), dtype=np.uint8))
    decoded = []
    real = video_module._decode
    monkeypatch.setattr(video_module, "_decode", lambda *args: decoded.append(real(*args)) or decoded[-1])
    assert VideoFiles([long], frames=31, size=224)[0][2] == (f"video {long} has more than 31 frames of "
                                                              "224x224 px, expected 31 of 224x224")
    assert len(decoded[-1][0]) == 32  # the decoding stopped there
    decoded.clear()
    assert VideoFiles([large], frames=31, size=224)[0][2] == (f"video {large} has frames of 256x256 px, "
                                                               "expected 31 of 224x224")
    assert not decoded  # refused at the first frame, before it was converted

    class Frame:  # a stream whose frames change size mid-way (review: np.stack's traceback)
        def __init__(self, side):
            self.width = self.height = side
            self.is_corrupt = False

        def to_ndarray(self, format):
            return np.zeros((self.height, self.width, 3), dtype=np.uint8)

    class Container:
        def decode(self, video):
            return iter([Frame(224), Frame(224), Frame(32)])

    with pytest.raises(video_module._FrameSize) as odd:
        real(Container())
    assert (odd.value.number, odd.value.width) == (3, 32)


def test_unreadable_videos_are_said_plainly(tmp_path):
    """No video stream was "tuple index out of range"; an empty or cut file repeated FFmpeg's
    errno and the path ("[Errno 1094995529] Invalid data found when processing input: '<path>'");
    a folder named .mp4 "did not exist"."""
    import av

    from robustbench_gcp.data.video import read_video

    sound = tmp_path / "sound.mp4"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    whole, cut, empty, folder = (tmp_path / f"{name}.mp4" for name in ("whole", "cut", "empty", "folder"))
    write_mp4(whole, moving_blocks(31))
    cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) // 2])  # the moov box is at the end
    empty.write_bytes(b"")
    folder.mkdir()
    said = {sound: f"video {sound} has no video stream (its streams: audio)",
            cut: f"cannot decode video {cut}: Invalid data found when processing input (moov atom not found)",
            empty: f"video {empty} is empty (0 bytes)", folder: f"video {folder} is a folder, not a file",
            tmp_path / "gone.mp4": f"video {tmp_path / 'gone.mp4'} does not exist"}
    for path, message in said.items():
        with pytest.raises(DataError) as caught:
            read_video(path)
        assert str(caught.value) == message


def test_every_released_folder_has_frames_of_the_benchmarks_size_before_compute(demo_val, tmp_path):
    """Only the first selected folder's first video was checked: a later folder of 64 px videos
    failed the run when its turn came, after the folders before it were computed."""
    images = scan_folder(demo_val, class_order="sorted").limit(10)
    released = tmp_path / "ImageNet-P"
    for name in images.names:
        stem = name.rsplit(".", 1)[0]
        write_mp4(released / "translate" / f"{stem}.mp4", moving_blocks(41))
        write_mp4(released / "rotate" / f"{stem}.mp4", moving_blocks(31)[:, :64, :64])
    first_small = sorted((released / "rotate").glob("*/*.mp4"))[0]
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *map(str, p_args(
        demo_val, tmp_path / "s.db", "--perturbations", "translate,rotate", "--corrupted-dir", released))])
    assert result.exit_code == 1 and not (tmp_path / "s.db").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: released video {first_small} has frames of 64x64 px, but ImageNet-P's are 224x224: is "
        "--corrupted-dir the right folder?")


def test_every_released_folder_has_videos_of_the_perturbations_length_before_compute(demo_val, tmp_path):
    """A translate folder of 31-frame videos (rotate's) failed when its turn came, after rotate was
    computed, and told to replace that one file."""
    images = scan_folder(demo_val, class_order="sorted").limit(4)
    released = tmp_path / "ImageNet-P"
    for name in images.names:
        stem = name.rsplit(".", 1)[0]
        write_mp4(released / "rotate" / f"{stem}.mp4", moving_blocks(31))
        write_mp4(released / "translate" / f"{stem}.mp4", moving_blocks(31))
    first = sorted((released / "translate").glob("*/*.mp4"))[0]
    result = CliRunner().invoke(main, ["eval", "--model", "demo-gap", *map(str, p_args(
        demo_val, tmp_path / "s.db", "--perturbations", "rotate,translate", "--corrupted-dir", released,
        "--limit", "4"))])
    assert result.exit_code == 1 and not (tmp_path / "s.db").exists()
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: released video {first} has 31 frames, but ImageNet-P's translate videos have 41: is "
        "--corrupted-dir the right folder?")


def test_stored_baseline_normalizes_flip_rates(demo_val, tmp_path):
    store = tmp_path / "s.db"
    selection = ("--perturbations", "translate,rotate,brightness")
    base = run("baseline", "--model", "demo-gap", "--name", "gapbase", *p_args(demo_val, store, *selection))
    assert any("stored as baseline 'gapbase'" in note for note in base["notes"])
    listed = CliRunner().invoke(main, ["baseline", "--list", "--store", str(store), "--format", "json"])
    assert json.loads(listed.stdout)[0]["name"] == "gapbase"
    assert json.loads(listed.stdout)[0]["stored"]  # when the name was given, not the run's start
    demo = Path(robustbench_gcp.__file__).parent / "resources" / "demo" / "demo-gap.pth"
    assert json.loads(listed.stdout)[0]["weights"] == hashlib.sha256(demo.read_bytes()).hexdigest()
    table = CliRunner().invoke(main, ["baseline", "--list", "--store", str(store)], env={"COLUMNS": "200"})
    assert hashlib.sha256(demo.read_bytes()).hexdigest()[:8] in table.stdout, table.stdout
    report = run("eval", "--model", "demo-isqrt",
                 *p_args(demo_val, store, *selection, "--baseline", "gapbase"))
    base_fp = {e["perturbation"]: (e["flip_probability"], e["top5_distance"]) for e in base["perturbations"]}
    frs = []
    for e in report["perturbations"]:
        fp0, t5d0 = base_fp[e["perturbation"]]
        assert e["FR"] == pytest.approx(100 * e["flip_probability"] / fp0)
        assert e["T5D"] == pytest.approx(100 * e["top5_distance"] / t5d0)
        frs.append(e["FR"])
    assert report["metrics"]["mFR"] == pytest.approx(sum(frs) / 3)
    assert report["metrics"]["baseline"] == "gapbase"
    assert any("mFR averages 3 of the 10 test perturbations" in note for note in report["notes"])
    # a misspelt baseline is an error (eval: before any compute; report: before any statistics)
    for command in (["eval", "--model", "demo-isqrt", *map(str, p_args(demo_val, store, *selection))],
                    ["report", "--store", str(store)]):
        typo = CliRunner().invoke(main, [*command, "--baseline", "gapbse"])
        assert typo.exit_code == 2, typo.output
        last = typo.stderr.strip().splitlines()[-1]
        assert last == "Error: unknown baseline 'gapbse'. Did you mean 'gapbase'?"
    fresh = tmp_path / "fresh.db"  # checked before any compute, and without creating the store
    typo = CliRunner().invoke(main, ["eval", "--model", "demo-isqrt",
                                     *map(str, p_args(demo_val, fresh, *selection)), "--baseline", "gapbse"])
    assert typo.exit_code == 2 and "unknown baseline 'gapbse'" in typo.stderr and not fresh.exists()
    typo = CliRunner().invoke(main, ["compare", "--model", "demo-gap", "--model", "demo-isqrt", "--suite",
                                     "clean,imagenet-p", "--data", str(demo_val), "--class-order", "sorted",
                                     "--store", str(fresh), "--baseline", "gapbse"])
    assert typo.exit_code == 2 and "unknown baseline 'gapbse'" in typo.stderr and not fresh.exists()


def test_a_comparison_gives_the_clean_error_the_reports_give_without_testing_it(demo_val, tmp_path):
    """The table without intervals showed each model's clean error, the one with them and the wide
    CSV none; its McNemar test would join the Holm family of the flip figures, so it has none."""
    import csv
    import io

    from robustbench_gcp.stats import wilson

    args = p_args(demo_val, tmp_path / "s.db", "--perturbations", "brightness,rotate", "--difficulties", "1")
    out = run("compare", "--model", "demo-gap", "--model", "demo-isqrt", "--resamples", 100, *args)
    (comparison,) = out["comparisons"]
    for model, report in zip(comparison["models"], out["reports"]):
        error = model["metrics"]["clean_error"]
        assert error["estimate"] == report["clean"]["top1_error"]
        wrong = round(error["estimate"] * 10)  # of the 10 images
        expected = wilson(np.r_[np.ones(wrong), np.zeros(10 - wrong)])
        assert (error["low"], error["high"]) == pytest.approx((expected.low, expected.high))
        assert "clean" not in (model["tests"] or {})
    # no stored baseline: the demo models' 10 classes are no AlexNet's, the advice is a model of them
    assert any(n.endswith("`gcp-robust baseline --model MODEL --name NAME --suite SUITE` (a model of the "
                          "same 10 classes) on the same images, then --baseline NAME)")
               for n in out["reports"][0]["notes"]), out["reports"][0]["notes"]
    isqrt = comparison["models"][1]
    assert set(isqrt["delta"]) >= {"clean_error"} and set(isqrt["tests"]) == {
        f"{figure} {p}/1" for figure in ("fp", "t5d") for p in ("brightness", "rotate")}
    wide = CliRunner().invoke(main, ["report", "--store", tmp_path / "s.db", "--suite", "imagenet-p",
                                     "--format", "csv", "--layout", "wide", "--resamples", "100"])
    rows = list(csv.DictReader(io.StringIO(wide.stdout)))
    assert rows and all(row["clean_error"] != "" for row in rows), wide.output
    # a clean cell of other images than the videos' (released videos, --data): left out, and said
    import dataclasses

    from robustbench_gcp.store import Store
    from robustbench_gcp.suites import get_suite

    with Store(tmp_path / "s.db") as s:
        results = [r for r in s.results(s.runs()[0]) if r.complete]
    results = [dataclasses.replace(r, n=5, correct=r.correct[:5]) if r.key.kind == "clean" else r
               for r in results]
    design = get_suite("imagenet-p").design(results, None)
    assert "clean_error" not in design.metrics and "clean" not in design.rows
    assert "the clean error is left out: its 5 images are not the 10 videos'" in " ".join(design.notes)


@pytest.mark.parametrize("extra, message", [
    (("--perturbations", "rotat"), "Error: unknown perturbation 'rotat'. Did you mean 'rotate'?"),
    (("--difficulties", "4"), "Error: `--difficulties` should be 1..3. Got 4"),
    (("--suite", "clean", "--perturbations", "rotate"),
     "Error: `--perturbations` applies to the imagenet-p suite, not to 'clean'"),
])
def test_bad_imagenet_p_options(demo_val, tmp_path, extra, message):
    args = ["eval", "--model", "demo-gap", "--data", str(demo_val), "--class-order", "sorted",
            "--store", str(tmp_path / "s.db")]
    args += ([] if "--suite" in extra else ["--suite", "imagenet-p"]) + list(extra)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == message


def test_a_baseline_name_is_not_silently_given_to_another_run(demo_val, tmp_path):
    """Re-running a baseline reuses it; another run under the same name needs --replace, refused
    before any compute; a suite that no stored run normalizes is refused."""
    import sqlite3

    store = tmp_path / "s.db"
    selection = ("--perturbations", "rotate", "--name", "base")
    first = run("baseline", "--model", "demo-gap", *p_args(demo_val, store, *selection))
    again = run("baseline", "--model", "demo-gap", *p_args(demo_val, store, *selection))
    assert again["computed"]["computed"] == 0 and again["run"] == first["run"]

    def runs():
        with sqlite3.connect(store) as db:
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    link = tmp_path / "same-images"  # the same images under another path: the same run
    link.symlink_to(demo_val, target_is_directory=True)
    linked = run("baseline", "--model", "demo-gap", *p_args(link, store, *selection))
    assert linked["run"] == first["run"] and linked["computed"]["computed"] == 0
    before = runs()
    for extra, differ in ((("--limit", "6"), "images"), (("--seed", "1"), "seed"),
                          (("--shard-size", "5"), "shard size"), (("--amp",), "precision"),
                          (("--channels-last",), "--channels-last")):  # these two were computed first
        other = CliRunner().invoke(main, ["baseline", "--model", "demo-gap",
                                          *map(str, p_args(demo_val, store, *selection)), *extra])
        assert other.exit_code == 2, other.output
        line = other.stderr.strip().splitlines()[-1]
        assert line.startswith("Error: baseline 'base' is already stored in") and "on 10 images" in line
        assert f"this run differs in: {differ}; pass --replace" in line, line
    assert runs() == before  # nothing computed
    # the other way round: a --channels-last baseline, then a contiguous run (computed, then refused)
    elsewhere = tmp_path / "cl.db"
    run("baseline", "--model", "demo-gap", *p_args(demo_val, elsewhere, *selection, "--channels-last"))
    other = CliRunner().invoke(main, ["baseline", "--model", "demo-gap",
                                      *map(str, p_args(demo_val, elsewhere, *selection))])
    assert other.exit_code == 2 and "this run differs in: --channels-last; pass --replace" in other.stderr
    with sqlite3.connect(elsewhere) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    # what only the loaded model tells (here the weights of another file) is found after the run,
    # which stays stored
    import torch

    from robustbench_gcp.models import create_model

    torch.manual_seed(3)
    torch.save(create_model("demo-gap").state_dict(), tmp_path / "other.pth")
    weights = ("--checkpoint", str(tmp_path / "other.pth"))
    other = CliRunner().invoke(main, ["baseline", "--model", "demo-gap",
                                      *map(str, p_args(demo_val, store, *selection)), *weights])
    assert other.exit_code == 2, other.output
    assert "is another run in" in other.stderr, other.stderr
    assert "(this one differs in: weights)" in other.stderr, other.stderr
    kept = run("baseline", "--model", "demo-gap", *p_args(demo_val, store, *selection), *weights, "--replace")
    assert kept["computed"]["computed"] == 0
    replaced = run("baseline", "--model", "demo-gap", *p_args(demo_val, store, *selection),
                   "--limit", 6, "--replace")
    listed = CliRunner().invoke(main, ["baseline", "--list", "--store", str(store), "--format", "json"])
    assert [(b["name"], b["images"]) for b in json.loads(listed.stdout)] == [("base", 6)]
    assert replaced["run"] != first["run"]
    # ImageNet's CE is AlexNet's published errors, for a model of ImageNet's 1000 classes
    refused = CliRunner().invoke(main, ["baseline", "--model", "resnet18-gap", "--random-weights",
                                        *map(str, p_args(demo_val, store, suite="imagenet-c"))])
    assert refused.exit_code == 2, refused.output
    assert "`--suite`: imagenet-c on ImageNet is not normalized by a stored baseline" in refused.stderr
    # suites no baseline normalizes on any images: said before the model's own checks (alexnet has no
    # stem for the landscape, whose advice, --landscape-at pixels, led to this refusal)
    for model, suite in (("demo-gap", "clean"), ("alexnet", "landscape"), ("demo-gap", "adversarial")):
        refused = CliRunner().invoke(main, ["baseline", "--model", model, "--random-weights",
                                            *map(str, p_args(demo_val, store, suite=suite))])
        assert refused.exit_code == 2, refused.output
        assert refused.stderr.startswith(f"Error: `--suite {suite}`: the {suite} suite is normalized by no "
                                         "baseline, so one would never be used;"), refused.stderr
    # the demo's 10 classes are another task: a stored run of it normalizes its CE
    fog = ("--corruptions", "fog", "--severities", "1")
    ten = run("baseline", "--model", "demo-gap", *p_args(demo_val, store, suite="imagenet-c"), *fog,
              "--name", "ten")
    assert ten["metrics"]["classes"] == 10 and ten["metrics"]["mCE"] is None
    isqrt = run("eval", "--model", "demo-isqrt", *p_args(demo_val, store, suite="imagenet-c"), *fog,
                "--baseline", "ten")
    assert isqrt["metrics"]["baseline"] == "ten" and isqrt["metrics"]["mCE"] is not None


def test_another_model_stored_as_the_default_baseline_is_said(demo_val, tmp_path):
    """Reports normalize by 'alexnet' unasked: a run of demo-gap stored under it was not said."""
    stored = run("baseline", "--model", "demo-gap", *p_args(demo_val, tmp_path / "s.db", "--perturbations",
                                                            "rotate", "--name", "alexnet"))
    assert ("'alexnet' is the baseline reports use when none is named: they now normalize by this run of "
            "demo-gap") in stored["notes"]
    mine = run("baseline", "--model", "demo-gap", *p_args(demo_val, tmp_path / "s.db", "--perturbations",
                                                          "rotate", "--name", "gap"))
    assert not any("baseline reports use" in note for note in mine["notes"])


def test_a_baseline_that_never_flips_on_a_cell_leaves_only_that_metric_unnormalized(demo_val, tmp_path):
    """FR needs a flip probability above 0 in the baseline, T5D a top-5 distance above 0: where
    only the first is 0, reports and comparisons still give mT5D (and the raw mean flip
    probability in place of mFR), and the note names FR alone."""
    from robustbench_gcp.store import Store
    from robustbench_gcp.suites import get_suite
    from robustbench_gcp.suites.imagenet_p_summary import FlipBaseline, raw_figures, summarize

    store = tmp_path / "s.db"
    report = run("eval", "--model", "demo-gap", *p_args(demo_val, store, "--perturbations", "rotate,snow"))
    with Store(store) as s:
        (info,) = s.runs()
        results = [r for r in s.results(info) if r.complete]
    figures = raw_figures(results)
    (rotate,) = [key for key in figures if key[0] == "rotate"]
    assert all(fp > 0 and t5d > 0 for fp, t5d, _ in figures.values()), figures
    figures[rotate] = (0.0, *figures[rotate][1:])  # the baseline never flips on rotate
    design = get_suite("imagenet-p").design(results, FlipBaseline("base", figures))
    assert set(design.metrics) == {"clean_error", "mean_flip_probability", "mT5D"}
    assert design.percent == {"mT5D"}
    sections, notes = summarize(results, baseline=figures, baseline_name="base")
    assert sections["metrics"]["mFR"] is None and sections["metrics"]["mT5D"] is not None
    assert any(note.startswith("FR left empty for rotate/1:") and note.endswith("; so there is no mFR")
               for note in notes), notes
    assert not any(note.startswith("T5D left empty") for note in notes)
    assert any(note.startswith("the means average 2 of the 10") for note in notes), notes
    assert report["metrics"]["mFR"] is None  # no baseline at all: both empty, as before
    # the table without statistics shows the raw means instead of two empty columns
    table = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-p",
                                      "--no-intervals", "--baseline", "none-stored"])
    assert table.exit_code == 2  # an unknown baseline is refused, then the default one
    table = CliRunner().invoke(main, ["report", "--store", str(store), "--suite", "imagenet-p",
                                      "--no-intervals"])
    assert table.exit_code == 0, table.output
    assert "mean FP %" in table.stdout and "mean T5D" in table.stdout and "mFR" not in table.stdout
    fp = sum(e["flip_probability"] for e in report["perturbations"]) / 2
    assert f"{100 * fp:.2f}" in table.stdout


def test_comparisons_give_the_reports_figures_to_the_last_digits(demo_val, tmp_path):
    """Comparisons averaged the stored float32 per-video rates: mT5D 62.83513954976642 beside the
    report's 62.83513922182043 (and float64 rates 1 ulp off). The rates are integers over the pairs
    compared: the totals are recovered exactly, and divided as the report divides them."""
    store = tmp_path / "s.db"
    selection = ("--perturbations", "rotate,translate,brightness,gaussian_noise", "--limit", 20)
    run("baseline", "--model", "demo-gap", *p_args(demo_val, store, *selection, "--name", "base"))
    run("eval", "--model", "demo-isqrt", *p_args(demo_val, store, *selection))
    result = CliRunner().invoke(main, ["report", "--store", str(store), "--baseline", "base", "--format",
                                       "json", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (comparison,) = out["comparisons"]
    checked = 0
    for report in out["reports"]:
        (model,) = [m for m in comparison["models"] if m["model"].startswith(report["model"])]
        figures = {**report["metrics"], **report["metrics"]["by_difficulty"]["1"]}
        for name, value in model["metrics"].items():
            if figures.get(name) is not None:
                assert value["estimate"] == figures[name], (name, report["model"])  # to the bit
                checked += 1
    assert checked >= 4, out["comparisons"]
    # each cell's flip and top-5 figures are tested over the 20 videos (sign flips), one Holm family
    tests = comparison["models"][1]["tests"]
    cells = [f"{p}/1" for p in ("rotate", "translate", "brightness", "gaussian_noise")]
    assert set(tests) == {f"{figure} {cell}" for figure in ("fp", "t5d") for cell in cells}
    assert {t["method"] for t in tests.values()} <= {"sign-flip 10000 draws", "sign-flip exact"}
    assert all(t["p_value"] <= t["p_holm"] <= 1 for t in tests.values())
    # the long CSV's mean row carries the raw means too (it left them empty: no headline without mFR)
    import csv
    import io

    long = CliRunner().invoke(main, ["report", "--store", str(store), "--baseline", "base", "--format",
                                     "csv"])
    means = [row for row in csv.DictReader(io.StringIO(long.stdout)) if row["item"] == "mean (test)"]
    by_model = {r["model"]: r["metrics"]["by_difficulty"]["1"] for r in out["reports"]}
    distances = {r["model"]: [e["top5_distance"] for e in r["perturbations"]] for r in out["reports"]}
    assert len(means) == 2 and all(float(row["flip_probability"]) == pytest.approx(
        by_model[row["model"]]["mean_flip_probability"], rel=1e-12) for row in means), means
    assert all(float(row["top5_distance"]) == pytest.approx(
        sum(distances[row["model"]]) / len(distances[row["model"]]), rel=1e-12) for row in means), means


def test_a_baseline_from_the_other_source_says_so(demo_val, tmp_path):
    """A baseline stored from generated sequences normalizes no run on the released videos (their
    cells are apart): FR was left empty saying the baseline 'has no figures' for the cells it holds
    generated (audit)."""
    from corruptions import perturbation_sequence

    images = scan_folder(demo_val, class_order="sorted").limit(4)
    x, _ = next(iterate_batches(images.paths(), Preprocess(256, 224), batch_size=4))
    frames = perturbation_sequence(x.float() / 255, "brightness", seed=0, crop_size=224)
    pixels = (frames * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    released = tmp_path / "ImageNet-P"
    for name, video in zip(images.names, pixels):
        write_mp4(released / "brightness" / name.rsplit(".", 1)[0].__add__(".mp4"), video)
    store = tmp_path / "s.db"
    common = ["--perturbations", "brightness", "--limit", 4]
    run("baseline", "--model", "demo-gap", "--name", "gen", *p_args(demo_val, store, *common))
    report = run("eval", "--model", "demo-isqrt",
                 *p_args(demo_val, store, *common, "--corrupted-dir", released, "--baseline", "gen"))
    assert report["perturbations"][0]["FR"] is None
    said = ("FR left empty for brightness/1: baseline 'gen' holds brightness/1 generated, this run's are "
            "read from released files (store the baseline with --corrupted-dir)")
    assert any(note.startswith(said) for note in report["notes"]), report["notes"]
    store = tmp_path / "other.db"  # (a run holds cells of both sources: the baseline 'gen' now has both)
    run("baseline", "--model", "demo-gap", "--name", "read",
        *p_args(demo_val, store, *common, "--corrupted-dir", released))
    report = run("eval", "--model", "demo-isqrt", *p_args(demo_val, store, *common, "--baseline", "read"))
    assert any("holds brightness/1 read from released files, this run's are generated" in note
               for note in report["notes"]), report["notes"]


def test_a_difficulty_added_to_a_stored_run_is_computed_and_the_headline_stays_at_the_smallest(
        demo_val, tmp_path):
    """A perturbation's difficulties are one task: a run that adds difficulty 3 to a stored difficulty
    1 must compute it (nothing tested that the task's stored shards count only where all of its
    cells have them); the headline mFR is difficulty 1's (PROTOCOL.md), not the largest's."""
    def args(store, difficulties):
        return p_args(demo_val, store, "--perturbations", "scale", "--difficulties", difficulties,
                      "--baseline", "gapbase", "--limit", 6)

    store, fresh = tmp_path / "s.db", tmp_path / "fresh.db"
    for path in (store, fresh):
        run("baseline", "--model", "demo-gap", "--name", "gapbase",
            *p_args(demo_val, path, "--perturbations", "scale", "--difficulties", "1,3", "--limit", 6))
    run("eval", "--model", "demo-isqrt", *args(store, "1"))
    grown = run("eval", "--model", "demo-isqrt", *args(store, "1,3"))
    # (cell, shard) units: the task computes difficulty 1 again with 3, whose stored result (the
    # store keeps the first) is reused, as clean's
    assert grown["computed"] | {"images": 0, "seconds": 0} == {"units": 3, "reused": 2, "computed": 1,
                                                                "images": 0, "seconds": 0}, grown["computed"]
    whole = run("eval", "--model", "demo-isqrt", *args(fresh, "1,3"))
    assert grown["perturbations"] == whole["perturbations"]
    assert [(e["difficulty"], e["n_videos"]) for e in grown["perturbations"]] == [(1, 6), (3, 6)]
    metrics = grown["metrics"]
    at = metrics["by_difficulty"]
    assert metrics["difficulty"] == 1 and at["1"]["mFR"] != at["3"]["mFR"]
    assert (metrics["mFR"], metrics["mT5D"]) == (at["1"]["mFR"], at["1"]["mT5D"]) != (None, None)
    # the comparison's mFR is the report's, difficulty 1's (it once took the largest difficulty)
    out = CliRunner().invoke(main, ["report", "--store", str(store), "--baseline", "gapbase", "--format",
                                    "json", "--resamples", "100"])
    assert out.exit_code == 0, out.output
    (comparison,) = json.loads(out.stdout)["comparisons"]
    (isqrt,) = [m for m in comparison["models"] if m["model"].startswith("demo-isqrt")]
    assert isqrt["metrics"]["mFR"]["estimate"] == metrics["mFR"]
    assert isqrt["metrics"]["mT5D"]["estimate"] == metrics["mT5D"]


def test_a_released_video_is_read_as_the_rgb_frames_written(tmp_path):
    """Red stays red: decoded as BGR, a released video's frames reached the model with red and blue
    swapped, and the flip-rate tests' tolerances let it through."""
    from robustbench_gcp.data.video import read_video

    frames = np.zeros((3, 32, 32, 3), np.uint8)
    frames[0, ..., 0], frames[1, ..., 1], frames[2, ..., 2] = 255, 255, 255  # red, green, blue
    frames[:, 8:24, 8:24] = moving_blocks(3)[:, :16, :16]
    path = tmp_path / "rgb.mp4"
    write_mp4(path, frames)  # lossless H.264 (4:4:4): RGB -> YUV -> RGB rounds by a level or two
    got = read_video(path)
    assert got.shape == frames.shape and np.abs(got.astype(int) - frames).max() <= 3


def markdown_table(text: str, first_header: str) -> list[dict]:
    """The rows of the Markdown table whose first column is ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))))
    return rows


def test_unnormalized_flip_probabilities_are_shown_in_percent_in_every_view(demo_val, tmp_path):
    """Flip probabilities are stored as fractions and shown as percent: the per-cell table, the
    summary's raw mean and the comparison's per-perturbation table each multiply by 100 on their own
    (each of the three could lose it and pass)."""
    store = tmp_path / "s.db"
    args = ("--perturbations", "rotate,snow,scale")
    reports = [run("eval", "--model", model, *p_args(demo_val, store, *args)) for model in ("demo-gap",
                                                                                          "demo-isqrt")]
    fps = [{e["perturbation"]: e["flip_probability"] for e in r["perturbations"]} for r in reports]
    assert all(max(by.values()) > 0 for by in fps), fps  # (a fraction and its percent then differ)
    for model, fp in zip(("demo-gap", "demo-isqrt"), fps):
        one = CliRunner().invoke(main, ["eval", "--model", model, *map(str, p_args(demo_val, store)[:-2]),
                                        *args, "--format", "markdown"])
        assert one.exit_code == 0, one.output
        table = markdown_table(one.stdout, "perturbation")
        cells = {row["perturbation"]: row["flip prob. %"] for row in table}
        assert cells == {p: f"{100 * value:.2f}" for p, value in fp.items()}
        summary = {row["metric"]: row["value"] for row in markdown_table(one.stdout, "metric")}
        mean = sum(fp.values()) / len(fp)
        assert summary["mean flip probability (%, difficulty 1)"] == f"{100 * mean:.2f}", summary
    many = CliRunner().invoke(main, ["report", "--store", str(store), "--format", "markdown",
                                     "--no-intervals"])
    assert many.exit_code == 0, many.output
    detail = {row["model"]: row for row in markdown_table(many.stdout.split("flip probability per")[1],
                                                          "model")}
    for model, fp in zip(("demo-gap", "demo-isqrt"), fps):
        assert {p: detail[model][p.replace("_", " ")] for p in fp} == {p: f"{100 * v:.2f}"
                                                                       for p, v in fp.items()}
        assert detail[model]["mean FP"] == f"{100 * sum(fp.values()) / len(fp):.2f}"


def test_the_headline_gives_each_raw_mean_beside_its_normalized_mean_in_the_comparisons_order():
    """The table without statistics put mT5D before the mean flip probability, the comparison its
    flip figure first: their columns came in other orders."""
    from types import SimpleNamespace

    from robustbench_gcp.suites import get_suite

    metrics = {"mFR": 80.0, "mT5D": 70.0, "difficulty": 1, "by_difficulty": {"1": {
        "perturbations": ["rotate"], "mean_flip_probability": 0.1, "mean_top5_distance": 0.2}}}
    report = SimpleNamespace(sections={"clean": {"top1_error": 0.25}, "perturbations": [{}],
                                       "metrics": metrics})
    headline = get_suite("imagenet-p").headline(report)
    assert list(headline) == ["clean_error", "mFR", "mean_flip_probability", "mT5D", "mean_top5_distance"]
    assert list(headline.values()) == [0.25, 80.0, 0.1, 70.0, 0.2]
