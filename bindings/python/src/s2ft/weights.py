"""LayerWeights (one layer's projection weights) and permute(), the co-permutation of a layer."""

import ctypes

from . import _capi
from ._convert import enum_arg, int32_arg
from ._handle import live
from ._library import api as _api
from .context import borrow, context_arg
from .enums import Direction
from .errors import check, invalid

#: The weights of a layer, in s2ft_layer_weights order.
WEIGHT_NAMES = ("q", "k", "v", "o", "gate", "up", "down")


class LayerWeights:
    """One layer's weights (q, k, v, o, gate, up, down); any may be None to leave that weight out.

    Each is a tensor (anything as_tensor accepts), [out, in] row-major as
    in PyTorch's nn.Linear. A dict with these keys is accepted wherever a
    LayerWeights is.
    """

    __slots__ = WEIGHT_NAMES

    def __init__(self, q=None, k=None, v=None, o=None, gate=None, up=None, down=None):
        """Holds the given tensors (None: not given)."""
        self.q, self.k, self.v, self.o = q, k, v, o
        self.gate, self.up, self.down = gate, up, down

    def items(self):
        """(name, tensor) pairs of the weights that are set."""
        return [(n, getattr(self, n)) for n in WEIGHT_NAMES if getattr(self, n) is not None]

    def __repr__(self):
        """The names of the weights that are set."""
        return "LayerWeights(%s)" % ", ".join(n for n, _ in self.items())


def layer_weights_arg(value, name):
    """A LayerWeights from a LayerWeights or a dict of weight names."""
    if isinstance(value, LayerWeights):
        return value
    if hasattr(value, "items"):
        unknown = set(value) - set(WEIGHT_NAMES)
        if unknown:
            raise invalid("%s has unknown weights %s; expected some of %s"
                          % (name, sorted(unknown), ", ".join(WEIGHT_NAMES)))
        return LayerWeights(**value)
    raise invalid("%s is %r; expected a LayerWeights or a dict of weights" % (name, value))


def fill_layer_weights(borrowed, weights, name, writable, only=WEIGHT_NAMES):
    """The s2ft_layer_weights struct of ``weights``, its tensors converted in ``borrowed``.

    ``only`` names the weights the call reads; others are left NULL.
    """
    weights = layer_weights_arg(weights, name)
    raw = _capi.s2ft_layer_weights()
    for field in only:
        tensor = getattr(weights, field)
        if tensor is not None:
            setattr(raw, field, borrowed.pointer(tensor, "%s.%s" % (name, field), writable))
    return raw


def permute(ctx, selection, layer, weights, direction=Direction.FORWARD):
    """Co-permutes one layer's weights in place so that the selected units come first (or back, INVERSE).

    Permute all coupled weights together (q, k, v, o for heads; gate, up,
    down for channels) to keep the layer's function; INVERSE after FORWARD
    restores the weights bit-exactly. On CUDA the work is queued on the
    context's stream.
    """
    from .selection import Selection

    res = context_arg(ctx)
    sel_res = live(selection, Selection, "selection")
    layer = int32_arg(layer, "layer")
    direction = enum_arg(direction, Direction, "direction")
    with borrow(res) as b:
        raw = fill_layer_weights(b, weights, "weights", writable=True)
        check(_api.s2ft_permute(res.ptr, sel_res.ptr, layer, ctypes.byref(raw), int(direction)))
