"""SORSA (Cao, 2024): a frozen weight split by its thin SVD into a frozen residual and trained singular vectors and
values, the linear layer's forward and backward through the factors, and the orthonormal regularizer on them.

W = W_res + U_p diag(S_p) V_p^T with the top-r triplets as f32 factors u [out, r], s [r] (or [1, r]) and
vt [r, in]; train them with an Optimizer (each a parameter with a slice over all its columns) and keep u and vt
orthonormal with sorsa_regularizer() or sorsa_regularizer_step().
"""

import ctypes

from . import _capi
from ._convert import float_arg, int32_arg
from ._library import api as _api
from .context import borrow, context_arg
from .errors import check


def _reg_flags(unsquared, accumulate=False):
    """The flags of the regularizer calls."""
    return (_capi.S2FT_SORSA_UNSQUARED if unsquared else 0) | (_capi.S2FT_ACCUMULATE_DW if accumulate else 0)


def sorsa_init(ctx, w, rank, u, s, vt):
    """Splits w [out, in] (f32, f16 or bf16) in place for SORSA.

    The thin SVD of w (in double), its top ``rank`` triplets written to
    u [out, rank], s [rank] (or [1, rank]) and vt [rank, in] (all f32;
    singular values descending, signs fixed), and w overwritten by the
    residual w - u diag(s) vt, rounded once to its dtype. rank is in
    [1, min(out, in)]. On failure w is unchanged. On a CUDA context the
    SVD runs on the device (cuSOLVER, in double) and the call synchronises.
    """
    res = context_arg(ctx)
    rank = int32_arg(rank, "rank")
    with borrow(res) as b:
        check(_api.s2ft_sorsa_init(res.ptr, b.pointer(w, "w", writable=True), rank,
                                   b.pointer(u, "u", writable=True), b.pointer(s, "s", writable=True),
                                   b.pointer(vt, "vt", writable=True)))


def sorsa_forward(ctx, x, w_res, u, s, vt, y, h_saved=None):
    """y = x w_res^T + ((x vt^T) * s) u^T; returns y.

    x [T, in], w_res [out, in] and y [T, out] share one dtype (f32, f16,
    bf16); u, s and vt are f32. h_saved (f32 [T, r], optional) receives
    h = x vt^T for sorsa_backward. The [out, in] factor product is never
    formed. On CUDA the work is queued on the context's stream.
    """
    res = context_arg(ctx)
    with borrow(res) as b:
        check(_api.s2ft_sorsa_forward(res.ptr, b.pointer(x, "x"), b.pointer(w_res, "w_res"), b.pointer(u, "u"),
                                      b.pointer(s, "s"), b.pointer(vt, "vt"), b.pointer(y, "y", writable=True),
                                      b.pointer(h_saved, "h_saved", writable=True)))
    return y


def sorsa_backward(ctx, x, w_res, u, s, vt, dy, du, ds, dvt, *, h_saved=None, dx=None, accumulate_dw=False,
                   accumulate_dx=False):
    """Backward of sorsa_forward for the output gradient dy [T, out].

    du = dy^T (h * s), ds = sum_t (dy u) * h, dvt = ((dy u) * s)^T x (f32,
    shaped as u, s, vt) and, when dx is given, dx = dy w_res + ((dy u) * s)
    vt. h_saved is the forward's h (None: recomputed). With accumulate_dw /
    accumulate_dx the results are added to the outputs instead of
    overwriting them.
    """
    res = context_arg(ctx)
    flags = (_capi.S2FT_ACCUMULATE_DW if accumulate_dw else 0) | (_capi.S2FT_ACCUMULATE_DX if accumulate_dx else 0)
    with borrow(res) as b:
        check(_api.s2ft_sorsa_backward(res.ptr, b.pointer(x, "x"), b.pointer(w_res, "w_res"), b.pointer(u, "u"),
                                       b.pointer(s, "s"), b.pointer(vt, "vt"), b.pointer(h_saved, "h_saved"),
                                       b.pointer(dy, "dy"), b.pointer(dx, "dx", writable=True),
                                       b.pointer(du, "du", writable=True), b.pointer(ds, "ds", writable=True),
                                       b.pointer(dvt, "dvt", writable=True), flags))


def sorsa_regularizer(ctx, u, vt, gamma=1.0, du=None, dvt=None, *, unsquared=False, accumulate=False):
    """SORSA's orthonormal regularizer on u [out, r] and vt [r, in] (f32); returns its value.

    value = gamma * (||u^T u - I||_F^2 + ||vt vt^T - I||_F^2) (plain norms
    with ``unsquared``, as the released code); its gradients go into du and
    dvt when given (added with ``accumulate``, e.g. onto sorsa_backward's).
    gamma is finite and >= 0. On CUDA reading the value synchronises.
    """
    res = context_arg(ctx)
    value = ctypes.c_double()
    with borrow(res) as b:
        check(_api.s2ft_sorsa_regularizer(res.ptr, b.pointer(u, "u"), b.pointer(vt, "vt"), float_arg(gamma, "gamma"),
                                          ctypes.byref(value), b.pointer(du, "du", writable=True),
                                          b.pointer(dvt, "dvt", writable=True), _reg_flags(unsquared, accumulate)))
    return value.value


def sorsa_regularizer_step(ctx, u, vt, rate, *, unsquared=False):
    """The paper's decoupled regularizer update: u -= rate dR/du, vt -= rate dR/dvt in place; returns rate * R before.

    Call it after the backward and before the optimizer step.
    """
    res = context_arg(ctx)
    value = ctypes.c_double()
    with borrow(res) as b:
        check(_api.s2ft_sorsa_regularizer_step(res.ptr, b.pointer(u, "u", writable=True),
                                               b.pointer(vt, "vt", writable=True), float_arg(rate, "rate"),
                                               ctypes.byref(value), _reg_flags(unsquared)))
    return value.value
