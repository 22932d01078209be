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


# ---- SpIEL and LIFT's mask refresh ------------------------------------------------------------------------------
ROWS, COLS, K = 12, 10, 20


def _sparse_param(ctx, rng, kind=s2ft.OptimizerKind.ADAMW):
    """A random 12 x 10 f32 weight (and a copy), a set of 20 random entries, and an optimizer over them."""
    w = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    idx = np.sort(rng.choice(ROWS * COLS, size=K, replace=False))
    s = s2ft.SparseSet(ctx, ROWS, COLS, idx)
    opt = s2ft.Optimizer(ctx, kind)
    assert opt.add_sparse(w, s) == 0
    return w, w.copy(), s, opt


def _train(ctx, rng, spiel, s, opt, steps):
    """``steps`` training steps on random x, dy; returns the current set and the steps at which it moved."""
    moved_at = []
    for t in range(1, steps + 1):
        x = rng.standard_normal((8, COLS)).astype(np.float32)
        dy = rng.standard_normal((8, ROWS)).astype(np.float32)
        grad = np.zeros(s.count, dtype=np.float32)
        s2ft.backward_sparse(ctx, s, x, dy, grad)
        spiel.observe(x, dy)
        opt.step(0.05, [grad])
        if spiel.step():
            moved_at.append(t)
            s = spiel.current_set()
    return s, moved_at


def _changed_only_at(w, w0, indices):
    """True when w equals w0 bit for bit outside the flat ``indices``."""
    outside = np.ones(w.size, dtype=bool)
    outside[list(indices)] = False
    return np.array_equal(w.reshape(-1)[outside].view(np.uint32), w0.reshape(-1)[outside].view(np.uint32))


def test_spiel_ag_moves_the_entries_and_resets_the_dropped_ones(ctx, rng):
    w, w0, s, opt = _sparse_param(ctx, rng)
    first = s.indices()
    with s2ft.Spiel(ctx, opt, 0, total_steps=12, reselect_interval=4, accumulation_steps=2) as sp:
        assert sp.param_index == 0
        s, moved_at = _train(ctx, rng, sp, s, opt, 7)
        # Reselections after steps M + j N = 2, 6 (10 is still to come); the first one replaces everything.
        assert moved_at and set(moved_at) <= {2, 6} and moved_at[0] == 2
        st = sp.stats
        assert isinstance(st, s2ft.SpielStats)
        assert (st.steps, st.count, st.reselections, st.next_reselection, st.last_step) == (7, K, 2, 10, 6)
        assert st.dense_gradients == 2 and st.observations == 4  # one dense dW per window of 2 steps
        assert st.last_rate == pytest.approx(0.2 * (1 - 6 / 12)) and st.last_target == 2
        assert st.last_dropped == st.last_regrown <= st.last_target
        current = s.indices()
        assert s.count == K and current != first
        assert sp.current_set().indices() == current
        # Dropped entries are back at their base values: the weight moved at the current entries only.
        assert _changed_only_at(w, w0, current)
        assert not np.array_equal(w, w0)
        # The rate: p0 (1 - t / T), and 1 at the first reselection (first_full).
        for t in (1, 3, 5, 9, 12):
            assert sp.rate(t) == pytest.approx(0.2 * (1 - t / 12))
        assert sp.rate(2) == 1.0 and sp.rate(13) == 0.0
    assert sp.closed
    assert s2ft.spiel_rate(5, total_steps=12, accumulation_steps=2, reselect_interval=4) == pytest.approx(
        0.2 * (1 - 5 / 12))
    assert s2ft.spiel_rate(2, total_steps=12, accumulation_steps=2, reselect_interval=4, first_full=False,
                           initial_rate=0.5, decay=s2ft.SpielDecay.COSINE) == pytest.approx(
        0.5 * (1 + np.cos(np.pi * 2 / 12)) / 2)
    opt.close()


def test_spiel_ma_with_activation_sums(ctx, rng):
    w, w0, s, opt = _sparse_param(ctx, rng)
    sp = s2ft.Spiel(ctx, opt, 0, total_steps=12, reselect_interval=4, accumulation_steps=2,
                    regrow=s2ft.SpielRegrow.MA, ma_source=s2ft.SpielMaSource.ACTIVATIONS, first_full=False,
                    initial_rate=0.5)
    s, moved_at = _train(ctx, rng, sp, s, opt, 6)
    st = sp.stats
    assert (st.steps, st.reselections, st.dense_gradients, st.count) == (6, 2, 0, K)  # MA forms no dense dW
    assert st.last_target == int(np.floor(0.5 * (1 - 6 / 12) * K))
    assert s.count == K and moved_at and set(moved_at) <= {2, 6}
    assert _changed_only_at(w, w0, s.indices())
    sp.close()
    opt.close()


