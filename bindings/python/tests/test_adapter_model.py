"""Adapters (set, metadata, save/load, fuse, from_training, PEFT export), models (apply, remove, switch,
apply_files; bit-exact), forward_mixed, SparseDelta and the optimizer against NumPy."""

import json

import numpy as np
import pytest

import s2ft
from s2ft import Target

SHAPE = s2ft.ModelShape(n_layers=2, d_model=12, n_heads=4, n_kv_heads=2, head_dim=3, d_ff=20)


def base_layers(rng):
    """Per-layer dicts of f32 o, v, down and up weights."""
    return [{t.name.lower(): rng.standard_normal(SHAPE.weight_shape(t)).astype(np.float32) for t in Target}
            for _ in range(SHAPE.n_layers)]


def make_adapter(rng, layers, name, lines=(5, 2, 11), scale=1.0):
    """An adapter with DOWN lines in layer 0 and V rows in layer 1, fingerprinted against ``layers``."""
    a = s2ft.Adapter(SHAPE, name, scale)
    d0 = rng.standard_normal((SHAPE.d_model, len(lines))).astype(np.float32)
    a.set(0, Target.DOWN, list(lines), d0, base=layers[0]["down"])
    d1 = rng.standard_normal((2, SHAPE.d_model)).astype(np.float32)
    a.set(1, Target.V, [4, 0], d1, base=layers[1]["v"])
    return a, d0, d1


def test_adapter_entries_and_metadata(rng):
    layers = base_layers(rng)
    a, d0, d1 = make_adapter(rng, layers, "first", scale=0.5)
    assert a.name == "first" and a.default_scale == 0.5
    assert a.shape == SHAPE and a.targets == (Target.V, Target.DOWN)
    assert a.lines(0, Target.DOWN) == [2, 5, 11]
    assert all(f != 0 for f in a.fingerprints(0, Target.DOWN))
    np.testing.assert_array_equal(a.delta(0, Target.DOWN), d0[:, [1, 0, 2]])  # ascending line order
    np.testing.assert_array_equal(a.delta(1, Target.V), d1[[1, 0]])
    out = np.zeros((SHAPE.d_model, 3), np.float32)
    assert a.delta(0, "down", out=out) is out
    assert a.lines(1, Target.UP) == []
    with pytest.raises(s2ft.StateError):
        a.delta(1, Target.UP)
    a.clear(1, Target.V)
    assert a.targets == (Target.DOWN,)
    a.name = "renamed"
    a.default_scale = 2.0
    assert (a.name, a.default_scale) == ("renamed", 2.0)

    meta = a.metadata
    assert len(meta) == 0 and dict(meta) == {}
    meta["base.model"] = "tiny"
    meta["a.first"] = "ü"
    assert list(meta) == ["a.first", "base.model"] and meta["a.first"] == "ü"
    assert "base.model" in meta and meta.get("missing") is None
    del meta["a.first"]
    assert dict(meta) == {"base.model": "tiny"}
    with pytest.raises(KeyError):
        meta["missing"]
    with pytest.raises(KeyError):
        del meta["missing"]
    with pytest.raises(s2ft.InvalidArgumentError, match="key"):
        meta["bad key!"] = "x"
    a.close()


def test_save_load_fuse_and_export(tmp_path, rng):
    layers = base_layers(rng)
    a, d0, _ = make_adapter(rng, layers, "a", lines=(1, 3))
    b, e0, _ = make_adapter(rng, layers, "b", lines=(3, 7))
    a.metadata["source"] = "unit-test"
    a.save(tmp_path / "a.safetensors")
    with s2ft.Adapter.load(tmp_path / "a.safetensors") as loaded:
        assert loaded.name == "a" and dict(loaded.metadata) == {"source": "unit-test"}
        for layer, target in [(0, Target.DOWN), (1, Target.V)]:
            assert loaded.lines(layer, target) == a.lines(layer, target)
            assert loaded.fingerprints(layer, target) == a.fingerprints(layer, target)
            np.testing.assert_array_equal(loaded.delta(layer, target), a.delta(layer, target))
    with s2ft.Adapter.fuse([a, b], [0.5, 2.0]) as fused:
        assert fused.lines(0, Target.DOWN) == [1, 3, 7]
        expect = np.zeros((SHAPE.d_model, 3))
        expect[:, [0, 1]] += 0.5 * d0.astype(np.float64)
        expect[:, [1, 2]] += 2.0 * e0.astype(np.float64)
        np.testing.assert_allclose(fused.delta(0, Target.DOWN), expect, rtol=1e-6)
        assert fused.metadata["input.0.name"] == "a" and fused.metadata["input.0.source"] == "unit-test"
        assert fused.name == "a+b"
    with pytest.raises(s2ft.InvalidArgumentError):
        s2ft.Adapter.fuse([a, b], [1.0])
    a.export_peft(tmp_path / "peft", base_model_name_or_path="tiny")
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny" and config["r"] == 2
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()


