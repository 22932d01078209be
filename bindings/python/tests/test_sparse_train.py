"""Sparse sets, backward_sparse, the optimizer on sparse entries and lift_select against NumPy float64."""

import numpy as np
import pytest

import s2ft


def test_sparse_set_round_trip(ctx):
    s = s2ft.SparseSet(ctx, 3, 4, [1, 5, 11])
    assert s.count == 3 and s.shape == (3, 4) and s.indices() == [1, 5, 11]
    with pytest.raises(s2ft.InvalidArgumentError, match=r"indices\[1\] = 1 repeats"):
        s2ft.SparseSet(ctx, 3, 4, [1, 1])
    s.close()


def test_backward_sparse_matches_gathered_dense_gradient(ctx, rng):
    T, out, inp = 37, 11, 23
    x = rng.standard_normal((T, inp)).astype(np.float32)
    dy = rng.standard_normal((T, out)).astype(np.float32)
    w = rng.standard_normal((out, inp)).astype(np.float32)
    idx = np.sort(rng.choice(out * inp, size=40, replace=False))
    s = s2ft.SparseSet(ctx, out, inp, idx)
    grad = np.full(40, np.nan, dtype=np.float32)
    dx = np.full((T, inp), np.nan, dtype=np.float32)
    s2ft.backward_sparse(ctx, s, x, dy, grad, w=w, dx=dx)
    dw = dy.astype(np.float64).T @ x.astype(np.float64)
    np.testing.assert_allclose(grad, dw.reshape(-1)[idx], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dy.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
    before = grad.copy()
    s2ft.backward_sparse(ctx, s, x, dy, grad, accumulate_grad=True)
    np.testing.assert_allclose(grad, 2 * before, rtol=1e-6)


def test_optimizer_on_sparse_entries(ctx):
    w = np.ones((2, 3), dtype=np.float32)
    s = s2ft.SparseSet(ctx, 2, 3, [1, 5])
    with s2ft.Optimizer(ctx, s2ft.OptimizerKind.SM3) as opt:
        assert opt.add_sparse(w, s) == 0
        opt.step(0.5, [np.array([2.0, -1.0], dtype=np.float32)])
        assert opt.step_count == 1
        opt.sparse_reindex(0, s2ft.SparseSet(ctx, 2, 3, [1, 2]))
        opt.step(0.5, [np.array([0.0, 1.0], dtype=np.float32)])
    # SM3's first step moves each entry by lr * sign(g) (R = [4, 1], C = [0, 4, 1]); then entry (0, 1)
    # has g = 0, and the new entry (0, 2) has nu = min(R[0], C[2]) + 1 = 2.
    np.testing.assert_allclose(w, [[1.0, 0.5, 1.0 - 0.5 / np.sqrt(2.0)], [1.0, 1.0, 1.5]], rtol=1e-6)
    with s2ft.Optimizer(ctx, age_bias_correction=True) as adam:
        adam.add_sparse(np.zeros((2, 3), dtype=np.float32), s)


def test_lift_select_rank_one(ctx):
    w = np.outer([2.0, 1.0], [3.0, 1.0, -5.0]).astype(np.float32)  # [[6, 2, -10], [3, 1, -5]]: no ties
    try:
        got = s2ft.lift_select(ctx, w, 1, count=2)
    except s2ft.UnsupportedError:
        pytest.skip("this libs2ft has no LAPACK")
    assert got == [0, 2]
    assert s2ft.lift_select(ctx, w, 1, count=2, order=s2ft.Order.SMALLEST) == [1, 4]
    assert s2ft.lift_select(ctx, w, 1, density=0.5, method=s2ft.LiftMethod.RANDOMIZED, seed=3) == [0, 2, 5]
    with pytest.raises(s2ft.InvalidArgumentError, match="both set"):
        s2ft.lift_select(ctx, w, 1, count=2, density=0.5)
    assert s2ft.lift_count_for_lora_rank(4096, 11008, 16) == 241664