def test_spiel_bad_options_raise_with_the_status(ctx, rng):
    w, w0, s, opt = _sparse_param(ctx, rng)
    with pytest.raises(s2ft.InvalidArgumentError, match="total_steps") as e:
        s2ft.Spiel(ctx, opt, 0, total_steps=0)
    assert e.value.status == s2ft._capi.S2FT_ERR_INVALID_ARGUMENT
    with pytest.raises(s2ft.InvalidArgumentError, match="accumulation_steps"):
        s2ft.Spiel(ctx, opt, 0, total_steps=12, reselect_interval=4, accumulation_steps=5)
    with pytest.raises(s2ft.InvalidArgumentError, match="SM3"):  # MA's default source is the SM3 optimizer
        s2ft.Spiel(ctx, opt, 0, total_steps=12, regrow="ma")
    with pytest.raises(s2ft.InvalidArgumentError, match="param_index"):
        s2ft.Spiel(ctx, opt, 1, total_steps=12)
    with pytest.raises(s2ft.InvalidArgumentError, match="regrow"):
        s2ft.Spiel(ctx, opt, 0, total_steps=12, regrow=7)
    with pytest.raises(s2ft.InvalidArgumentError, match="step"):
        s2ft.spiel_rate(0, total_steps=12)
    with pytest.raises(TypeError):
        s2ft.spiel_rate(1, total_steps=12, no_such_option=1)
    sp = s2ft.Spiel(ctx, opt, 0, total_steps=12)
    with pytest.raises(s2ft.ShapeError):
        sp.observe(np.zeros((3, COLS + 1), np.float32), np.zeros((3, ROWS), np.float32))
    sp.close()
    with pytest.raises(s2ft.StateError):
        sp.step()
    opt.close()


def test_spiel_keeps_its_optimizer_alive(ctx, rng):
    import gc

    gc.collect()
    before = s2ft.live_handles()
    w, w0, s, opt = _sparse_param(ctx, rng)
    sp = s2ft.Spiel(ctx, opt, 0, total_steps=12, reselect_interval=4, accumulation_steps=2)
    assert s2ft.live_handles() == before + 3
    opt.close()  # the schedule still holds the optimizer
    assert s2ft.live_handles() == before + 3
    x = np.ones((2, COLS), np.float32)
    sp.observe(x, np.ones((2, ROWS), np.float32))
    assert sp.step() is False and sp.stats.steps == 1
    sp.close()  # the last holder: the optimizer goes with it
    s.close()
    assert s2ft.live_handles() == before


def test_lift_refresh_moves_the_parameter_to_the_principal_weights(ctx, rng):
    w, w0, s, opt = _sparse_param(ctx, rng)
    old = s.indices()
    opt.step(0.05, [np.ones(K, np.float32)])
    try:
        fresh, kept = s2ft.lift_refresh(ctx, opt, 0, 2, count=K)
    except s2ft.UnsupportedError:
        pytest.skip("this libs2ft has no LAPACK")
    assert isinstance(fresh, s2ft.SparseSet) and fresh.count == K and fresh.shape == (ROWS, COLS)
    assert fresh.indices() == s2ft.lift_select(ctx, w, 2, count=K)
    assert kept == len(set(old) & set(fresh.indices()))
    before = w.copy()
    opt.step(0.05, [np.ones(K, np.float32)])  # the parameter now has the new set's entries
    assert _changed_only_at(w, before, fresh.indices())
    with pytest.raises(s2ft.InvalidArgumentError, match="both set") as e:
        s2ft.lift_refresh(ctx, opt, 0, 2, count=K, density=0.5)
    assert e.value.status == s2ft._capi.S2FT_ERR_INVALID_ARGUMENT
    with pytest.raises(s2ft.InvalidArgumentError, match="param_index"):
        s2ft.lift_refresh(ctx, opt, 3, 2, count=K)
    opt.close()
