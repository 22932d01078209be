"""Low-rank adapter entries (set/get, info, SORSA's update, apply/remove on a model, errors)."""

import numpy as np
import pytest

import s2ft
from s2ft import Target, Weight

SHAPE = s2ft.ModelShape(n_layers=2, d_model=12, n_heads=4, n_kv_heads=2, head_dim=3, d_ff=20)


def rel_err(got, want):
    """max |got - want| / max |want|, in float64."""
    want = np.asarray(want, np.float64)
    return np.abs(np.asarray(got, np.float64) - want).max() / max(np.abs(want).max(), 1e-30)


def test_low_rank_round_trip_and_info(tmp_path, rng):
    a = s2ft.Adapter(SHAPE, "lr")
    assert a.low_rank_info() == ((), 0)
    assert a.low_rank(0, Weight.Q) is None
    rows, cols = SHAPE.weight_shape(Weight.Q)
    q = rng.standard_normal((rows, cols)).astype(np.float32)
    b = rng.standard_normal((rows, 3)).astype(np.float32)
    f = rng.standard_normal((3, cols)).astype(np.float32)
    a.set_low_rank(1, Weight.Q, b, f, base=q)
    gr, gc = SHAPE.weight_shape(Weight.GATE)
    bg = rng.standard_normal((gr, 1)).astype(np.float32)
    ag = rng.standard_normal((1, gc)).astype(np.float32)
    a.set_low_rank(0, "gate", bg.astype(np.float16), ag[:, ::1])  # f16 is copied to f32
    e = a.low_rank(1, Weight.Q)
    assert e.b.dtype == np.float32 and e.b.shape == (rows, 3) and e.a.shape == (3, cols)
    assert e.b.tobytes() == b.tobytes() and e.a.tobytes() == f.tobytes() and e.fingerprint != 0
    g = a.low_rank(0, Weight.GATE)
    assert g.b.tobytes() == bg.astype(np.float16).astype(np.float32).tobytes()
    assert g.a.tobytes() == ag.tobytes() and g.fingerprint == 0
    assert a.low_rank(0, Weight.Q) is None
    info = a.low_rank_info()
    assert info.weights == (Weight.Q, Weight.GATE) and info.entries == 2
    assert a.targets == ()  # low-rank entries are not structured targets
    assert a.sparse_info() == ((), 0)

    # Strided input (a transposed view) is read as it is.
    bt = np.ascontiguousarray(b.T).T
    a.set_low_rank(1, Target.O, bt[:12], f[:, :12])
    o = a.low_rank(1, Weight.O)
    assert o.b.tobytes() == np.ascontiguousarray(b[:12]).tobytes()
    assert a.low_rank_info().entries == 3

    # Saved and loaded back (adapter file format v4) bit-exactly, fingerprints included.
    a.save(tmp_path / "lr.safetensors")
    loaded = s2ft.Adapter.load(tmp_path / "lr.safetensors")
    for layer, w in ((1, Weight.Q), (0, Weight.GATE), (1, Weight.O)):
        got, want = loaded.low_rank(layer, w), a.low_rank(layer, w)
        assert got.b.tobytes() == want.b.tobytes() and got.a.tobytes() == want.a.tobytes()
        assert got.fingerprint == want.fingerprint
    assert loaded.low_rank_info() == a.low_rank_info()

    a.clear_low_rank(0, Weight.GATE)
    a.set_low_rank(1, Weight.O, None, None)
    assert a.low_rank_info() == ((Weight.Q,), 1)
    a.clear_low_rank(0, Weight.K)  # no entry: not an error


def test_set_sorsa_is_rank_2r(rng):
    a = s2ft.Adapter(SHAPE, "sorsa")
    rows, cols = SHAPE.weight_shape(Weight.DOWN)
    r = 3
    u0 = rng.standard_normal((rows, r)).astype(np.float32)
    s0 = rng.random(r).astype(np.float32) + 0.5
    vt0 = rng.standard_normal((r, cols)).astype(np.float32)
    u = (u0 + 0.1 * rng.standard_normal((rows, r))).astype(np.float32)
    s = (s0 + 0.1 * rng.standard_normal(r)).astype(np.float32)
    vt = (vt0 + 0.1 * rng.standard_normal((r, cols))).astype(np.float32)
    base = rng.standard_normal((rows, cols)).astype(np.float32)
    a.set_sorsa(0, Weight.DOWN, u0, s0, vt0, u, s.reshape(1, r), vt, base=base)
    e = a.low_rank(0, Weight.DOWN)
    assert e.b.shape == (rows, 2 * r) and e.a.shape == (2 * r, cols) and e.fingerprint != 0
    f64 = np.float64
    want = (u.astype(f64) * s.astype(f64)) @ vt.astype(f64) - (u0.astype(f64) * s0.astype(f64)) @ vt0.astype(f64)
    assert rel_err(e.b.astype(f64) @ e.a.astype(f64), want) <= 1e-5
    assert a.low_rank_info() == ((Weight.DOWN,), 1)

    # The factors must be f32, of one rank.
    with pytest.raises(s2ft.DtypeError) as err:
        a.set_sorsa(1, Weight.DOWN, u0.astype(np.float16), s0, vt0, u, s, vt)
    assert "f32" in err.value.message
    with pytest.raises(s2ft.ShapeError):
        a.set_sorsa(1, Weight.DOWN, u0[:, :2], s0, vt0, u, s, vt)
    assert a.low_rank(1, Weight.DOWN) is None


