"""Partial forward and backward of a linear layer y = x W^T for a trained slice S of W."""

import ctypes

from . import _capi
from ._convert import enum_arg, int64_array, int_arg
from ._library import api as _api
from .context import borrow, context_arg
from .enums import Axis, Target
from .errors import check, invalid


class Slice:
    """The trained lines of one weight (s2ft_slice): a contiguous range, or an index list.

    ``Slice.range(axis, begin, count)`` for permuted weights (lines
    [begin, begin + count)), ``Slice.lines(axis, indices)`` for the
    unpermuted index path (distinct lines, any order; saved inputs and
    gradients list them in that order). Columns (Axis.COLUMNS) for O and
    DOWN, rows (Axis.ROWS) for V and UP. Immutable; the index array is owned.
    """

    __slots__ = ("axis", "begin", "count", "indices", "_raw", "_array")

    def __init__(self, axis, begin=0, count=None, indices=None):
        """A range (indices None: ``count`` lines from ``begin``) or an index list (``indices``)."""
        self.axis = enum_arg(axis, Axis, "axis")
        if indices is not None:
            if begin not in (0, None) or count is not None:
                raise invalid("Slice: give either begin/count or indices, not both")
            self._array = int64_array(indices, "indices")
            self.indices = tuple(self._array)
            self.begin = 0
            self.count = len(self._array)
        else:
            if count is None:
                raise invalid("Slice: count is needed for a range (or pass indices)")
            self._array = None
            self.indices = None
            self.begin = int_arg(begin, "begin")
            self.count = int_arg(count, "count")
        raw = _capi.s2ft_slice()
        raw.axis = int(self.axis)
        raw.begin = self.begin
        raw.count = self.count
        raw.indices = ctypes.cast(self._array, ctypes.POINTER(ctypes.c_int64)) if self._array is not None else None
        self._raw = raw

    @classmethod
    def range(cls, axis, begin, count):
        """The lines [begin, begin + count) of ``axis``."""
        return cls(axis, begin, count)

    @classmethod
    def lines(cls, axis, indices):
        """The listed lines of ``axis``, in the given order."""
        return cls(axis, indices=indices)

    @classmethod
    def from_selection(cls, selection, layer, target, permuted=True):
        """The slice a Selection trains in (layer, target): its range after permuting, or its base-order lines."""
        target = enum_arg(target, Target, "target")
        if permuted:
            begin, count = selection.range(layer, target)
            return cls.range(target.axis, begin, count)
        return cls.lines(target.axis, selection.indices(layer, target, lines=True))

    def __len__(self):
        """The number of lines."""
        return self.count

    def __repr__(self):
        """The axis and the lines."""
        if self.indices is not None:
            return "Slice(%s, indices=%s)" % (self.axis.name, list(self.indices))
        return "Slice(%s, begin=%d, count=%d)" % (self.axis.name, self.begin, self.count)


def _slice_arg(value):
    """The s2ft_slice struct of a Slice argument."""
    if not isinstance(value, Slice):
        raise invalid("slice is %r; expected a Slice" % (value,))
    return value._raw


def forward_partial(ctx, slice, x, w, y, x_saved=None):
    """y = x W^T, and for a column slice x_saved = x[:, S] (the only input S2FT's backward needs).

    x [T, in], w [out, in], y [T, out] (written), x_saved [T, k] or None.
    One dtype (f32, f16, bf16), the context's device; f32 accumulation.
    On CUDA the work is queued on the context's stream. Returns y.
    """
    res = context_arg(ctx)
    raw_slice = _slice_arg(slice)
    with borrow(res) as b:
        px = b.pointer(x, "x")
        pw = b.pointer(w, "w")
        py = b.pointer(y, "y", writable=True)
        ps = b.pointer(x_saved, "x_saved", writable=True)
        check(_api.s2ft_forward_partial(res.ptr, ctypes.byref(raw_slice), px, pw, py, ps))
    return y


def backward_partial(ctx, slice, w, x_in, dy, dx=None, dw_slice=None, *, accumulate_dw=False,
                     accumulate_dx=False):
    """Partial back-propagation through y = x W^T for the trained slice S; W's full gradient is never formed.

    dx = dy W ([T, in]; skipped when dx is None). Columns: dw_slice = dy^T x_S
    ([out, k]; x_in is x_S [T, k]). Rows: dw_slice = dy[:, S]^T x ([k, in];
    x_in is the full x). With accumulate_dw / accumulate_dx the results are
    added to the outputs instead of overwriting them. dw_slice may be f32 or
    the inputs' dtype. On CUDA the work is queued on the context's stream.
    """
    res = context_arg(ctx)
    raw_slice = _slice_arg(slice)
    flags = (_capi.S2FT_ACCUMULATE_DW if accumulate_dw else 0) | (_capi.S2FT_ACCUMULATE_DX if accumulate_dx else 0)
    with borrow(res) as b:
        pw = b.pointer(w, "w")
        px = b.pointer(x_in, "x_in")
        pdy = b.pointer(dy, "dy")
        pdx = b.pointer(dx, "dx", writable=True)
        pdw = b.pointer(dw_slice, "dw_slice", writable=True)
        check(_api.s2ft_backward_partial(res.ptr, ctypes.byref(raw_slice), pw, px, pdy, pdx, pdw, flags))
