"""Statistics, select, Selection (indices, ranges, permutations, files) and permute on a tiny GQA layer.

The co-permutation must leave a layer's function unchanged: a NumPy
float64 attention block (grouped-query, causal) and SwiGLU MLP give the
same outputs before and after permute FORWARD, and INVERSE restores the
weights bit for bit.
"""

import math

import numpy as np
import pytest

import s2ft
from s2ft import PermKind, Target

SHAPE = s2ft.ModelShape(n_layers=2, d_model=16, n_heads=4, n_kv_heads=2, head_dim=4, d_ff=24)


def layer_weights(rng, shape=SHAPE):
    """Random f32 weights of one layer, as a dict of C-contiguous arrays."""
    h, kv, d = shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim, shape.d_model
    sizes = dict(q=(h, d), k=(kv, d), v=(kv, d), o=(d, h), gate=(shape.d_ff, d), up=(shape.d_ff, d),
                 down=(d, shape.d_ff))
    return {name: rng.standard_normal(size).astype(np.float32) for name, size in sizes.items()}


def attention(x, w, shape=SHAPE):
    """Causal grouped-query attention followed by o_proj, in float64."""
    T, D, H, KV = x.shape[0], shape.head_dim, shape.n_heads, shape.n_kv_heads
    f = {k: v.astype(np.float64) for k, v in w.items()}
    q = (x @ f["q"].T).reshape(T, H, D)
    k = (x @ f["k"].T).reshape(T, KV, D)
    v = (x @ f["v"].T).reshape(T, KV, D)
    out = np.empty((T, H, D))
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for head in range(H):
        group = head // (H // KV)
        scores = q[:, head] @ k[:, group].T / math.sqrt(D) + mask
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        out[:, head] = (p / p.sum(axis=1, keepdims=True)) @ v[:, group]
    return out.reshape(T, H * D) @ f["o"].T


def mlp(x, w):
    """SwiGLU MLP in float64."""
    g = x @ w["gate"].astype(np.float64).T
    u = x @ w["up"].astype(np.float64).T
    return (g / (1 + np.exp(-g)) * u) @ w["down"].astype(np.float64).T


@pytest.fixture
def selection(ctx):
    """A random selection of one KV group (O), one KV head (V) and 5 channels (DOWN, UP)."""
    return s2ft.select(ctx, SHAPE, targets=[Target.O, Target.V, Target.DOWN, Target.UP], seed=7,
                       count={Target.O: 1, Target.V: 1, Target.DOWN: 5, Target.UP: 5})


