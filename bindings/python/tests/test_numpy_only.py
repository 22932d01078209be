"""The core works with NumPy alone: a process where ``import torch`` fails imports s2ft and runs it."""

import os
import subprocess
import sys

SCRIPT = r"""
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np
import s2ft
assert "torch" not in [m for m, v in sys.modules.items() if v is not None]
shape = s2ft.ModelShape(n_layers=1, d_model=8, n_heads=2, n_kv_heads=1, head_dim=4, d_ff=12)
with s2ft.Context.cpu() as ctx:
    sel = s2ft.select(ctx, shape, targets=[s2ft.Target.DOWN], count={s2ft.Target.DOWN: 3})
    lines = sel.indices(0, s2ft.Target.DOWN, lines=True)
    x = np.random.rand(5, 12).astype(np.float32)
    w = np.random.rand(8, 12).astype(np.float32)
    y = np.zeros((5, 8), np.float32)
    xs = np.zeros((5, 3), np.float32)
    s2ft.forward_partial(ctx, s2ft.Slice.lines("columns", lines), x, w, y, xs)
    assert np.allclose(y, x @ w.T, rtol=1e-5) and np.array_equal(xs, x[:, lines])
    dx, dw = np.zeros_like(x), np.zeros((8, 3), np.float32)
    s2ft.backward_partial(ctx, s2ft.Slice.lines("columns", lines), w, xs, y, dx, dw)
    s2ft.permute(ctx, sel, 0, {"down": w})
    a = s2ft.Adapter(shape, "np")
    a.set(0, "down", lines, dw)
    assert a.delta(0, "down").shape == (8, 3)
try:
    s2ft.forward_partial(None, None, None, None, None)
except s2ft.InvalidArgumentError as e:
    assert e.status == -1
print("numpy-only ok")
"""


def test_core_runs_without_torch():
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "numpy-only ok" in result.stdout
