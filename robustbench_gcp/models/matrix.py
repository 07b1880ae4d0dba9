"""Matrix functions of global covariance pooling: pure, batched, differentiable.

Every function takes a batch of matrices ``(..., d, d)`` (or feature maps for
:func:`covariance`), never modifies its input, and computes in at least
float32 whatever the input dtype and whatever autocast region it is called
from (autocast is switched off inside): ``eigh`` and ``svd`` have no half
kernels, bf16 keeps 8 mantissa bits (the Newton-Schulz output computed in bf16
is off by about 0.6 % relative to float32 on ResNet-like covariances), and
fp16 overflows above 65504 for large activations. :func:`svd_sqrt` computes
in float64, as SVD-Pade does.

The formulas follow PROTOCOL.md section 3 and the reference implementations
(fast-MPN-COV ``MPNCOV.py``, DropCov ``covariance.py``, SVD-Pade ``SVD_Pade.py``).

Gradients. :func:`covariance`, :func:`newton_schulz_sqrt` and
:func:`triu_vectorize` are plain torch ops, so autograd differentiates them
exactly. :func:`eig_sqrt` and :func:`svd_sqrt` have their own backward: the
Frechet derivative of the square root, solved in the eigenbasis as the
Sylvester equation ``S dY + dY S = dA``, i.e. ``dY = U (K o (U^T dA U)) U^T``
with ``K_ij = 1 / (s_i + s_j)`` and ``s = sqrt(max(lambda, eps))``. Unlike the
textbook eigenvector gradient (terms ``1 / (lambda_i - lambda_j)``), this is
finite for repeated eigenvalues, which every covariance of M < d positions
has (its null space). It is large (``1 / (2 sqrt(eps))``) in the clamped
null-space block only, a block that the covariance backward maps to zero.
It is the exact derivative of the square root, not the Pade approximation
that SVD-Pade used during training; it matters only for gradient-based
attacks.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache

import torch
from torch.autograd.function import once_differentiable

from robustbench_gcp.errors import check_integer

__all__ = [
    "EXACT_SQRT_METHODS",
    "SQRT_METHODS",
    "covariance",
    "covariance_svd_pade",
    "eig_sqrt",
    "matrix_sqrt",
    "newton_schulz_sqrt",
    "svd_sqrt",
    "triu_indices",
    "triu_vectorize",
]

#: matrix square roots that :func:`matrix_sqrt` (and ``--sqrt``) accept
SQRT_METHODS = ("newton-schulz", "eig", "svd")
#: the roots computed exactly (their gradients have ill-conditioned 1/(s_i + s_j) terms)
EXACT_SQRT_METHODS = SQRT_METHODS[1:]


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """A context in which autocast is off on ``device`` (a no-op where autocast does not exist)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32, or float64 when the input already is float64."""
    return torch.promote_types(dtype, torch.float32)


def _check_square(A: torch.Tensor, name: str = "A") -> None:
    if not isinstance(A, torch.Tensor):
        raise TypeError(f"`{name}` should be a torch.Tensor. Got {type(A).__name__}")
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"`{name}` should be a batch of square matrices (..., d, d). "
                         f"Got shape {tuple(A.shape)}")
    if not A.is_floating_point():
        raise TypeError(f"`{name}` should be a floating-point tensor. Got {A.dtype}")


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Sample covariance of the feature vectors at every position.

    ``Sigma = X Ihat X^T`` with ``Ihat = I/M - 11^T/M^2``, computed as
    ``(1/M) Xc Xc^T`` with the mean-removed features ``Xc`` (the same matrix,
    without the M x M ``Ihat``).

    Args:
        x: features ``(B, d, H, W)`` or ``(B, d, M)``.

    Returns:
        ``(B, d, d)`` symmetric positive semi-definite matrices, float32 (float64
        for float64 input).

    Raises:
        ValueError: ``x`` is not 3-D or 4-D.

    Example:
        >>> covariance(torch.rand(2, 8, 7, 7)).shape
        torch.Size([2, 8, 8])
    """
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"`x` should be features (B, d, H, W) or (B, d, M). Got {shape}")
    with full_precision(x.device):
        x = x.flatten(2).to(_compute_dtype(x.dtype))
        xc = x - x.mean(dim=2, keepdim=True)
        return xc @ xc.transpose(1, 2) / x.shape[2]


