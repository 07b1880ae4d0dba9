"""A run's identity: what determines its numbers, and so its key in the store.

:func:`planned_identity` is the part the plan tells without loading the model; :func:`run_identity`
adds what the loaded model tells (its weights' hash, preprocessing, strides, classifier precision).
A change that alters a model's numbers adds a field here that only the changed runs carry, so runs
stored before stay found where their numbers are unchanged and are other runs where they are not.
"""

from __future__ import annotations

from corruptions._draws import CUDA_DRAW_CHUNK
from robustbench_gcp.engine.runner import protocol_resize
from robustbench_gcp.pipeline.planning import Plan
from robustbench_gcp.store.records import RANDOM_INIT

IDENTITY_VERSION = 2  # 2: ImageNet-P random layers no longer depend on the difficulty


def _weights_identity(plan: Plan, net) -> str:
    """The weights part of a run's identity: the checkpoint's sha256 (with ``:raw`` when a file's
    EMA weights were passed over), seeded random weights, or for a model you brought the hash
    of its state dict (the same weights reuse the store, changed weights never pass for old)."""
    if plan.model.external is not None:
        from robustbench_gcp.models.external import STATE_DICT_SHA256

        return f"{STATE_DICT_SHA256}{net.weights_hash}"
    raw = getattr(net, "has_ema", False) and not plan.model.ema
    return net.checkpoint_sha256 + (":raw" if raw else "")


def planned_identity(plan: Plan) -> dict:
    """The part of a run's identity that the plan tells, without loading the model: the model,
    its matrix function, the images, the seed, the shard size, the precision, memory format and
    device type, and seeded random weights."""
    from robustbench_gcp.engine.device import precision_name

    identity = {
        "arch": plan.model.identity_arch,
        # an override equal to the model's own matrix function is the same run as none
        **plan.model.matrix_identity(),
        "data": plan.images.fingerprint(),
        "seed": plan.options.seed,
        "shard_size": plan.options.shard_size,
        "precision": precision_name(plan.device, plan.options.amp),  # as the Classifier's
        # 0.7.6: channels-last changes the landscape's gradients in their last digits
        **({"memory_format": "channels_last"} if plan.options.channels_last else {}),
        "device_type": plan.device.type,
    }
    if plan.model.external is None and not plan.model.checkpoint:
        identity["weights"] = f"{RANDOM_INIT}{plan.model.seed}"
    return identity


def run_identity(plan: Plan, net, precision: str, device) -> dict:
    """What determines the numbers of a run: its key in the store (the suite is not part of
    it, so cells shared by suites, such as the clean cell, are computed once)."""
    cfg = net.pretrained_cfg
    identity = planned_identity(plan)
    return {
        "version": IDENTITY_VERSION,
        **identity,
        "weights": identity.get("weights") or _weights_identity(plan, net),
        **_stride_identity(net),
        # bilinear (every CNN's) is left out, so that runs stored before it was recorded stay found
        "preprocess": [cfg.resize_size, cfg.input_size, list(cfg.mean), list(cfg.std),
                       *([cfg.interpolation] if cfg.interpolation != "bilinear" else [])],
        **_reading_identity(plan, cfg),
        **_base_identity(plan, cfg),
        **_transform_input_identity(plan),
        "precision": precision,
        "device_type": device.type,
        # 0.7.1: CUDA divides as the CPU (corruptions.from_uint8) and float32 runs without TF32, so
        # CUDA runs stored before are other runs; CPU runs are unchanged and keep their identity.
        # 0.7.16: CUDA's random draws are made in pieces (the same on every GPU model): other draws
        **({"arithmetic": "ieee", "draws": CUDA_DRAW_CHUNK} if device.type == "cuda" else {}),
        **_classifier_identity(net, precision),
        **_svd_identity(net),
        **_structure_identity(plan, net),
    }


def _structure_identity(plan: Plan, net) -> dict:
    """``{"structure": ...}`` for a module object: its classes' tree (:func:`~robustbench_gcp.models.
    weights_hash.structure_hash`), which, with its weights, finds its run in place of the name it
    is evaluated under (a ReLU and a GELU copy of the same weights shared one run: helper-294)."""
    if plan.model.identity_arch == plan.model.arch:
        return {}
    from robustbench_gcp.models.external import BroughtModel
    from robustbench_gcp.models.weights_hash import structure_hash

    return {"structure": structure_hash(net.net if isinstance(net, BroughtModel) else net)}


