"""The sizes of a run's image files, kept with it: images edited in place are not mixed into a resumed run."""

from __future__ import annotations

import json
import os

from robustbench_gcp.errors import DataError

#: the notes' kind (a slot no suite's notes share) that keeps the sizes of a run's image files
IMAGE_SIZES = "image file sizes"


def edited_images_notes(plan, store, info, shards_done) -> list[str]:
    """A run is found by its images' names and labels, not their pixels: the sizes of the files of
    ``--data`` are kept with it, and images whose size has changed since (edited in place) are
    found before anything is computed. Where results of the earlier files are stored (a shard
    holding such an image), a run with more to compute is refused (it would mix the two versions:
    a resumed run equalled neither) and a complete one is reused with a note; otherwise the
    sizes kept are updated (a file that could not be read, replaced, as its error advises).

    Raises:
        DataError: edited images whose earlier results are stored, with more to compute.
    """
    if plan.data is None:
        return []
    paths, sizes = plan.images.paths(), []
    for path in paths:
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:  # gone: the loader names it
            sizes.append(-1)
    kept = store.notes(info.id).get(IMAGE_SIZES)
    earlier = json.loads(kept[0]) if kept else None
    if earlier == sizes:
        return []
    changed = [] if earlier is None or len(earlier) != len(sizes) else \
        [i for i, (a, b) in enumerate(zip(earlier, sizes)) if a != b]
    # the stored shards, read only where an image has changed
    stored = {shard for cell, _ in store.cells(info.id) for shard in store.done_shards(cell)} if changed \
        else set()
    mixed = [i for i in changed if i // info.shard_size in stored]
    if not mixed:
        store.set_notes(info.id, IMAGE_SIZES, [json.dumps(sizes)])
        return []
    what = (f"{len(mixed)} of the {len(sizes)} images of --data ({paths[mixed[0]]} first) are not the "
            "size they were when this run stored their results: edited since, or files of the same "
            "names in another folder (a run is found by names and labels, not pixels)")
    done, total = shards_done()
    if done < total:
        raise DataError(f"{what}; resuming would mix results of both versions. Restore those files, or "
                        "give another --store to evaluate the images as they are now")
    return [f"{what}; these results are of the earlier files: give another --store to evaluate them as "
            "they are now"]