def covariance_svd_pade(x: torch.Tensor) -> torch.Tensor:
    """:func:`covariance` as DifferentiableSVD's ``Covpool`` computes it (``SVD_Pade.py``):
    ``(X Ihat) X^T`` in float64 with ``Ihat`` built in float32, then cast.

    Ihat's float32 rounding leaves a trace of the mean in the matrix, and the exact square
    root of the SVD-Pade head amplifies it: about 4e-5 of the logits against the exactly
    centred covariance, which the published weights were trained and evaluated with.

    Args:
        x: features ``(B, d, H, W)`` or ``(B, d, M)``.

    Returns:
        ``(B, d, d)`` float64.
    """
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"`x` should be features (B, d, H, W) or (B, d, M). Got {shape}")
    with full_precision(x.device):
        x = x.flatten(2).double()
        m = x.shape[2]
        ones = torch.ones(m, m, dtype=torch.float32, device=x.device)
        eye = torch.eye(m, dtype=torch.float32, device=x.device)
        i_hat = ((-1.0 / m / m) * ones + (1.0 / m) * eye).double()
        return (x @ i_hat) @ x.transpose(1, 2)


def newton_schulz_sqrt(A: torch.Tensor, iters: int = 5) -> torch.Tensor:
    """Approximate matrix square root of iSQRT-COV (Newton-Schulz iteration).

    Pre-normalization ``A' = A / tr(A)``; ``Y0 = A'``, ``Z0 = I``; for
    ``k = 1 .. iters-1``: ``T = (3I - Z Y)/2``, ``Y = Y T``, ``Z = T Z``; last
    step ``Y = Y (3I - Z Y)/2`` (no Z); post-compensation ``sqrt(tr(A)) Y``.
    This is *not* the exact square root: published iSQRT-COV checkpoints were
    trained with exactly 5 iterations. It is differentiated by autograd through
    the matrix products (as in training). A zero matrix gives zero.

    Args:
        A: symmetric positive semi-definite matrices ``(..., d, d)``.
        iters: number of iterations N >= 1. On a rank-deficient A with rounding noise (the
            covariance of a 7x7 map of 256 channels) the iteration diverges past about 25:
            the models take at most :data:`~robustbench_gcp.engine.limits.MAX_NS_ITERS`.

    Returns:
        ``(..., d, d)``, float32 (float64 for float64 input).

    Raises:
        ValueError: ``A`` is not square or ``iters`` < 1.

    Example:
        >>> A = torch.eye(3).expand(2, 3, 3) * 4
        >>> torch.allclose(newton_schulz_sqrt(A, 20), torch.eye(3) * 2)
        True
    """
    _check_square(A)
    iters = check_integer("iters", iters)
    with full_precision(A.device):
        A = A.to(_compute_dtype(A.dtype))
        d = A.shape[-1]
        eye3 = 3.0 * torch.eye(d, dtype=A.dtype, device=A.device)
        trace = A.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
        trace = trace.clamp_min(torch.finfo(A.dtype).tiny)  # all-zero input -> 0, not NaN
        Y = A / trace
        if iters > 1:
            T = 0.5 * (eye3 - Y)  # Z0 = I, so Z0 Y0 = Y0
            Y, Z = Y @ T, T
            for _ in range(iters - 2):
                T = 0.5 * (eye3 - Z @ Y)
                Y, Z = Y @ T, T @ Z
            Y = 0.5 * Y @ (eye3 - Z @ Y)
        else:
            Y = 0.5 * Y @ (eye3 - Y)
        return Y * trace.sqrt()


class _SpectralSqrt(torch.autograd.Function):
    """Square root from a spectral decomposition, with the Sylvester-equation backward."""

    @staticmethod
    def forward(ctx, A: torch.Tensor, method: str, eps: float) -> torch.Tensor:
        if method == "eig":
            values, U = _eigh(A)
        else:  # SVD of a PSD matrix: A = V diag(s) V^T (SVD-Pade uses V)
            _, values, Vh = torch.linalg.svd(A)
            U = Vh.mH
        root = values.clamp_min(eps).sqrt()
        ctx.save_for_backward(U, root)
        return (U * root.unsqueeze(-2)) @ U.mH

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        U, root = ctx.saved_tensors
        K = 1.0 / (root.unsqueeze(-1) + root.unsqueeze(-2))
        grad_a = U @ (K * (U.mH @ grad.to(U.dtype) @ U)) @ U.mH
        return grad_a, None, None


