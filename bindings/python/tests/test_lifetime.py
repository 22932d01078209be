"""Handles are destroyed exactly once (s2ft_live_handles), on close() or garbage collection, and never
before what borrows them; DLPack tensors are returned to their producers."""

import gc
import sys
import weakref

import numpy as np

import s2ft

SHAPE = s2ft.ModelShape(n_layers=1, d_model=8, n_heads=2, n_kv_heads=1, head_dim=4, d_ff=12)


def test_close_and_gc_free_each_handle_once():
    gc.collect()  # earlier tests leave objects in cycles (pytest keeps frames of raised errors)
    before = s2ft.live_handles()
    ctx = s2ft.Context.cpu()
    stats = s2ft.Statistics(ctx, SHAPE)
    sel = s2ft.select(ctx, SHAPE)
    adapter = s2ft.Adapter(SHAPE, "a")
    opt = s2ft.Optimizer(ctx)
    assert s2ft.live_handles() == before + 5
    sel.close()
    sel.close()
    assert s2ft.live_handles() == before + 4
    del adapter  # garbage collection frees too
    assert s2ft.live_handles() == before + 3
    # Closing the context first: the statistics and optimizer still use it, so it stays.
    ctx.close()
    assert s2ft.live_handles() == before + 3
    stats.get  # still usable
    stats.add_weight(0, s2ft.Target.DOWN, np.ones((8, 12), np.float32))
    assert stats.get(0, s2ft.Target.DOWN, s2ft.StatKind.WEIGHT) == [8.0] * 12
    stats.close()
    assert s2ft.live_handles() == before + 2
    opt.close()  # the last borrower: the context goes with it
    assert s2ft.live_handles() == before


def test_with_blocks_and_models_keep_their_weights(rng):
    gc.collect()  # earlier tests leave objects in cycles (pytest keeps frames of raised errors)
    before = s2ft.live_handles()
    layers = [{"down": rng.standard_normal((8, 12)).astype(np.float32)}]
    ref = weakref.ref(layers[0]["down"])
    with s2ft.Context.cpu() as ctx:
        model = s2ft.Model(ctx, SHAPE, layers)
    del layers
    gc.collect()
    assert ref() is not None  # the model holds the weight it edits in place
    assert s2ft.live_handles() == before + 2
    model.close()
    gc.collect()
    assert ref() is None and s2ft.live_handles() == before


def test_dlpack_tensors_are_returned_after_each_call(ctx):
    x = np.zeros((3, 4), np.float32)
    w = np.zeros((5, 4), np.float32)
    y = np.zeros((3, 5), np.float32)
    counts = [sys.getrefcount(x), sys.getrefcount(w), sys.getrefcount(y)]
    sl = s2ft.Slice.range(s2ft.Axis.COLUMNS, 0, 2)
    for _ in range(3):
        s2ft.forward_partial(ctx, sl, x, w, y)
    try:
        s2ft.forward_partial(ctx, sl, x, w, np.zeros((3, 3), np.float32))
    except s2ft.ShapeError:
        pass
    assert [sys.getrefcount(x), sys.getrefcount(w), sys.getrefcount(y)] == counts
    view = s2ft.as_tensor(x)
    assert sys.getrefcount(x) > counts[0]
    with view:
        s2ft.forward_partial(ctx, sl, view, w, y)  # a view passed in is not released by the call
        assert not view.released
    assert view.released and sys.getrefcount(x) == counts[0]


def test_optimizer_keeps_registered_weights(rng):
    gc.collect()  # earlier tests leave objects in cycles (pytest keeps frames of raised errors)
    before = s2ft.live_handles()
    ctx = s2ft.Context.cpu()
    opt = s2ft.Optimizer(ctx, s2ft.OptimizerKind.SGD)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    ref = weakref.ref(w)
    opt.add_param(w, s2ft.Slice.range(s2ft.Axis.ROWS, 1, 2))
    del w, ctx
    gc.collect()
    assert ref() is not None
    opt.step(0.5, [np.ones((2, 6), np.float32)])
    assert ref()[1:3].tolist() == (opt.param(0)[1:3]).tolist()
    del opt
    gc.collect()
    assert ref() is None and s2ft.live_handles() == before


def test_handles_and_views_refuse_copies_that_would_free_twice(ctx):
    import copy
    import pickle

    import pytest

    for obj in (ctx, s2ft.Adapter(SHAPE, "a"), s2ft.as_tensor(np.zeros(3, np.float32))):
        with pytest.raises(TypeError):
            copy.deepcopy(obj)
        with pytest.raises(TypeError):
            pickle.dumps(obj)
    assert copy.copy(ctx).device == ctx.device  # a shallow copy shares the one handle
