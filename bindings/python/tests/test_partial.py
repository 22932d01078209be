"""forward_partial / backward_partial against a NumPy float64 reference.

Random odd shapes, column and row slices, contiguous and indexed, k = 1,
some and all lines; f32 from NumPy (relative 1e-5), f16 and bf16 from
PyTorch (relative 1e-2; NumPy has no bfloat16). Outputs are poisoned with
NaN first, and strided (non-contiguous) inputs and outputs go through
DLPack strides.
"""

import numpy as np
import pytest

import s2ft
from conftest import nan_array

SHAPES = [(7, 13, 5), (1, 9, 11), (17, 3, 19)]  # (T, in, out)


def close(got, ref, rel):
    """Max abs error within rel * max(1, max|ref|)."""
    got = np.asarray(got, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    assert np.all(np.isfinite(got)), "output has unwritten (NaN) elements"
    assert err <= rel * scale, "max error %g > %g" % (err, rel * scale)


def make_slice(axis, n, k_kind, mode, rng):
    """A Slice over n lines and the lines it selects (in slice order)."""
    k = {"one": 1, "all": n, "some": max(1, n // 2)}[k_kind]
    if mode == "range":
        begin = int(rng.integers(0, n - k + 1))
        return s2ft.Slice.range(axis, begin, k), list(range(begin, begin + k))
    lines = [int(i) for i in rng.permutation(n)[:k]]
    return s2ft.Slice.lines(axis, lines), lines


def reference(axis, x, w, dy, lines):
    """(y, x_saved, dx, dw_slice) in float64."""
    y = x @ w.T
    dx = dy @ w
    if axis == s2ft.Axis.COLUMNS:
        return y, x[:, lines], dx, dy.T @ x[:, lines]
    return y, None, dx, dy[:, lines].T @ x


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("axis", [s2ft.Axis.COLUMNS, s2ft.Axis.ROWS])
@pytest.mark.parametrize("mode", ["range", "indices"])
@pytest.mark.parametrize("k_kind", ["one", "some", "all"])
def test_f32_matches_float64_reference(ctx, rng, shape, axis, mode, k_kind):
    T, n_in, n_out = shape
    x = rng.standard_normal((T, n_in)).astype(np.float32)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    dy = rng.standard_normal((T, n_out)).astype(np.float32)
    n = n_in if axis == s2ft.Axis.COLUMNS else n_out
    sl, lines = make_slice(axis, n, k_kind, mode, rng)
    y_ref, xs_ref, dx_ref, dw_ref = reference(axis, x.astype(np.float64), w.astype(np.float64),
                                              dy.astype(np.float64), lines)

    y = nan_array((T, n_out))
    xs = nan_array((T, len(lines))) if axis == s2ft.Axis.COLUMNS else None
    assert s2ft.forward_partial(ctx, sl, x, w, y, xs) is y
    close(y, y_ref, 1e-5)
    if xs is not None:
        assert np.array_equal(xs, x[:, lines])  # saved inputs are the exact bytes

    x_in = xs if axis == s2ft.Axis.COLUMNS else x
    dx = nan_array((T, n_in))
    dw = nan_array(dw_ref.shape)
    s2ft.backward_partial(ctx, sl, w, x_in, dy, dx, dw)
    close(dx, dx_ref, 1e-5)
    close(dw, dw_ref, 1e-5)


@pytest.mark.parametrize("axis", [s2ft.Axis.COLUMNS, s2ft.Axis.ROWS])
def test_accumulate_adds_to_outputs(ctx, rng, axis):
    T, n_in, n_out = 5, 11, 7
    x = rng.standard_normal((T, n_in)).astype(np.float32)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    dy = rng.standard_normal((T, n_out)).astype(np.float32)
    n = n_in if axis == s2ft.Axis.COLUMNS else n_out
    sl, lines = make_slice(axis, n, "some", "indices", rng)
    _, _, dx_ref, dw_ref = reference(axis, x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64), lines)
    x_in = np.ascontiguousarray(x[:, lines]) if axis == s2ft.Axis.COLUMNS else x
    dx0 = rng.standard_normal((T, n_in)).astype(np.float32)
    dw0 = rng.standard_normal(dw_ref.shape).astype(np.float32)
    dx, dw = dx0.copy(), dw0.copy()
    s2ft.backward_partial(ctx, sl, w, x_in, dy, dx, dw, accumulate_dw=True, accumulate_dx=True)
    close(dx, dx0 + dx_ref, 1e-5)
    close(dw, dw0 + dw_ref, 1e-5)
    # dx skipped (None): only the slice gradient is computed.
    dw2 = nan_array(dw_ref.shape)
    s2ft.backward_partial(ctx, sl, w, x_in, dy, None, dw2)
    close(dw2, dw_ref, 1e-5)


def test_strided_inputs_and_outputs(ctx, rng):
    """Non-contiguous views reach the library with their strides, and nothing outside an output view is written."""
    T, n_in, n_out = 6, 10, 4
    x = rng.standard_normal((n_in, T)).astype(np.float32).T          # strides (1, T)
    w_big = rng.standard_normal((n_out, 2 * n_in)).astype(np.float32)
    w = w_big[:, ::2]                                                 # strides (2 n_in, 2)
    dy = rng.standard_normal((n_out, T)).astype(np.float32).T
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    assert s2ft.as_tensor(x).strides == (1, T)
    assert s2ft.as_tensor(w).strides == (2 * n_in, 2)
    lines = [7, 1, 4]
    sl = s2ft.Slice.lines(s2ft.Axis.COLUMNS, lines)
    y_ref, xs_ref, dx_ref, dw_ref = reference(s2ft.Axis.COLUMNS, x.astype(np.float64), w.astype(np.float64),
                                              dy.astype(np.float64), lines)
    y_big = nan_array((T, n_out + 3))
    y = y_big[:, 1:1 + n_out]
    xs = nan_array((T, 3))
    s2ft.forward_partial(ctx, sl, x, w, y, xs)
    close(y, y_ref, 1e-5)
    assert np.isnan(y_big[:, 0]).all() and np.isnan(y_big[:, 1 + n_out:]).all()
    dx_big = nan_array((2 * T, n_in))
    dx = dx_big[::2]
    dw = nan_array((n_out, 3))
    s2ft.backward_partial(ctx, sl, w, xs, dy, dx, dw)
    close(dx, dx_ref, 1e-5)
    close(dw, dw_ref, 1e-5)
    assert np.isnan(dx_big[1::2]).all()
