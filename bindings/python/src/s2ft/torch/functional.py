"""Autograd functions of a linear layer whose weight trains only a slice of lines (S2FT's partial backward).

Both take the full weight W [out, in] (frozen; it already holds the slice's
current values) and the trainable slice parameter, which only routes the
gradient: its values are read from W's lines. The lines are a
:class:`s2ft.Slice`: a contiguous range (permuted weights) or an index list
(unpermuted weights). The work runs in libs2ft on the tensors' device, on
PyTorch's current CUDA stream for CUDA tensors.
"""

import torch

from ..enums import Axis
from ..partial import backward_partial, forward_partial
from . import _runtime

__all__ = ["ColumnPartialLinear", "RowPartialLinear", "partial_linear"]


def _grad_dtype(param_dtype, compute_dtype):
    """The dtype libs2ft writes a slice gradient in: the parameter's when it can (f32 or the compute dtype)."""
    if param_dtype == compute_dtype or param_dtype == torch.float32:
        return param_dtype
    return torch.float32


def _flat(t, width):
    """``t`` as a matrix [T, width] (a view where possible)."""
    return t.reshape(-1, width)


def _dense(t):
    """``t`` with no zero strides (expanded gradients are materialised)."""
    return t.contiguous() if 0 in t.stride() else t


class _PartialLinear(torch.autograd.Function):
    """The backward both slice axes share; subclasses say what the forward saves."""

    @staticmethod
    def backward(ctx, dy):
        """Runs s2ft_backward_partial: dx (when needed) and dW_S; the frozen weight gets no gradient."""
        x_in, weight = ctx.saved_tensors
        return _backward(ctx, dy, weight, x_in)


# Column slice S (O, DOWN: trained inputs), W [out, in], x [T, in]:
#   forward:  y = x W^T + b             saves x_S = x[:, S]  ([T, k], not x)
#   backward: dx   = dy W               ([T, in], through the full frozen W)
#             dW_S = dy^T x_S           ([out, k]; the full dW is never formed)
#             db   = sum_t dy[t, :]     (only when the bias trains)
class ColumnPartialLinear(_PartialLinear):
    """y = x W^T + b for a weight that trains its columns S; saves x[:, S] only."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight_slice, lines):
        """Runs s2ft_forward_partial; returns y [..., out]."""
        return _forward(ctx, x, weight, bias, weight_slice, lines, save_columns=True)


# Row slice S (V, UP: trained outputs), W [out, in], x [T, in]:
#   forward:  y = x W^T + b             saves x (the weight gradient needs all of it)
#   backward: dx   = dy W               ([T, in])
#             dW_S = dy[:, S]^T x       ([k, in]; the full dW is never formed)
#             db   = sum_t dy[t, :]     (only when the bias trains)
class RowPartialLinear(_PartialLinear):
    """y = x W^T + b for a weight that trains its rows S; saves x."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight_slice, lines):
        """Runs s2ft_forward_partial (nothing saved by the library); returns y [..., out]."""
        return _forward(ctx, x, weight, bias, weight_slice, lines, save_columns=False)


def _forward(ctx, x, weight, bias, weight_slice, lines, save_columns):
    """y = x W^T + b of either function; saves x[:, S] (columns: libs2ft writes it) or x (rows)."""
    out_features, in_features = weight.shape
    x2 = _flat(x.detach(), in_features)
    y = torch.empty((x2.shape[0], out_features), dtype=x.dtype, device=x.device)
    x_saved = torch.empty((x2.shape[0], lines.count), dtype=x.dtype, device=x.device) if save_columns else None
    if x2.shape[0] > 0:
        forward_partial(_runtime.context(x.device), lines, _runtime.view(x2, "x"),
                        _runtime.view(weight, "weight"), _runtime.view(y, "y"),
                        _runtime.view(x_saved, "x_saved") if save_columns else None)
    if bias is not None:
        y += bias.detach()
    ctx.save_for_backward(x_saved if save_columns else x2, weight)
    ctx.lines = lines
    ctx.x_shape = x.shape
    ctx.slice_dtype = weight_slice.dtype
    return y.reshape(*x.shape[:-1], out_features)


def _backward(ctx, dy, weight, x_in):
    """The gradients (dx, None, db, dW_S, None) of either function."""
    need_x, _, need_b, need_slice, _ = ctx.needs_input_grad
    out_features, in_features = weight.shape
    dy2 = _dense(_flat(dy, out_features))
    if dy2.dtype != weight.dtype:
        dy2 = dy2.to(weight.dtype)
    rows = dy2.shape[0]
    dx = dw = db = None
    if need_b:
        db = dy2.sum(0, dtype=torch.float32).to(dy.dtype)
    if need_slice:
        lines = ctx.lines
        shape = (out_features, lines.count) if lines.axis == Axis.COLUMNS else (lines.count, in_features)
        dw = torch.empty(shape, dtype=_grad_dtype(ctx.slice_dtype, weight.dtype), device=weight.device)
        if need_x:
            dx = torch.empty((rows, in_features), dtype=weight.dtype, device=weight.device)
        if rows > 0:
            backward_partial(_runtime.context(weight.device), lines, _runtime.view(weight, "weight"),
                             _runtime.view(x_in, "x_in"), _runtime.view(dy2, "dy"),
                             _runtime.view(dx, "dx") if dx is not None else None, _runtime.view(dw, "dw_slice"))
        else:
            dw.zero_()
        if dw.dtype != ctx.slice_dtype:
            dw = dw.to(ctx.slice_dtype)
    elif need_x:
        dx = dy2.mm(weight)
    if dx is not None:
        dx = dx.reshape(ctx.x_shape)
    return dx, None, db, dw, None


def partial_linear(x, weight, bias, weight_slice, lines):
    """y = x W^T + b where only the lines ``lines`` (an s2ft.Slice) of W train, through ``weight_slice``.

    ``weight`` must already hold the slice's values in those lines (W is
    frozen: it gets no gradient); ``weight_slice`` ([out, k] for columns,
    [k, in] for rows) receives dW_S. x, weight and bias share one dtype.
    """
    fn = ColumnPartialLinear if lines.axis == Axis.COLUMNS else RowPartialLinear
    return fn.apply(x, weight.detach(), bias, weight_slice, lines)
