"""``gcp-robust inspect CHECKPOINT``: what a checkpoint file holds."""

from __future__ import annotations

import dataclasses
import math

import click

from robustbench_gcp.cli.options import NonEmptyPath, json_option


@click.command("inspect", short_help="Describe a checkpoint: layout, matching model, head, classes.")
@click.argument("checkpoint", type=NonEmptyPath())
@click.option("--sha256", default=None,
              help="Expected sha256 of the file (whole, or its first 8+ hex digits): checked, and an "
                   "http:// URL is downloaded only with it.")
@json_option
def inspect_cmd(checkpoint: str, sha256: str | None, as_json: bool) -> None:
    """Describe CHECKPOINT: layout, best-matching model, head, width d (the channels a GCP head
    reduces the features to before the covariance: 256 in the papers), classes, parameters and
    tensors, sha256,
    and for a fast-MPN-COV training file of a ResNet the layer4 stride eval builds (what its arch
    or keys tell, or that nothing does).

    Reads the file the way `eval` does (weights only, every published layout)
    and compares it with every registered model; nothing is run. A URL is
    downloaded once into the cache, as `eval --checkpoint URL` does, or taken
    from there (a file:// URL too: a copy of the file as it was then).

    \b
    Example:
      gcp-robust inspect mpncovresnet50-15991845.pth
      gcp-robust inspect r50_dropcov.pth.tar --json
    """
    from robustbench_gcp.cli.output import emit
    from robustbench_gcp.fetch import expected_sha256, is_url, resolve_checkpoint
    from robustbench_gcp.models import inspect_checkpoint, model_info
    from robustbench_gcp.models.checkpoint import check_sha256
    from robustbench_gcp.models.heads import HEADS
    from robustbench_gcp.models.loading import twins_differ
    from robustbench_gcp.reports.tables import Column

    url = checkpoint if is_url(checkpoint) else None
    if sha256 is not None:
        expected_sha256(sha256)  # a malformed one before any download
    local = (resolve_checkpoint(checkpoint, sha256=sha256, give_file="give the file to inspect") if url
             else checkpoint)
    info = inspect_checkpoint(local)  # (a missing or unreadable file is said first)
    if sha256 is not None:
        check_sha256(local, sha256, info.sha256)  # the digest inspect computed, not hashed again
    fits = info.arch or (f"none (closest: {info.closest})" if info.closest else
                         "none of the registry's (a model you bring: --model package.module:callable "
                         "--checkpoint FILE loads it strictly)")
    if info.also_fits:
        fits += (f" (the same weights fit {', '.join(info.also_fits)}: "
                 f"{twins_differ(info)}; give the one it was trained with as --model)")
    head_words = f"{info.head}: {HEADS[info.head].description}" if info.head in HEADS else info.head
    pooling = model_info(info.arch or info.closest).pooling if info.arch or info.closest else ""
    # a DeiT's own words: its "gap" is no global pooling (a ResNet's would give the default d, not the file's)
    if "class token" in pooling:
        head_words = f"{info.head}: {pooling}"
    rows = [
        *([("url", url)] if url else []),
        ("file", info.path),
        ("layout", f"{info.layout}: {info.layout_description}"),
        ("weights in", info.container + (f", stripped {' '.join(info.stripped)}"
                                         if info.stripped else "")),
        ("model", fits),
        ("head", head_words),
        ("depth", info.depth),
        ("width d", info.reduction_dim),
        ("classes", info.num_classes),
        ("parameters", f"{info.num_params:,}"),
        ("tensors", info.num_tensors),
        ("sha256", info.sha256),
    ]
    rows += [(f"stored {key}", value) for key, value in info.metadata.items()]
    if info.stride_note:  # what the file leaves open, or tells by its depth alone
        rows.append(("layer4 stride", info.stride_note))
    elif info.last_stride is not None:
        size = "7x7" if info.last_stride == 2 else "14x14"
        told = {"arch": "the stored arch",
                "zoo": "its features.8 (layer_reduce: an mpncovresnet fine-tuned from fast-MPN-COV's zoo)",
                "depth": "its depth (fast-MPN-COV has no mpncovresnet of it)"}[info.last_stride_told]
        rows.append(("layer4 stride", f"{info.last_stride}, as {told} states ({size} features at 224 px); "
                                      "eval builds it so"))
    if info.arch is None and info.closest is not None:
        rows += [("missing keys", _some(info.missing, ", ")),
                 ("unexpected keys", _some(info.unexpected, ", ")),
                 ("shape mismatches", _some(info.mismatched, "; "))]
    if info.nonfinite:
        rows.append(("NON-FINITE", f"{len(info.nonfinite)} tensors (eval refuses this file): "
                                   f"{'; '.join(info.nonfinite)}"))
    if info.wrong_types:
        rows.append(("WRONG TYPES", f"{len(info.wrong_types)} tensors {info.arch} has in floating point "
                                    f"(eval refuses this file): {'; '.join(info.wrong_types)}"))
    described = {**({"url": url} if url else {}), **dataclasses.asdict(info)}
    # a diverged run's best_prec1 (NaN, inf): null in JSON, which has no such numbers, as "-" in the table
    described["metadata"] = {key: None if isinstance(value, float) and not math.isfinite(value) else value
                             for key, value in info.metadata.items()}
    emit([{"field": k, "value": v} for k, v in rows],
         [Column("field", justify="left"), Column("value", justify="left", wrap=True)],
         fmt="json" if as_json else "table", json_obj=described)


def _some(names: list[str], sep: str) -> str:
    """``5: a, b, c`` (the first three), or ``0`` (it printed a colon after a count of none)."""
    return f"{len(names)}: {sep.join(names[:3])}" if names else "0"
