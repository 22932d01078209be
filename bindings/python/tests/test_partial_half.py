"""forward_partial / backward_partial in float16 and bfloat16, through PyTorch tensors (relative 1e-2).

NumPy has no bfloat16, so these need PyTorch (Debian's python3-torch here
and in CI); without it this file is skipped with that reason.
"""

import numpy as np
import pytest

import s2ft
from test_partial import close, make_slice, reference

torch = pytest.importorskip("torch", reason="f16/bf16 tests need PyTorch (NumPy has no bfloat16)")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("axis", [s2ft.Axis.COLUMNS, s2ft.Axis.ROWS])
@pytest.mark.parametrize("mode", ["range", "indices"])
def test_half_precision_through_torch(ctx, rng, dtype, axis, mode):
    tdtype = getattr(torch, dtype)
    T, n_in, n_out = 9, 15, 7
    x = torch.from_numpy(rng.standard_normal((T, n_in)).astype(np.float32)).to(tdtype)
    w = torch.from_numpy(rng.standard_normal((n_out, n_in)).astype(np.float32)).to(tdtype)
    dy = torch.from_numpy(rng.standard_normal((T, n_out)).astype(np.float32)).to(tdtype)
    n = n_in if axis == s2ft.Axis.COLUMNS else n_out
    sl, lines = make_slice(axis, n, "some", mode, rng)
    as64 = lambda t: t.to(torch.float64).numpy()  # noqa: E731
    y_ref, _, dx_ref, dw_ref = reference(axis, as64(x), as64(w), as64(dy), lines)

    y = torch.full((T, n_out), float("nan"), dtype=tdtype)
    xs = torch.full((T, len(lines)), float("nan"), dtype=tdtype) if axis == s2ft.Axis.COLUMNS else None
    s2ft.forward_partial(ctx, sl, x, w, y, xs)
    close(as64(y), y_ref, 1e-2)
    if xs is not None:
        assert torch.equal(xs, x[:, lines])
    x_in = xs if xs is not None else x
    dx = torch.full((T, n_in), float("nan"), dtype=tdtype)
    dw = torch.full(tuple(dw_ref.shape), float("nan"), dtype=tdtype)
    dw32 = torch.full(tuple(dw_ref.shape), float("nan"), dtype=torch.float32)
    s2ft.backward_partial(ctx, sl, w, x_in, dy, dx, dw)
    close(as64(dx), dx_ref, 1e-2)
    close(as64(dw), dw_ref, 1e-2)
    s2ft.backward_partial(ctx, sl, w, x_in, dy, None, dw32)  # an f32 gradient of half inputs
    close(as64(dw32), dw_ref, 1e-2)


def test_torch_strided_bf16(ctx, rng):
    T, n_in, n_out = 5, 8, 6
    x = torch.from_numpy(rng.standard_normal((n_in, T)).astype(np.float32)).to(torch.bfloat16).t()
    w = torch.from_numpy(rng.standard_normal((n_out, n_in)).astype(np.float32)).to(torch.bfloat16)
    y = torch.full((T, n_out), float("nan"), dtype=torch.bfloat16)
    assert s2ft.as_tensor(x).strides == tuple(x.stride())
    s2ft.forward_partial(ctx, s2ft.Slice.range("columns", 0, 2), x, w, y)
    ref = x.double().numpy() @ w.double().numpy().T
    close(y.double().numpy(), ref, 1e-2)
