"""Sparse adapter entries (set/get, save/load, apply/remove bit-exact, errors), SORSA (init, forward, backward,
regularizer) and the principal selection strategy."""

import numpy as np
import pytest

import s2ft
from s2ft import Target, Weight

SHAPE = s2ft.ModelShape(n_layers=2, d_model=12, n_heads=4, n_kv_heads=2, head_dim=3, d_ff=20)


def test_weight_enum_and_shapes():
    assert [int(w) for w in Weight] == list(range(7))
    assert Weight.Q.bit == 16 and int(Weight.DOWN) == int(Target.DOWN)
    assert SHAPE.weight_shape(Weight.Q) == (12, 12)
    assert SHAPE.weight_shape(Weight.K) == (6, 12)
    assert SHAPE.weight_shape(Weight.GATE) == (20, 12)
    assert SHAPE.weight_shape(Target.O) == (12, 12)


def test_sparse_round_trip_save_load(tmp_path, rng):
    a = s2ft.Adapter(SHAPE, "sp")
    assert a.sparse_info() == ((), 0)
    q = rng.standard_normal(SHAPE.weight_shape(Weight.Q)).astype(np.float32)
    dq = rng.standard_normal(3).astype(np.float32)
    a.set_sparse(1, Weight.Q, [0, 17, 143], dq, base=q)
    a.set_sparse(0, "gate", [5, 6], np.array([[0.5, -0.25]], np.float32))
    a.set_sparse(0, Target.DOWN, [1], np.array([2.0], np.float32))
    e = a.sparse(1, Weight.Q)
    assert e.indices == [0, 17, 143] and e.deltas.tobytes() == dq.tobytes() and e.fingerprint != 0
    g = a.sparse(0, Weight.GATE)
    assert g.indices == [5, 6] and g.deltas.tolist() == [0.5, -0.25] and g.fingerprint == 0
    empty = a.sparse(1, Weight.K)
    assert empty.indices == [] and len(empty.deltas) == 0 and empty.fingerprint == 0
    info = a.sparse_info()
    assert info.weights == (Weight.DOWN, Weight.Q, Weight.GATE) and info.entries == 6
    assert a.targets == ()  # sparse entries are not structured targets

    a.save(tmp_path / "sp.safetensors")
    b = s2ft.Adapter.load(tmp_path / "sp.safetensors")
    for layer, w in ((1, Weight.Q), (0, Weight.GATE), (0, Weight.DOWN)):
        got, want = b.sparse(layer, w), a.sparse(layer, w)
        assert got.indices == want.indices and got.deltas.tobytes() == want.deltas.tobytes()
        assert got.fingerprint == want.fingerprint
    assert b.sparse_info() == info

    a.clear_sparse(0, Weight.GATE)
    assert a.sparse_info() == ((Weight.DOWN, Weight.Q), 4)


def test_sparse_errors(rng):
    a = s2ft.Adapter(SHAPE, "sp")
    a.set_sparse(0, Weight.K, [1, 2], np.ones(2, np.float32))
    with pytest.raises(s2ft.InvalidArgumentError) as err:
        a.set_sparse(0, Weight.K, [4, 3], np.ones(2, np.float32))
    assert err.value.status == s2ft._capi.S2FT_ERR_INVALID_ARGUMENT and err.value.message
    with pytest.raises(s2ft.InvalidArgumentError):
        a.set_sparse(0, Weight.K, [1, 10 ** 6], np.ones(2, np.float32))
    with pytest.raises(s2ft.InvalidArgumentError):
        a.set_sparse(0, Weight.K, [1, 2], np.array([1.0, np.inf], np.float32))
    assert a.sparse(0, Weight.K).indices == [1, 2]  # failed calls changed nothing
    with pytest.raises(s2ft.InvalidArgumentError):
        a.set_sparse(0, "nope", [1], np.ones(1, np.float32))


