"""Model zoo: GAP and global covariance pooling (GCP) ResNets, MobileNetV2, ShuffleNetV2 and
DeiT-S, the AlexNet baseline, checkpoints.

>>> from robustbench_gcp.models import list_models, load_model
>>> list_models()[:3]
['alexnet', 'deit-small-dropcov', 'deit-small-gap']
>>> model = load_model("resnet50-isqrt", "mpncovresnet50-15991845.pth")  # doctest: +SKIP
"""

from robustbench_gcp.models import alexnet as _alexnet  # noqa: F401  (registers alexnet)
from robustbench_gcp.models import deit as _deit  # noqa: F401  (registers the DeiT-S transformers)
from robustbench_gcp.models import demo_nets as _demo_nets  # noqa: F401  (registers the demo models)
from robustbench_gcp.models import mobile as _mobile  # noqa: F401  (registers MobileNetV2, ShuffleNetV2)
from robustbench_gcp.models import resnet as _resnet  # noqa: F401  (registers the ResNets)
from robustbench_gcp.models.factory import ModelInfo, create_model, model_info
from robustbench_gcp.models.heads import HEADS
from robustbench_gcp.models.loading import CheckpointInfo, inspect_checkpoint, load_model
from robustbench_gcp.models.matrix import SQRT_METHODS
from robustbench_gcp.models.registry import list_models, register_model
from robustbench_gcp.models.resnet import PreprocessConfig, build_resnet

__all__ = [
    "HEADS",
    "SQRT_METHODS",
    "CheckpointInfo",
    "ModelInfo",
    "PreprocessConfig",
    "build_resnet",
    "create_model",
    "inspect_checkpoint",
    "list_models",
    "load_model",
    "model_info",
    "register_model",
]