def test_model_apply_remove_switch_bit_exact(tmp_path, ctx, rng):
    layers = base_layers(rng)
    base = [{k: v.copy() for k, v in layer.items()} for layer in layers]
    a, d0, d1 = make_adapter(rng, layers, "a")
    b, e0, _ = make_adapter(rng, layers, "b", lines=(0, 5))
    with s2ft.Model(ctx, SHAPE, layers) as model:
        assert model.applied() == (None, pytest.approx(float("nan"), nan_ok=True))
        model.apply(a, scale=2.0)
        want = layers[0]["down"].copy()
        want[:, [5, 2, 11]] = (base[0]["down"][:, [5, 2, 11]].astype(np.float64) + 2.0 * d0.astype(np.float64)
                               ).astype(np.float32)
        assert layers[0]["down"].tobytes() == want.tobytes()
        assert model.applied() == (a, 2.0)
        with pytest.raises(s2ft.StateError, match="applied"):
            a.set(0, Target.UP, [1], np.zeros((1, SHAPE.d_model), np.float32))
        with pytest.raises(s2ft.StateError):
            model.apply(b)  # one adapter at a time
        model.switch(b)
        assert model.applied()[0] is b
        model.remove()
        for name in base[0]:
            assert layers[0][name].tobytes() == base[0][name].tobytes()
            assert layers[1][name].tobytes() == base[1][name].tobytes()
        with pytest.raises(s2ft.StateError):
            model.remove()
        views = model.layer(0)
        assert views.q is None and views.down.data_ptr == layers[0]["down"].ctypes.data
        np.testing.assert_array_equal(views.down.numpy(), layers[0]["down"])

        a.save(tmp_path / "a.safetensors")
        model.apply_files([tmp_path / "a.safetensors"], [1.0])
        owned, scale = model.applied()
        assert owned is not a and owned.name == "a" and scale == 1.0
        assert owned.lines(0, Target.DOWN) == [2, 5, 11]
        model.remove()
        with pytest.raises(s2ft.StateError, match="removed or replaced"):
            owned.lines(0, Target.DOWN)
    # A base that changed: fingerprints differ.
    layers[0]["down"][:, 2] += 1
    with s2ft.Model(ctx, SHAPE, layers) as model:
        with pytest.raises(s2ft.FormatError):
            model.apply(a)
        model.apply(a, force=True)


def test_from_training(ctx, rng):
    layers = base_layers(rng)
    sel = s2ft.select(ctx, SHAPE, targets=[Target.DOWN], count={Target.DOWN: 3}, seed=3)
    trained = [{k: v.copy() for k, v in layer.items()} for layer in layers]
    for layer in range(SHAPE.n_layers):
        lines = sel.indices(layer, Target.DOWN, lines=True)
        trained[layer]["down"][:, lines] += 0.25
    adapter = s2ft.Adapter.from_training(ctx, sel, layers, trained, name="trained")
    for layer in range(SHAPE.n_layers):
        assert adapter.lines(layer, Target.DOWN) == sel.indices(layer, Target.DOWN, lines=True)
        lines = sel.indices(layer, Target.DOWN, lines=True)
        want = trained[layer]["down"][:, lines].astype(np.float64) - layers[layer]["down"][:, lines]
        np.testing.assert_allclose(adapter.delta(layer, Target.DOWN), want, rtol=1e-6)


