"""The model as the engine calls it: a :class:`Classifier` (the model's normalization, precision
and memory format around it, logits checked for NaN and infinity without a host sync per batch)
and :func:`frozen_weights` for the passes that need input gradients only (attacks, landscape)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from robustbench_gcp.engine.device import amp_dtype, exact_float32, precision_name
from robustbench_gcp.errors import ModelCodeError, NonFiniteError


class Classifier:
    """The model's own normalization (its mean and std), precision and memory format around it.

    Call it with [0, 1] float images on the device; returns float32 logits.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        amp: bool = False,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        self.model = model
        self.device = device
        self.amp = amp
        self.amp_dtype = amp_dtype(device)
        self.channels_last = channels_last
        # the images' dtype after normalize: float32, float64 for a float64 copy (the landscape's)
        self.mean = torch.tensor(mean, dtype=dtype, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=dtype, device=device).view(1, -1, 1, 1)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            exact_float32()  # float32 means float32, not TF32 (cuDNN's default for convolutions)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(self.mean.dtype) - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @property
    def precision(self) -> str:
        return precision_name(self.device, self.amp)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of ``images``.

        Images whose logits are NaN or infinite (an fp16 overflow under ``--amp``, or a
        numerically broken model) are counted on the device, without a host sync;
        :meth:`check_finite` raises once for all of them (the engine calls it at the end
        of each cell's shard, before anything is stored).
        """
        with torch.inference_mode(), torch.autocast(
            self.device.type, dtype=self.amp_dtype, enabled=self.amp
        ):
            logits = checked_logits(self.model(self.normalize(images)), images.shape[0])
            bad = (~torch.isfinite(logits).all(dim=-1)).sum()
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
        self._seen += logits.shape[0]
        return logits

    _nonfinite: torch.Tensor | None = None
    _seen: int = 0

    def check_finite(self) -> None:
        """Raise if any logits since the last check were NaN or infinite; start counting anew.

        Raises:
            NonFiniteError: how many images of how many had a NaN or infinite logit.
        """
        bad, seen = self._nonfinite, self._seen
        self._nonfinite, self._seen = None, 0
        if bad is not None and int(bad):  # the one host sync, per cell and shard
            raise nonfinite_error(int(bad), seen, self.amp)


#: autograd's words for a model whose loss has no gradient with respect to its input, and for one
#: whose forward changes in place a tensor that gradient needs
NO_INPUT_GRADIENT = ("does not require grad and does not have a grad_fn",
                     "appears to not have been used in the graph")
CHANGED_IN_PLACE = "modified by an inplace operation"


def gradient_error(error: BaseException, needs: str) -> ModelCodeError | None:
    """The error to raise (from ``error``) where ``error`` is autograd's finding that the model's
    code cannot give the gradient of its loss with respect to its input: its output does not
    depend on the input differentiably (a forward under ``torch.no_grad()`` or
    ``inference_mode()``, detached features), or its forward changes in place a tensor the
    backward pass needs (``x.mul_(0)`` after using ``x``). ``needs`` (the suite) takes that
    gradient; None for any other error. A model you bring ended the adversarial and landscape
    suites in autograd's traceback, outside the wrapper that names a forward pass's errors."""
    said = str(error).splitlines()[0] if str(error) else ""
    if not isinstance(error, RuntimeError):
        return None
    if any(words in said for words in NO_INPUT_GRADIENT):
        return ModelCodeError(f"{needs} needs the gradient of the model's loss with respect to its input, "
                              "and the model's output has none: its forward runs under torch.no_grad() or "
                              f"torch.inference_mode(), or detaches its features (autograd: {said})")
    if CHANGED_IN_PLACE in said:
        return ModelCodeError(f"{needs} needs the gradient of the model's loss with respect to its input, "
                              "and the model's forward changes in place a tensor that gradient needs (its "
                              "input or an activation, after using it): make that operation out of place "
                              f"(autograd: {said.split('; ')[0]})")
    return None


def checked_logits(out, n: int) -> torch.Tensor:
    """The model's output for a batch of ``n`` images as float32 logits, checked to be (n, classes)
    floating-point values (a model you bring whose ``squeeze()`` drops the batch axis of a batch of
    one stopped the count with an IndexError).

    Raises:
        ModelCodeError: saying what the output is.
    """
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelCodeError(f"the model's output for a batch of {n} image{'s' * (n != 1)} is {shape}, "
                             f"not ({n}, classes) logits")
    if not out.is_floating_point():
        raise ModelCodeError(f"the model's output is {out.dtype}, not floating-point logits")
    return out.float()


def finite(logits: torch.Tensor, *, amp: bool = False, rows: str = "images") -> torch.Tensor:
    """``logits``, checked: each row's logits must all be finite (``rows`` says what a row is).

    Raises:
        NonFiniteError: how many rows have a NaN or infinite logit.
    """
    bad = ~torch.isfinite(logits).all(dim=-1)
    if bad.any():
        raise nonfinite_error(int(bad.sum()), bad.numel(), amp, rows)
    return logits


def nonfinite_error(bad: int, seen: int, amp: bool, rows: str = "images") -> NonFiniteError:
    return NonFiniteError(f"the model gave NaN or infinite logits for {bad} of {seen} {rows}"
                          f"{' (under --amp: try without it)' if amp else ''}")


@contextlib.contextmanager
def frozen_weights(model: torch.nn.Module):
    """No weight gradients inside: backward computes what the input needs only (about half its
    cost) and accumulates nothing; the weights that required gradients require them again after
    (a module you bring is yours to train afterwards)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