def _eigh(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh(A)``; a matrix whose float32 decomposition fails (LAPACK's solver did not
    converge, or gave NaN, for covariances of a trace near 2e-6 whose float64 one is fine: a
    traceback, or NaN logits) decomposed alone in float64 and rounded back. Each matrix's values
    are its own whatever its batch: a batch's decomposition is each matrix's (LAPACK runs them one
    by one), and a failed batch is decomposed matrix by matrix."""
    try:
        values, U = torch.linalg.eigh(A)
    except torch.linalg.LinAlgError:
        if A.dtype == torch.float64 or A.ndim == 2:
            return _eigh_wide(A)
        flat = A.reshape(-1, *A.shape[-2:])
        parts = [_eigh(matrix) for matrix in flat]
        values = torch.stack([v for v, _ in parts]).reshape(A.shape[:-1])
        return values, torch.stack([u for _, u in parts]).reshape(A.shape)
    if A.dtype == torch.float64:
        return values, U
    bad = ~(values.isfinite().all(-1) & U.isfinite().flatten(-2).all(-1))
    if bad.any():
        values, U = values.clone(), U.clone()
        values[bad], U[bad] = _eigh_wide(A[bad])
    return values, U


def _eigh_wide(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``eigh`` in float64, as ``A``'s dtype (float64 itself: raised as torch raises it)."""
    values, U = torch.linalg.eigh(A.to(torch.float64))
    return values.to(A.dtype), U.to(A.dtype)


def _spectral_sqrt(A: torch.Tensor, method: str, dtype: torch.dtype, eps: float | None):
    _check_square(A)
    with full_precision(A.device):
        A = A.to(dtype)
        eps = torch.finfo(dtype).eps if eps is None else float(eps)
        if eps <= 0:
            raise ValueError(f"`eps` should be > 0. Got {eps}")
        return _SpectralSqrt.apply(A, method, eps)


def eig_sqrt(A: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Exact square root by eigendecomposition (MPN-COV: matrix power 0.5).

    ``U diag(sqrt(max(lambda, eps))) U^T`` from ``torch.linalg.eigh``. No trace
    normalization. See the module docstring for the backward.

    Args:
        A: symmetric positive semi-definite matrices ``(..., d, d)``.
        eps: eigenvalues are clamped at this value before the root; default
            the machine epsilon of the compute dtype.

    Returns:
        ``(..., d, d)``, float32 (float64 for float64 input).

    Raises:
        ValueError: ``A`` is not square, or ``eps`` <= 0.

    Example:
        >>> eig_sqrt(torch.diag(torch.tensor([4.0, 9.0]))).diagonal()
        tensor([2., 3.])
    """
    return _spectral_sqrt(A, "eig", _compute_dtype(A.dtype), eps)


def svd_sqrt(A: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Exact square root by SVD in float64 (the forward pass of SVD-Pade).

    ``V diag(sqrt(max(s, eps))) V^T`` with ``A = U diag(s) V^T`` computed in
    float64 and singular values clamped at float64's machine epsilon, as the
    reference does. No trace normalization.

    Args:
        A: symmetric positive semi-definite matrices ``(..., d, d)``.
        eps: clamp for the singular values; default ``finfo(float64).eps``.

    Returns:
        ``(..., d, d)`` float64.

    Raises:
        ValueError: ``A`` is not square, or ``eps`` <= 0.

    Example:
        >>> svd_sqrt(torch.diag(torch.tensor([4.0, 9.0]))).diagonal()
        tensor([2., 3.], dtype=torch.float64)
    """
    return _spectral_sqrt(A, "svd", torch.float64, eps)


def matrix_sqrt(A: torch.Tensor, method: str = "newton-schulz", *, iters: int = 5) -> torch.Tensor:
    """Dispatch to one of :data:`SQRT_METHODS`.

    Args:
        A: symmetric positive semi-definite matrices ``(..., d, d)``.
        method: ``newton-schulz``, ``eig`` or ``svd``.
        iters: Newton-Schulz iterations (ignored by the exact roots).

    Raises:
        UnknownNameError: unknown ``method``.
    """
    if method == "newton-schulz":
        return newton_schulz_sqrt(A, iters)
    if method == "eig":
        return eig_sqrt(A)
    if method == "svd":
        return svd_sqrt(A)
    from robustbench_gcp.errors import UnknownNameError

    raise UnknownNameError("matrix square root", str(method), SQRT_METHODS)


@lru_cache(maxsize=16)
def _flat_triu_index(d: int, device: torch.device) -> torch.Tensor:
    # Cached across calls: build it as a normal tensor even when the first call
    # comes from inference mode, or autograd (attacks) could not use it later.
    with torch.inference_mode(False):
        rows, cols = torch.triu_indices(d, d, device=device)
        return rows * d + cols


def triu_indices(d: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Flat indices of the upper triangle (diagonal included), row-major.

    Equal to ``torch.ones(d, d).triu().flatten().nonzero().squeeze(1)``, the order
    of fast-MPN-COV's ``Triuvec`` that the classifiers were trained with.
    """
    return _flat_triu_index(int(d), torch.device(device))


def triu_vectorize(A: torch.Tensor) -> torch.Tensor:
    """Upper triangle with the diagonal, row-major, no sqrt(2) scaling.

    Args:
        A: ``(..., d, d)``.

    Returns:
        ``(..., d (d + 1) / 2)``, same dtype: 32896 values for d = 256.

    Example:
        >>> triu_vectorize(torch.arange(9.0).reshape(1, 3, 3))
        tensor([[0., 1., 2., 4., 5., 8.]])
    """
    _check_square(A)
    d = A.shape[-1]
    return A.flatten(-2)[..., triu_indices(d, A.device)]