def test_forward_mixed_and_sparse_delta(ctx, rng):
    layers = base_layers(rng)
    a, d0, _ = make_adapter(rng, layers, "a", scale=1.5)
    b, e0, _ = make_adapter(rng, layers, "b", lines=(0, 19))
    w = layers[0]["down"]
    T = 8
    x = rng.standard_normal((T, SHAPE.d_ff)).astype(np.float32)
    y = np.full((T, SHAPE.d_model), np.nan, np.float32)
    offsets, segments = [0, 3, 5, 8], [0, -1, 1]
    s2ft.forward_mixed(ctx, 0, Target.DOWN, x, w, y, [a, b], offsets, segments, scales=[None, 0.5])
    x64 = x.astype(np.float64)
    ref = x64 @ w.astype(np.float64).T
    ref[0:3] += 1.5 * x64[0:3][:, [5, 2, 11]] @ d0.astype(np.float64).T
    ref[5:8] += 0.5 * x64[5:8][:, [0, 19]] @ e0.astype(np.float64).T
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(s2ft.InvalidArgumentError):
        s2ft.forward_mixed(ctx, 0, Target.DOWN, x, w, y, [a], [0, 8], [0, 0])
    # The same through a model over the weights (in base order: no perm).
    with s2ft.Model(ctx, SHAPE, layers) as model:
        y_model = np.full_like(y, np.nan)
        assert model.forward_mixed(0, "down", x, y_model, [a, b], offsets, segments, scales=[None, 0.5]) is y_model
        np.testing.assert_array_equal(y_model, y)
        with pytest.raises(s2ft.InvalidArgumentError, match="no O weight"):
            s2ft.Model(ctx, SHAPE, [{"down": w}, {"down": w.copy()}]).forward_mixed(0, Target.O, x, y, [a], [0, 8], [0])

    # The same adapter delta as CSR: y += scale * x D^T.
    with s2ft.SparseDelta.from_adapter(ctx, a, 0, Target.DOWN) as sparse:
        assert sparse.info() == (SHAPE.d_model, SHAPE.d_ff, SHAPE.d_model * 3)
        y2 = np.zeros((T, SHAPE.d_model), np.float32)
        sparse.forward(ctx, x, y2, scale=2.0)
        dense = np.zeros((SHAPE.d_model, SHAPE.d_ff))
        dense[:, [5, 2, 11]] = d0
        np.testing.assert_allclose(y2, 2.0 * x64 @ dense.T, rtol=1e-5, atol=1e-5)
    with s2ft.SparseDelta(ctx, 2, 3, [0, 1, 3], [2, 0, 1], [1.0, -2.0, 0.5]) as csr:
        assert csr.shape == (2, 3) and csr.nnz == 3
        xs = rng.standard_normal((4, 3)).astype(np.float32)
        ys = np.zeros((4, 2), np.float32)
        csr.forward(ctx, xs, ys)
        np.testing.assert_allclose(ys, xs @ np.array([[0, 0, 1.0], [-2.0, 0.5, 0]]).T, rtol=1e-6)
    with pytest.raises(s2ft.InvalidArgumentError):
        s2ft.SparseDelta(ctx, 2, 3, [0, 2, 1], [2, 0], [1.0, 2.0])


def test_optimizer_sgd_and_adamw_state(tmp_path, ctx, rng):
    w = rng.standard_normal((6, 10)).astype(np.float32)
    w0 = w.copy()
    sl = s2ft.Slice.lines(s2ft.Axis.COLUMNS, [7, 2])
    g = rng.standard_normal((6, 2)).astype(np.float32)
    with s2ft.Optimizer(ctx, s2ft.OptimizerKind.SGD) as opt:
        assert opt.add_param(w, sl) == 0 and opt.num_params == 1 and opt.param(0) is w
        assert opt.step(0.1, [g], return_norm=True) == pytest.approx(float(np.linalg.norm(g.astype(np.float64))))
        want = w0.copy()
        want[:, [7, 2]] = (w0[:, [7, 2]] - np.float32(0.1) * g)
        np.testing.assert_allclose(w, want, rtol=1e-6)
        assert opt.step_count == 1
        with pytest.raises(s2ft.InvalidArgumentError):
            opt.step(0.1, [])
    with s2ft.Optimizer(ctx, beta1=0.8, weight_decay=0.01) as adam:
        adam.add_param(w, sl)
        assert adam.step(1e-3, [g]) is None
        adam.save(tmp_path / "opt.safetensors")
        adam.step(1e-3, [g])
        assert adam.step_count == 2
        adam.load(tmp_path / "opt.safetensors")
        assert adam.step_count == 1
    with pytest.raises(s2ft.InvalidArgumentError):
        s2ft.Optimizer(ctx, beta1=1.5)
