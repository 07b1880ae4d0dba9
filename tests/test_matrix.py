"""Matrix functions of covariance pooling against independent computations."""

from __future__ import annotations

import pytest
import torch

from robustbench_gcp.errors import UnknownNameError
from robustbench_gcp.models.matrix import (
    covariance,
    eig_sqrt,
    matrix_sqrt,
    newton_schulz_sqrt,
    svd_sqrt,
    triu_indices,
    triu_vectorize,
)


def features(batch=3, d=6, m=20, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, d, m, generator=g, dtype=dtype).relu()


def spd(batch=3, d=6, m=20, seed=0, dtype=torch.float64):
    """Covariances of M > d random feature vectors (well conditioned)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, m, generator=g, dtype=dtype)
    return covariance(x) + 0.1 * torch.eye(d, dtype=dtype)


# ------------------------------------------------------------------------- covariance


def test_covariance_equals_x_ihat_xt():
    x = features()
    M = x.shape[2]
    ihat = torch.eye(M, dtype=x.dtype) / M - torch.ones(M, M, dtype=x.dtype) / M**2
    torch.testing.assert_close(covariance(x), x @ ihat @ x.transpose(1, 2))


def test_covariance_is_mean_centred_second_moment_and_takes_4d():
    x = features(batch=2, d=5, m=12).reshape(2, 5, 3, 4)
    flat = x.flatten(2)
    xc = flat - flat.mean(2, keepdim=True)
    expected = torch.stack([xc[b] @ xc[b].T / 12 for b in range(2)])
    before = x.clone()
    torch.testing.assert_close(covariance(x), expected)
    assert torch.equal(x, before)


def test_covariance_upcasts_half_and_ignores_autocast():
    x = features(dtype=torch.float32).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = covariance(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, covariance(x.float()))


def test_covariance_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"`x` should be features \(B, d, H, W\)"):
        covariance(torch.ones(4, 4))


# ---------------------------------------------------------------------- Newton-Schulz


def newton_schulz_reference(A: torch.Tensor, N: int) -> torch.Tensor:
    """PROTOCOL.md, one matrix at a time, spelled out step by step."""
    out = []
    for Sigma in A:
        d = Sigma.shape[0]
        eye = torch.eye(d, dtype=Sigma.dtype)
        trace = torch.trace(Sigma)
        Y, Z = Sigma / trace, eye.clone()
        for _k in range(1, N):
            T = (3 * eye - Z @ Y) / 2
            Y = Y @ T
            Z = T @ Z
        Y_N = Y @ (3 * eye - Z @ Y) / 2
        out.append(torch.sqrt(trace) * Y_N)
    return torch.stack(out)


@pytest.mark.parametrize("iters", [1, 2, 3, 5, 8])
def test_newton_schulz_matches_protocol_formulas(iters):
    A = spd()
    torch.testing.assert_close(newton_schulz_sqrt(A, iters), newton_schulz_reference(A, iters))


def test_an_isqrt_head_pools_with_the_protocols_5_iterations():
    """The checkpoints were trained with N = 5 (PROTOCOL.md): a head built without ns_iters must pool
    with exactly that (only its description said so before)."""
    from robustbench_gcp.models.heads import CovariancePool

    head = CovariancePool(8, 6, sqrt="newton-schulz")
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = newton_schulz_reference(covariance(x), 5)
    rows, cols = torch.triu_indices(6, 6)
    torch.testing.assert_close(head.pool(x), expected[:, rows, cols])


def test_newton_schulz_with_5_iterations_is_not_the_exact_root():
    A = spd(d=16, m=40)
    assert (newton_schulz_sqrt(A, 5) - eig_sqrt(A)).abs().max() > 1e-3


def test_newton_schulz_approaches_eig_root_as_iterations_grow():
    A = covariance(features(d=16, m=24))  # no ridge: small eigenvalues converge slowly
    exact = eig_sqrt(A)
    distances = [(newton_schulz_sqrt(A, k) - exact).norm().item()
                 for k in (1, 2, 3, 4, 5, 6, 8, 10, 15, 25)]
    floor = 1e-9 * exact.norm().item()  # float64 round-off once converged
    assert all(b < a or b < floor for a, b in zip(distances, distances[1:], strict=False)), \
        distances
    assert distances[4] > 100 * distances[-1]  # 5 iterations are far from converged
    assert distances[-1] < 1e-6 * exact.norm().item()


def test_newton_schulz_in_float32_holds_up_to_the_iterations_allowed_and_not_far_beyond():
    """--ns-iters took up to 100: the coupled iteration diverges in float32 on the rank-deficient
    covariances of every iSQRT-COV model (49 or 196 positions of 256 channels), finite but wrong
    (stored as results) at 28 iterations and NaN from 30. MAX_NS_ITERS keeps within the converged
    range, with room; the library refuses more."""
    from robustbench_gcp.engine.limits import MAX_NS_ITERS
    from robustbench_gcp.errors import ConfigError
    from robustbench_gcp.models import load_model

    for positions in (49, 196):
        A = covariance(features(batch=2, d=256, m=positions, dtype=torch.float32))
        exact = eig_sqrt(A.double())
        error = [((newton_schulz_sqrt(A, k).double() - exact).norm() / exact.norm()).item()
                 for k in (MAX_NS_ITERS, 30)]
        assert error[0] < 1e-3, error
        assert not error[1] < 1e-2, error  # diverged (NaN compares False)
    with pytest.raises(ConfigError, match=f"`ns_iters` should be at most {MAX_NS_ITERS}. Got 21"):
        load_model("resnet18-isqrt", sqrt="newton-schulz", ns_iters=MAX_NS_ITERS + 1)


def test_newton_schulz_float32_under_autocast_and_zero_matrix():
    A = spd(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = newton_schulz_sqrt(A.to(torch.bfloat16), 5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, newton_schulz_sqrt(A.to(torch.bfloat16).float(), 5))
    zero = newton_schulz_sqrt(torch.zeros(2, 4, 4), 5)
    assert torch.equal(zero, torch.zeros(2, 4, 4))


def test_newton_schulz_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`iters` should be a positive integer. Got 0"):
        newton_schulz_sqrt(spd(), 0)
    with pytest.raises(ValueError, match=r"square matrices \(\.\.\., d, d\). Got shape \(3, 4\)"):
        newton_schulz_sqrt(torch.ones(3, 4), 5)


# ------------------------------------------------------------------------ exact roots


@pytest.mark.parametrize("root", [eig_sqrt, svd_sqrt])
def test_exact_roots_square_back(root):
    A = spd()
    Y = root(A)
    torch.testing.assert_close(Y @ Y, A)
    torch.testing.assert_close(Y, Y.transpose(-1, -2))


def test_exact_roots_agree_and_keep_their_precision():
    A = spd(dtype=torch.float32)
    assert eig_sqrt(A).dtype == torch.float32
    assert svd_sqrt(A).dtype == torch.float64
    torch.testing.assert_close(eig_sqrt(A).double(), svd_sqrt(A), atol=1e-5, rtol=1e-4)


def test_exact_roots_clamp_null_space():
    # rank-deficient covariance: M = 3 positions in d = 6 dimensions
    A = covariance(features(m=3))
    for root in (eig_sqrt, svd_sqrt):
        Y = root(A)
        assert torch.isfinite(Y).all()
        torch.testing.assert_close(Y @ Y, A, atol=1e-6, rtol=1e-6)


def test_exact_roots_clamp_null_space_at_the_machine_epsilon():
    """PROTOCOL: null-space eigenvalues are clamped at machine epsilon, float64's for a float64 root
    (an SVD-Pade ResNet's 7 x 7 map leaves 207 of 256 eigenvalues at 0). float32's epsilon passed
    the square-back test, each such root 3.4e-4 where it is 1.5e-8."""
    U, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    A = U @ torch.diag(torch.tensor([4.0, 1.0, 0.0, 0.0], dtype=torch.float64)) @ U.T
    tiny = torch.finfo(torch.float64).eps ** 0.5
    expected = U @ torch.diag(torch.tensor([2.0, 1.0, tiny, tiny], dtype=torch.float64)) @ U.T
    for root in (eig_sqrt, svd_sqrt):
        torch.testing.assert_close(root(A), expected, atol=1e-7, rtol=0)


def test_a_covariance_head_with_the_svd_root_forms_the_covariance_in_float64():
    """`--sqrt svd` computes in float64 from the covariance on (the SVD-Pade authors' precision): a
    float32 covariance of a 3 x 3 map in 16 dimensions leaves its 7 null eigenvalues at float32's
    rounding, about 1e-7 instead of 1e-16, and their roots 3e-4 instead of 1e-8."""
    from robustbench_gcp.models.heads import CovariancePool

    head = CovariancePool(8, 16, sqrt="svd")
    x = torch.randn(2, 16, 3, 3, generator=torch.Generator().manual_seed(3)).relu()
    values, U = torch.linalg.eigh(covariance(x.double()))
    root = (U * values.clamp_min(torch.finfo(torch.float64).eps).sqrt().unsqueeze(-2)) @ U.mT
    rows, cols = torch.triu_indices(16, 16)
    torch.testing.assert_close(head.pool(x).double(), root[:, rows, cols], atol=1e-6, rtol=0)


def test_newton_schulz_is_scale_invariant_down_to_tiny_traces():
    """sqrt(cA) = sqrt(c) sqrt(A) holds for the iteration exactly: a trace clamped at float32's
    epsilon (1.2e-7) instead of its smallest normal number changed a nearly-zero map's root by half."""
    A = spd(dtype=torch.float32)
    torch.testing.assert_close(newton_schulz_sqrt(1e-9 * A, 5), 1e-9 ** 0.5 * newton_schulz_sqrt(A, 5),
                               rtol=1e-4, atol=0)


def test_eig_root_clamps_a_negative_eigenvalue_at_eps():
    """A covariance's rounding can leave an eigenvalue just below 0: it is clamped at ``eps`` (MPN-COV),
    not reflected to its absolute value."""
    U, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    A = U @ torch.diag(torch.tensor([4.0, 1.0, -1e-3], dtype=torch.float64)) @ U.T
    expected = U @ torch.diag(torch.tensor([2.0, 1.0, 1e-6], dtype=torch.float64)) @ U.T
    torch.testing.assert_close(eig_sqrt(A, eps=1e-12), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("root", [eig_sqrt, svd_sqrt])
def test_exact_root_gradient_matches_finite_differences(root):
    g = torch.Generator().manual_seed(1)
    B = torch.randn(2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    eye = torch.eye(5, dtype=torch.float64)

    def fn(B):
        return root(B @ B.transpose(-1, -2) + eye)

    assert torch.autograd.gradcheck(fn, (B,))


@pytest.mark.parametrize("root", [eig_sqrt, svd_sqrt])
def test_exact_root_gradient_is_finite_for_repeated_eigenvalues(root):
    # M < d: the null space gives d - M + 1 (numerically) repeated zero eigenvalues
    x = features(d=16, m=5).requires_grad_(True)
    root(covariance(x)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_matrix_sqrt_dispatch_and_unknown_name():
    A = spd()
    torch.testing.assert_close(matrix_sqrt(A, "newton-schulz", iters=3), newton_schulz_sqrt(A, 3))
    torch.testing.assert_close(matrix_sqrt(A, "eig"), eig_sqrt(A))
    with pytest.raises(UnknownNameError, match="unknown matrix square root 'eigen'. Did you mean"):
        matrix_sqrt(A, "eigen")


# ---------------------------------------------------------------------------- triu


@pytest.mark.parametrize("d", [1, 3, 8, 256])
def test_triu_order_is_that_of_fast_mpn_cov(d):
    expected = torch.ones(d, d).triu().flatten().nonzero().squeeze(1)
    assert torch.equal(triu_indices(d), expected)


def test_triu_vectorize_values_length_and_dtype():
    A = torch.arange(16.0).reshape(1, 4, 4)
    assert triu_vectorize(A).tolist() == [[0, 1, 2, 3, 5, 6, 7, 10, 11, 15]]
    assert triu_vectorize(torch.zeros(2, 256, 256, dtype=torch.float64)).shape == (2, 32896)
    assert triu_vectorize(torch.zeros(2, 128, 128)).shape == (2, 8256)
    assert triu_vectorize(A.to(torch.bfloat16)).dtype == torch.bfloat16


def test_functions_do_not_modify_input_and_batch_equals_single():
    A = spd()
    before = A.clone()
    for fn in (lambda a: newton_schulz_sqrt(a, 5), eig_sqrt, svd_sqrt, triu_vectorize):
        batched = fn(A)
        single = torch.cat([fn(A[i:i + 1]) for i in range(len(A))])
        torch.testing.assert_close(batched, single)
    assert torch.equal(A, before)


def test_triu_vectorize_works_with_autograd_after_inference_mode():
    """The cached index tensor must not be an inference tensor (attacks follow evaluation)."""
    from robustbench_gcp.models.matrix import triu_vectorize

    with torch.inference_mode():
        triu_vectorize(torch.rand(2, 7, 7))
    a = torch.rand(2, 7, 7, requires_grad=True)
    triu_vectorize(a).sum().backward()
    assert a.grad is not None and a.grad.triu().sum() == 2 * 28


@pytest.mark.parametrize("failure", ["raises", "nan"])
def test_a_matrix_whose_float32_eigh_fails_is_decomposed_in_float64(monkeypatch, failure):
    """LAPACK's float32 eigh did not converge (a traceback), or gave NaN (NaN logits), on MPN-COV
    covariances of a trace near 2e-6 whose float64 decomposition is fine (which float32 matrix
    fails depends on the machine's LAPACK: the failure is made here). The failing matrix alone is
    decomposed in float64; the others keep their float32 values, as in any batch."""
    A = spd(batch=3, d=5, dtype=torch.float32)
    expected = eig_sqrt(A)
    real = torch.linalg.eigh

    def failing(matrix, *args, **kwargs):  # the second matrix of a batch fails in float32
        if matrix.dtype == torch.float32 and matrix.ndim == 3 and matrix.shape[0] > 1:
            if failure == "raises":
                raise torch.linalg.LinAlgError("linalg.eigh: (Batch element 1): The algorithm failed to "
                                               "converge")
            values, vectors = real(matrix, *args, **kwargs)
            values[1] = float("nan")
            return values, vectors
        if failure == "raises" and matrix.dtype == torch.float32 and torch.equal(matrix, A[1]):
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        return real(matrix, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", failing)
    root = eig_sqrt(A)
    assert root.dtype == torch.float32 and root.isfinite().all()
    assert torch.equal(root[0], expected[0]) and torch.equal(root[2], expected[2])
    wide = eig_sqrt(A[1:2].double(), eps=torch.finfo(torch.float32).eps)[0]
    torch.testing.assert_close(root[1].double(), wide, rtol=1e-5, atol=1e-6)
    # the gradient flows through the float64 decomposition's vectors too
    leaf = A.clone().requires_grad_()
    eig_sqrt(leaf).sum().backward()
    assert leaf.grad.isfinite().all()