def test_permute_keeps_the_layer_function_and_inverse_is_bit_exact(ctx, rng, selection):
    x = rng.standard_normal((6, SHAPE.d_model))
    for layer in range(SHAPE.n_layers):
        base = layer_weights(rng)
        w = {k: v.copy() for k, v in base.items()}
        before = attention(x, w), mlp(x, w)
        s2ft.permute(ctx, selection, layer, s2ft.LayerWeights(**w))
        assert any(not np.array_equal(w[k], base[k]) for k in w)  # something moved
        np.testing.assert_allclose(attention(x, w), before[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(mlp(x, w), before[1], rtol=1e-12, atol=1e-12)
        # Positions follow the permutations, and the selected units come first.
        channels = selection.permutation(layer, PermKind.CHANNELS)
        assert np.array_equal(w["down"], base["down"][:, channels])
        assert np.array_equal(w["up"], base["up"][channels])
        assert sorted(channels[:5]) == selection.indices(layer, Target.DOWN)
        heads = selection.permutation(layer, PermKind.HEADS)
        cols = [h * SHAPE.head_dim + j for h in heads for j in range(SHAPE.head_dim)]
        assert np.array_equal(w["o"], base["o"][:, cols])
        begin, count = selection.range(layer, Target.DOWN)
        assert (begin, count) == (0, 5)
        s2ft.permute(ctx, selection, layer, w, s2ft.Direction.INVERSE)  # a dict works too
        for name in base:
            assert w[name].tobytes() == base[name].tobytes(), name


def test_selection_queries_are_consistent(selection):
    assert selection.shape == SHAPE
    assert selection.targets == (Target.O, Target.V, Target.DOWN, Target.UP)
    for layer in range(SHAPE.n_layers):
        heads = selection.indices(layer, Target.O)
        assert len(heads) == 2  # one KV group = 2 query heads
        lines = selection.indices(layer, Target.O, lines=True)
        assert lines == [h * SHAPE.head_dim + j for h in heads for j in range(SHAPE.head_dim)]
        assert selection.indices(layer, Target.O, lines=True, permuted=True) == list(range(8))
        assert len(selection.permutation(layer, PermKind.KV_HEADS)) == SHAPE.n_kv_heads
        assert sorted(selection.permutation(layer, PermKind.CHANNELS)) == list(range(SHAPE.d_ff))
        sl = s2ft.Slice.from_selection(selection, layer, Target.UP)
        assert (sl.axis, (sl.begin, sl.count)) == (s2ft.Axis.ROWS, selection.range(layer, Target.UP))
        assert sl.count == 5
        sl = s2ft.Slice.from_selection(selection, layer, Target.DOWN, permuted=False)
        assert list(sl.indices) == selection.indices(layer, Target.DOWN, lines=True)


def test_selection_file_round_trip_and_create(tmp_path, selection):
    path = tmp_path / "selection.json"
    selection.save(path)
    with s2ft.Selection.load(str(path)) as loaded:
        for layer in range(SHAPE.n_layers):
            for t in Target:
                assert loaded.indices(layer, t) == selection.indices(layer, t)
            for kind in PermKind:
                assert loaded.permutation(layer, kind) == selection.permutation(layer, kind)
    r = SHAPE.n_heads // SHAPE.n_kv_heads
    units = {
        Target.O: [sorted({h // r for h in selection.indices(layer, Target.O)}) for layer in range(2)],
        Target.DOWN: np.array([selection.indices(layer, Target.DOWN) for layer in range(2)]),
    }
    with s2ft.Selection.create(SHAPE, units) as made:
        assert made.targets == (Target.O, Target.DOWN)
        for layer in range(2):
            assert made.indices(layer, Target.O) == selection.indices(layer, Target.O)
            assert made.indices(layer, Target.DOWN) == selection.indices(layer, Target.DOWN)
            assert made.indices(layer, Target.V) == []
    with pytest.raises(s2ft.InvalidArgumentError):
        s2ft.Selection.create(SHAPE, {Target.DOWN: [[1, 2], [3]]})
    with pytest.raises(s2ft.InvalidArgumentError, match="twice"):
        s2ft.Selection.create(SHAPE, {Target.DOWN: [[1, 1], [2, 3]]})


def test_statistics_and_score_based_selection(ctx, rng):
    shape = SHAPE
    with s2ft.Statistics(ctx, shape) as stats:
        downs, acts = [], []
        for layer in range(shape.n_layers):
            w = layer_weights(rng)
            x = rng.standard_normal((10, shape.d_ff)).astype(np.float32)
            stats.add_weight(layer, Target.DOWN, w["down"])
            stats.add_activation(layer, Target.DOWN, x)
            stats.add_weight(layer, Target.O, w["o"])
            downs.append(w["down"].astype(np.float64))
            acts.append(x.astype(np.float64))
            np.testing.assert_allclose(stats.get(layer, Target.DOWN, s2ft.StatKind.WEIGHT),
                                       (downs[-1] ** 2).sum(axis=0), rtol=1e-6)
            np.testing.assert_allclose(stats.get(layer, "down", "activation"), (x.astype(np.float64) ** 2).sum(axis=0),
                                       rtol=1e-6)
            per_head = (w["o"].astype(np.float64) ** 2).reshape(shape.d_model, shape.n_heads, -1).sum(axis=(0, 2))
            np.testing.assert_allclose(stats.get(layer, Target.O, s2ft.StatKind.WEIGHT), per_head, rtol=1e-6)
        with pytest.raises(s2ft.StateError):
            stats.get(0, Target.DOWN, s2ft.StatKind.GRADIENT)  # nothing recorded
        sel = s2ft.select(ctx, shape, stats, targets=[Target.DOWN], strategy=s2ft.Strategy.WEIGHT,
                          count={Target.DOWN: 3})
        for layer in range(shape.n_layers):
            top = np.argsort(-(downs[layer] ** 2).sum(axis=0))[:3]
            assert sel.indices(layer, Target.DOWN) == sorted(int(i) for i in top)
        sel = s2ft.select(ctx, shape, stats, targets=Target.DOWN, strategy="activation", order="smallest",
                          ratio={Target.DOWN: 0.125})
        for layer in range(shape.n_layers):
            low = np.argsort((acts[layer] ** 2).sum(axis=0))[:3]
            assert sel.indices(layer, Target.DOWN) == sorted(int(i) for i in low)
        with pytest.raises(s2ft.InvalidArgumentError):
            s2ft.select(ctx, shape, None, targets=[Target.DOWN], strategy=s2ft.Strategy.WEIGHT,
                        count={Target.DOWN: 3})  # no statistics


def test_gradient_statistics(ctx, rng):
    with s2ft.Statistics(ctx, SHAPE) as stats:
        x = rng.standard_normal((8, SHAPE.d_ff)).astype(np.float32)
        dy = rng.standard_normal((8, SHAPE.d_model)).astype(np.float32)
        stats.add_gradient(1, Target.DOWN, x, dy)
        dw = dy.astype(np.float64).T @ x.astype(np.float64)
        np.testing.assert_allclose(stats.get(1, Target.DOWN, s2ft.StatKind.GRADIENT), (dw ** 2).sum(axis=0),
                                   rtol=1e-5)