def test_sparse_apply_remove_bit_exact(ctx, rng):
    layers = [{n: rng.standard_normal(SHAPE.weight_shape(w)).astype(np.float32)
               for n, w in (("q", Weight.Q), ("k", Weight.K), ("gate", Weight.GATE), ("down", Weight.DOWN))}
              for _ in range(SHAPE.n_layers)]
    base = [{k: v.copy() for k, v in layer.items()} for layer in layers]
    a = s2ft.Adapter(SHAPE, "sp")
    dq = rng.standard_normal(3).astype(np.float32)
    dg = rng.standard_normal(2).astype(np.float32)
    a.set_sparse(1, Weight.Q, [2, 50, 143], dq, base=layers[1]["q"])
    a.set_sparse(0, Weight.GATE, [0, 239], dg, base=layers[0]["gate"])
    with s2ft.Model(ctx, SHAPE, layers) as model:
        model.apply(a, scale=0.5)
        want_q = base[1]["q"].copy().reshape(-1)
        want_q[[2, 50, 143]] = (want_q[[2, 50, 143]].astype(np.float64) + 0.5 * dq.astype(np.float64)).astype(np.float32)
        assert layers[1]["q"].tobytes() == want_q.tobytes()
        want_g = base[0]["gate"].copy().reshape(-1)
        want_g[[0, 239]] = (want_g[[0, 239]].astype(np.float64) + 0.5 * dg.astype(np.float64)).astype(np.float32)
        assert layers[0]["gate"].tobytes() == want_g.tobytes()
        np.testing.assert_array_equal(model.layer(1).q.numpy(), layers[1]["q"])
        with pytest.raises(s2ft.StateError):
            a.set_sparse(1, Weight.Q, [1], np.ones(1, np.float32))
        model.remove()
        for layer, ref in zip(layers, base):
            for name in ref:
                assert layer[name].tobytes() == ref[name].tobytes()
    layers[1]["q"][0, 0] += 1  # another base: the whole-weight fingerprint differs
    with s2ft.Model(ctx, SHAPE, layers) as model:
        with pytest.raises(s2ft.FormatError):
            model.apply(a)


def test_sorsa(ctx, rng):
    out, inp, r, t = 7, 6, 3, 5
    w0 = rng.standard_normal((out, inp)).astype(np.float32)
    w = w0.copy()
    u = np.zeros((out, r), np.float32)
    s = np.zeros(r, np.float32)
    vt = np.zeros((r, inp), np.float32)
    s2ft.sorsa_init(ctx, w, r, u, s, vt)
    assert np.all(np.diff(s) <= 0) and s[-1] > 0
    with pytest.raises(s2ft.InvalidArgumentError):
        s2ft.sorsa_init(ctx, w0.copy(), 0, u.copy(), s.copy(), vt.copy())

    x = rng.standard_normal((t, inp)).astype(np.float32)
    y = np.zeros((t, out), np.float32)
    h = np.zeros((t, r), np.float32)
    assert s2ft.sorsa_forward(ctx, x, w, u, s, vt, y, h) is y
    ref = x.astype(np.float64) @ w0.astype(np.float64).T
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())

    dy = rng.standard_normal((t, out)).astype(np.float32)
    dx = np.full((t, inp), np.nan, np.float32)
    du = np.full((out, r), np.nan, np.float32)
    ds = np.full(r, np.nan, np.float32)
    dvt = np.full((r, inp), np.nan, np.float32)
    s2ft.sorsa_backward(ctx, x, w, u, s, vt, dy, du, ds, dvt, h_saved=h, dx=dx)
    for g in (dx, du, ds, dvt):
        assert np.all(np.isfinite(g))
    assert du.shape == (out, r) and ds.shape == (r,) and dvt.shape == (r, inp)
    ref_dx = dy.astype(np.float64) @ w0.astype(np.float64)
    np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=1e-5 * np.abs(ref_dx).max())
    g = dy.astype(np.float64) @ u
    np.testing.assert_allclose(ds, (g * (x.astype(np.float64) @ vt.T)).sum(0), rtol=1e-4, atol=1e-5)

    assert abs(s2ft.sorsa_regularizer(ctx, u, vt)) < 1e-9
    gu = np.full_like(u, np.nan)
    gvt = np.full_like(vt, np.nan)
    s2ft.sorsa_regularizer(ctx, u, vt, 2.0, gu, gvt, unsquared=True)
    assert np.all(np.isfinite(gu)) and np.all(np.isfinite(gvt))
    with pytest.raises(s2ft.InvalidArgumentError):
        s2ft.sorsa_regularizer(ctx, u, vt, -1.0)
    u2 = u * 1.1
    before = s2ft.sorsa_regularizer(ctx, u2, vt)
    assert s2ft.sorsa_regularizer_step(ctx, u2, vt, 0.01) == pytest.approx(0.01 * before)
    assert s2ft.sorsa_regularizer(ctx, u2, vt) < before


def test_principal_select(ctx, rng):
    stats = s2ft.Statistics(ctx, SHAPE)
    for layer in range(SHAPE.n_layers):
        stats.add_principal(layer, Target.DOWN, rng.standard_normal(SHAPE.weight_shape(Target.DOWN)).astype(np.float32), 3)
    with pytest.raises(s2ft.InvalidArgumentError):
        stats.add_principal(0, Target.DOWN, np.ones(SHAPE.weight_shape(Target.DOWN), np.float32), 0)
    scores = stats.get(0, Target.DOWN, s2ft.StatKind.PRINCIPAL)
    assert len(scores) == SHAPE.d_ff
    sel = s2ft.select(ctx, SHAPE, targets=[Target.DOWN], strategy=s2ft.Strategy.PRINCIPAL, count={Target.DOWN: 4},
                      stats=stats)
    assert sel.indices(0, Target.DOWN) == sorted(np.argsort(scores)[::-1][:4].tolist())
