"""S2FTLinear: an nn.Linear whose frozen weight trains one slice of lines through one Parameter."""

import torch
from torch import nn
from torch.nn import functional as F

from ..enums import Axis
from ..errors import invalid, state_error
from ..partial import Slice
from .functional import partial_linear

__all__ = ["S2FTLinear"]


def _autocast_dtype(device_type):
    """The dtype autocast computes linear layers in on ``device_type`` now, or None when it is off."""
    if device_type == "cuda" and torch.is_autocast_enabled():
        return torch.get_autocast_gpu_dtype()
    if device_type == "cpu" and torch.is_autocast_cpu_enabled():
        return torch.get_autocast_cpu_dtype()
    return None


class S2FTLinear(nn.Module):
    """A linear layer y = x W^T + b that trains only the lines S of W (S2FT).

    ``weight`` [out, in] is frozen (requires_grad False); ``weight_slice``
    is the one trainable Parameter: W[:, S] ([out, k]) for a column slice
    (o_proj, down_proj) or W[S, :] ([k, in]) for a row slice (v_proj,
    up_proj). Its values are authoritative: with contiguous lines it is a
    view into W's storage; otherwise (index lines, or after something broke
    the sharing) its values are copied into W's lines before each forward.
    Backward forms dx and dW_S only (libs2ft's partial backward); a column
    slice saves x[:, S] instead of x.

    ``lines`` is an :class:`s2ft.Slice`. ``base_lines`` are the trained lines
    in the base model's order, in slice order (for adapters; default: the
    slice's own lines). ``layer`` and ``target`` (s2ft.Target) say where the
    layer sits in its model (None outside one).
    """

    def __init__(self, linear, lines, *, base_lines=None, layer=None, target=None):
        """Wraps ``linear`` (an nn.Linear; its weight and bias Parameters are reused, the weight frozen)."""
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise invalid("S2FTLinear wraps an nn.Linear, not a %s" % type(linear).__name__)
        if not isinstance(lines, Slice):
            raise invalid("lines is %r; expected an s2ft.Slice" % (lines,))
        weight = linear.weight
        out_features, in_features = weight.shape
        extent = in_features if lines.axis == Axis.COLUMNS else out_features
        indices = list(lines.indices) if lines.indices is not None else list(range(lines.begin, lines.begin + lines.count))
        if lines.count < 1 or min(indices) < 0 or max(indices) >= extent or len(set(indices)) != len(indices):
            raise invalid("lines %r do not fit a weight of shape %s" % (lines, tuple(weight.shape)))
        self.in_features, self.out_features = in_features, out_features
        # Plain values (a Slice holds ctypes memory, which cannot be copied or pickled).
        self._spec = (int(lines.axis), lines.begin, lines.count, tuple(lines.indices) if lines.indices else None)
        self.base_lines = list(base_lines) if base_lines is not None else indices
        if len(self.base_lines) != lines.count:
            raise invalid("base_lines has %d entries for %d lines" % (len(self.base_lines), lines.count))
        self.layer, self.target = layer, target
        weight.requires_grad_(False)
        self.weight = weight
        if linear.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = linear.bias
        with torch.no_grad():
            #: The slice's values when this layer was made, on the CPU (what adapters are relative to).
            self.initial_slice = self._lines_of(weight).detach().to("cpu", copy=True)
            self.weight_slice = nn.Parameter(self._lines_of(weight).detach().clone())
        self._synced = None
        self.tie_()
        # Kept to restore the model (s2ft.torch.unprepare); not a submodule.
        self.__dict__["_original"] = linear

    @property
    def lines(self):
        """The trained lines of W, an s2ft.Slice (a range, or indices)."""
        cached = self.__dict__.get("_slice")
        if cached is None:
            axis, begin, count, indices = self._spec
            cached = Slice.lines(axis, indices) if indices is not None else Slice.range(axis, begin, count)
            self.__dict__["_slice"] = cached
        return cached

    def __getstate__(self):
        """The module's state without cached ctypes objects and index tensors (for copy and pickle)."""
        state = dict(self.__dict__)
        state.pop("_slice", None)
        state.pop("_index_cache", None)
        return state

    @property
    def axis(self):
        """Axis.COLUMNS (the slice is inputs: o_proj, down_proj) or Axis.ROWS (outputs: v_proj, up_proj)."""
        return self.lines.axis

    @property
    def contiguous(self):
        """True when the lines are one range (permuted weights), so the slice can be a view of W."""
        return self.lines.indices is None

    def _lines_of(self, weight):
        """The slice's lines of ``weight``: a view for a range, a gathered copy for indices."""
        lines = self.lines
        if lines.indices is None:
            if lines.axis == Axis.COLUMNS:
                return weight[:, lines.begin:lines.begin + lines.count]
            return weight[lines.begin:lines.begin + lines.count]
        index = torch.tensor(lines.indices, dtype=torch.long, device=weight.device)
        return weight.index_select(1 if lines.axis == Axis.COLUMNS else 0, index)

    def _index(self, device):
        """The index lines as a long tensor on ``device`` (cached)."""
        cached = getattr(self, "_index_cache", None)
        if cached is None or cached.device != device:
            cached = torch.tensor(self.lines.indices, dtype=torch.long, device=device)
            self.__dict__["_index_cache"] = cached
        return cached

    def shares_storage(self):
        """True when weight_slice is the view of W's lines (values need no copying)."""
        w, p = self.weight, self.weight_slice
        if not self.contiguous or p.dtype != w.dtype or p.device != w.device or p.stride() != w.stride():
            return False
        offset = self.lines.begin * (w.stride(1) if self.axis == Axis.COLUMNS else w.stride(0))
        return p.data_ptr() == w.data_ptr() + offset * w.element_size()

    @torch.no_grad()
    def tie_(self):
        """Copies weight_slice into W's lines and, for a range, makes it a view of them again; returns self.

        Called by ``.to()``/``.cuda()``/``.half()`` (which copy the two
        separately); call it after anything else that replaced either tensor.
        """
        if self.shares_storage():
            return self
        self._copy_in()
        if self.contiguous and self.weight_slice.dtype == self.weight.dtype:
            self.weight_slice.data = self._lines_of(self.weight)
        self._synced = (self.weight_slice._version, self.weight._version)
        return self

    @torch.no_grad()
    def _copy_in(self):
        """W's lines = weight_slice."""
        p, w = self.weight_slice, self.weight
        if self.contiguous:
            self._lines_of(w).copy_(p)
        else:
            w.index_copy_(1 if self.axis == Axis.COLUMNS else 0, self._index(w.device), p.to(w.device, w.dtype))

    @torch.no_grad()
    def _copy_out(self):
        """weight_slice = W's lines (after something updated W in place, e.g. libs2ft's optimizer)."""
        if not self.shares_storage():
            self.weight_slice.copy_(self._lines_of(self.weight))
            self._synced = (self.weight_slice._version, self.weight._version)

    def sync_(self):
        """Makes W's lines equal weight_slice when they are not one storage (only when either changed)."""
        if self.shares_storage():
            return
        state = (self.weight_slice._version, self.weight._version)
        if state != self._synced:
            self._copy_in()
            self._synced = (self.weight_slice._version, self.weight._version)

    def _apply(self, fn, *args, **kwargs):
        """nn.Module._apply (``.to()`` and friends), then the slice is tied to W again."""
        result = super()._apply(fn, *args, **kwargs)
        if self.initial_slice.dtype != self.weight.dtype:
            # The base was rounded to the new dtype: adapters are relative to that.
            self.initial_slice = self.initial_slice.to(self.weight.dtype)
        self.tie_()
        return result

    def forward(self, x):
        """y = x W^T + b; with grad enabled and weight_slice trainable, libs2ft's partial backward."""
        if self.weight.requires_grad:
            raise state_error("S2FTLinear: the base weight must stay frozen (requires_grad False); "
                              "the trainable part is weight_slice")
        self.sync_()
        weight, bias = self.weight, self.bias
        dtype = _autocast_dtype(x.device.type) or weight.dtype
        if x.dtype != dtype:
            x = x.to(dtype)
        if weight.dtype != dtype:
            weight = weight.to(dtype)
        if bias is not None and bias.dtype != dtype:
            bias = bias.to(dtype)
        if not (torch.is_grad_enabled() and self.weight_slice.requires_grad):
            return F.linear(x, weight, bias)
        return partial_linear(x, weight, bias, self.weight_slice, self.lines)

    def extra_repr(self):
        """The features, the lines and the bias."""
        return "in_features=%d, out_features=%d, lines=%r, bias=%s" % (
            self.in_features, self.out_features, self.lines, self.bias is not None)
