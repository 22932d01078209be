"""ModelShape: the shape of a LLaMA-architecture decoder (s2ft_model_shape)."""

import ctypes
import dataclasses

from . import _capi
from ._library import api as _api
from .enums import Weight
from .errors import check, invalid

_INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """Layer count and widths of a LLaMA-family decoder; n_heads must be a multiple of n_kv_heads.

    Weight shapes per layer ([out, in]): q [n_heads*head_dim, d_model], k and v
    [n_kv_heads*head_dim, d_model], o [d_model, n_heads*head_dim], gate and up
    [d_ff, d_model], down [d_model, d_ff].
    """

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int

    def to_c(self):
        """The s2ft_model_shape struct (fields must fit int32)."""
        raw = _capi.s2ft_model_shape()
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or not -_INT32_MAX - 1 <= value <= _INT32_MAX:
                raise invalid("ModelShape.%s is %r; expected an int32" % (field.name, value))
            setattr(raw, field.name, value)
        return raw

    @classmethod
    def from_c(cls, raw):
        """The ModelShape of an s2ft_model_shape struct."""
        return cls(*(getattr(raw, f.name) for f in dataclasses.fields(cls)))

    def check(self):
        """Raises InvalidArgumentError naming the field unless the shape is valid (s2ft_model_shape_check)."""
        raw = self.to_c()
        check(_api.s2ft_model_shape_check(ctypes.byref(raw)))

    def weight_shape(self, target):
        """The [out, in] shape of a Target's weight (o_proj, v_proj, down_proj or up_proj) or of any Weight."""
        weight = Weight(int(target))
        heads = self.n_heads * self.head_dim
        kv = self.n_kv_heads * self.head_dim
        return {
            Weight.O: (self.d_model, heads),
            Weight.V: (kv, self.d_model),
            Weight.DOWN: (self.d_model, self.d_ff),
            Weight.UP: (self.d_ff, self.d_model),
            Weight.Q: (heads, self.d_model),
            Weight.K: (kv, self.d_model),
            Weight.GATE: (self.d_ff, self.d_model),
        }[weight]


def shape_arg(value, name="shape"):
    """The s2ft_model_shape of a ModelShape argument."""
    if not isinstance(value, ModelShape):
        raise invalid("%s is %r; expected a ModelShape" % (name, value))
    return value.to_c()
