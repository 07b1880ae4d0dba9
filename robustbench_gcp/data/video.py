"""Released ImageNet-P videos: MP4 (H.264) frames decoded with PyAV, on CPU loader workers.

Layout: ``<root>/<perturbation>[_2|_3]/<wnid>/<image stem>.mp4``; every frame is
already 224 px (resized, perturbed, center-cropped when the files were made), so
frames are used as decoded, with no second resize.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustbench_gcp.data.loader import started
from robustbench_gcp.errors import DataError


def check_frame_size(folder: Path, size: int, benchmark: str) -> None:
    """The first video of a released folder has frames of ``size`` px, the benchmark's (read as
    they are, whatever the model's input size), before any compute.

    Raises:
        DataError: naming the file, its frame size and the size expected.
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
    except (av.error.FFmpegError, ValueError, IndexError):
        return  # an unreadable file is named when it is read
    if (width, height) != (size, size):
        raise DataError(f"released video {first} has frames of {width}x{height} px, but {benchmark}'s are "
                        f"{size}x{size}: is --corrupted-dir the right folder?")


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video as uint8 (T, H, W, 3) RGB.

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video {path} does not exist")
    try:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.error.FFmpegError, ValueError, IndexError) as error:
        raise DataError(f"cannot decode video {path}: {error}") from None
    if not frames:
        raise DataError(f"video {path} has no frames")
    return np.stack(frames)


class VideoFiles(Dataset):
    """Videos by path -> (uint8 (T, 3, H, W) tensor, position, error message)."""

    def __init__(self, paths: Sequence[Path], frames: int, size: int):
        self.paths, self.frames, self.size = list(paths), frames, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        try:
            video = read_video(self.paths[position])
            if video.shape[0] != self.frames or video.shape[1:3] != (self.size, self.size):
                raise DataError(
                    f"video {self.paths[position]} has {video.shape[0]} frames of "
                    f"{video.shape[2]}x{video.shape[1]} px, expected {self.frames} of {self.size}x{self.size}"
                )
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
    loader = DataLoader(VideoFiles(paths, frames, size), batch_size=batch_size, shuffle=False,
                        num_workers=workers, prefetch_factor=2 if workers > 0 else None,
                        generator=torch.Generator())  # its seed draw leaves the caller's RNG alone
    return started(loader, lambda _, error: error)