def _base_identity(plan: Plan, cfg) -> dict:
    """``{"corruption_base": [resize, crop]}`` for a model whose resize is not the released datasets'
    256 / 224 ratio to its crop (torchvision's V2 weights' 232 / 224): since 0.7.13 its generated
    ImageNet-C / -P start from the protocol's base images (:func:`protocol_resize`), before from its
    own resize, so its runs stored before are other runs. Nothing for every other model, whose runs
    stay found."""
    size = protocol_resize(cfg.input_size)
    if plan.dataset.image_size is not None or cfg.resize_size == size:
        return {}
    return {"corruption_base": [size, cfg.input_size]}


def _transform_input_identity(plan: Plan) -> dict:
    """``{"transform_input": True}`` for ``torchvision:googlenet`` / ``inception_v3``, built since 0.7.6
    as torchvision builds them for its weights (their runs stored before are other runs)."""
    from robustbench_gcp.models.external import TORCHVISION
    from robustbench_gcp.models.preprocessing import TRANSFORM_INPUT

    return {"transform_input": True} if plan.model.arch in {TORCHVISION + n for n in TRANSFORM_INPUT} else {}


def _reading_identity(plan: Plan, cfg) -> dict:
    """``{"read": "64 px as they are"}`` where a small dataset's images are read as they are
    although the model's preprocessing would resize them (the demo models' 73 / 64): since 0.7.6,
    as the same folder read with ``--dataset imagenet`` through that preprocessing gave other
    clean answers under the same key (the second run took the first one's clean cell). Nothing
    where the two readings coincide (a 32 px model's resize 32 on CIFAR), so those runs stay found."""
    size = plan.dataset.image_size
    if plan.data is None or size is None or cfg.resize_size in (None, size):
        return {}
    return {"read": f"{size} px as they are"}


def _svd_identity(net) -> dict:
    """``{"covariance": "svd-pade"}`` for a model with the SVD-Pade head (whatever its root): since
    0.7.2 its covariance is DifferentiableSVD's (``models.matrix.covariance_svd_pade``, about 4e-5
    of the logits from the exactly centred one), so its runs stored before are other runs."""
    from robustbench_gcp.models.heads import CovariancePool

    svd = any(isinstance(m, CovariancePool) and m.centring == "svd-pade" for m in net.modules())
    return {"covariance": "svd-pade"} if svd else {}


def _classifier_identity(net, precision: str) -> dict:
    """``{"classifier": "float32"}`` for an ``--amp`` run of a model with a covariance head: since
    0.7.2 its classifier runs in float32 (``models.heads.classify``), so its ``--amp`` runs stored
    before are other runs. Nothing for float32 runs and other models, whose runs stay found."""
    from robustbench_gcp.models.deit import CrossCovariance
    from robustbench_gcp.models.heads import CovariancePool

    covariance = any(isinstance(m, (CovariancePool, CrossCovariance)) for m in net.modules())
    return {"classifier": "float32"} if precision != "float32" and covariance else {}


def _stride_identity(net) -> dict:
    """``{"last_stride": 2}`` for a covariance ResNet with torchvision's layer4 stride (SVD-Pade, or
    a fast-MPN-COV training file of ``arch`` resnet*): gcp-robust before 0.7 built those at stride
    1, so their stored runs are not this one. Nothing for every other model, whose runs stay found."""
    from robustbench_gcp.models.heads import HEADS

    head = HEADS.get(getattr(net, "head_type", ""))
    strides = getattr(net, "strides", None)
    return {"last_stride": 2} if head and head.covariance and strides and strides[-1] == 2 else {}


def former_identity(plan: Plan, identity: dict) -> dict | None:
    """The identity a module object's run had before 0.7.30 (``arch`` ``module:<its name>``, no
    ``structure``), under which a store may hold it, for :meth:`~robustbench_gcp.store.Store.run`
    to take it over when it is evaluated under that name again; None for every other model."""
    if plan.model.identity_arch == plan.model.arch:
        return None
    return {**{k: v for k, v in identity.items() if k != "structure"}, "arch": plan.model.arch}
