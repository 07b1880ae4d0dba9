"""Released ImageNet-P videos: MP4 (H.264) frames decoded with PyAV, on CPU loader workers.

Layout: ``<root>/<perturbation>[_2|_3]/<wnid>/<image stem>.mp4``; every frame is
already 224 px (resized, perturbed, center-cropped when the files were made), so
frames are used as decoded, with no second resize.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from robustbench_gcp.data.loader import shard_loader, started
from robustbench_gcp.errors import DataError, counted


def check_frame_size(folder: Path, size: int, benchmark: str, frames: int | None = None) -> None:
    """The first video of a released folder has frames of ``size`` px, the benchmark's (read as
    they are, whatever the model's input size), and ``frames`` of them where its header counts
    them, before any compute (a folder of 31-frame videos for a 41-frame perturbation failed when
    its turn came, telling to replace that one file).

    Raises:
        DataError: naming the file, its frame size or count and the one expected.
    """
    import av

    from robustbench_gcp.data.folders import first_released_file

    first = first_released_file(folder, (".mp4",))
    if first is None:
        return  # an empty folder is named when its videos are listed
    try:
        with av.open(str(first)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            counted_frames = stream.frames  # the container's count; 0 where it keeps none
    except (av.error.FFmpegError, ValueError, IndexError, AttributeError):  # (no decoder: no codec_context)
        return  # an unreadable file is named when it is read
    if (width, height) != (size, size):
        raise DataError(f"released video {first} has frames of {width}x{height} px, but {benchmark}'s are "
                        f"{size}x{size}: is --corrupted-dir the right folder?")
    if frames is not None and counted_frames and counted_frames != frames:
        raise DataError(f"released video {first} has {counted(counted_frames, 'frame')}, but {benchmark}'s "
                        f"{folder.name} videos have {frames}: is --corrupted-dir the right folder?")


def read_video(path: str | Path, *, frames: int | None = None, size: int | None = None) -> np.ndarray:
    """All frames of a video as uint8 (T, H, W, 3) RGB; with ``frames`` and ``size``, exactly that
    many of ``size`` x ``size`` px, refused as soon as the decoder gives one of another size or
    one too many (a 108 KB file of 4000 frames was decoded whole, 1.7 GB, before its shape was
    checked).

    FFmpeg conceals damage in an H.264 stream (bytes changed inside the file): it decodes every
    frame and raises nothing (``err_detect=explode`` neither). The decoder runs in this thread
    alone (``thread_count`` 1), where it marks the concealed frames corrupt (with its default
    slice threads it marked none) and logs its errors in this thread (with them, 6 decodes of a
    damaged file in 400 logged from a pool thread): those messages ("error while decoding MB 7
    0") are collected as the file is read (:func:`_decoder_logs`). A damaged file may log no error
    at all (only "concealing 40 DC, 40 AC, 40 MV errors in I frame", at INFO), its frame marked.
    Damage that still parses as H.264 cannot be told (the format holds no checksum). The slice
    threads share out a frame's slices: a 31-frame 224 px video of one or two slices a frame read
    as fast without them (46 and 59 ms, the fastest of 40 reads, 2 cores).

    Raises:
        DataError: the file is missing (a folder, empty), holds no video stream, cannot be decoded
            (FFmpeg's reason and its first error: "Invalid data found when processing input (moov
            atom not found)"), is damaged, or is not of ``frames`` frames of ``size`` px.
    """
    import av

    path = _video_file(path)
    try:
        with _decoder_logs() as logs, av.open(str(path)) as container:
            if not container.streams.video:
                kinds = ", ".join(stream.type for stream in container.streams) or "none"
                raise DataError(f"video {path} has no video stream (its streams: {kinds})")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # a stream FFmpeg has no decoder for (a codec tag it lacks)
                raise DataError(f"cannot decode video {path}: FFmpeg has no decoder for its video stream "
                                "(damaged, or another codec than the released videos' H.264)")
            stream.codec_context.thread_count = 1
            decoded, concealed = _decode(container, frames, size)
    except _FrameSize as odd:
        expected = f", expected {frames} of {size}x{size}" if size is not None else ", unlike those before"
        said = "frames" if odd.number == 1 else f"frame {odd.number}"
        raise DataError(f"video {path} has {said} of {odd.width}x{odd.height} px{expected}") from None
    except av.error.FFmpegError as error:  # its str repeats the errno and the path
        first = next(iter(_errors(logs)), None)
        raise DataError(f"cannot decode video {path}: {error.strerror or error}"
                        + (f" ({first})" if first else "")) from None
    except ValueError as error:
        raise DataError(f"cannot decode video {path}: {error}") from None
    errors = _errors(logs)
    if errors or concealed:
        said = errors[0] if errors else f"FFmpeg concealed errors in frame {concealed} of {len(decoded)}"
        raise DataError(f"video {path} is damaged: {said}")
    if not decoded:
        raise DataError(f"video {path} has no frames")
    video = np.stack(decoded)
    if frames is None or size is None:
        return video
    height, width = video.shape[1:3]
    if len(video) != frames:  # more: decoding stopped at one too many
        has = f"more than {counted(frames, 'frame')}" if len(video) > frames else counted(len(video), "frame")
        raise DataError(f"video {path} has {has} of {width}x{height} px, expected {frames} of {size}x{size}")
    return video


def _video_file(path: str | Path) -> Path:
    """``path``, a file that is not empty.

    Raises:
        DataError: it does not exist, is a folder, or is empty.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"video {path} is a folder, not a file")
    if not path.is_file():
        raise DataError(f"video {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"video {path} is empty (0 bytes)")
    return path


def _errors(logs: list[tuple[int, str, str]]) -> list[str]:
    """The messages of FFmpeg's logs (PyAV's ``(level, name, message)``) of level ERROR or worse."""
    import av

    return [message.strip() for level, _, message in logs if level <= av.logging.ERROR]


def _decode(container, limit: int | None = None, size: int | None = None
            ) -> tuple[list[np.ndarray], int | None]:
    """The RGB frames of the first video stream of an open container, and the number (from 1)
    of the first that the decoder marked corrupt (None: none). With ``limit`` and ``size``, it
    stops at frame ``limit + 1``, and a frame of another size is refused before it is converted.

    Raises:
        _FrameSize: a frame of another size than ``size``, or than the first frame's.
    """
    frames, concealed = [], None
    expected = None if size is None else (size, size)
    for frame in container.decode(video=0):
        if expected is not None and (frame.width, frame.height) != expected:
            raise _FrameSize(len(frames) + 1, frame.width, frame.height)
        expected = expected or (frame.width, frame.height)  # a stream that changes size mid-way
        frames.append(frame.to_ndarray(format="rgb24"))
        if concealed is None and frame.is_corrupt:
            concealed = len(frames)
        if limit is not None and len(frames) > limit:
            break
    return frames, concealed


class _FrameSize(Exception):
    """A frame (number, from 1) of another size than expected."""

    def __init__(self, number: int, width: int, height: int):
        super().__init__(number, width, height)
        self.number, self.width, self.height = number, width, height


_log_lock = threading.Lock()
_log_users = 0  # reads under way in this process, each thread's own capture
_log_saved: tuple[int | None, bool] = (None, True)


@contextmanager
def _decoder_logs() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's messages logged in this thread meanwhile, as PyAV's ``(level, name, message)``:
    those of level ERROR or worse (and milder ones where PyAV's level was set so before).

    PyAV's log level and its skipping of a message that repeats the last one are process-wide:
    the first of overlapping reads (threads) sets them, the last puts back what was there. PyAV
    skips a repeat across files, so a second damaged file that logs its predecessor's message
    again would pass as clean: repeats are kept. Clean files log nothing: no cost.
    """
    import av

    global _log_users, _log_saved
    with _log_lock:
        if _log_users == 0:
            _log_saved = av.logging.get_level(), av.logging.get_skip_repeated()
            if _log_saved[0] is None or _log_saved[0] < av.logging.ERROR:
                av.logging.set_level(av.logging.ERROR)
            av.logging.set_skip_repeated(False)
        _log_users += 1
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        with _log_lock:
            _log_users -= 1
            if _log_users == 0:
                av.logging.set_level(_log_saved[0])
                av.logging.set_skip_repeated(_log_saved[1])


def _fresh_log_lock() -> None:
    """A process forked while another thread held the lock gets one of its own (held forever
    otherwise: a loader worker would hang on its first video)."""
    global _log_lock
    _log_lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_log_lock)


class VideoFiles(Dataset):
    """Videos by path -> (uint8 (T, 3, H, W) tensor, position, error message)."""

    def __init__(self, paths: Sequence[Path], frames: int, size: int):
        self.paths, self.frames, self.size = list(paths), frames, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        try:
            video = read_video(self.paths[position], frames=self.frames, size=self.size)
        except DataError as error:
            empty = torch.zeros(self.frames, 3, self.size, self.size, dtype=torch.uint8)
            return empty, position, str(error)
        return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous(), position, ""


def iterate_video_batches(
    paths: Sequence[Path], *, frames: int, size: int, batch_size: int, workers: int = 0
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """``(uint8 videos (B, T, 3, H, W), positions)`` in order, the loader's workers started now,
    in the calling thread (:func:`~robustbench_gcp.data.loader.started`).

    Raises:
        DataError: a video is missing, unreadable or of the wrong shape (named in the message), as
            the batches are read.
    """
    videos = VideoFiles(paths, frames, size)
    loader = shard_loader(videos, batch_size, workers, prefetch=2)
    return started(loader, lambda _, error: error, paths=videos.paths)