@pytest.mark.parametrize("scale", [None, 0.5])
def test_low_rank_apply_remove(ctx, rng, scale):
    layers = [{n: rng.standard_normal(SHAPE.weight_shape(w)).astype(np.float32)
               for n, w in (("q", Weight.Q), ("v", Weight.V), ("up", Weight.UP), ("down", Weight.DOWN))}
              for _ in range(SHAPE.n_layers)]
    base = [{k: v.copy() for k, v in layer.items()} for layer in layers]
    a = s2ft.Adapter(SHAPE, "lr")
    factors = {}
    for layer, name, w, k in ((1, "q", Weight.Q, 2), (0, "up", Weight.UP, 4)):
        rows, cols = SHAPE.weight_shape(w)
        b = rng.standard_normal((rows, k)).astype(np.float32)
        f = rng.standard_normal((k, cols)).astype(np.float32)
        a.set_low_rank(layer, w, b, f, base=layers[layer][name])
        factors[layer, name] = (b, f)
    with s2ft.Model(ctx, SHAPE, layers) as model:
        model.apply(a, scale=scale)
        sc = 1.0 if scale is None else scale
        for (layer, name), (b, f) in factors.items():
            want = base[layer][name].astype(np.float64) + sc * (b.astype(np.float64) @ f.astype(np.float64))
            assert rel_err(layers[layer][name], want) <= 1e-5
        for i, (layer, ref) in enumerate(zip(layers, base)):  # the other weights are untouched
            for name in ref:
                if (i, name) not in factors:
                    assert layer[name].tobytes() == ref[name].tobytes()
        with pytest.raises(s2ft.StateError):
            a.set_low_rank(1, Weight.Q, None, None)
        model.remove()
        for layer, ref in zip(layers, base):
            for name in ref:
                assert layer[name].tobytes() == ref[name].tobytes()
    layers[1]["q"][0, 0] += 1  # another base: the whole-weight fingerprint differs
    with s2ft.Model(ctx, SHAPE, layers) as model:
        with pytest.raises(s2ft.FormatError):
            model.apply(a)


def test_low_rank_errors(rng):
    a = s2ft.Adapter(SHAPE, "lr")
    rows, cols = SHAPE.weight_shape(Weight.K)
    b = rng.standard_normal((rows, 2)).astype(np.float32)
    f = rng.standard_normal((2, cols)).astype(np.float32)
    a.set_low_rank(0, Weight.K, b, f)

    # Only one factor: InvalidArgumentError naming the missing one, and nothing changes.
    with pytest.raises(s2ft.InvalidArgumentError) as err:
        a.set_low_rank(0, Weight.K, b, None)
    assert err.value.status == s2ft._capi.S2FT_ERR_INVALID_ARGUMENT and "a is NULL" in err.value.message
    with pytest.raises(s2ft.InvalidArgumentError) as err:
        a.set_low_rank(0, Weight.K, None, f)
    assert "b is NULL" in err.value.message
    # Wrong shapes: b's rows, a's rank, base.
    with pytest.raises(s2ft.ShapeError) as err:
        a.set_low_rank(0, Weight.K, b[:-1], f)
    assert err.value.status == s2ft._capi.S2FT_ERR_SHAPE and err.value.message
    with pytest.raises(s2ft.ShapeError):
        a.set_low_rank(0, Weight.K, b, f[:1])
    with pytest.raises(s2ft.ShapeError):
        a.set_low_rank(0, Weight.K, b, f, base=np.zeros((cols, rows), np.float32))
    # A value not finite; a bad weight.
    bad = b.copy()
    bad[1, 1] = np.nan
    with pytest.raises(s2ft.InvalidArgumentError) as err:
        a.set_low_rank(0, Weight.K, bad, f)
    assert "non-finite" in err.value.message
    with pytest.raises(s2ft.InvalidArgumentError):
        a.set_low_rank(0, "nope", b, f)
    e = a.low_rank(0, Weight.K)
    assert e.b.tobytes() == b.tobytes() and e.a.tobytes() == f.tobytes()  # failed calls changed nothing

    # A low-rank entry where sparse entries are, and sparse entries where a low-rank entry is.
    gr, gc = SHAPE.weight_shape(Weight.GATE)
    a.set_sparse(1, Weight.GATE, [3, 4], np.ones(2, np.float32))
    with pytest.raises(s2ft.InvalidArgumentError) as err:
        a.set_low_rank(1, Weight.GATE, np.ones((gr, 1), np.float32), np.ones((1, gc), np.float32))
    assert "sparse entries" in err.value.message
    assert a.low_rank(1, Weight.GATE) is None
    with pytest.raises(s2ft.InvalidArgumentError):
        a.set_sparse(0, Weight.K, [0], np.ones(1, np.float32))
    # ... and a structured entry of the same (layer, weight).
    a.set(1, Target.V, [0], np.ones((1, SHAPE.d_model), np.float32))
    vr, vc = SHAPE.weight_shape(Weight.V)
    with pytest.raises(s2ft.InvalidArgumentError) as err:
        a.set_low_rank(1, Weight.V, np.ones((vr, 1), np.float32), np.ones((1, vc), np.float32))
    assert "structured entry" in err.value.message
    assert a.low_rank_info() == ((Weight.K,), 1)
